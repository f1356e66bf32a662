//! The binder: places unbound Instances on Ready nodes that fit their
//! requests. A node counts as Ready while its agent heartbeats within the
//! grace period.
//!
//! Placement itself is `flotilla-scheduler` (pure); this module builds its
//! snapshot from the store and writes its decisions back. It also evicts the
//! instances of nodes whose heartbeat is older than the grace period.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use flotilla_scheduler as scheduler;
use flotilla_spec::event::ObjectRef;
use flotilla_spec::instance::Instance;
use flotilla_spec::meta::parse_rfc3339;
use flotilla_spec::node::Node;
use flotilla_spec::workload::PlacementStrategy;
use serde_json::Value;

use super::events::{event, record, Severity};
use crate::store::{Store, StoreError};

/// An instance as stored (to write back) and decoded (to read).
type Stored = (Value, Instance);

/// What an instance reserves on its node.
fn requests(instance: &Instance) -> (u64, u64) {
    instance.spec.template.resources.requests.memory_and_cpu()
}

/// Whether a node's agent has heartbeated within `grace`.
pub fn is_ready(node: &Node, grace: Duration) -> bool {
    let Some(status) = &node.status else {
        return false;
    };
    status.ready
        && parse_rfc3339(&status.last_heartbeat)
            .is_some_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() <= grace)
}

