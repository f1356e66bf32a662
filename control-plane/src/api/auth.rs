//! Bearer-token authentication for every route but `/healthz`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};

/// Rejects requests without a known bearer token with 401.
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
        Some(token) if state.tokens.iter().any(|t| constant_time_eq(t.as_bytes(), token.as_bytes())) => {
            next.run(request).await
        }
        Some(_) => {
            tracing::warn!("rejected a request to {} with an unknown token", request.uri().path());
            ApiError::unauthorized("the bearer token is not valid for this server (check the token in your client config)")
                .into_response()
        }
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
