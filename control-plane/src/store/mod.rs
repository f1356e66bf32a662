//! The store: objects by (kind, namespace, name), a global revision counter,
//! a change log for watches, and blobs by sha256.
//!
//! The store writes `metadata.resourceVersion` (the revision of the object's
//! last write) and enforces optimistic concurrency: an update that names a
//! `resourceVersion` other than the stored one is a [`StoreError::Conflict`].
//! Everything else about objects (uids, generations, validation) belongs to
//! the API layer above.

pub mod blobs;
#[cfg(test)]
mod conformance;
pub mod etcd;
pub mod sealed;
mod sqlite;

pub use blobs::{BlobError, BlobStore, Collect};
pub use etcd::{EtcdStore, EtcdTarget};
pub use sealed::SealedStore;
pub use sqlite::SqliteStore;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Runs blocking store work (a SQLite transaction and its fsync, a wait
/// for etcd). On a worker of a multi-threaded runtime, the worker's other
/// tasks move to other workers meanwhile, so an API handler or controller
/// waiting on the disk never stalls the streams, watches and health checks
/// that share its worker. Elsewhere (a plain thread, a blocking task, a
/// single-threaded runtime) it just runs.
pub fn off_worker<T>(work: impl FnOnce() -> T) -> T {
    let on_worker = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if on_worker {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// The `metadata.resourceVersion` the store wrote on `object`: what a
/// compare-and-swap update of it expects.
pub fn revision_of(object: &Value) -> Option<u64> {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
}

/// Every object of a namespaced `kind` that decodes as `T`, with its stored
/// form (for a compare-and-swap), by namespace. Objects this version
/// cannot decode are left out: a controller leaves them alone.
pub fn decoded_by_namespace<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    kind: &str,
) -> Result<std::collections::BTreeMap<String, Vec<(Value, T)>>, StoreError> {
    let mut by_namespace = std::collections::BTreeMap::<String, Vec<(Value, T)>>::new();
    for value in store.list(kind, None)?.items {
        let Ok(decoded) = serde_json::from_value::<T>(value.clone()) else {
            continue;
        };
        let namespace = value["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        by_namespace
            .entry(namespace)
            .or_default()
            .push((value, decoded));
    }
    Ok(by_namespace)
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Create of an object that exists.
    #[error("{kind} {namespace}/{name} already exists")]
    AlreadyExists {
        /// Kind.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Update or delete of an object that does not exist.
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        /// Kind.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The caller's `resourceVersion` is stale.
    #[error("{kind} {namespace}/{name} was modified (resourceVersion is now {current}, the update was based on {given}): get it again and retry")]
    Conflict {
        /// Kind.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Stored revision.
        current: u64,
        /// Revision the caller sent.
        given: u64,
    },
    /// A watch asked for revisions already compacted away.
    #[error(
        "revision {0} is too old (compacted): list again and watch from the list's resourceVersion"
    )]
    Gone(u64),
    /// The disk under the store is full (nothing was written).
    #[error("the control plane's disk is full ({0}): nothing was stored; free space in its data folder and retry")]
    Full(String),
    /// The store cannot be reached, or cannot decide (etcd without quorum).
    #[error("{0}")]
    Unavailable(String),
    /// A write by controllers that no longer lead (their lease was lost).
    #[error("{0}")]
    Fenced(String),
    /// The backend failed.
    #[error("store backend: {0}")]
    Backend(String),
}

impl StoreError {
    /// [`StoreError::AlreadyExists`] of an object.
    pub fn already_exists(kind: &str, namespace: &str, name: &str) -> Self {
        Self::AlreadyExists {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// [`StoreError::NotFound`] of an object.
    pub fn not_found(kind: &str, namespace: &str, name: &str) -> Self {
        Self::NotFound {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChangeType {
    /// Created.
    Added,
    /// Updated.
    Modified,
    /// Deleted (the object is its last state).
    Deleted,
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The store revision of this change.
    pub revision: u64,
    /// Kind of the object.
    pub kind: String,
    /// Namespace of the object ("" for cluster-scoped kinds).
    pub namespace: String,
    /// What happened.
    #[serde(rename = "type")]
    pub change: ChangeType,
    /// The object after the change (before it, for deletions).
    pub object: Value,
}

/// A list of objects and the revision it was read at (watch from there).
#[derive(Debug, Clone)]
pub struct Listing {
    /// The objects, ordered by namespace and name.
    pub items: Vec<Value>,
    /// The store revision at the time of the read.
    pub revision: u64,
}

/// Where objects and blobs are kept.
pub trait Store: Send + Sync + 'static {
    /// One object.
    fn get(&self, kind: &str, namespace: &str, name: &str) -> Result<Option<Value>, StoreError>;
    /// All objects of a kind, in one namespace or (with `None`) all.
    fn list(&self, kind: &str, namespace: Option<&str>) -> Result<Listing, StoreError>;
    /// Creates; fails if it exists. Returns the object as stored.
    fn create(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        object: Value,
    ) -> Result<Value, StoreError>;
    /// Replaces; with `expected`, only if the stored revision is that one.
    fn update(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        object: Value,
        expected: Option<u64>,
    ) -> Result<Value, StoreError>;
    /// Deletes; returns the object as it was.
    fn delete(&self, kind: &str, namespace: &str, name: &str) -> Result<Value, StoreError>;
    /// Changes after `revision`, oldest first, at most `limit`.
    fn changes_since(&self, revision: u64, limit: usize) -> Result<Vec<Change>, StoreError>;
    /// The latest revision.
    fn revision(&self) -> Result<u64, StoreError>;
    /// A receiver woken after every write (it carries the new revision).
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Stores a blob under its sha256 (hex). Idempotent.
    fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// A blob by sha256.
    fn get_blob(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Whether a blob exists.
    fn has_blob(&self, digest: &str) -> Result<bool, StoreError>;
    /// The digests of the blobs kept in the store itself (modules now live
    /// in a [`BlobStore`]; these are moved there once).
    fn blob_digests(&self) -> Result<Vec<String>, StoreError>;
    /// Removes a blob kept in the store itself.
    fn delete_blob(&self, digest: &str) -> Result<(), StoreError>;
    /// Seals every Secret again under a new key and forgets the old ones;
    /// how many were sealed again. Only a store that seals secrets can.
    fn rotate_secret_key(&self) -> Result<usize, StoreError> {
        Err(StoreError::Backend(
            "this store does not seal secrets: nothing to rotate".into(),
        ))
    }
    /// A digest of `data` that only this store can compute (keyed), so a
    /// digest of Secret values shown in objects cannot be tested against
    /// guesses. A store without a key uses plain SHA-256.
    fn keyed_digest(&self, data: &[u8]) -> Result<[u8; 32], StoreError> {
        use sha2::Digest;
        Ok(sha2::Sha256::digest(data).into())
    }
}
