//! The `cluster` key-value buckets (paths in `flotilla_client::kv`): what
//! agents reach for guests' `wasi:keyvalue` calls and `flotilla kv` uses.
//!
//! Every limit of `wasi:keyvalue` is enforced here again (a node is not
//! trusted to have done it), and a bucket's quota is the largest that the
//! namespace's workloads grant it (`spec.grants.keyValue[].quota`, backend
//! `cluster`; 64Mi when none does) — read from the store, never from the
//! caller. Writes are single transactions of the backend, so `increment`
//! and the conditional `PUT` (`If-Match` / `If-None-Match: *`, the value's
//! SHA-256 as its ETag) are linearizable.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use flotilla_kv::wire::{etag, Batch, BatchValues, Entry, KeyPage};
use flotilla_kv::{Backend, KvError};

use super::{ApiError, ApiState};
use crate::store::Store;

/// Largest `PUT` body taken (a value is at most 1 MiB: the rest is room to
/// say so in words rather than cut the connection).
pub const MAX_PUT_BYTES: usize = 2 << 20;
/// Largest batch body taken: 16 MiB of values, as base64 in JSON.
pub const MAX_BATCH_BODY_BYTES: usize = 24 << 20;

impl From<KvError> for ApiError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::Invalid(m) => ApiError::bad_request(m),
            KvError::Other(m) if flotilla_kv::is_quota_message(&m) => ApiError::forbidden(m),
            KvError::NoSuchStore => ApiError::not_found("no such bucket"),
            KvError::AccessDenied => ApiError::forbidden("the bucket is not granted"),
            KvError::Other(m) => ApiError::internal(m),
        }
    }
}

/// The bucket's quota: the largest its namespace's workloads grant it.
fn quota(store: &dyn Store, ns: &str, bucket: &str) -> Result<u64, ApiError> {
    let mut quota = None;
    for workload in store.list("Workload", Some(ns))?.items {
        let grants = workload["spec"]["grants"]["keyValue"].as_array().cloned();
        for grant in grants.into_iter().flatten() {
            if grant["bucket"].as_str() == Some(bucket) && grant["backend"] == "cluster" {
                let bytes = grant["quota"]
                    .as_str()
                    .and_then(|q| flotilla_spec::parse_memory_bytes(q).ok())
                    .unwrap_or(flotilla_kv::DEFAULT_QUOTA_BYTES);
                quota = Some(quota.map_or(bytes, |q: u64| q.max(bytes)));
            }
        }
    }
    Ok(quota.unwrap_or(flotilla_kv::DEFAULT_QUOTA_BYTES))
}

/// The backend's id of a bucket.
fn id(ns: &str, bucket: &str) -> String {
    format!("{ns}/{bucket}")
}

/// Runs the backend's work off the async threads.
async fn blocking<T: Send + 'static>(
    state: &Arc<ApiState>,
    work: impl FnOnce(&dyn Store, &dyn Backend) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let (store, kv) = (state.store.clone(), state.kv.clone());
    tokio::task::spawn_blocking(move || work(store.as_ref(), kv.as_ref()))
        .await
        .map_err(|e| ApiError::internal(format!("the key-value store stopped: {e}")))?
}

fn check_names(ns: &str, bucket: &str) -> Result<(), ApiError> {
    for (what, name) in [("namespace", ns), ("bucket", bucket)] {
        flotilla_spec::validate::check_object_name(name)
            .map_err(|e| ApiError::bad_request(format!("{what} {name:?}: {e}")))?;
    }
    Ok(())
}

/// `GET …/keys?after=K&limit=N`.
pub async fn list(
    State(state): State<Arc<ApiState>>,
    Path((ns, bucket)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<KeyPage>, ApiError> {
    check_names(&ns, &bucket)?;
    let limit = match params.get("limit") {
        None => flotilla_kv::LIST_PAGE,
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=flotilla_kv::LIST_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "limit {n:?} is not a number from 1 to {}",
                    flotilla_kv::LIST_PAGE
                ))
            })?,
    };
    let after = params.get("after").cloned();
    let keys = blocking(&state, move |_, kv| {
        Ok(kv.list_keys(&id(&ns, &bucket), after.as_deref(), limit)?)
    })
    .await?;
    let next = (keys.len() == limit)
        .then(|| keys.last().cloned())
        .flatten();
    Ok(Json(KeyPage { keys, next }))
}

