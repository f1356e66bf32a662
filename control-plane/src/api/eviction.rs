//! `POST /apis/flotilla.dev/v1/namespaces/{ns}/instances/{name}/eviction`:
//! deletes an instance if every disruption budget selecting it allows one
//! more disruption, else answers 429 naming the budget (as Kubernetes'
//! Eviction API). `flotilla drain` evicts through it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::objects::ApiResult;
use super::{ApiError, ApiState};
use crate::disruption::{evict as evict_instance, EvictionError};

/// The handler. The body (a Kubernetes `Eviction`, if any) says nothing the
/// path does not: it is read (bounded) and dropped, so an HTTP/2 client
/// gets the answer whole.
pub async fn evict(
    State(state): State<Arc<ApiState>>,
    Path((namespace, name)): Path<(String, String)>,
    _body: axum::body::Bytes,
) -> ApiResult {
    let store = state.store.clone();
    let outcome = crate::store::off_worker(|| evict_instance(store.as_ref(), &namespace, &name));
    match outcome {
        Ok(_) => Ok((
            axum::http::StatusCode::CREATED,
            Json(json!({
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Success",
            "message": format!("instance {namespace}/{name} evicted"),
                "code": 201,
            })),
        )
            .into_response()),
        Err(e @ EvictionError::NotFound { .. }) => Err(ApiError::not_found(e.to_string())),
        Err(e @ (EvictionError::Blocked { .. } | EvictionError::Busy { .. })) => {
            Err(ApiError::too_many_requests(e.to_string()))
        }
        Err(EvictionError::Store(e)) => Err(e.into()),
    }
}
