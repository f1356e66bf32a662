//! The REST API, on axum/hyper, with Kubernetes-shaped paths:
//!
//! ```text
//! GET    /healthz, /cacerts, /openapi.json                     no auth
//! POST   /certificates/node                                    join token, or the node's certificate
//! GET    /apis/flotilla.dev/v1/{plural}                        list, all namespaces (?watch=true)
//! GET    /apis/flotilla.dev/v1/namespaces/{ns}/{plural}        list (?watch=true&resourceVersion=N)
//! POST   /apis/flotilla.dev/v1/namespaces/{ns}/{plural}        create
//! GET|PUT|DELETE /apis/flotilla.dev/v1/namespaces/{ns}/{plural}/{name}
//! PUT    /apis/flotilla.dev/v1/namespaces/{ns}/{plural}/{name}/status
//! GET    /apis/flotilla.dev/v1/namespaces/{ns}/instances/{name}/log  (?follow, ?previous)
//! POST   /apis/flotilla.dev/v1/namespaces/{ns}/instances/{name}/eviction  delete, if disruption budgets allow ([`eviction`])
//! POST|GET|PUT|DELETE /apis/flotilla.dev/v1/nodes[/{name}[/status]]   (cluster-scoped)
//! PUT|GET|HEAD /blobs/sha256/{digest}                          content-addressed modules
//! GET    /metrics, /apis/flotilla.dev/v1/nodes/{name}/metrics  Prometheus text ([`metrics`])
//! GET    /apis/flotilla.dev/v1/namespaces/{ns}/workloads/{name}/usage  last 15 minutes ([`usage`])
//! GET    /ui/                                                  the dashboard ([`ui`]; its assets need no auth)
//! POST   /apis/flotilla.dev/v1/selfsubjectaccessreviews        may I? ([`access_review`])
//!
//! A Workload with an `oci://` module is resolved and pulled at admission
//! ([`oci`]).
//! GET|PUT|DELETE /kv/v1/namespaces/{ns}/buckets/{bucket}/keys/{key}  cluster buckets ([`buckets`])
//! ```
//!
//! TLS only ([`serve`]). Every request but `/healthz` and `/cacerts` needs
//! `Authorization: Bearer <token>` or a node certificate ([`auth`]), and is
//! authorized by route and verb ([`authz`]; namespaced tokens by their
//! roles, [`rbac`]); writes and Secret reads are recorded ([`audit`]). Errors are Kubernetes `Status`
//! objects with the HTTP code.

mod access_review;
pub mod admission;
pub mod audit;
mod auth;
pub mod authz;
mod blobs;
mod buckets;
mod certificates;
mod error;
mod event_rate;
mod eviction;
mod imported;
mod kinds;
mod logs;
pub mod merge_patch;
pub mod metrics;
mod objects;
mod oci;
pub mod rbac;
mod recheck;
pub mod serve;
mod streams;
mod tokens;
pub mod ui;
pub mod usage;
mod watch;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;

pub use auth::Role;
pub use error::ApiError;
pub use event_rate::{EVENTS_PER_SECOND, EVENT_BURST};
pub use kinds::Kind;
pub use streams::{StreamLimiter, MAX_STREAMS_PER_CLIENT};
pub use tokens::{is_token_id, Tokens};
pub use watch::Filter;

use crate::store::Store;

/// The API's OpenAPI 3 document, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Largest object body accepted (modules go through `/blobs`).
pub const MAX_OBJECT_BYTES: usize = 1 << 20;
/// Largest module accepted.
pub const MAX_BLOB_BYTES: usize = 256 << 20;

/// What every handler shares.
pub struct ApiState {
    /// Where objects live.
    pub store: Arc<dyn Store>,
    /// Bearer tokens that may use the API, and what each may do.
    pub tokens: Tokens,
    /// The CA and the control plane's certificates.
    pub trust: Arc<crate::trust::ClusterTrust>,
    /// How the control plane dials node ports (logs).
    pub node_tls: Arc<rustls::ClientConfig>,
    /// Watches and log follows open per client.
    pub streams: StreamLimiter,
    /// Events recorded per source.
    pub event_rate: event_rate::EventRate,
    /// Modules, by sha256.
    pub blobs: Arc<crate::store::BlobStore>,
    /// The `cluster` key-value buckets.
    pub kv: Arc<dyn flotilla_kv::Backend>,
    /// The API server's metrics.
    pub metrics: metrics::ApiMetrics,
    /// Workloads' recent usage, for the dashboard ([`usage`]).
    pub usage: usage::UsageHistory,
    /// Registries (`host:port`) spoken to over plain HTTP besides those on
    /// loopback ([`oci`]).
    pub insecure_registries: Vec<String>,
    /// Where writes and Secret reads are recorded (`--audit-log`).
    pub audit: Option<audit::AuditLog>,
    /// Held from the checks that depend on other objects (quotas, route
    /// hosts) to the store's write, so writes on this server are judged
    /// one after another ([`crate::quota`]).
    pub admission: tokio::sync::Mutex<()>,
}

