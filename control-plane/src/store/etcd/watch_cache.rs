//! The watch cache of an etcd store: one etcd watch over the objects'
//! prefix, from a little before the present, kept as the last
//! [`KEEP`] changes in order. Every `changes_since` (the API's watches, the
//! controllers' cache) is answered from it, as the Kubernetes API server
//! answers from its own; a revision older than what it holds is
//! [`StoreError::Gone`], and the client lists again.
//!
//! When etcd compacts past where the watch stood (the watch was cut off
//! long enough), the changes in between are lost to this server: the cache
//! starts again from the compacted revision and older revisions are Gone.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use serde_json::{json, Value};

use super::stamped;
use crate::store::{Change, ChangeType, StoreError};

/// Changes kept in memory.
const KEEP: usize = 8192;

/// How far back (in etcd revisions) a new cache starts: a server that
/// starts, or a client that fails over to it, can resume a recent watch.
const HISTORY: u64 = 10_000;

/// What the watch has delivered.
struct Held {
    /// Every change after `floor` up to the newest one seen is in `changes`.
    floor: u64,
    changes: VecDeque<Change>,
}

/// See the module documentation.
pub struct WatchCache {
    held: Mutex<Held>,
    prefix: String,
}

impl WatchCache {
    /// Starts the watch on `runtime`; the receiver carries the newest
    /// revision seen.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        client: Client,
        prefix: &str,
    ) -> (Arc<Self>, tokio::sync::watch::Receiver<u64>) {
        let cache = Arc::new(Self {
            held: Mutex::new(Held {
                floor: u64::MAX,
                changes: VecDeque::new(),
            }),
            prefix: format!("{prefix}o/"),
        });
        let (notify, receiver) = tokio::sync::watch::channel(0);
        runtime.spawn(cache.clone().follow(client, notify));
        (cache, receiver)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes after `revision`, oldest first, at most `limit`.
    pub fn since(&self, revision: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let held = self.held();
        if held.floor == u64::MAX {
            return Err(StoreError::Unavailable(
                "the control plane has not reached etcd yet: retry in a moment".into(),
            ));
        }
        if revision < held.floor {
            return Err(StoreError::Gone(revision));
        }
        let start = held.changes.partition_point(|c| c.revision <= revision);
        Ok(held.changes.range(start..).take(limit).cloned().collect())
    }

    /// Follows etcd for the life of the process, starting over after any
    /// failure from the last revision seen.
    async fn follow(self: Arc<Self>, client: Client, notify: tokio::sync::watch::Sender<u64>) {
        let mut next: Option<u64> = None;
        let mut wait = Duration::from_millis(100);
        loop {
            match self.session(&client, &notify, &mut next).await {
                Ok(()) => wait = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!("watching etcd: {e}; trying again in {wait:?}");
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(3));
        }
    }

    /// One etcd watch, from `next` (or from [`HISTORY`] revisions ago).
    async fn session(
        &self,
        client: &Client,
        notify: &tokio::sync::watch::Sender<u64>,
        next: &mut Option<u64>,
    ) -> Result<(), etcd_client::Error> {
        // A cache starting afresh holds from `from` on only once etcd has
        // said it can replay that far (until then `since` is Unavailable,
        // not an empty answer for revisions that may be compacted).
        let fresh = next.is_none();
        let from = match *next {
            Some(from) => from,
            None => {
                let mut kv = client.kv_client();
                let now = kv
                    .get(
                        self.prefix.clone(),
                        Some(GetOptions::new().with_count_only()),
                    )
                    .await?
                    .header()
                    .map(|h| h.revision() as u64)
                    .unwrap_or(0);
                now.saturating_sub(HISTORY).max(1)
            }
        };
        let options = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(from as i64)
            .with_progress_notify();
        let mut stream = client
            .watch_client()
            .watch(self.prefix.clone(), Some(options))
            .await?;
        while let Some(response) = stream.message().await? {
            if response.compact_revision() > 0 {
                // What lay between `from` and the compaction is gone.
                let compacted = response.compact_revision() as u64;
                tracing::warn!(
                    "etcd compacted revisions before {compacted} while this server was behind: watches older than that list again"
                );
                self.restart_at(compacted);
                *next = Some(compacted);
                // Waiting watchers look again (and get 410 Gone).
                notify.send_modify(|_| {});
                return Ok(());
            }
            if fresh && response.created() {
                self.restart_at(from);
                notify.send_modify(|_| {});
            }
            if response.canceled() {
                return Err(etcd_client::Error::WatchError(format!(
                    "etcd cancelled the watch: {}",
                    response.cancel_reason()
                )));
            }
            let mut newest = None;
            for event in response.events() {
                let Some(change) = self.change_of(event) else {
                    continue;
                };
                newest = Some(change.revision);
                self.push(change);
            }
            if let Some(revision) = newest {
                *next = Some(revision + 1);
                notify.send_replace(revision);
            } else if let Some(header) = response.header().filter(|_| !response.created()) {
                // A progress notification: nothing of ours changed up to its
                // revision, so a watch started again starts after it (and
                // does not fall behind a compaction for want of writes).
                let revision = header.revision() as u64;
                if next.is_some_and(|n| n <= revision) {
                    *next = Some(revision + 1);
                }
            }
        }
        Ok(())
    }

    /// Forgets everything: complete from `from` on.
    fn restart_at(&self, from: u64) {
        let mut held = self.held();
        held.changes.clear();
        held.floor = from.saturating_sub(1);
    }

    fn push(&self, change: Change) {
        let mut held = self.held();
        if held
            .changes
            .back()
            // Several changes may share a revision (a delete of a range).
            .is_some_and(|c| c.revision > change.revision)
        {
            return;
        }
        held.changes.push_back(change);
        while held.changes.len() > KEEP {
            if let Some(dropped) = held.changes.pop_front() {
                held.floor = dropped.revision;
            }
        }
    }

    fn change_of(&self, event: &etcd_client::Event) -> Option<Change> {
        let kv = event.kv()?;
        let key = std::str::from_utf8(kv.key()).ok()?;
        let mut parts = key.strip_prefix(&self.prefix)?.splitn(3, '/');
        let (kind, namespace, name) = (parts.next()?, parts.next()?, parts.next()?);
        let revision = kv.mod_revision() as u64;
        let (change, object) = match event.event_type() {
            EventType::Put => {
                let change = if kv.create_revision() == kv.mod_revision() {
                    ChangeType::Added
                } else {
                    ChangeType::Modified
                };
                (change, stamped(kv.value(), revision).ok()?)
            }
            EventType::Delete => {
                // The object as it was, at the deletion's revision.
                let object = event
                    .prev_kv()
                    .and_then(|prev| stamped(prev.value(), revision).ok())
                    .unwrap_or_else(|| gone(kind, namespace, name, revision));
                (ChangeType::Deleted, object)
            }
        };
        Some(Change {
            revision,
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            change,
            object,
        })
    }
}

/// A deleted object whose last state etcd no longer has (compacted).
fn gone(kind: &str, namespace: &str, name: &str, revision: u64) -> Value {
    json!({
        "apiVersion": flotilla_spec::meta::API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": revision.to_string()},
    })
}
