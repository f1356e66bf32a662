//! Every-node workloads (`spec.placement.everyNode`, as a Kubernetes
//! DaemonSet): one instance for each Ready node that matches the
//! workload's `nodeSelector`.
//!
//! Built on the replica controller rather than beside it: the wanted count
//! is the number of such nodes, each instance carries the node it is for
//! ([`EVERY_NODE_LABEL`], which the binder turns into a placement on that
//! node alone), and instances for nodes no longer wanted are removed before
//! the replica reconcile sees them. Rollouts, health gates, rollbacks and
//! status are then the replica controller's, rolling node by node
//! (`maxUnavailable` 1, no surge, unless the workload sets its bounds).

use std::collections::BTreeSet;
use std::time::SystemTime;

use flotilla_spec::instance::Instance;
use flotilla_spec::node::Node;
use flotilla_spec::strategy::{IntOrPercent, RollingUpdate};
use flotilla_spec::workload::{Condition, Workload, WorkloadStatus, EVERY_NODE_LABEL};

use super::cache::Informer;
use super::revisions::Current;
use super::workloads::{reconcile as reconcile_replicas, Action};

/// The node an every-node instance is for (`None` for any other instance:
/// the label alone, which a workload's own labels could carry, pins
/// nothing).
pub fn target(instance: &Instance) -> Option<&str> {
    if !instance.spec.template.placement.every_node {
        return None;
    }
    instance
        .metadata
        .labels
        .get(EVERY_NODE_LABEL)
        .map(String::as_str)
}

/// Whether `node` should run an instance of `workload`: Ready, and
/// labelled as its `nodeSelector` asks. A cordoned node keeps its
/// instance (as a DaemonSet's pods tolerate `unschedulable`).
pub fn wants(workload: &Workload, node: &Node) -> bool {
    node.status.as_ref().is_some_and(|s| s.ready)
        && workload
            .spec
            .node_selector
            .iter()
            .all(|(k, v)| node.metadata.labels.get(k) == Some(v))
}

/// The nodes `workload` should run on, by name.
pub fn eligible(workload: &Workload, nodes: &Informer<Node>) -> BTreeSet<String> {
    nodes
        .decoded()
        .map(|(_, node)| node)
        .filter(|node| wants(workload, node))
        .map(|node| node.metadata.name.clone())
        .collect()
}

/// Decides what to do for an every-node workload whose instances are
/// `owned`, when `eligible` are the nodes it should run on. Pure, as
/// [`reconcile_replicas`].
pub fn reconcile(
    workload: &Workload,
    owned: &[&Instance],
    eligible: &BTreeSet<String>,
    revision: &Current,
    now: SystemTime,
) -> Vec<Action> {
    let spec = &workload.spec;
    let mut actions = Vec::new();
    // Per node, at most one instance of the current template and one of an
    // older one (a surge replaces in place); anything else goes.
    let mut kept: Vec<&Instance> = Vec::new();
    let mut seen: BTreeSet<(&str, bool)> = BTreeSet::new();
    let mut misscheduled = 0;
    let mut ordered = owned.to_vec();
    // The one kept of two alike is the Ready one, then the older.
    ordered.sort_by_key(|i| {
        (
            !i.status.as_ref().is_some_and(|s| s.ready),
            i.metadata.creation_timestamp.clone(),
        )
    });
    for instance in ordered {
        let current = instance.spec.is_made_from(spec, &revision.config_digest);
        match target(instance) {
            Some(node) if eligible.contains(node) => {
                if seen.insert((node, current)) {
                    kept.push(instance);
                } else {
                    actions.push(Action::Delete(instance.metadata.name.clone(), "Duplicate"));
                }
            }
            _ => {
                misscheduled += 1;
                actions.push(Action::Delete(
                    instance.metadata.name.clone(),
                    "NodeNotEligible",
                ));
            }
        }
    }
    let mut effective = workload.clone();
    effective.spec.replicas = eligible.len() as u32;
    if effective.spec.strategy.rolling_update.is_none() {
        effective.spec.strategy.rolling_update = Some(RollingUpdate {
            max_surge: IntOrPercent::Int(0),
            max_unavailable: IntOrPercent::Int(1),
        });
    }
    let replica_actions = reconcile_replicas(&effective, &kept, revision, now);
    // New instances go to the nodes holding none after this step (there
    // is no surge: validation refuses one), one each.
    let deleted: BTreeSet<&str> = replica_actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete(name, _) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let occupied: BTreeSet<&str> = kept
        .iter()
        .filter(|i| !deleted.contains(i.metadata.name.as_str()))
        .filter_map(|i| target(i))
        .collect();
    let mut free: Vec<String> = eligible
        .iter()
        .rev()
        .filter(|node| !occupied.contains(node.as_str()))
        .cloned()
        .collect();
    let mut status_written = None;
    for action in replica_actions {
        match action {
            Action::Create(mut instance) => {
                let Some(node) = free.pop() else {
                    continue;
                };
                instance
                    .metadata
                    .labels
                    .insert(EVERY_NODE_LABEL.into(), node);
                actions.push(Action::Create(instance));
            }
            Action::SetStatus(status) => status_written = Some(status),
            Action::RollBack { to, reason, status } => {
                let mut status = *status;
                status.misscheduled_replicas = misscheduled;
                actions.push(Action::RollBack {
                    to,
                    reason,
                    status: Box::new(status),
                });
            }
            other => actions.push(other),
        }
    }
    let previous = workload.status.clone().unwrap_or_default();
    let mut status = status_written.unwrap_or_else(|| previous.clone());
    status.misscheduled_replicas = misscheduled;
    scheduled_condition(&mut status, &previous, &kept, now);
    if status != previous {
        actions.push(Action::SetStatus(status));
    }
    actions
}

