//! Bearer-token authentication for every route but `/healthz`, and the two
//! roles: the admin token may do anything; the join token (what agents hold)
//! may read, register and heartbeat nodes, report instance status and record
//! events — not create or change workloads.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// What an agent needs.
    Node,
}

/// Whether the node role may make this request.
fn node_may(method: &Method, path: &str) -> bool {
    let read = method == Method::GET || method == Method::HEAD;
    let nodes = path.starts_with("/apis/flotilla.dev/v1/nodes")
        && (method == Method::POST || method == Method::PUT);
    let instance_status =
        method == Method::PUT && path.contains("/instances/") && path.ends_with("/status");
    let event = method == Method::POST && path.ends_with("/events");
    read || nodes || instance_status || event
}

/// Rejects requests without a known bearer token with 401, and requests the
/// token's role does not allow with 403.
pub async fn require_token(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) => match state.tokens.iter().find(|(t, _)| constant_time_eq(t.as_bytes(), token.as_bytes())) {
            Some((_, Role::Admin)) => next.run(request).await,
            Some((_, Role::Node)) if node_may(request.method(), request.uri().path()) => next.run(request).await,
            Some((_, Role::Node)) => {
                tracing::warn!("refused {} {} with the join token", request.method(), request.uri().path());
                ApiError::forbidden("the join token may only register nodes, report status and record events; use the admin token for this")
                    .into_response()
            }
            None => {
                tracing::warn!("rejected a request to {} with an unknown token", request.uri().path());
                ApiError::unauthorized("the bearer token is not valid for this server (check the token in your client config, or the agent's --token)")
                    .into_response()
            }
        },
        None => ApiError::unauthorized(
            "this server requires a bearer token (Authorization: Bearer <token>); the flotilla CLI reads it from its client config",
        )
        .into_response(),
    }
}

/// Compares without leaking where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
