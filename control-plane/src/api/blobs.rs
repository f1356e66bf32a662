//! The content-addressed blob store for modules: a blob is stored under the
//! sha256 of its bytes, checked on upload, so agents can fetch a module by the
//! digest in a Workload and trust what they get. Bodies stream to and from
//! files (`store::BlobStore`), never whole in memory.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};
use crate::store::BlobError;

fn check_digest(digest: &str) -> Result<(), ApiError> {
    if digest.len() == 64
        && digest
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{digest:?} is not a sha256 digest (64 lowercase hex digits)"
        )))
    }
}

/// 503: the shared store did not take what it must keep.
fn mirror_unavailable(e: &BlobError) -> ApiError {
    ApiError::store_unavailable(format!("{e}; upload it again when the store is back"))
}

/// PUT /blobs/sha256/{digest}: streamed to a file while hashed.
pub async fn put(
    State(s): State<Arc<ApiState>>,
    Path(digest): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    check_digest(&digest)?;
    let max = super::MAX_BLOB_BYTES as u64;
    // Declared too large: refused before a byte is read (flotilla-http
    // drains what the client sends meanwhile, up to its bound).
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(ApiError::too_large("a module", max));
    }
    if s.blobs.has(&digest) {
        // Uploaded again for an apply: keep it from a collection racing it.
        s.blobs
            .touch(&digest, crate::controllers::module_gc::GRACE)
            .map_err(|e| mirror_unavailable(&e))?;
        return Ok(StatusCode::CREATED.into_response());
    }
    s.blobs
        .put(&digest, body.into_data_stream(), max)
        .await
        .map_err(|e| match e {
            BlobError::TooLarge { .. } => ApiError::too_large("a module", max),
            BlobError::Mirror(_) => mirror_unavailable(&e),
            BlobError::Io { .. } => ApiError {
                code: StatusCode::INSUFFICIENT_STORAGE,
                reason: "InsufficientStorage",
                message: e.to_string(),
            },
            BlobError::DigestMismatch { .. } | BlobError::Body(_) => {
                ApiError::bad_request(e.to_string())
            }
        })?;
    Ok(StatusCode::CREATED.into_response())
}

/// GET /blobs/sha256/{digest}: streamed from its file.
pub async fn get(
    State(s): State<Arc<ApiState>>,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    check_digest(&digest)?;
    // Fills the folder from the shared store when only it has the module.
    let blobs = s.blobs.clone();
    let wanted = digest.clone();
    match tokio::task::spawn_blocking(move || blobs.materialize(&wanted)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(ApiError::store_unavailable(format!(
                "module {digest}: {e}; retry when the store is back"
            )))
        }
        Err(e) => return Err(ApiError::internal(e.to_string())),
    }
    let file = match tokio::fs::File::open(s.blobs.path(&digest)).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found(format!("no blob sha256:{digest}")))
        }
        Err(e) => return Err(ApiError::internal(format!("reading blob {digest}: {e}"))),
    };
    let length = file.metadata().await.map(|m| m.len()).unwrap_or_default();
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/wasm".to_string(),
            ),
            (axum::http::header::CONTENT_LENGTH, length.to_string()),
        ],
        body,
    )
        .into_response())
}

/// HEAD /blobs/sha256/{digest}
pub async fn head(
    State(s): State<Arc<ApiState>>,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    check_digest(&digest)?;
    if s.blobs.has(&digest) {
        Ok(StatusCode::OK.into_response())
    } else {
        Ok(StatusCode::NOT_FOUND.into_response())
    }
}
