//! Node lifecycle: leases, readiness, fencing and eviction.
//!
//! An agent's heartbeat renews its node's lease (`status.lastHeartbeat`). The
//! lease is judged on this controller's own clock — when it last saw the
//! heartbeat *change* — not on the timestamp's value, so agent clock skew
//! does not matter and a restarted control plane gives every node a full
//! grace period before declaring it lost (Kubernetes' node controller does
//! the same), instead of evicting the whole fleet because nobody could
//! heartbeat while it was down.
//!
//! A node whose lease expires is marked NotReady; its fencing epoch is
//! raised, then its instances are evicted (the workload controller replaces
//! them and the binder places them on Ready nodes). The agent, when it comes
//! back, learns the new epoch and stops what it still runs from before.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use flotilla_spec::event::ObjectRef;
use flotilla_spec::instance::{Instance, Phase};
use flotilla_spec::node::Node;
use serde_json::Value;

use super::cache::Cache;
use super::events::{event, record, Severity};
use crate::store::{Store, StoreError};

/// The node-lifecycle controller's memory of leases.
#[derive(Debug)]
pub struct NodeLifecycle {
    grace: Duration,
    /// Per node: the heartbeat last seen, and when this controller saw it change.
    renewals: HashMap<String, (String, Instant)>,
}

impl NodeLifecycle {
    /// A controller that declares a node lost after `grace` without a renewal.
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            renewals: HashMap::new(),
        }
    }

    /// Whether `node`'s lease is current at `now`.
    fn renewed(&mut self, node: &Node, now: Instant) -> bool {
        let heartbeat = node
            .status
            .as_ref()
            .map(|s| s.last_heartbeat.clone())
            .unwrap_or_default();
        let seen = self
            .renewals
            .entry(node.metadata.name.clone())
            .or_insert_with(|| (heartbeat.clone(), now));
        if seen.0 != heartbeat {
            *seen = (heartbeat, now);
        }
        !seen.0.is_empty() && now.duration_since(seen.1) <= self.grace
    }

    /// How long each known node has gone without renewing its lease, on
    /// this controller's clock (from its first sighting after a restart).
    pub fn silences(&self) -> HashMap<String, Duration> {
        let now = Instant::now();
        self.renewals
            .iter()
            .map(|(name, (_, seen))| (name.clone(), now.duration_since(*seen)))
            .collect()
    }

    /// One pass: judges every lease, marks lost nodes NotReady, fences and
    /// evicts their instances. Returns every node with its readiness.
    pub fn pass(
        &mut self,
        store: &dyn Store,
        cache: &Cache,
    ) -> Result<Vec<(Node, bool)>, StoreError> {
        let now = Instant::now();
        let names: std::collections::HashSet<&str> = cache
            .nodes
            .decoded()
            .map(|(_, n)| n.metadata.name.as_str())
            .collect();
        self.renewals
            .retain(|name, _| names.contains(name.as_str()));
        let mut judged = Vec::with_capacity(names.len());
        let mut lost = BTreeSet::new();
        for (value, node) in cache.nodes.decoded() {
            let ready = self.renewed(node, now);
            if !ready {
                lost.insert(node.metadata.name.clone());
                if node.status.as_ref().is_some_and(|s| s.ready) {
                    mark_not_ready(store, value.clone(), self.grace)?;
                }
            }
            judged.push((node.clone(), ready));
        }
        if !lost.is_empty() {
            evict(store, cache, &lost)?;
        }
        Ok(judged)
    }
}