/// Whether a boolean query parameter (`?watch=true`, `?follow=1`) is set.
fn query_flag(params: &std::collections::HashMap<String, String>, key: &str) -> bool {
    params.get(key).is_some_and(|v| v == "true" || v == "1")
}

/// Whether a request's boolean query parameter is set, its query decoded
/// as the handlers' `Query` extractor decodes it (`?%77atch=%74rue` is a
/// watch too), so middleware and handler never disagree on what was asked.
fn request_flag(request: &axum::extract::Request, key: &str) -> bool {
    let query = request.uri().query().unwrap_or_default();
    let params: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(query).unwrap_or_default();
    query_flag(&params, key)
}

/// `POST /secret-keys/rotate`: every Secret sealed again under a new key.
async fn rotate_secret_key(
    axum::extract::State(state): axum::extract::State<Arc<ApiState>>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let store = state.store.clone();
    let resealed = tokio::task::spawn_blocking(move || store.rotate_secret_key())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(axum::Json(serde_json::json!({ "resealed": resealed })))
}

/// The API's router.
pub fn router(state: Arc<ApiState>) -> Router {
    let objects = Router::new()
        .route(
            "/apis/flotilla.dev/v1/namespaces/{ns}/{plural}",
            get(objects::list_namespaced).post(objects::create_namespaced),
        )
        .route(
            "/apis/flotilla.dev/v1/namespaces/{ns}/{plural}/{name}",
            get(objects::get_namespaced)
                .put(objects::replace_namespaced)
                .patch(objects::patch_namespaced)
                .delete(objects::delete_namespaced),
        )
        .route(
            "/apis/flotilla.dev/v1/namespaces/{ns}/{plural}/{name}/status",
            put(objects::replace_status_namespaced),
        )
        .route(
            "/apis/flotilla.dev/v1/{plural}",
            get(objects::list_cluster).post(objects::create_cluster),
        )
        .route(
            "/apis/flotilla.dev/v1/{plural}/{name}",
            get(objects::get_cluster)
                .put(objects::replace_cluster)
                .patch(objects::patch_cluster)
                .delete(objects::delete_cluster),
        )
        .route(
            "/apis/flotilla.dev/v1/{plural}/{name}/status",
            put(objects::replace_status_cluster),
        )
        .route(
            "/apis/flotilla.dev/v1/namespaces/{ns}/instances/{name}/log",
            get(logs::get),
        )
        .route(
            "/apis/flotilla.dev/v1/namespaces/{ns}/instances/{name}/eviction",
            post(eviction::evict),
        )
        .route(
            "/apis/flotilla.dev/v1/nodes/{name}/metrics",
            get(metrics::node),
        )
        .route(
            "/apis/flotilla.dev/v1/namespaces/{ns}/workloads/{name}/usage",
            get(usage::get),
        )
        .route("/metrics", get(metrics::server))
        .layer(DefaultBodyLimit::max(MAX_OBJECT_BYTES));
    let blobs = Router::new()
        .route(
            "/blobs/sha256/{digest}",
            put(blobs::put).get(blobs::get).head(blobs::head),
        )
        .layer(DefaultBodyLimit::max(MAX_BLOB_BYTES));
    let kv = "/kv/v1/namespaces/{ns}/buckets/{bucket}";
    let keys = Router::new()
        .route(&format!("{kv}/keys"), get(buckets::list))
        .route(
            &format!("{kv}/keys/{{key}}"),
            get(buckets::get).put(buckets::put).delete(buckets::delete),
        )
        .route(
            &format!("{kv}/keys/{{key}}/increment"),
            post(buckets::increment),
        )
        .layer(DefaultBodyLimit::max(buckets::MAX_PUT_BYTES))
        .route(&format!("{kv}/batch"), post(buckets::batch))
        .layer(DefaultBodyLimit::max(buckets::MAX_BATCH_BODY_BYTES));
    objects
        .merge(blobs)
        .merge(keys)
        .route("/certificates/node", post(certificates::sign_node))
        .route(
            "/apis/flotilla.dev/v1/selfsubjectaccessreviews",
            post(access_review::review),
        )
        // Admins only: every other caller is refused by authorization.
        .route("/secret-keys/rotate", post(rotate_secret_key))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            streams::limit_streams,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            event_rate::limit_events,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_credential,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::observe,
        ))
        .merge(ui::router())
        .route("/healthz", get(|| async { "ok" }))
        .route("/cacerts", get(certificates::ca))
        .route(
            "/openapi.json",
            get(|| async { ([("content-type", "application/json")], OPENAPI) }),
        )
        .with_state(state)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_flag_is_read_from_the_decoded_query() {
        let flag = |uri: &str, key: &str| {
            let request = axum::extract::Request::builder()
                .uri(uri)
                .body(axum::body::Body::empty())
                .unwrap();
            super::request_flag(&request, key)
        };
        assert!(flag("/w?watch=true", "watch"));
        assert!(flag("/w?limit=1&%77atch=%74rue", "watch"));
        assert!(flag("/w?watch=1", "watch"));
        assert!(!flag("/w?watch=false", "watch"));
        assert!(!flag("/w?watchx=true", "watch"));
        assert!(!flag("/w", "watch"));
    }
}
