//! `GET /apis/flotilla.dev/v1/namespaces/{ns}/instances/{name}/log[?follow=true&previous=true]`:
//! an instance's output, read from the node that holds it.
//!
//! In `flotilla up` the agent shares the process, so its log folder is a
//! [`LogSource`] the API reads directly.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{ApiError, ApiState};

/// Where instance logs can be read.
pub trait LogSource: Send + Sync + 'static {
    /// The log file of an instance's current (or previous) run.
    fn log_path(&self, namespace: &str, instance: &str, previous: bool) -> PathBuf;
}

const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// The handler.
pub async fn get(
    State(s): State<Arc<ApiState>>,
    Path((ns, name)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let flag = |k: &str| params.get(k).is_some_and(|v| v == "true" || v == "1");
    let (follow, previous) = (flag("follow"), flag("previous"));
    if s.store.get("Instance", &ns, &name)?.is_none() {
        return Err(ApiError::not_found(format!(
            "instances {name:?} not found in namespace {ns:?}"
        )));
    }
    let Some(source) = &s.logs else {
        return Err(ApiError::not_found(
            "this server has no local agent to read logs from",
        ));
    };
    let path = source.log_path(&ns, &name, previous);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) if previous => {
            return Err(ApiError::not_found(format!(
                "instance {name:?} has no previous run"
            )))
        }
        Err(_) if !follow => return Ok(Body::empty().into_response()),
        Err(_) => {
            // Not started yet: wait for the file.
            loop {
                tokio::time::sleep(FOLLOW_POLL).await;
                if let Ok(f) = tokio::fs::File::open(&path).await {
                    break f;
                }
            }
        }
    };
    if !follow {
        let mut all = Vec::new();
        file.read_to_end(&mut all)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok(all.into_response());
    }
    let store = s.store.clone();
    let stream = futures_util::stream::unfold(
        (file, path, 0u64, store, ns, name),
        |(mut file, path, mut offset, store, ns, name)| async move {
            loop {
                let mut chunk = vec![0u8; 64 * 1024];
                match file.read(&mut chunk).await {
                    Ok(n) if n > 0 => {
                        offset += n as u64;
                        chunk.truncate(n);
                        return Some((
                            Ok::<_, std::io::Error>(Bytes::from(chunk)),
                            (file, path, offset, store, ns, name),
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => return Some((Err(e), (file, path, offset, store, ns, name))),
                }
                if !matches!(store.get("Instance", &ns, &name), Ok(Some(_))) {
                    return None;
                }
                tokio::time::sleep(FOLLOW_POLL).await;
                // A new run (or a rotation) replaced the file: start on the new one.
                let replaced = tokio::fs::metadata(&path)
                    .await
                    .is_ok_and(|m| m.len() < offset);
                if replaced {
                    if let Ok(mut f) = tokio::fs::File::open(&path).await {
                        let _ = f.seek(std::io::SeekFrom::Start(0)).await;
                        file = f;
                        offset = 0;
                    }
                }
            }
        },
    );
    Ok(([("content-type", "text/plain")], Body::from_stream(stream)).into_response())
}
