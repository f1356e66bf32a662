//! Controllers: level-triggered loops over the store.
//!
//! Each pass reads the whole desired and observed state, computes what is
//! missing with a pure `reconcile` function, and applies it. Nothing depends
//! on having seen an earlier event, so a pass is safe to rerun at any time,
//! after any crash: the loop wakes on every store write and at least every
//! [`RESYNC`].

pub mod binder;
pub mod events;
pub mod nodes;
pub mod workloads;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::store::{Store, StoreError};

/// Every object of `kind`, stored (to write back) and decoded (to read);
/// objects that do not decode are left out.
fn list_decoded<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    kind: &str,
) -> Result<Vec<(Value, T)>, StoreError> {
    Ok(store
        .list(kind, None)?
        .items
        .into_iter()
        .filter_map(|v| serde_json::from_value(v.clone()).ok().map(|t| (v, t)))
        .collect())
}

/// Longest time between two passes.
pub const RESYNC: Duration = Duration::from_secs(2);

/// How often expired Events are deleted.
const EVENT_GC_EVERY: Duration = Duration::from_secs(60);

/// How long a module no Workload or Instance names is kept (an upload comes
/// before the apply that names it; a rollback may want it back).
pub const BLOB_GRACE: Duration = Duration::from_secs(3600);

/// Removes modules nothing names any more (see [`BLOB_GRACE`]).
fn collect_blobs(
    store: &dyn Store,
    blobs: &crate::store::BlobStore,
    unreferenced: &mut std::collections::HashMap<String, std::time::Instant>,
) -> Result<usize, StoreError> {
    let mut referenced = std::collections::HashSet::new();
    for workload in store.list("Workload", None)?.items {
        if let Some(digest) = workload["spec"]["module"]["sha256"].as_str() {
            referenced.insert(digest.to_string());
        }
    }
    for instance in store.list("Instance", None)?.items {
        if let Some(digest) = instance["spec"]["template"]["module"]["sha256"].as_str() {
            referenced.insert(digest.to_string());
        }
    }
    blobs
        .collect_garbage(&referenced, BLOB_GRACE, unreferenced)
        .map_err(|e| StoreError::Backend(format!("module garbage collection: {e}")))
}

/// Runs every controller until the process ends.
pub async fn run(
    store: Arc<dyn Store>,
    blobs: Arc<crate::store::BlobStore>,
    node_grace: Duration,
    strategy: flotilla_scheduler::Strategy,
) {
    let mut wake = store.subscribe();
    let mut lifecycle = nodes::NodeLifecycle::new(node_grace);
    let mut last_gc = std::time::Instant::now() - EVENT_GC_EVERY;
    // Since when each module has been named by nothing (on this clock).
    let mut unreferenced = std::collections::HashMap::new();
    loop {
        let pass_started = std::time::Instant::now();
        if let Err(e) = workloads::pass(store.as_ref()) {
            tracing::warn!("workload controller: {e}");
        }
        match lifecycle.pass(store.as_ref()) {
            Ok(nodes) => {
                if let Err(e) = binder::pass(store.as_ref(), &nodes, strategy) {
                    tracing::warn!("binder: {e}");
                }
            }
            Err(e) => tracing::warn!("node lifecycle: {e}"),
        }
        if last_gc.elapsed() >= EVENT_GC_EVERY {
            last_gc = std::time::Instant::now();
            if let Err(e) = events::collect_garbage(store.as_ref()) {
                tracing::warn!("event garbage collection: {e}");
            }
            if let Err(e) = collect_blobs(store.as_ref(), &blobs, &mut unreferenced) {
                tracing::warn!("{e}");
            }
        }
        let pass_took = pass_started.elapsed();
        // Coalesce bursts of writes (including our own) into one pass: wait
        // about as long as a pass takes (at most 2 ms), so a quiet store
        // answers a write at once and a busy one is not re-read per write.
        let _ = tokio::time::timeout(RESYNC, wake.changed()).await;
        tokio::time::sleep(pass_took.min(Duration::from_millis(2))).await;
        wake.borrow_and_update();
    }
}
