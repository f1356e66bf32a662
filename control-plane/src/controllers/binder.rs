//! The binder: places unbound Instances on Ready nodes that fit their
//! requests, recording in each binding the node's fencing epoch.
//!
//! Placement itself is `flotilla-scheduler` (pure); this module builds its
//! snapshot from the store and writes its decisions back.

use std::collections::HashMap;

use flotilla_scheduler as scheduler;
use flotilla_spec::event::ObjectRef;
use flotilla_spec::instance::{Instance, Phase};
use flotilla_spec::node::{Node, HOSTNAME_LABEL};
use flotilla_spec::workload::PlacementStrategy;
use serde_json::Value;

use super::cache::Cache;
use super::events::{event, record, Severity};
use super::volumes::{self, Pin};
use crate::store::{Store, StoreError};

/// What an instance reserves on its node.
fn requests(instance: &Instance) -> (u64, u64) {
    instance.spec.template.resources.requests.memory_and_cpu()
}

/// The scheduler's strategy for a workload's `spec.placement.strategy`.
fn strategy_of(instance: &Instance) -> Option<scheduler::Strategy> {
    instance.spec.template.placement.strategy.map(|s| match s {
        PlacementStrategy::Binpack => scheduler::Strategy::Binpack,
        PlacementStrategy::Spread => scheduler::Strategy::Spread,
    })
}

/// One pass: bind what is unbound, with the placements of the scheduler
/// crate (`strategy` unless the workload names its own), on the nodes the
/// node-lifecycle controller found Ready.
pub fn pass(
    store: &dyn Store,
    cache: &Cache,
    nodes: &[(Node, bool)],
    silences: &HashMap<String, std::time::Duration>,
    strategy: scheduler::Strategy,
) -> Result<(), StoreError> {
    let instances = || cache.instances.decoded();
    if !instances().any(|(_, i)| i.spec.node_name.is_empty()) {
        return Ok(());
    }
    // Instances on nodes that are gone or not Ready wait for the
    // node-lifecycle controller, which evicts them.
    let mut snapshot: Vec<scheduler::Node> = nodes
        .iter()
        .map(|(n, ready)| {
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
                ready: *ready,
                unschedulable: n.spec.unschedulable,
                disk_pressure: status.disk_pressure,
                cached_modules: Default::default(),
                max_instances: status.capacity_instances,
                instances: 0,
            }
        })
        .collect();
    let index: HashMap<String, usize> = snapshot
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), i))
        .collect();
    for (_, i) in instances().filter(|(_, i)| !i.spec.node_name.is_empty()) {
        if let Some(node) = index.get(&i.spec.node_name).map(|&k| &mut snapshot[k]) {
            // A finished run has given its memory, CPU and runtime slot
            // back (a Job's finished attempts stay, for their counts and
            // logs, holding nothing).
            let finished = i
                .status
                .as_ref()
                .is_some_and(|s| matches!(s.phase, Phase::Succeeded | Phase::Failed));
            if !finished {
                let (memory, cpu) = requests(i);
                node.allocated.memory += memory;
                node.allocated.cpu += cpu;
                node.instances = node.instances.saturating_add(1);
            }
            if let Some(digest) = &i.spec.template.module.sha256 {
                node.cached_modules.insert(digest.clone());
            }
        }
    }
    let unbound: Vec<(Value, &Instance)> = instances()
        .filter(|(_, i)| i.spec.node_name.is_empty())
        .map(|(value, i)| (value.clone(), i))
        .collect();
    let mut pending = Vec::with_capacity(unbound.len());
    for (_, i) in &unbound {
        // A stateful replica goes back to the node holding its volumes.
        let mut node_selector = i.spec.template.node_selector.clone();
        if let Pin::Node(node) = volumes::pin(store, i, silences)? {
            node_selector.insert(HOSTNAME_LABEL.to_string(), node);
        }
        // An every-node instance goes to its node, cordoned or not.
        let mut tolerations = Vec::new();
        if let Some(node) = super::every_node::target(i) {
            node_selector.insert(HOSTNAME_LABEL.to_string(), node.to_string());
            tolerations.push(scheduler::Toleration {
                key: scheduler::UNSCHEDULABLE_TAINT.into(),
                value: None,
            });
        }
        pending.push({
            let (memory, cpu) = requests(i);
            scheduler::Pending {
                id: format!("{}/{}", i.metadata.namespace, i.metadata.name),
                requests: scheduler::Resources { memory, cpu },
                node_selector,
                // Spreading wins over locality: the nodes that have the
                // module cached are mostly those running the workload's other
                // replicas (and, mid-rollout, its old ones).
                module: match strategy_of(i).unwrap_or(strategy) {
                    scheduler::Strategy::Spread => None,
                    scheduler::Strategy::Binpack => i.spec.template.module.sha256.clone(),
                },
                strategy: strategy_of(i),
                tolerations,
                ..Default::default()
            }
        });
    }
    let started = std::time::Instant::now();
    let decisions = scheduler::schedule(&mut snapshot, &pending, strategy, &mut Default::default());
    if !pending.is_empty() {
        crate::telemetry::scheduling_round(started);
    }
    let epochs: HashMap<&str, u64> = nodes
        .iter()
        .map(|(n, _)| (n.metadata.name.as_str(), n.spec.epoch))
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
                crate::telemetry::scheduled(true);
                value["spec"]["nodeName"] = node.clone().into();
                value["spec"]["epoch"] = epochs.get(node.as_str()).copied().unwrap_or(0).into();
                // Its volumes first: a replica never runs without them (if
                // the binding then loses a race, they pin it here).
                if let Err(e) = volumes::bind(store, instance, &node) {
                    tracing::warn!("instance {ns}/{name}: {e}");
                    continue;
                }
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
                crate::telemetry::scheduled(false);
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