/// `Scheduled`: `False, Unschedulable` with the scheduler's reason while
/// a wanted node cannot take its instance (it does not fit); absent
/// otherwise. Kept as it was (its times too) while the reason holds.
fn scheduled_condition(
    status: &mut WorkloadStatus,
    previous: &WorkloadStatus,
    kept: &[&Instance],
    now: SystemTime,
) {
    status.conditions.retain(|c| c.kind != "Scheduled");
    let waiting = kept.iter().find_map(|i| {
        let message = i.status.as_ref().map(|s| s.message.as_str())?;
        (i.spec.node_name.is_empty() && !message.is_empty())
            .then(|| format!("node {}: {message}", target(i).unwrap_or_default()))
    });
    let Some(message) = waiting else {
        return;
    };
    let earlier = previous
        .conditions
        .iter()
        .find(|c| c.kind == "Scheduled" && c.message == message);
    status
        .conditions
        .push(earlier.cloned().unwrap_or_else(|| Condition {
            kind: "Scheduled".into(),
            status: "False".into(),
            reason: "Unschedulable".into(),
            message,
            last_transition_time: flotilla_spec::meta::rfc3339(now),
            last_update_time: None,
        }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_spec::instance::InstanceStatus;
    use std::collections::BTreeMap;

    fn collector(args: &[&str]) -> Workload {
        let mut w = Workload::default();
        w.metadata.name = "collector".into();
        w.metadata.namespace = "default".into();
        w.spec.placement.every_node = true;
        w.spec.progress_deadline_seconds = 600;
        w.spec.args = args.iter().map(|a| a.to_string()).collect();
        w
    }

    fn nodes(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    /// A ready instance of `w` running on `node`.
    fn running(w: &Workload, node: &str) -> Instance {
        let mut i = super::super::workloads::new_instance(w);
        i.metadata
            .labels
            .insert(EVERY_NODE_LABEL.into(), node.into());
        i.spec.node_name = node.into();
        i.status = Some(InstanceStatus {
            ready: true,
            ..Default::default()
        });
        i
    }

    /// Applies `actions` as the store, binder and agents would: a created
    /// instance is bound to its node at once and Ready one round later.
    fn apply(w: &mut Workload, instances: &mut Vec<Instance>, actions: Vec<Action>) {
        for i in instances.iter_mut() {
            if let Some(status) = i.status.as_mut() {
                status.ready = true;
            }
        }
        for action in actions {
            match action {
                Action::Create(mut i) => {
                    i.spec.node_name = target(&i).expect("a node").into();
                    i.status = Some(InstanceStatus::default());
                    instances.push(*i);
                }
                Action::Delete(name, _) => instances.retain(|i| i.metadata.name != name),
                Action::SetStatus(status) => w.status = Some(status),
                Action::RollBack { .. } => panic!("no rollback expected"),
            }
        }
    }

    fn step(w: &Workload, instances: &[Instance], eligible: &BTreeSet<String>) -> Vec<Action> {
        let owned: Vec<&Instance> = instances.iter().collect();
        reconcile(w, &owned, eligible, &Current::default(), SystemTime::now())
    }

    #[test]
    fn one_instance_per_eligible_node_and_none_elsewhere() {
        let mut w = collector(&["v1"]);
        let mut instances = vec![running(&w, "gone")];
        let eligible = nodes(&["a", "b", "c"]);
        let actions = step(&w, &instances, &eligible);
        let created: BTreeSet<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Create(i) => target(i).map(str::to_string),
                _ => None,
            })
            .collect();
        assert_eq!(created, eligible, "{actions:?}");
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::Delete(_, "NodeNotEligible"))));
        apply(&mut w, &mut instances, actions);
        let status = w.status.clone().unwrap();
        assert_eq!(
            (status.desired_replicas, status.misscheduled_replicas),
            (3, 1)
        );
        // It settles: nothing more to do once every instance is Ready.
        for _ in 0..3 {
            let actions = step(&w, &instances, &eligible);
            apply(&mut w, &mut instances, actions);
        }
        assert!(step(&w, &instances, &eligible).is_empty());
        let status = w.status.clone().unwrap();
        assert_eq!(
            (
                status.desired_replicas,
                status.replicas,
                status.scheduled_replicas,
                status.ready_replicas,
                status.misscheduled_replicas
            ),
            (3, 3, 3, 3, 0)
        );
        // A node leaving takes its instance with it, and only it.
        let fewer = nodes(&["a", "c"]);
        let actions = step(&w, &instances, &fewer);
        let deleted: Vec<&str> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Delete(name, _) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        let on_b: Vec<&str> = instances
            .iter()
            .filter(|i| target(i) == Some("b"))
            .map(|i| i.metadata.name.as_str())
            .collect();
        assert_eq!(deleted, on_b);
        assert!(!actions.iter().any(|a| matches!(a, Action::Create(_))));
    }

    #[test]
    fn a_new_version_rolls_node_by_node() {
        let old = collector(&["v1"]);
        let eligible = nodes(&["a", "b", "c", "d"]);
        let mut instances: Vec<Instance> = eligible.iter().map(|n| running(&old, n)).collect();
        let mut w = collector(&["v2"]);
        for round in 0..40 {
            let actions = step(&w, &instances, &eligible);
            if actions.is_empty() {
                break;
            }
            apply(&mut w, &mut instances, actions);
            let available = eligible
                .iter()
                .filter(|n| {
                    instances.iter().any(|i| {
                        target(i) == Some(n.as_str()) && i.status.as_ref().is_some_and(|s| s.ready)
                    })
                })
                .count();
            assert!(available >= 3, "round {round}: {available} of 4 available");
            let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
            for i in &instances {
                *per_node.entry(target(i).unwrap()).or_default() += 1;
            }
            assert!(per_node.values().all(|&n| n == 1), "{per_node:?}");
        }
        assert_eq!(instances.len(), 4);
        assert!(instances.iter().all(|i| i.spec.template.args == ["v2"]));
        assert!(step(&w, &instances, &eligible).is_empty());
    }

    #[test]
    fn a_node_that_cannot_fit_it_is_named_in_the_status() {
        let mut w = collector(&["v1"]);
        let eligible = nodes(&["a", "b"]);
        let mut waiting = running(&w, "b");
        waiting.spec.node_name.clear();
        waiting.status = Some(InstanceStatus {
            message: "0/2 nodes fit: 1 not enough memory, 1 node selector".into(),
            ..Default::default()
        });
        let instances = vec![running(&w, "a"), waiting];
        for action in step(&w, &instances, &eligible) {
            match action {
                Action::SetStatus(status) => w.status = Some(status),
                other => panic!("nothing but the status to write: {other:?}"),
            }
        }
        let status = w.status.clone().unwrap();
        assert_eq!((status.desired_replicas, status.scheduled_replicas), (2, 1));
        let scheduled = status
            .conditions
            .iter()
            .find(|c| c.kind == "Scheduled")
            .expect("a Scheduled condition");
        assert_eq!(
            (scheduled.status.as_str(), scheduled.reason.as_str()),
            ("False", "Unschedulable")
        );
        assert!(
            scheduled.message.starts_with("node b: 0/2 nodes fit"),
            "{}",
            scheduled.message
        );
        // Unchanged while the reason holds: no write per pass.
        let owned: Vec<&Instance> = instances.iter().collect();
        let again = reconcile(
            &w,
            &owned,
            &eligible,
            &Current::default(),
            SystemTime::now(),
        );
        assert!(again.is_empty(), "{again:?}");
    }
}