/// Writes `status.ready = false` with an event; a heartbeat that races it
/// wins (the conflict is ignored), which is right: the node is back.
fn mark_not_ready(store: &dyn Store, mut value: Value, grace: Duration) -> Result<(), StoreError> {
    let name = value["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let expected = crate::store::revision_of(&value);
    value["status"]["ready"] = false.into();
    match store.update("Node", "", &name, value, expected) {
        Ok(_) => {
            tracing::warn!("node {name} is NotReady: no heartbeat for {grace:?}");
            let message = format!("Node {name} stopped heartbeating for {grace:?}: NotReady");
            warn(store, "Node", "", &name, message)
        }
        Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Records a `NodeNotReady` warning about an object.
fn warn(
    store: &dyn Store,
    kind: &str,
    namespace: &str,
    name: &str,
    message: String,
) -> Result<(), StoreError> {
    let about = ObjectRef {
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
    };
    let warning = event(
        about,
        Severity::Warning,
        "NodeNotReady",
        message,
        "node-lifecycle",
    );
    record(store, &warning)
}

/// Fences, then evicts, every instance bound to a node in `lost`.
fn evict(store: &dyn Store, cache: &Cache, lost: &BTreeSet<String>) -> Result<(), StoreError> {
    let doomed: Vec<&Instance> = cache
        .instances
        .decoded()
        .map(|(_, i)| i)
        .filter(|i| lost.contains(&i.spec.node_name))
        // A Job's finished attempt is a record (its counts), not a run to
        // move: it stays.
        .filter(|i| {
            let finished = i
                .status
                .as_ref()
                .is_some_and(|s| matches!(s.phase, Phase::Succeeded | Phase::Failed));
            !(finished
                && i.metadata
                    .owner_references
                    .first()
                    .is_some_and(|o| o.kind == "Job"))
        })
        .collect();
    // Fence first: once the epoch is raised, the old bindings are stale
    // wherever they still run, even if the deletes below are interrupted.
    let fenced: BTreeSet<&str> = doomed.iter().map(|i| i.spec.node_name.as_str()).collect();
    for node in fenced {
        raise_epoch(store, node)?;
    }
    for instance in doomed {
        let (ns, name) = (&instance.metadata.namespace, &instance.metadata.name);
        match store.delete("Instance", ns, name) {
            Ok(_) => {
                let message = format!(
                    "Evicted from node {}: its agent stopped heartbeating",
                    instance.spec.node_name
                );
                warn(store, "Instance", ns, name, message)?;
            }
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Raises a node's fencing epoch by one, re-reading on a conflicting write.
fn raise_epoch(store: &dyn Store, node: &str) -> Result<(), StoreError> {
    loop {
        let Some(mut value) = store.get("Node", "", node)? else {
            return Ok(());
        };
        let epoch = value["spec"]["epoch"].as_u64().unwrap_or(0);
        value["spec"]["epoch"] = (epoch + 1).into();
        let expected = crate::store::revision_of(&value);
        match store.update("Node", "", node, value, expected) {
            Ok(_) => {
                tracing::info!("node {node}: fencing epoch raised to {}", epoch + 1);
                return Ok(());
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_spec::node::NodeStatus;

    fn node(heartbeat: &str) -> Node {
        let mut node = Node::default();
        node.metadata.name = "edge".into();
        node.status = Some(NodeStatus {
            ready: true,
            last_heartbeat: heartbeat.into(),
            ..NodeStatus::default()
        });
        node
    }

    #[test]
    fn a_lease_is_judged_on_the_controllers_clock() {
        let mut lifecycle = NodeLifecycle::new(Duration::from_secs(5));
        let start = Instant::now();
        // A heartbeat stamped long ago, first seen now: a full grace period.
        let old = node("2020-01-01T00:00:00Z");
        assert!(lifecycle.renewed(&old, start));
        assert!(lifecycle.renewed(&old, start + Duration::from_secs(5)));
        assert!(!lifecycle.renewed(&old, start + Duration::from_secs(6)));
        // Any change of the heartbeat renews it, whatever its value.
        let renewed = node("2020-01-01T00:00:01Z");
        assert!(lifecycle.renewed(&renewed, start + Duration::from_secs(7)));
        assert!(!lifecycle.renewed(&renewed, start + Duration::from_secs(13)));
        // A node that never heartbeated is not Ready.
        assert!(!NodeLifecycle::new(Duration::from_secs(5)).renewed(&node(""), start));
    }
}
