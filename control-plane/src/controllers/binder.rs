//! The binder: places unbound Instances on Ready nodes that fit their
//! requests. A node counts as Ready while its agent heartbeats within the
//! grace period.
//!
//! This is the single-node-era placement (most-allocated fit); the scheduler
//! crate of the multi-node issue replaces `pick`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use flotilla_spec::event::ObjectRef;
use flotilla_spec::instance::Instance;
use flotilla_spec::meta::parse_rfc3339;
use flotilla_spec::node::Node;
use flotilla_spec::{parse_cpu_millis, parse_memory_bytes};
use serde_json::Value;

use super::events::{event, record, Severity};
use crate::store::{Store, StoreError};

/// What an instance reserves on its node.
fn requests(instance: &Instance) -> (u64, u64) {
    let r = &instance.spec.template.resources.requests;
    let memory = r
        .memory
        .as_deref()
        .and_then(|m| parse_memory_bytes(m).ok())
        .unwrap_or(0);
    let cpu = r
        .cpu
        .as_deref()
        .and_then(|c| parse_cpu_millis(c).ok())
        .unwrap_or(0);
    (memory, cpu)
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

/// Chooses a node for `instance`, or explains why none fits.
pub fn pick(
    instance: &Instance,
    nodes: &[Node],
    allocated: &HashMap<String, (u64, u64)>,
    grace: Duration,
) -> Result<String, String> {
    let (memory, cpu) = requests(instance);
    let mut reasons: HashMap<&str, usize> = HashMap::new();
    let mut best: Option<(u64, &str)> = None;
    for node in nodes {
        let name = node.metadata.name.as_str();
        let status = node.status.clone().unwrap_or_default();
        let (used_memory, used_cpu) = allocated.get(name).copied().unwrap_or_default();
        let reason = if !is_ready(node, grace) {
            Some("node not ready")
        } else if node.spec.unschedulable {
            Some("node unschedulable")
        } else if !instance
            .spec
            .template
            .node_selector
            .iter()
            .all(|(k, v)| node.metadata.labels.get(k) == Some(v))
        {
            Some("node selector mismatch")
        } else if used_memory + memory > status.capacity_memory_bytes {
            Some("insufficient memory")
        } else if used_cpu + cpu > status.capacity_cpu_millis {
            Some("insufficient cpu")
        } else {
            None
        };
        match reason {
            Some(r) => *reasons.entry(r).or_default() += 1,
            None => {
                // Most allocated first: keeps other nodes free.
                let score = used_memory + memory;
                if best.is_none_or(|(s, _)| score > s) {
                    best = Some((score, name));
                }
            }
        }
    }
    match best {
        Some((_, name)) => Ok(name.to_string()),
        None => {
            let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
            parts.sort();
            Err(format!(
                "0/{} nodes available: {}",
                nodes.len(),
                parts.join(", ")
            ))
        }
    }
}

/// One pass: bind what is unbound.
pub fn pass(store: &dyn Store, grace: Duration) -> Result<(), StoreError> {
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
    let mut allocated: HashMap<String, (u64, u64)> = HashMap::new();
    for (_, i) in instances
        .iter()
        .filter(|(_, i)| !i.spec.node_name.is_empty())
    {
        let (m, c) = requests(i);
        let entry = allocated.entry(i.spec.node_name.clone()).or_default();
        entry.0 += m;
        entry.1 += c;
    }
    for (mut value, instance) in instances
        .into_iter()
        .filter(|(_, i)| i.spec.node_name.is_empty())
    {
        let ns = instance.metadata.namespace.clone();
        let name = instance.metadata.name.clone();
        let expected = instance.metadata.resource_version.parse().ok();
        let about = ObjectRef {
            kind: "Instance".into(),
            namespace: ns.clone(),
            name: name.clone(),
        };
        match pick(&instance, &nodes, &allocated, grace) {
            Ok(node) => {
                value["spec"]["nodeName"] = node.clone().into();
                match store.update("Instance", &ns, &name, value, expected) {
                    Ok(_) => {
                        let (m, c) = requests(&instance);
                        let entry = allocated.entry(node.clone()).or_default();
                        entry.0 += m;
                        entry.1 += c;
                        record(
                            store,
                            &event(
                                about,
                                Severity::Normal,
                                "Scheduled",
                                format!("Assigned {ns}/{name} to {node}"),
                                "binder",
                            ),
                        )?;
                    }
                    Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(why) => {
                // Say it once per distinct reason, not on every pass.
                if value["status"]["message"].as_str() != Some(why.as_str()) {
                    value["status"]["phase"] = "Pending".into();
                    value["status"]["message"] = why.clone().into();
                    match store.update("Instance", &ns, &name, value, expected) {
                        Ok(_) => record(
                            store,
                            &event(about, Severity::Warning, "FailedScheduling", why, "binder"),
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
