//! Controllers: level-triggered loops over the store.
//!
//! Every pass first brings the controllers' [`cache::Cache`] up to the
//! store's latest revision; the workloads its changes concern go into a
//! [`queue::WorkQueue`], and each is reconciled from the whole of its
//! current state with a pure `reconcile` function. Nothing depends on having
//! seen an earlier event, so a reconcile is safe to rerun at any time, after
//! any crash: the loop wakes on every store write and at least every
//! [`RESYNC`], and every workload is queued again every [`FULL_RESYNC`].

pub mod binder;
pub mod cache;
pub mod config_values;
pub mod events;
pub mod every_node;
pub mod jobs;
pub mod module_gc;
pub mod module_policy;
pub mod nodes;
pub mod queue;
pub mod quotas;
pub mod revisions;
pub mod rollout;
pub mod token_gc;
pub mod volumes;
pub mod workloads;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::{Store, StoreError};

/// Deletes an object; one already gone is not an error (a controller may
/// act on a copy that is a write behind).
fn delete_if_present(
    store: &dyn Store,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<(), StoreError> {
    match store.delete(kind, namespace, name) {
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Longest time between two passes.
pub const RESYNC: Duration = Duration::from_secs(2);

/// How often every workload is reconciled whether or not anything changed
/// (as an informer's resync: a safety net, not a source of truth).
pub const FULL_RESYNC: Duration = Duration::from_secs(30);

/// How often a workload with a rollout under way is reconciled even when
/// nothing changed (its progress deadline is a matter of time).
pub const ROLLOUT_CHECK: Duration = Duration::from_secs(1);

/// How often expired Events are deleted.
const EVENT_GC_EVERY: Duration = Duration::from_secs(60);

/// How often quotas' and disruption budgets' statuses are brought up to date.
const QUOTA_STATUS_EVERY: Duration = Duration::from_secs(1);

/// What the controllers keep from one pass to the next.
struct Controllers {
    store: Arc<dyn Store>,
    blobs: Arc<crate::store::BlobStore>,
    strategy: flotilla_scheduler::Strategy,
    cache: cache::Cache,
    queue: queue::WorkQueue<cache::Key>,
    /// Workloads with a rollout under way, looked at every [`ROLLOUT_CHECK`].
    rolling: std::collections::HashSet<cache::Key>,
    last_rollout_check: Instant,
    lifecycle: nodes::NodeLifecycle,
    last_full_resync: Instant,
    last_gc: Instant,
    last_quota_status: Instant,
    /// Since when each module has been named by nothing (on this clock).
    unreferenced: std::collections::HashMap<String, Instant>,
}

impl Controllers {
    /// One pass of every controller (blocking: it reads and writes the store).
    fn pass(&mut self) {
        let store = self.store.as_ref();
        let changed = match self.cache.sync(store) {
            Ok(changed) => changed,
            Err(e) => {
                tracing::warn!("controllers cannot read the store: {e}");
                return;
            }
        };
        self.queue.extend(changed.workloads);
        if self.last_full_resync.elapsed() >= FULL_RESYNC {
            self.last_full_resync = Instant::now();
            self.queue.extend(self.cache.workloads.keys().cloned());
            // Revisions of workloads deleted while the controllers were not
            // looking (down, or restarted) are swept here.
            if let Err(e) = revisions::sweep(store, &self.cache) {
                tracing::warn!("revision garbage collection: {e}");
            }
        }
        if self.last_rollout_check.elapsed() >= ROLLOUT_CHECK {
            self.last_rollout_check = Instant::now();
            self.queue.extend(self.rolling.drain());
        }
        let mut failed = Vec::new();
        while let Some(key) = self.queue.pop() {
            // A bug that panics on one workload must not stop the others'
            // reconciles (nor this thread): that workload is logged and
            // retried like a failed one.
            let cache = &self.cache;
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                workloads::reconcile_key(store, cache, &key)
            }));
            match result {
                Ok(Ok(true)) => {
                    self.rolling.remove(&key);
                }
                Ok(Ok(false)) => {
                    self.rolling.insert(key);
                }
                Ok(Err(e)) => {
                    tracing::warn!("workload controller: {}/{}: {e}", key.0, key.1);
                    failed.push(key);
                }
                Err(_) => {
                    tracing::error!(
                        "workload controller: reconciling {}/{} panicked (a bug: please report it with this log); retrying later",
                        key.0,
                        key.1
                    );
                    failed.push(key);
                }
            }
        }
        // Retried on the next pass (at the latest after RESYNC).
        self.queue.extend(failed);
        if let Err(e) = jobs::pass(store, &self.cache) {
            tracing::warn!("job controller: {e}");
        }
        // The instances just created are bound in this same pass, not the
        // next one: a deploy is one pass shorter.
        if let Err(e) = self
            .cache
            .sync(store)
            .map(|changed| self.queue.extend(changed.workloads))
        {
            tracing::warn!("controllers cannot read the store: {e}");
        }
        match self.lifecycle.pass(store, &self.cache) {
            Ok(nodes) => {
                let silences = self.lifecycle.silences();
                if let Err(e) = binder::pass(store, &self.cache, &nodes, &silences, self.strategy) {
                    tracing::warn!("binder: {e}");
                }
            }
            Err(e) => tracing::warn!("node lifecycle: {e}"),
        }
        if self.last_quota_status.elapsed() >= QUOTA_STATUS_EVERY {
            self.last_quota_status = Instant::now();
            if let Err(e) = quotas::pass(store) {
                tracing::warn!("quota status: {e}");
            }
            if let Err(e) = crate::disruption::pass(store) {
                tracing::warn!("disruption budget status: {e}");
            }
        }
        if self.last_gc.elapsed() >= EVENT_GC_EVERY {
            self.last_gc = Instant::now();
            if let Err(e) = events::collect_garbage(store) {
                tracing::warn!("event garbage collection: {e}");
            }
            if let Err(e) = token_gc::collect(store) {
                tracing::warn!("expired token collection: {e}");
            }
            if let Err(e) = crate::node_certificates::collect_expired(store) {
                tracing::warn!("expired certificate records: {e}");
            }
            if let Err(e) =
                module_gc::collect(store, &self.cache, &self.blobs, &mut self.unreferenced)
            {
                tracing::warn!("{e}");
            }
        }
    }
}

