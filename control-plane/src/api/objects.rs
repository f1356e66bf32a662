//! Object handlers: list (or watch), get, create, replace, replace status, delete.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::admission::{for_create, for_replace, for_status, namespace_for};
use super::watch::{watch, Filter};
use super::{ApiError, ApiState, Kind};

type Params = Query<HashMap<String, String>>;
type ApiResult = Result<Response, ApiError>;

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

fn not_found(kind: Kind, namespace: &str, name: &str) -> ApiError {
    let place = if namespace.is_empty() {
        String::new()
    } else {
        format!(" in namespace {namespace:?}")
    };
    ApiError::not_found(format!("{} {name:?} not found{place}", kind.plural()))
}

async fn list(
    state: Arc<ApiState>,
    kind: Kind,
    namespace: Option<String>,
    params: HashMap<String, String>,
) -> ApiResult {
    let filter = Filter::from_params(kind, namespace, &params)?;
    if params.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let from = match params.get("resourceVersion").map(String::as_str) {
            None | Some("") | Some("0") => None,
            Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("resourceVersion {rv:?} is not a number"))
            })?),
        };
        return Ok(watch(state.store.clone(), filter, from).into_response());
    }
    let listing = state.store.list(kind.name(), filter.namespace.as_deref())?;
    let items: Vec<Value> = listing
        .items
        .into_iter()
        .filter(|o| filter.matches(o))
        .collect();
    Ok(Json(json!({
        "apiVersion": flotilla_spec::meta::API_VERSION,
        "kind": format!("{}List", kind.name()),
        "metadata": {"resourceVersion": listing.revision.to_string()},
        "items": items,
    }))
    .into_response())
}

async fn get_one(state: Arc<ApiState>, kind: Kind, namespace: String, name: String) -> ApiResult {
    match state.store.get(kind.name(), &namespace, &name)? {
        Some(object) => Ok(Json(object).into_response()),
        None => Err(not_found(kind, &namespace, &name)),
    }
}

