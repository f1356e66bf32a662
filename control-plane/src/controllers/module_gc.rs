//! Modules no one names any more are removed, after [`GRACE`]: an upload
//! comes before the apply that names it, and a rollback may want one back.
//!
//! The controllers (one set of them: the leader's on etcd) collect the
//! server's folder and the shared mirror; every other server of an etcd
//! control plane collects only its own folder, its cache of the mirror
//! ([`collect_cache_forever`]), so followers' disks do not keep every
//! module ever served through them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cache::Cache;
use crate::store::{BlobStore, Collect, Store, StoreError};

/// How long a module no Workload, Instance, Revision or ImportedModule
/// names is kept.
pub const GRACE: Duration = Duration::from_secs(3600);

/// How often a follower looks at its folder.
const CACHE_EVERY: Duration = Duration::from_secs(600);

/// The modules the objects name (from the stored JSON, so a module named
/// by an object this version cannot decode is kept too): `workloads` and
/// `instances` as given, Revisions and ImportedModules read from `store`.
fn referenced<'a>(
    store: &dyn Store,
    workloads: impl Iterator<Item = &'a Value>,
    instances: impl Iterator<Item = &'a Value>,
) -> Result<HashSet<String>, StoreError> {
    let mut referenced: HashSet<String> = workloads
        .map(|w| &w["spec"]["module"])
        .chain(instances.map(|i| &i["spec"]["template"]["module"]))
        .filter_map(|module| module["sha256"].as_str().map(str::to_string))
        .collect();
    // A Job's module waits for its next attempt.
    for job in store.list("Job", None)?.items {
        if let Some(digest) = job["spec"]["template"]["module"]["sha256"].as_str() {
            referenced.insert(digest.to_string());
        }
    }
    // An imported module waits for the workloads that will name it.
    for imported in store.list("ImportedModule", None)?.items {
        if let Some(digest) = imported["status"]["sha256"].as_str() {
            referenced.insert(digest.to_string());
        }
    }
    // A revision's module stays too: `rollout undo` may bring it back.
    for revision in store.list("Revision", None)?.items {
        if let Some(digest) = revision["spec"]["template"]["module"]["sha256"].as_str() {
            referenced.insert(digest.to_string());
        }
    }
    Ok(referenced)
}

/// The controllers' collection: the folder and the mirror, with the
/// workloads and instances of their cache.
pub(super) fn collect(
    store: &dyn Store,
    cache: &Cache,
    blobs: &BlobStore,
    unreferenced: &mut HashMap<String, Instant>,
) -> Result<usize, StoreError> {
    let workloads = cache.workloads.entries().map(|e| &e.value);
    let instances = cache.instances.entries().map(|e| &e.value);
    let referenced = referenced(store, workloads, instances)?;
    blobs
        .collect_garbage(&referenced, GRACE, unreferenced, Collect::FolderAndMirror)
        .map_err(|e| StoreError::Backend(format!("module garbage collection: {e}")))
}

/// One collection of this server's folder alone, from a fresh read of the
/// store (a follower keeps no controllers' cache).
fn collect_cache(
    store: &dyn Store,
    blobs: &BlobStore,
    grace: Duration,
    unreferenced: &mut HashMap<String, Instant>,
) -> Result<usize, StoreError> {
    let workloads = store.list("Workload", None)?.items;
    let instances = store.list("Instance", None)?.items;
    let referenced = referenced(store, workloads.iter(), instances.iter())?;
    blobs
        .collect_garbage(&referenced, grace, unreferenced, Collect::Folder)
        .map_err(|e| StoreError::Backend(format!("module cache collection: {e}")))
}

/// Collects this server's folder every [`CACHE_EVERY`] for the life of
/// the process (run by every server of an etcd control plane). On the
/// leader it may remove a folder copy its controllers' pass would have
/// kept for a recent touch through another server: harmless, etcd's copy
/// stays and the folder is filled from it again on demand.
pub async fn collect_cache_forever(store: Arc<dyn Store>, blobs: Arc<BlobStore>) {
    let mut unreferenced = HashMap::new();
    loop {
        tokio::time::sleep(CACHE_EVERY).await;
        let (store, blobs) = (store.clone(), blobs.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            let removed = collect_cache(store.as_ref(), &blobs, GRACE, &mut unreferenced);
            (removed, unreferenced)
        })
        .await;
        match outcome {
            Ok((removed, kept)) => {
                unreferenced = kept;
                match removed {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("removed {n} cached modules nothing names"),
                    Err(e) => tracing::warn!("{e}"),
                }
            }
            Err(e) => {
                tracing::warn!("module cache collection: {e}");
                unreferenced = HashMap::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use serde_json::json;
    use sha2::{Digest, Sha256};

    #[tokio::test]
    async fn a_followers_cache_keeps_what_objects_name_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
        let blobs = BlobStore::open(&dir.path().join("blobs")).unwrap();
        let mut digests = Vec::new();
        for bytes in [
            &b"named by a workload"[..],
            b"named by a revision",
            b"named by nothing",
        ] {
            let digest = hex::encode(Sha256::digest(bytes));
            let chunk = futures_util::stream::iter([Ok::<_, String>(bytes::Bytes::from(bytes))]);
            blobs.put(&digest, chunk, 1 << 20).await.unwrap();
            digests.push(digest);
        }
        let workload = json!({"apiVersion": "flotilla.dev/v1", "kind": "Workload",
            "metadata": {"name": "w", "namespace": "default"},
            "spec": {"module": {"sha256": digests[0]}}});
        store.create("Workload", "default", "w", workload).unwrap();
        let revision = json!({"apiVersion": "flotilla.dev/v1", "kind": "Revision",
            "metadata": {"name": "w-1", "namespace": "default"},
            "spec": {"template": {"module": {"sha256": digests[1]}}}});
        store
            .create("Revision", "default", "w-1", revision)
            .unwrap();
        let mut since = HashMap::new();
        let grace = Duration::from_millis(100);
        assert_eq!(collect_cache(&store, &blobs, grace, &mut since).unwrap(), 0);
        std::thread::sleep(grace);
        assert_eq!(collect_cache(&store, &blobs, grace, &mut since).unwrap(), 1);
        let left: Vec<bool> = digests.iter().map(|d| blobs.has(d)).collect();
        assert_eq!(left, [true, true, false]);
    }
}