/// Runs every controller until the process ends. Passes run on a blocking
/// thread: they wait on the store, and the API's async workers must not.
pub async fn run(
    store: Arc<dyn Store>,
    blobs: Arc<crate::store::BlobStore>,
    node_grace: Duration,
    strategy: flotilla_scheduler::Strategy,
) {
    let mut wake = store.subscribe();
    let start = || Controllers {
        store: store.clone(),
        blobs: blobs.clone(),
        strategy,
        cache: cache::Cache::default(),
        queue: queue::WorkQueue::default(),
        rolling: Default::default(),
        last_rollout_check: Instant::now(),
        lifecycle: nodes::NodeLifecycle::new(node_grace),
        last_full_resync: Instant::now(),
        last_gc: Instant::now() - EVENT_GC_EVERY,
        last_quota_status: Instant::now() - QUOTA_STATUS_EVERY,
        unreferenced: std::collections::HashMap::new(),
    };
    let mut controllers = start();
    loop {
        let pass_started = Instant::now();
        controllers = match tokio::task::spawn_blocking(move || {
            controllers.pass();
            controllers
        })
        .await
        {
            Ok(controllers) => controllers,
            Err(e) => {
                // A panic in a pass: its cache may be half-applied, so the
                // controllers start over from a fresh list.
                tracing::error!("a controller pass panicked ({e}); the controllers start again");
                start()
            }
        };
        let pass_took = pass_started.elapsed();
        // Coalesce bursts of writes (including our own) into one pass: wait
        // about as long as a pass takes (at most 2 ms), so a quiet store
        // answers a write at once and a busy one is not re-read per write.
        let _ = tokio::time::timeout(RESYNC, wake.changed()).await;
        tokio::time::sleep(pass_took.min(Duration::from_millis(2))).await;
        wake.borrow_and_update();
    }
}