/// `GET …/keys/{key}`: the value, its SHA-256 as the ETag.
pub async fn get(
    State(state): State<Arc<ApiState>>,
    Path((ns, bucket, key)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    check_names(&ns, &bucket)?;
    flotilla_kv::check_key(&key)?;
    let what = format!("key {key:?} of bucket {ns}/{bucket}");
    let value = blocking(&state, move |_, kv| Ok(kv.get(&id(&ns, &bucket), &key)?)).await?;
    let value = value.ok_or_else(|| ApiError::not_found(format!("{what} does not exist")))?;
    let tag = etag(&flotilla_kv::digest(&value));
    Ok((
        [
            ("content-type", "application/octet-stream".to_string()),
            ("etag", tag),
        ],
        value,
    )
        .into_response())
}

/// What a conditional `PUT` expects, from `If-Match` / `If-None-Match`.
enum Expect {
    Anything,
    Value([u8; 32]),
    Absent,
}

fn expectation(headers: &HeaderMap) -> Result<Expect, ApiError> {
    let header = |name| {
        headers
            .get(name)
            .map(|v| v.to_str().map(str::trim))
            .transpose()
            .map_err(|_| ApiError::bad_request(format!("{name} is not text")))
    };
    match (header("if-match")?, header("if-none-match")?) {
        (None, None) => Ok(Expect::Anything),
        (None, Some("*")) => Ok(Expect::Absent),
        (Some(tag), None) => {
            let hex = tag.trim_matches('"');
            let mut digest = [0u8; 32];
            match hex::decode_to_slice(hex, &mut digest) {
                Ok(()) if tag.starts_with('"') && tag.ends_with('"') => Ok(Expect::Value(digest)),
                _ => Err(ApiError::bad_request(format!(
                    "If-Match {tag:?} is not an ETag this API gave (a quoted SHA-256, from GET)"
                ))),
            }
        }
        _ => Err(ApiError::bad_request(
            "give If-Match: \"ETAG\" (only if unchanged) or If-None-Match: * (only if absent), not both nor another form",
        )),
    }
}

/// `PUT …/keys/{key}`: sets the value (conditionally, with `If-Match` or
/// `If-None-Match: *`; 412 when the condition fails).
pub async fn put(
    State(state): State<Arc<ApiState>>,
    Path((ns, bucket, key)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_names(&ns, &bucket)?;
    flotilla_kv::check_key(&key)?;
    flotilla_kv::check_value(&key, &body)?;
    let expect = expectation(&headers)?;
    let what = format!("key {key:?} of bucket {ns}/{bucket}");
    let tag = etag(&flotilla_kv::digest(&body));
    let done = blocking(&state, move |store, kv| {
        let quota = quota(store, &ns, &bucket)?;
        let id = id(&ns, &bucket);
        Ok(match expect {
            Expect::Anything => {
                kv.set_many(&id, &[(key, body.to_vec())], quota)?;
                true
            }
            Expect::Value(digest) => kv.compare_and_swap(&id, &key, Some(digest), &body, quota)?,
            Expect::Absent => kv.compare_and_swap(&id, &key, None, &body, quota)?,
        })
    })
    .await?;
    if !done {
        return Err(ApiError {
            code: StatusCode::PRECONDITION_FAILED,
            reason: "PreconditionFailed",
            message: format!(
                "{what} changed (or exists, for If-None-Match: *) since the ETag was read: get it again and retry"
            ),
        });
    }
    Ok((StatusCode::NO_CONTENT, [("etag", tag)]).into_response())
}

/// `DELETE …/keys/{key}` (absent is no error, as in `wasi:keyvalue`).
pub async fn delete(
    State(state): State<Arc<ApiState>>,
    Path((ns, bucket, key)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    check_names(&ns, &bucket)?;
    flotilla_kv::check_key(&key)?;
    blocking(&state, move |_, kv| {
        Ok(kv.delete_many(&id(&ns, &bucket), &[key])?)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `{"delta": N}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Increment {
    delta: u64,
}

/// `POST …/keys/{key}/increment`: adds `delta` atomically; the new number.
pub async fn increment(
    State(state): State<Arc<ApiState>>,
    Path((ns, bucket, key)): Path<(String, String, String)>,
    Json(Increment { delta }): Json<Increment>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_names(&ns, &bucket)?;
    flotilla_kv::check_key(&key)?;
    let value = blocking(&state, move |store, kv| {
        let quota = quota(store, &ns, &bucket)?;
        Ok(kv.increment(&id(&ns, &bucket), &key, delta, quota)?)
    })
    .await?;
    Ok(Json(serde_json::json!({ "value": value })))
}

/// `POST …/batch`: reads, writes (all or none) or deletes many keys.
pub async fn batch(
    State(state): State<Arc<ApiState>>,
    Path((ns, bucket)): Path<(String, String)>,
    Json(batch): Json<Batch>,
) -> Result<Json<BatchValues>, ApiError> {
    check_names(&ns, &bucket)?;
    let id = id(&ns, &bucket);
    match batch {
        Batch {
            get: Some(keys),
            set: None,
            delete: None,
        } => {
            flotilla_kv::check_batch(keys.len())?;
            for key in &keys {
                flotilla_kv::check_key(key)?;
            }
            blocking(&state, move |_, kv| {
                let mut values = Vec::with_capacity(keys.len());
                let mut bytes = 0usize;
                for key in keys {
                    let value = kv.get(&id, &key)?;
                    bytes = bytes.saturating_add(value.as_ref().map_or(0, Vec::len));
                    flotilla_kv::check_batch_bytes(bytes)?;
                    values.push(value.map(|value| Entry { key, value }));
                }
                Ok(Json(BatchValues { values }))
            })
            .await
        }
        Batch {
            get: None,
            set: Some(entries),
            delete: None,
        } => {
            flotilla_kv::check_batch(entries.len())?;
            let mut bytes = 0usize;
            for entry in &entries {
                flotilla_kv::check_key(&entry.key)?;
                flotilla_kv::check_value(&entry.key, &entry.value)?;
                bytes = bytes.saturating_add(entry.value.len());
            }
            flotilla_kv::check_batch_bytes(bytes)?;
            let pairs: Vec<_> = entries.into_iter().map(|e| (e.key, e.value)).collect();
            blocking(&state, move |store, kv| {
                let quota = quota(store, &ns, &bucket)?;
                kv.set_many(&id, &pairs, quota)?;
                Ok(Json(BatchValues::default()))
            })
            .await
        }
        Batch {
            get: None,
            set: None,
            delete: Some(keys),
        } => {
            flotilla_kv::check_batch(keys.len())?;
            for key in &keys {
                flotilla_kv::check_key(key)?;
            }
            blocking(&state, move |_, kv| {
                kv.delete_many(&id, &keys)?;
                Ok(Json(BatchValues::default()))
            })
            .await
        }
        _ => Err(ApiError::bad_request(
            "a batch is exactly one of {\"get\": [keys]}, {\"set\": [{key, value}]} or {\"delete\": [keys]}",
        )),
    }
}
