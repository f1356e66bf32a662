//! Persistent volumes of stateful replicas, for the binder: a replica
//! whose `Volume` objects exist goes back to the node holding them; one
//! whose node has been gone longer than `persistentVolumeReclaimAfter`
//! has them dropped (an Event says the data is lost) and is placed afresh;
//! a replica placed the first time gets them, bound to its node. A
//! workload deleted takes its volumes along unless they are `Retain`.

use std::collections::HashMap;
use std::time::Duration;

use flotilla_spec::event::ObjectRef;
use flotilla_spec::instance::Instance;
use flotilla_spec::meta::{now_rfc3339, API_VERSION};
use flotilla_spec::volume::volume_name;
use flotilla_spec::workload::{ReclaimPolicy, ORDINAL_LABEL};
use serde_json::json;

use super::events::{event, record, Severity};
use super::workloads::{ordinal, WORKLOAD_LABEL};
use crate::store::{Store, StoreError};

/// Where a stateful replica may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// Anywhere (it has no volumes yet, or they were reclaimed).
    Free,
    /// Only to this node, which holds its volumes.
    Node(String),
}

/// The names of the replica's volumes.
fn names(instance: &Instance, ordinal: u32) -> Vec<String> {
    instance
        .spec
        .template
        .persistent_volumes()
        .map(|(v, _)| volume_name(&v.name, &instance.spec.workload, ordinal))
        .collect()
}

