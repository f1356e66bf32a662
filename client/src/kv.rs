//! The control plane's key-value buckets (`cluster` backend), as `flotilla
//! kv` and the agents reach them:
//!
//! ```text
//! GET    /kv/v1/namespaces/{ns}/buckets/{bucket}/keys?after=K&limit=N   {"keys": [...], "continue": K}
//! GET    /kv/v1/namespaces/{ns}/buckets/{bucket}/keys/{key}             the value; ETag: its SHA-256
//! PUT    /kv/v1/namespaces/{ns}/buckets/{bucket}/keys/{key}             If-Match / If-None-Match: *
//! DELETE /kv/v1/namespaces/{ns}/buckets/{bucket}/keys/{key}
//! POST   /kv/v1/namespaces/{ns}/buckets/{bucket}/keys/{key}/increment   {"delta": N} → {"value": M}
//! POST   /kv/v1/namespaces/{ns}/buckets/{bucket}/batch                  {"get"|"set"|"delete": [...]}
//! ```
//!
//! Keys are percent-encoded into one path segment; values in JSON are
//! base64.

pub use flotilla_kv::wire::{etag, Batch, BatchValues, Entry, KeyPage};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use crate::{Client, ClientError};

/// When a write goes ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Always.
    None,
    /// Only if the key's value has this ETag now (`If-Match`).
    IfMatch(String),
    /// Only if the key is absent (`If-None-Match: *`).
    IfAbsent,
}

/// The path of a bucket.
pub fn bucket_path(namespace: &str, bucket: &str) -> String {
    let ns = utf8_percent_encode(namespace, NON_ALPHANUMERIC);
    let bucket = utf8_percent_encode(bucket, NON_ALPHANUMERIC);
    format!("/kv/v1/namespaces/{ns}/buckets/{bucket}")
}

fn key_path(namespace: &str, bucket: &str, key: &str) -> String {
    format!(
        "{}/keys/{}",
        bucket_path(namespace, bucket),
        utf8_percent_encode(key, NON_ALPHANUMERIC)
    )
}

impl Client {
    /// The value of `key` and its ETag, or `None` if absent.
    pub async fn kv_get(
        &self,
        namespace: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(Vec<u8>, String)>, ClientError> {
        let url = format!("{}{}", self.base(), key_path(namespace, bucket, key));
        let response = match self.send(self.http().get(url)).await {
            Ok(response) => response,
            Err(ClientError::Api {
                code: 404, reason, ..
            }) if reason == "NotFound" => return Ok(None),
            Err(e) => return Err(e),
        };
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let value = response.bytes().await.map_err(|e| self.unreachable(e))?;
        Ok(Some((value.to_vec(), etag)))
    }

    /// Sets `key` to `value` if `precondition` holds (else a 412 error).
    pub async fn kv_put(
        &self,
        namespace: &str,
        bucket: &str,
        key: &str,
        value: Vec<u8>,
        precondition: &Precondition,
    ) -> Result<(), ClientError> {
        let url = format!("{}{}", self.base(), key_path(namespace, bucket, key));
        let mut request = self.http().put(url).body(value);
        request = match precondition {
            Precondition::None => request,
            Precondition::IfMatch(etag) => request.header("if-match", etag),
            Precondition::IfAbsent => request.header("if-none-match", "*"),
        };
        self.send(request).await.map(drop)
    }

    /// Deletes `key` (absent is no error).
    pub async fn kv_delete(
        &self,
        namespace: &str,
        bucket: &str,
        key: &str,
    ) -> Result<(), ClientError> {
        let url = format!("{}{}", self.base(), key_path(namespace, bucket, key));
        self.send(self.http().delete(url)).await.map(drop)
    }

    /// Up to `limit` keys after `after`.
    pub async fn kv_list(
        &self,
        namespace: &str,
        bucket: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, ClientError> {
        let url = format!("{}{}/keys", self.base(), bucket_path(namespace, bucket));
        let mut query = vec![("limit", limit.to_string())];
        if let Some(after) = after {
            query.push(("after", after.to_string()));
        }
        self.json(self.http().get(url).query(&query)).await
    }

    /// Adds `delta` to the number at `key`; the new number.
    pub async fn kv_increment(
        &self,
        namespace: &str,
        bucket: &str,
        key: &str,
        delta: u64,
    ) -> Result<u64, ClientError> {
        let url = format!(
            "{}{}/increment",
            self.base(),
            key_path(namespace, bucket, key)
        );
        let answer: serde_json::Value = self
            .json(
                self.http()
                    .post(url)
                    .json(&serde_json::json!({ "delta": delta })),
            )
            .await?;
        answer["value"]
            .as_u64()
            .ok_or_else(|| ClientError::Decode(format!("no number in {answer}")))
    }

    /// Runs a batch; the values read, for a `get` batch.
    pub async fn kv_batch(
        &self,
        namespace: &str,
        bucket: &str,
        batch: &Batch,
    ) -> Result<BatchValues, ClientError> {
        let url = format!("{}{}/batch", self.base(), bucket_path(namespace, bucket));
        self.json(self.http().post(url).json(batch)).await
    }
}
