//! Metrics, in the Prometheus text format (`prometheus-client`):
//!
//! - `GET /metrics`: the API server's own — request duration by verb,
//!   resource and code (`flotilla_apiserver_request_duration_seconds`), and
//!   the objects stored, by kind;
//! - `GET /apis/flotilla.dev/v1/nodes/{node}/metrics`: a node's (its
//!   instances' CPU, throttling, memory and restarts), read from its node
//!   port over mutual TLS, as the Kubernetes API server proxies a kubelet's.
//!
//! Both need a credential: an admin or `view` token (nodes are refused).
//! A Prometheus scrape job sends one with `authorization: {credentials_file: …}`
//! (see the README).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde_json::Value;

use super::authz::Target;
use super::{ApiError, ApiState};

type Labels = Vec<(&'static str, String)>;

/// Largest metrics page taken from a node (a node with 10,000 instances
/// writes about 10 MB).
const MAX_NODE_METRICS_BYTES: usize = 64 << 20;

/// The API server's own metrics.
pub struct ApiMetrics {
    requests: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        fn histogram() -> Histogram {
            // 0.5 ms to 16 s.
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        }
        Self {
            requests: Family::new_with_constructor(histogram),
        }
    }
}

/// The `resource` label of a path: a kind's plural, or a route's name —
/// never anything a caller chose freely (bounded cardinality).
fn resource_of(path: &str) -> String {
    match Target::parse(path) {
        Target::Object { plural, .. } => match super::Kind::from_plural(&plural) {
            Ok(kind) => kind.plural().to_string(),
            Err(_) => "unknown".into(),
        },
        Target::Blob(_) => "blobs".into(),
        Target::Bucket { .. } => "buckets".into(),
        Target::NodeCertificate => "certificates".into(),
        Target::AccessReview => "selfsubjectaccessreviews".into(),
        Target::Public => "public".into(),
        Target::Unknown => "other".into(),
    }
}

/// Times every request (a middleware): duration until the response's
/// headers (a watch or a follow counts its start only).
pub async fn observe(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Any token is a method in HTTP: only the standard ones are labels, so
    // no caller (not even one without a credential: this layer sees every
    // request) can grow the families without bound.
    let verb = match request.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m,
        _ => "other",
    }
    .to_string();
    let resource = resource_of(request.uri().path());
    let response = next.run(request).await;
    let labels = vec![
        ("verb", verb),
        ("resource", resource),
        ("code", response.status().as_u16().to_string()),
    ];
    state
        .metrics
        .requests
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

fn text(body: String) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response()
}