/// Raises a node's fencing epoch by one, re-reading on a conflicting write.
fn raise_epoch(store: &dyn Store, node: &str) -> Result<(), StoreError> {
    loop {
        let Some(mut value) = store.get("Node", "", node)? else {
            return Ok(());
        };
        let epoch = value["spec"]["epoch"].as_u64().unwrap_or(0);
        value["spec"]["epoch"] = (epoch + 1).into();
        let expected = value["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok());
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

/// The scheduler's strategy for a workload's `spec.placement.strategy`.
fn strategy_of(instance: &Instance) -> Option<scheduler::Strategy> {
    instance.spec.template.placement.strategy.map(|s| match s {
        PlacementStrategy::Binpack => scheduler::Strategy::Binpack,
        PlacementStrategy::Spread => scheduler::Strategy::Spread,
    })
}

/// One pass: bind what is unbound, with the placements of the scheduler
/// crate (`strategy` unless the workload names its own).
pub fn pass(
    store: &dyn Store,
    grace: Duration,
    strategy: scheduler::Strategy,
) -> Result<(), StoreError> {
    let nodes: Vec<Node> = store
        .list("Node", None)?
        .items
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    let instances: Vec<(Value, Instance)> = store
        .list("Instance", None)?
        .items
        .into_iter()
        .filter_map(|v| serde_json::from_value(v.clone()).ok().map(|i| (v, i)))
        .collect();
    // Node lifecycle: instances on a node whose heartbeat stopped are evicted;
    // the workload controller replaces them and they are placed elsewhere.
    let not_ready: std::collections::HashSet<&str> = nodes
        .iter()
        .filter(|n| !is_ready(n, grace))
        .map(|n| n.metadata.name.as_str())
        .collect();
    let (instances, lost): (Vec<Stored>, Vec<Stored>) =
        instances.into_iter().partition(|(_, i)| {
            i.spec.node_name.is_empty() || !not_ready.contains(i.spec.node_name.as_str())
        });
    // Fence first: once the epoch is raised, the old bindings are stale
    // wherever they still run, even if the deletes below are interrupted.
    let fenced: std::collections::BTreeSet<&str> = lost
        .iter()
        .map(|(_, i)| i.spec.node_name.as_str())
        .collect();
    for node in fenced {
        raise_epoch(store, node)?;
    }
    for (_, instance) in lost {
        let (ns, name) = (&instance.metadata.namespace, &instance.metadata.name);
        match store.delete("Instance", ns, name) {
            Ok(_) => {
                let about = ObjectRef {
                    kind: "Instance".into(),
                    namespace: ns.clone(),
                    name: name.clone(),
                };
                let message = format!(
                    "Evicted from node {}: its agent stopped heartbeating",
                    instance.spec.node_name
                );
                record(
                    store,
                    &event(
                        about,
                        Severity::Warning,
                        "NodeNotReady",
                        message,
                        "node-lifecycle",
                    ),
                )?;
            }
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let mut snapshot: Vec<scheduler::Node> = nodes
        .iter()
        .map(|n| {
            let status = n.status.clone().unwrap_or_default();
            scheduler::Node {
                name: n.metadata.name.clone(),
                allocatable: scheduler::Resources {
                    memory: status.capacity_memory_bytes,
                    cpu: status.capacity_cpu_millis,
                },
                allocated: scheduler::Resources::default(),
                labels: n.metadata.labels.clone(),
                taints: Vec::new(),
                ready: is_ready(n, grace),
                unschedulable: n.spec.unschedulable,
                cached_modules: Default::default(),
            }
        })
        .collect();
    let index: HashMap<String, usize> = snapshot
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), i))
        .collect();
    for (_, i) in instances
        .iter()
        .filter(|(_, i)| !i.spec.node_name.is_empty())
    {
        if let Some(node) = index.get(&i.spec.node_name).map(|&k| &mut snapshot[k]) {
            let (memory, cpu) = requests(i);
            node.allocated.memory += memory;
            node.allocated.cpu += cpu;
            if let Some(digest) = &i.spec.template.module.sha256 {
                node.cached_modules.insert(digest.clone());
            }
        }
    }
    let unbound: Vec<(Value, Instance)> = instances
        .into_iter()
        .filter(|(_, i)| i.spec.node_name.is_empty())
        .collect();
    let pending: Vec<scheduler::Pending> = unbound
        .iter()
        .map(|(_, i)| {
            let (memory, cpu) = requests(i);
            scheduler::Pending {
                id: format!("{}/{}", i.metadata.namespace, i.metadata.name),
                requests: scheduler::Resources { memory, cpu },
                node_selector: i.spec.template.node_selector.clone(),
                module: i.spec.template.module.sha256.clone(),
                strategy: strategy_of(i),
                ..Default::default()
            }
        })
        .collect();
    let decisions = scheduler::schedule(&mut snapshot, &pending, strategy, &mut Default::default());
    let epochs: HashMap<&str, u64> = nodes
        .iter()
        .map(|n| (n.metadata.name.as_str(), n.spec.epoch))
        .collect();
    for ((mut value, instance), decision) in unbound.into_iter().zip(decisions) {
        let ns = instance.metadata.namespace.clone();
        let name = instance.metadata.name.clone();
        let expected = instance.metadata.resource_version.parse().ok();
        let about = ObjectRef {
            kind: "Instance".into(),
            namespace: ns.clone(),
            name: name.clone(),
        };
        match decision {
            scheduler::Decision::Place { node, .. } => {
                value["spec"]["nodeName"] = node.clone().into();
                value["spec"]["epoch"] = epochs.get(node.as_str()).copied().unwrap_or(0).into();
                match store.update("Instance", &ns, &name, value, expected) {
                    Ok(_) => record(
                        store,
                        &event(
                            about,
                            Severity::Normal,
                            "Scheduled",
                            format!("Assigned {ns}/{name} to {node}"),
                            "scheduler",
                        ),
                    )?,
                    Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            scheduler::Decision::Unschedulable { reason, .. } => {
                // Say it once per distinct reason, not on every pass.
                if value["status"]["message"].as_str() != Some(reason.as_str()) {
                    value["status"]["phase"] = "Pending".into();
                    value["status"]["message"] = reason.clone().into();
                    match store.update("Instance", &ns, &name, value, expected) {
                        Ok(_) => record(
                            store,
                            &event(
                                about,
                                Severity::Warning,
                                "FailedScheduling",
                                reason,
                                "scheduler",
                            ),
                        )?,
                        Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
    Ok(())
}
