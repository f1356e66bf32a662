//! Reporting to the control plane: instance status and events.
//!
//! Status is level-triggered: the reporter keeps only the latest status of
//! each instance and sends it until the server takes it, so a control plane
//! that is down for a while gets the current state when it returns, not a
//! replay. Events are best-effort: one attempt each, sent one at a time in
//! the order they happened (so the store's revisions order them too), at
//! most [`EVENT_QUEUE`] waiting; a failure is logged at debug level.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_client::{collection_path, Client};
use flotilla_spec::event::ObjectRef;
use flotilla_spec::instance::{Instance, InstanceStatus};

pub use flotilla_spec::event::EventSpec;

/// Most events waiting to be sent; more are dropped (a crash loop without
/// backoff makes thousands a second).
pub const EVENT_QUEUE: usize = 10_000;

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy)]
pub enum Severity {
    /// Routine.
    Normal,
    /// Needs attention.
    Warning,
}

/// An event waiting to be sent: the collection path and the object.
type QueuedEvent = (String, serde_json::Value);

struct Pending {
    instance: Instance,
    status: InstanceStatus,
}

/// Sends statuses and events for one node.
#[derive(Clone)]
pub struct Reporter {
    client: Client,
    source: String,
    pending: Arc<Mutex<HashMap<String, Pending>>>,
    wake: Arc<tokio::sync::Notify>,
    events: tokio::sync::mpsc::Sender<QueuedEvent>,
    /// Taken by [`Reporter::run`], which sends the queued events.
    queued: Arc<Mutex<Option<tokio::sync::mpsc::Receiver<QueuedEvent>>>>,
}

impl Reporter {
    /// A reporter for `node`; call [`Reporter::run`] to start sending.
    pub fn new(client: Client, node: &str) -> Self {
        let (events, queued) = tokio::sync::mpsc::channel(EVENT_QUEUE);
        Self {
            client,
            source: format!("agent/{node}"),
            pending: Arc::default(),
            wake: Arc::default(),
            events,
            queued: Arc::new(Mutex::new(Some(queued))),
        }
    }

    /// Queues `status` as the instance's latest.
    pub fn status(&self, instance: &Instance, status: InstanceStatus) {
        let key = format!("{}/{}", instance.metadata.namespace, instance.metadata.name);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.insert(
            key,
            Pending {
                instance: instance.clone(),
                status,
            },
        );
        drop(pending);
        self.wake.notify_one();
    }

    /// Forgets an instance's pending status (it was deleted).
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.remove(&format!("{namespace}/{name}"));
    }

    /// Queues an event, to be sent once (the server folds repeats into one
    /// Event with a count).
    pub fn event(&self, about: &ObjectRef, severity: Severity, reason: &str, message: String) {
        self.queue(about, &about.namespace, severity, reason, message);
    }

    fn queue(
        &self,
        about: &ObjectRef,
        namespace: &str,
        severity: Severity,
        reason: &str,
        message: String,
    ) {
        let event = serde_json::json!({
            "apiVersion": flotilla_spec::meta::API_VERSION,
            "kind": "Event",
            "metadata": {"name": format!("{}.{:016x}", about.name, rand::random::<u64>()), "namespace": namespace},
            "spec": EventSpec {
                involved_object: about.clone(),
                kind: match severity { Severity::Normal => "Normal", Severity::Warning => "Warning" }.into(),
                reason: reason.into(),
                message,
                source: self.source.clone(),
                timestamp: flotilla_spec::meta::now_rfc3339_millis(),
                ..EventSpec::default()
            },
        });
        let path = collection_path("events", Some(namespace));
        if self.events.try_send((path, event)).is_err() {
            tracing::debug!("event dropped: {EVENT_QUEUE} already waiting");
        }
    }

    /// Queues an event about this node (kept in namespace `default`, as
    /// Kubernetes keeps node events).
    pub fn node_event(&self, severity: Severity, reason: &str, message: String) {
        let node = self.source.trim_start_matches("agent/").to_string();
        let about = ObjectRef {
            kind: "Node".into(),
            namespace: String::new(),
            name: node,
        };
        self.queue(&about, "default", severity, reason, message);
    }

    /// Sends queued events in order, forever.
    async fn send_events(self) {
        let queued = self.queued.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(mut queued) = queued else { return };
        while let Some((path, event)) = queued.recv().await {
            if let Err(e) = self.client.create(&path, &event).await {
                tracing::debug!("event not recorded: {e}");
            }
        }
    }

    /// Sends pending statuses forever, retrying each until the server takes
    /// it; and the events, in order.
    pub async fn run(self) {
        tokio::spawn(self.clone().send_events());
        loop {
            let batch: Vec<(String, Pending)> = {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                pending.drain().collect()
            };
            let mut failed = false;
            for (key, item) in batch {
                let mut object = serde_json::to_value(&item.instance).unwrap_or_default();
                object["status"] = serde_json::to_value(&item.status).unwrap_or_default();
                if let Some(meta) = object["metadata"].as_object_mut() {
                    meta.remove("resourceVersion");
                }
                let ns = &item.instance.metadata.namespace;
                let path = format!(
                    "{}/{}/status",
                    collection_path("instances", Some(ns)),
                    item.instance.metadata.name
                );
                match self.client.replace(&path, &object).await {
                    Ok(_) => {}
                    // Deleted meanwhile (409: and made again under its name).
                    Err(e) if matches!(e.code(), Some(404 | 409)) => {}
                    Err(e) => {
                        tracing::debug!("status of {key} not sent yet: {e}");
                        failed = true;
                        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                        pending.entry(key).or_insert(item);
                    }
                }
            }
            if failed {
                tokio::time::sleep(Duration::from_secs(1)).await;
            } else {
                self.wake.notified().await;
            }
        }
    }
}