/// What `/metrics` reads from the store on each scrape.
struct Stored {
    counts: Vec<(&'static str, usize)>,
    nodes: Vec<Value>,
    instances: Vec<Value>,
}

fn read_stored(store: &dyn crate::store::Store) -> Result<Stored, crate::store::StoreError> {
    let kinds = [
        "Workload", "Instance", "Node", "Revision", "Config", "Secret", "Volume",
    ];
    let mut counts = Vec::new();
    let (mut nodes, mut instances) = (Vec::new(), Vec::new());
    for kind in kinds {
        let items = store.list(kind, None)?.items;
        counts.push((kind, items.len()));
        match kind {
            "Node" => nodes = items,
            "Instance" => instances = items,
            _ => {}
        }
    }
    Ok(Stored {
        counts,
        nodes,
        instances,
    })
}

fn gauge_family() -> Family<Labels, Gauge<f64, AtomicU64>> {
    Family::default()
}

/// Per node, from the store: what the scheduler has placed there (the
/// requests of its unfinished instances), its instances by phase, and how
/// long ago it last heartbeat.
fn node_families(stored: &Stored, registry: &mut Registry) {
    let (cpu, memory, phases, heartbeat) = (
        gauge_family(),
        gauge_family(),
        gauge_family(),
        gauge_family(),
    );
    let now = std::time::SystemTime::now();
    for node in &stored.nodes {
        let name = node["metadata"]["name"].as_str().unwrap_or_default();
        let labels = vec![("node", name.to_string())];
        cpu.get_or_create(&labels).set(0.0);
        memory.get_or_create(&labels).set(0.0);
        let beat = node["status"]["lastHeartbeat"].as_str().unwrap_or_default();
        if let Some(at) = flotilla_spec::meta::parse_rfc3339(beat) {
            let age = now.duration_since(at).unwrap_or_default();
            heartbeat.get_or_create(&labels).set(age.as_secs_f64());
        }
    }
    for instance in &stored.instances {
        let Ok(i) = serde_json::from_value::<flotilla_spec::instance::Instance>(instance.clone())
        else {
            continue;
        };
        if i.spec.node_name.is_empty() {
            continue;
        }
        let labels = vec![("node", i.spec.node_name.clone())];
        let phase = i.status.as_ref().map(|s| s.phase).unwrap_or_default();
        phases
            .get_or_create(&vec![
                ("node", i.spec.node_name.clone()),
                ("phase", phase.to_string()),
            ])
            .inc();
        if !matches!(
            phase,
            flotilla_spec::instance::Phase::Succeeded | flotilla_spec::instance::Phase::Failed
        ) {
            let (bytes, millis) = i.spec.template.resources.requests.memory_and_cpu();
            cpu.get_or_create(&labels).inc_by(millis as f64);
            memory.get_or_create(&labels).inc_by(bytes as f64);
        }
    }
    registry.register(
        "flotilla_node_allocated_cpu_millicores",
        "CPU requested by the unfinished instances bound to the node",
        cpu,
    );
    registry.register(
        "flotilla_node_allocated_memory_bytes",
        "Memory requested by the unfinished instances bound to the node",
        memory,
    );
    registry.register(
        "flotilla_node_instances_by_phase",
        "Instances bound to the node, by phase",
        phases,
    );
    registry.register(
        "flotilla_node_heartbeat_age_seconds",
        "Time since the node's last heartbeat, as the control plane saw it",
        heartbeat,
    );
}

/// `GET /metrics`.
pub async fn server(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let stored = tokio::task::spawn_blocking(move || read_stored(store.as_ref()))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let objects = Family::<Labels, Gauge<i64>>::default();
    for (kind, count) in &stored.counts {
        objects
            .get_or_create(&vec![("kind", kind.to_string())])
            .set(i64::try_from(*count).unwrap_or(i64::MAX));
    }
    let mut registry = Registry::default();
    registry.register(
        "flotilla_apiserver_request_duration_seconds",
        "API requests by verb, resource and code: time to the response's headers",
        state.metrics.requests.clone(),
    );
    let streams = Gauge::<i64>::default();
    streams.set(i64::try_from(state.streams.open()).unwrap_or(i64::MAX));
    registry.register(
        "flotilla_apiserver_open_streams",
        "Watches and log follows open now",
        streams,
    );
    registry.register("flotilla_objects", "Objects stored, by kind", objects);
    if let Some(audit) = &state.audit {
        let counts = audit.counts();
        let counter = |n: u64| {
            let c = prometheus_client::metrics::counter::Counter::<u64>::default();
            c.inc_by(n);
            c
        };
        registry.register(
            "flotilla_apiserver_audit_events",
            "Audit log lines written (writes, Secret and token reads, refusals)",
            counter(counts.written),
        );
        registry.register(
            "flotilla_apiserver_audit_failed",
            "Audit log lines the disk refused",
            counter(counts.failed),
        );
        registry.register(
            "flotilla_apiserver_audit_dropped",
            "Audit log lines not queued: the disk behind for too long, or unauthenticated refusals past their rate",
            counter(counts.dropped),
        );
    }
    node_families(&stored, &mut registry);
    crate::telemetry::register(&mut registry);
    let mut body = String::new();
    let _ = encode(&mut body, &registry);
    Ok(text(body))
}

/// `GET /apis/flotilla.dev/v1/nodes/{node}/metrics`.
pub async fn node(
    State(state): State<Arc<ApiState>>,
    Path(node): Path<String>,
) -> Result<Response, ApiError> {
    Ok(text(read_node(&state, &node).await?))
}

/// A node's metrics page, read from its node port (at most
/// [`MAX_NODE_METRICS_BYTES`]).
pub(super) async fn read_node(state: &ApiState, node: &str) -> Result<String, ApiError> {
    let address = state
        .store
        .get("Node", "", node)?
        .ok_or_else(|| ApiError::not_found(format!("nodes {node:?} not found")))?["status"]
        ["nodeAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if address.is_empty() {
        return Err(ApiError::not_found(format!(
            "node {node} has not reported its node port yet, so its metrics cannot be read; is its agent running?"
        )));
    }
    let unreachable = |e: String| ApiError {
        code: StatusCode::BAD_GATEWAY,
        reason: "NodeUnreachable",
        message: format!("cannot read the metrics of node {node} at {address}: {e}"),
    };
    let response = super::logs::dial_node(state, node, &address, flotilla_spec::node::METRICS_PATH)
        .await
        .map_err(unreachable)?;
    if !response.status().is_success() {
        return Err(unreachable(format!("it answered {}", response.status())));
    }
    let limited = http_body_util::Limited::new(response.into_body(), MAX_NODE_METRICS_BYTES);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| unreachable(format!("{e} (more than {MAX_NODE_METRICS_BYTES} bytes?)")))?
        .to_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
