//! The `cluster` backend of `wasi:keyvalue`: buckets the control plane
//! keeps in its store, reached over the node's API connection, so every
//! node sees the same keys and `increment` is atomic across the fleet (the
//! server runs each one as one transaction). The server, not this node,
//! decides the bucket's quota (from the workloads' grants) and whether this
//! node may use it (only for instances bound to it that are granted it).
//!
//! Calls arrive on tokio's blocking pool ([`Backend::inline`] is false), so
//! each waits for its request there, never on a thread that runs guests.

use std::future::Future;
use std::time::Duration;

use flotilla_client::kv::{Batch, Entry, Precondition};
use flotilla_client::{Client, ClientError};
use flotilla_kv::{Backend, KvError};

/// Longest a call waits for the control plane: a guest blocked on a
/// bucket holds a replica (and its deadline runs).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The control plane's buckets, as this node reaches them.
pub struct ClusterKv {
    client: Client,
}

impl std::fmt::Debug for ClusterKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterKv({})", self.client.base())
    }
}

impl ClusterKv {
    /// Buckets reached through `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Runs one request to completion on the calling (blocking) thread;
    /// the outer error is for a request that got no answer in time.
    fn wait<T>(
        &self,
        bucket: &str,
        request: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<Result<T, ClientError>, KvError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            KvError::Other(
                "the cluster key-value backend was called outside the agent's runtime".into(),
            )
        })?;
        handle
            .block_on(tokio::time::timeout(CALL_TIMEOUT, request))
            .map_err(|_| {
                KvError::Other(format!(
                    "bucket {bucket} is kept by the control plane, which did not answer within {}s",
                    CALL_TIMEOUT.as_secs()
                ))
            })
    }

    /// [`Self::wait`], with the server's refusals passed on as it worded
    /// them (quota, limits: the guest sees the same message).
    fn call<T>(
        &self,
        bucket: &str,
        request: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, KvError> {
        self.wait(bucket, request)?.map_err(|e| match e {
            // Refused by authorization (not a quota): the guest's
            // `access-denied`.
            ClientError::Api { code: 403, message, .. }
                if !flotilla_kv::is_quota_message(&message) =>
            {
                tracing::warn!("bucket {bucket}: {message}");
                KvError::AccessDenied
            }
            ClientError::Api { message, .. } => KvError::Other(message),
            e => KvError::Other(format!(
                "bucket {bucket} is kept by the control plane, which this node cannot reach now: {e}"
            )),
        })
    }
}

/// `namespace/bucket` → its two parts (a namespace never holds a `/`).
fn split(bucket: &str) -> Result<(&str, &str), KvError> {
    bucket
        .split_once('/')
        .ok_or_else(|| KvError::Other(format!("bucket id {bucket:?} names no namespace")))
}

impl Backend for ClusterKv {
    fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let (ns, name) = split(bucket)?;
        let found = self.call(bucket, self.client.kv_get(ns, name, key))?;
        Ok(found.map(|(value, _)| value))
    }

    /// The quota is the server's to decide (from the grants it stores), not
    /// the node's: `quota` is not sent.
    fn set_many(
        &self,
        bucket: &str,
        pairs: &[(String, Vec<u8>)],
        _quota: u64,
    ) -> Result<(), KvError> {
        let (ns, name) = split(bucket)?;
        if let [(key, value)] = pairs {
            let put = self
                .client
                .kv_put(ns, name, key, value.clone(), &Precondition::None);
            return self.call(bucket, put);
        }
        let batch = Batch {
            set: Some(
                pairs
                    .iter()
                    .map(|(key, value)| Entry {
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            ),
            ..Batch::default()
        };
        self.call(bucket, self.client.kv_batch(ns, name, &batch))
            .map(drop)
    }

    fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError> {
        let (ns, name) = split(bucket)?;
        if let [key] = keys {
            return self.call(bucket, self.client.kv_delete(ns, name, key));
        }
        let batch = Batch {
            delete: Some(keys.to_vec()),
            ..Batch::default()
        };
        self.call(bucket, self.client.kv_batch(ns, name, &batch))
            .map(drop)
    }

    fn list_keys(
        &self,
        bucket: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, KvError> {
        let (ns, name) = split(bucket)?;
        let page = self.call(bucket, self.client.kv_list(ns, name, after, limit))?;
        Ok(page.keys)
    }

    fn increment(&self, bucket: &str, key: &str, delta: u64, _quota: u64) -> Result<u64, KvError> {
        let (ns, name) = split(bucket)?;
        self.call(bucket, self.client.kv_increment(ns, name, key, delta))
    }

    fn compare_and_swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<[u8; 32]>,
        value: &[u8],
        _quota: u64,
    ) -> Result<bool, KvError> {
        let (ns, name) = split(bucket)?;
        let precondition = match expected {
            Some(digest) => Precondition::IfMatch(flotilla_client::kv::etag(&digest)),
            None => Precondition::IfAbsent,
        };
        let put = self
            .client
            .kv_put(ns, name, key, value.to_vec(), &precondition);
        match self.wait(bucket, put)? {
            Err(ClientError::Api { code: 412, .. }) => Ok(false),
            answer => self.call(bucket, async { answer }).map(|()| true),
        }
    }
}