/// Where an unbound stateful replica may go; drops its volumes when their
/// node has been gone for longer than the workload allows. `silences`:
/// how long each node has gone without renewing its lease, on the
/// node-lifecycle controller's own clock (agents' clocks may be off; a
/// node missing from it no longer exists).
pub fn pin(
    store: &dyn Store,
    instance: &Instance,
    silences: &HashMap<String, Duration>,
) -> Result<Pin, StoreError> {
    let Some(ordinal) = ordinal(instance).filter(|_| instance.spec.template.is_stateful()) else {
        return Ok(Pin::Free);
    };
    let ns = &instance.metadata.namespace;
    let mut held = None;
    for name in names(instance, ordinal) {
        if let Some(volume) = store.get("Volume", ns, &name)? {
            held = Some(
                volume["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            break;
        }
    }
    let Some(node) = held else {
        return Ok(Pin::Free);
    };
    let silent = silences.get(&node).copied();
    let reclaim_after = instance.spec.template.reclaim_after();
    if silent.is_some_and(|s| s <= reclaim_after) {
        return Ok(Pin::Node(node));
    }
    // Gone for good: the replica is made again elsewhere, empty.
    for name in names(instance, ordinal) {
        match store.delete("Volume", ns, &name) {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let gone = match silent {
        Some(s) => format!("has not been heard from for {}s", s.as_secs()),
        None => "no longer exists".to_string(),
    };
    record(
        store,
        &event(
            ObjectRef {
                kind: "Workload".into(),
                namespace: ns.clone(),
                name: instance.spec.workload.clone(),
            },
            Severity::Warning,
            "VolumeLost",
            format!(
                "node {node}, which held the volumes of replica {}-{ordinal}, {gone} (persistentVolumeReclaimAfter {}s): the replica is made again elsewhere with empty volumes; the data on {node} is lost",
                instance.spec.workload,
                reclaim_after.as_secs()
            ),
            "scheduler",
        ),
    )?;
    Ok(Pin::Free)
}

/// Makes the volumes a stateful replica placed on `node` does not have yet.
pub fn bind(store: &dyn Store, instance: &Instance, node: &str) -> Result<(), StoreError> {
    let Some(ordinal) = ordinal(instance).filter(|_| instance.spec.template.is_stateful()) else {
        return Ok(());
    };
    let ns = &instance.metadata.namespace;
    let workload = &instance.spec.workload;
    for (volume, persistent) in instance.spec.template.persistent_volumes() {
        let name = volume_name(&volume.name, workload, ordinal);
        let object = json!({
            "apiVersion": API_VERSION,
            "kind": "Volume",
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": now_rfc3339(),
                "labels": {WORKLOAD_LABEL: workload, ORDINAL_LABEL: ordinal.to_string()},
            },
            "spec": {
                "workload": workload,
                "volume": volume.name,
                "ordinal": ordinal,
                "size": persistent.size,
                "nodeName": node,
                "reclaimPolicy": persistent.reclaim_policy,
            },
        });
        match store.create("Volume", ns, &name, object) {
            Ok(_) => {}
            Err(StoreError::AlreadyExists { .. }) => {
                // Made by an earlier pass for this replica, on this node
                // (pinned there); anything else is not this replica's.
                let existing = store.get("Volume", ns, &name)?.unwrap_or_default();
                let ours = existing["spec"]["workload"].as_str() == Some(workload)
                    && existing["spec"]["nodeName"].as_str() == Some(node);
                if !ours {
                    return Err(StoreError::Backend(format!(
                        "volume {ns}/{name} exists for workload {} on node {}, not for {workload} on {node}: delete it (flotilla delete volume {name} -n {ns}) if its data is not needed",
                        existing["spec"]["workload"], existing["spec"]["nodeName"]
                    )));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deletes the volumes of deleted workload `ns/workload` but those it
/// asked to retain.
pub fn release(store: &dyn Store, ns: &str, workload: &str) -> Result<(), StoreError> {
    for volume in store.list("Volume", Some(ns))?.items {
        let spec = &volume["spec"];
        let retained = serde_json::from_value::<ReclaimPolicy>(spec["reclaimPolicy"].clone())
            .is_ok_and(|p| p == ReclaimPolicy::Retain);
        if spec["workload"].as_str() != Some(workload) || retained {
            continue;
        }
        let name = volume["metadata"]["name"].as_str().unwrap_or_default();
        match store.delete("Volume", ns, name) {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use flotilla_spec::workload::{PersistentVolume, Volume, WorkloadSpec};

    fn replica(ordinal: u32, policy: ReclaimPolicy) -> Instance {
        let mut instance = Instance::default();
        instance.metadata.namespace = "default".into();
        instance.metadata.name = format!("db-{ordinal}");
        instance
            .metadata
            .labels
            .insert(ORDINAL_LABEL.into(), ordinal.to_string());
        instance.spec.workload = "db".into();
        instance.spec.template = WorkloadSpec {
            volumes: vec![Volume {
                name: "data".into(),
                persistent: Some(PersistentVolume {
                    size: "1Mi".into(),
                    reclaim_policy: policy,
                }),
                ..Volume::default()
            }],
            persistent_volume_reclaim_after: Some("1m".into()),
            ..WorkloadSpec::default()
        };
        instance
    }

    #[test]
    fn volumes_pin_their_replica_until_reclaimed_and_go_with_the_workload_unless_retained() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
        let (first, second) = (
            replica(0, ReclaimPolicy::Delete),
            replica(1, ReclaimPolicy::Retain),
        );
        let silences =
            |secs: u64| HashMap::from([("edge-a".to_string(), Duration::from_secs(secs))]);
        assert_eq!(
            pin(&store, &first, &silences(0)).unwrap(),
            Pin::Free,
            "no volume yet"
        );
        bind(&store, &first, "edge-a").unwrap();
        bind(&store, &first, "edge-a").unwrap();
        bind(&store, &second, "edge-b").unwrap();
        // Another node for the same volume: refused, saying what to do.
        let e = bind(&store, &first, "edge-b").unwrap_err().to_string();
        assert!(e.contains("flotilla delete volume data.db-0"), "{e}");
        assert_eq!(
            pin(&store, &first, &silences(0)).unwrap(),
            Pin::Node("edge-a".into())
        );
        // Silent for 30 s of the 1m allowed: still waited for.
        assert_eq!(
            pin(&store, &first, &silences(30)).unwrap(),
            Pin::Node("edge-a".into())
        );
        // Past it: reclaimed, placed afresh, the data declared lost.
        assert_eq!(pin(&store, &first, &silences(61)).unwrap(), Pin::Free);
        assert!(store
            .get("Volume", "default", "data.db-0")
            .unwrap()
            .is_none());
        let events = store.list("Event", Some("default")).unwrap().items;
        assert!(events.iter().any(|e| e["spec"]["reason"] == "VolumeLost"));
        // A node that no longer exists: reclaimed at once.
        assert_eq!(pin(&store, &second, &HashMap::new()).unwrap(), Pin::Free);
        bind(&store, &first, "edge-a").unwrap();
        bind(&store, &second, "edge-b").unwrap();
        release(&store, "default", "db").unwrap();
        assert!(store
            .get("Volume", "default", "data.db-0")
            .unwrap()
            .is_none());
        assert!(
            store
                .get("Volume", "default", "data.db-1")
                .unwrap()
                .is_some(),
            "Retain keeps it"
        );
    }
}
