//! API errors as Kubernetes `Status` objects.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::store::StoreError;

/// An error response: HTTP code, a CamelCase reason and a message for humans.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub code: StatusCode,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`…
    pub reason: &'static str,
    /// What went wrong and how to fix it.
    pub message: String,
}

impl ApiError {
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            code: StatusCode::BAD_REQUEST,
            reason: "BadRequest",
            message: message.into(),
        }
    }
    /// 503: the store (etcd, when the servers share it) did not answer or
    /// did not take a write; `message` says what to retry.
    pub fn store_unavailable(message: impl Into<String>) -> Self {
        Self {
            code: StatusCode::SERVICE_UNAVAILABLE,
            reason: "StoreUnavailable",
            message: message.into(),
        }
    }
    /// 413: a body over `limit` bytes (`what` names the body).
    pub fn too_large(what: &str, limit: u64) -> Self {
        Self {
            code: StatusCode::PAYLOAD_TOO_LARGE,
            reason: "RequestEntityTooLarge",
            message: format!("{what} is larger than {limit} bytes: send a smaller one"),
        }
    }
    /// 422.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: StatusCode::UNPROCESSABLE_ENTITY,
            reason: "Invalid",
            message: message.into(),
        }
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            code: StatusCode::NOT_FOUND,
            reason: "NotFound",
            message: message.into(),
        }
    }
    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            code: StatusCode::UNAUTHORIZED,
            reason: "Unauthorized",
            message: message.into(),
        }
    }
    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            code: StatusCode::FORBIDDEN,
            reason: "Forbidden",
            message: message.into(),
        }
    }
    /// 405.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self {
            code: StatusCode::METHOD_NOT_ALLOWED,
            reason: "MethodNotAllowed",
            message: message.into(),
        }
    }
    /// 429: allowed, but not now (an eviction a disruption budget blocks).
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self {
            code: StatusCode::TOO_MANY_REQUESTS,
            reason: "TooManyRequests",
            message: message.into(),
        }
    }
    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            code: StatusCode::INTERNAL_SERVER_ERROR,
            reason: "InternalError",
            message: message.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let (code, reason) = match &e {
            StoreError::AlreadyExists { .. } => (StatusCode::CONFLICT, "AlreadyExists"),
            StoreError::Conflict { .. } => (StatusCode::CONFLICT, "Conflict"),
            StoreError::NotFound { .. } => (StatusCode::NOT_FOUND, "NotFound"),
            StoreError::Gone(_) => (StatusCode::GONE, "Expired"),
            StoreError::Full(_) => (StatusCode::INSUFFICIENT_STORAGE, "InsufficientStorage"),
            StoreError::Unavailable(_) | StoreError::Fenced(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "StoreUnavailable")
            }
            StoreError::Backend(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        };
        Self {
            code,
            reason,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "reason": self.reason,
            "message": self.message,
            "code": self.code.as_u16(),
        });
        (self.code, Json(body)).into_response()
    }
}
