//! Reporting to the control plane: instance status and events.
//!
//! Status is level-triggered: the reporter keeps only the latest status of
//! each instance and sends it until the server takes it, so a control plane
//! that is down for a while gets the current state when it returns, not a
//! replay. Events are best-effort: one attempt, a warning in the agent's log
//! if it fails.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_client::{collection_path, Client};
use flotilla_spec::event::ObjectRef;
use flotilla_spec::instance::{Instance, InstanceStatus};

pub use flotilla_spec::event::EventSpec;

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy)]
pub enum Severity {
    /// Routine.
    Normal,
    /// Needs attention.
    Warning,
}

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
}

impl Reporter {
    /// A reporter for `node`; call [`Reporter::run`] to start sending.
    pub fn new(client: Client, node: &str) -> Self {
        Self {
            client,
            source: format!("agent/{node}"),
            pending: Arc::default(),
            wake: Arc::default(),
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

    /// Sends an event, once.
    pub fn event(&self, about: &ObjectRef, severity: Severity, reason: &str, message: String) {
        let event = serde_json::json!({
            "apiVersion": flotilla_spec::meta::API_VERSION,
            "kind": "Event",
            "metadata": {"name": format!("{}.{:016x}", about.name, rand::random::<u64>()), "namespace": about.namespace},
            "spec": EventSpec {
                involved_object: about.clone(),
                kind: match severity { Severity::Normal => "Normal", Severity::Warning => "Warning" }.into(),
                reason: reason.into(),
                message,
                source: self.source.clone(),
                timestamp: flotilla_spec::meta::now_rfc3339(),
            },
        });
        let client = self.client.clone();
        let path = collection_path("events", Some(&about.namespace));
        tokio::spawn(async move {
            if let Err(e) = client.create(&path, &event).await {
                tracing::debug!("event not recorded: {e}");
            }
        });
    }

    /// Sends pending statuses forever, retrying each until the server takes it.
    pub async fn run(self) {
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
                    Err(e) if e.code() == Some(404) => {} // deleted meanwhile
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