async fn create(state: Arc<ApiState>, kind: Kind, namespace: String, body: Bytes) -> ApiResult {
    let object = for_create(kind, &namespace, parse_body(&body)?, state.store.as_ref())?;
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let created = state.store.create(kind.name(), &namespace, &name, object)?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn replace(
    state: Arc<ApiState>,
    kind: Kind,
    namespace: String,
    name: String,
    body: Bytes,
    status_only: bool,
) -> ApiResult {
    let body = parse_body(&body)?;
    let stored = state
        .store
        .get(kind.name(), &namespace, &name)?
        .ok_or_else(|| not_found(kind, &namespace, &name))?;
    let (object, expected) = if status_only {
        for_status(kind, &namespace, &name, body, &stored)?
    } else {
        for_replace(kind, &namespace, &name, body, &stored, state.store.as_ref())?
    };
    let updated = state
        .store
        .update(kind.name(), &namespace, &name, object, expected)?;
    Ok(Json(updated).into_response())
}

async fn delete(state: Arc<ApiState>, kind: Kind, namespace: String, name: String) -> ApiResult {
    match state.store.delete(kind.name(), &namespace, &name) {
        Ok(object) => Ok(Json(object).into_response()),
        Err(crate::store::StoreError::NotFound { .. }) => Err(not_found(kind, &namespace, &name)),
        Err(e) => Err(e.into()),
    }
}

/// GET /namespaces/{ns}/{plural}
pub async fn list_namespaced(
    State(s): State<Arc<ApiState>>,
    Path((ns, plural)): Path<(String, String)>,
    Query(p): Params,
) -> ApiResult {
    let kind = Kind::from_plural(&plural)?;
    let ns = namespace_for(kind, Some(&ns))?;
    list(s, kind, Some(ns), p).await
}

/// POST /namespaces/{ns}/{plural}
pub async fn create_namespaced(
    State(s): State<Arc<ApiState>>,
    Path((ns, plural)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let kind = Kind::from_plural(&plural)?;
    let ns = namespace_for(kind, Some(&ns))?;
    create(s, kind, ns, body).await
}

/// GET /namespaces/{ns}/{plural}/{name}
pub async fn get_namespaced(
    State(s): State<Arc<ApiState>>,
    Path((ns, plural, name)): Path<(String, String, String)>,
) -> ApiResult {
    let kind = Kind::from_plural(&plural)?;
    let ns = namespace_for(kind, Some(&ns))?;
    get_one(s, kind, ns, name).await
}

/// PUT /namespaces/{ns}/{plural}/{name}
pub async fn replace_namespaced(
    State(s): State<Arc<ApiState>>,
    Path((ns, plural, name)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult {
    let kind = Kind::from_plural(&plural)?;
    let ns = namespace_for(kind, Some(&ns))?;
    replace(s, kind, ns, name, body, false).await
}

/// PUT /namespaces/{ns}/{plural}/{name}/status
pub async fn replace_status_namespaced(
    State(s): State<Arc<ApiState>>,
    Path((ns, plural, name)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult {
    let kind = Kind::from_plural(&plural)?;
    let ns = namespace_for(kind, Some(&ns))?;
    replace(s, kind, ns, name, body, true).await
}

/// DELETE /namespaces/{ns}/{plural}/{name}
pub async fn delete_namespaced(
    State(s): State<Arc<ApiState>>,
    Path((ns, plural, name)): Path<(String, String, String)>,
) -> ApiResult {
    let kind = Kind::from_plural(&plural)?;
    let ns = namespace_for(kind, Some(&ns))?;
    delete(s, kind, ns, name).await
}

/// GET /{plural}: a cluster-scoped kind, or a namespaced kind across all namespaces.
pub async fn list_cluster(
    State(s): State<Arc<ApiState>>,
    Path(plural): Path<String>,
    Query(p): Params,
) -> ApiResult {
    let kind = Kind::from_plural(&plural)?;
    let ns = if kind.namespaced() {
        None
    } else {
        Some(String::new())
    };
    list(s, kind, ns, p).await
}

fn cluster_scoped(plural: &str) -> Result<Kind, ApiError> {
    let kind = Kind::from_plural(plural)?;
    if kind.namespaced() {
        return Err(ApiError::not_found(format!(
            "{plural} are namespaced: use /apis/flotilla.dev/v1/namespaces/{{namespace}}/{plural}"
        )));
    }
    Ok(kind)
}

/// POST /{plural} (cluster-scoped kinds)
pub async fn create_cluster(
    State(s): State<Arc<ApiState>>,
    Path(plural): Path<String>,
    body: Bytes,
) -> ApiResult {
    create(s, cluster_scoped(&plural)?, String::new(), body).await
}

/// GET /{plural}/{name} (cluster-scoped kinds)
pub async fn get_cluster(
    State(s): State<Arc<ApiState>>,
    Path((plural, name)): Path<(String, String)>,
) -> ApiResult {
    get_one(s, cluster_scoped(&plural)?, String::new(), name).await
}

/// PUT /{plural}/{name} (cluster-scoped kinds)
pub async fn replace_cluster(
    State(s): State<Arc<ApiState>>,
    Path((plural, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    replace(
        s,
        cluster_scoped(&plural)?,
        String::new(),
        name,
        body,
        false,
    )
    .await
}

/// PUT /{plural}/{name}/status (cluster-scoped kinds)
pub async fn replace_status_cluster(
    State(s): State<Arc<ApiState>>,
    Path((plural, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    replace(s, cluster_scoped(&plural)?, String::new(), name, body, true).await
}

/// DELETE /{plural}/{name} (cluster-scoped kinds)
pub async fn delete_cluster(
    State(s): State<Arc<ApiState>>,
    Path((plural, name)): Path<(String, String)>,
) -> ApiResult {
    delete(s, cluster_scoped(&plural)?, String::new(), name).await
}
