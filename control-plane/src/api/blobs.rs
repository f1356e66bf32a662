//! The content-addressed blob store for modules: a blob is stored under the
//! sha256 of its bytes, checked on upload, so agents can fetch a module by the
//! digest in a Workload and trust what they get.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{ApiError, ApiState};

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

/// Runs blocking store work on tokio's blocking pool.
async fn off_thread(
    work: impl FnOnce() -> Result<Response, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("blob task failed: {e}")))?
}

/// PUT /blobs/sha256/{digest}
pub async fn put(
    State(s): State<Arc<ApiState>>,
    Path(digest): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_digest(&digest)?;
    // Hashing and storing megabytes is blocking work: off the async threads.
    off_thread(move || {
        let actual = hex::encode(Sha256::digest(&body));
        if actual != digest {
            return Err(ApiError::bad_request(format!(
                "the uploaded bytes have sha256 {actual}, not {digest}: the upload was corrupted or the digest is wrong"
            )));
        }
        s.store.put_blob(&digest, &body)?;
        Ok(StatusCode::CREATED.into_response())
    })
    .await
}

/// GET /blobs/sha256/{digest}
pub async fn get(
    State(s): State<Arc<ApiState>>,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    check_digest(&digest)?;
    off_thread(move || match s.store.get_blob(&digest)? {
        Some(bytes) => Ok(([("content-type", "application/wasm")], bytes).into_response()),
        None => Err(ApiError::not_found(format!("no blob sha256:{digest}"))),
    })
    .await
}

/// HEAD /blobs/sha256/{digest}
pub async fn head(
    State(s): State<Arc<ApiState>>,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    check_digest(&digest)?;
    if s.store.has_blob(&digest)? {
        Ok(StatusCode::OK.into_response())
    } else {
        Ok(StatusCode::NOT_FOUND.into_response())
    }
}
