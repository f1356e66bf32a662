//! The workload controller: keeps `spec.replicas` Instances per Workload,
//! each carrying the Workload's current spec as its template; replaces
//! instances made from an older spec; deletes instances whose Workload is
//! gone; writes the Workload's status.

use flotilla_spec::event::ObjectRef;
use flotilla_spec::instance::{Instance, InstanceSpec, Phase};
use flotilla_spec::meta::{now_rfc3339, ObjectMeta, OwnerReference, API_VERSION};
use flotilla_spec::workload::{Condition, Workload, WorkloadStatus};

use super::cache::{Cache, Entry, Key};
use super::events::{event, record, Severity};
use crate::store::{Store, StoreError};

/// Label carrying the owning workload's name.
pub const WORKLOAD_LABEL: &str = "flotilla.dev/workload";

/// What a reconcile decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this instance.
    Create(Box<Instance>),
    /// Delete the instance with this name, for this reason.
    Delete(String, &'static str),
    /// Write this status on the workload.
    SetStatus(WorkloadStatus),
}

/// Decides what to do for one workload given the instances it owns. Pure:
/// the same inputs give the same actions (but for generated names).
pub fn reconcile(workload: &Workload, owned: &[Instance]) -> Vec<Action> {
    let mut actions = Vec::new();
    let (current, outdated): (Vec<&Instance>, Vec<&Instance>) = owned
        .iter()
        .partition(|i| i.spec.template.same_template(&workload.spec));
    for instance in &outdated {
        actions.push(Action::Delete(
            instance.metadata.name.clone(),
            "OutdatedSpec",
        ));
    }
    let wanted = workload.spec.replicas as usize;
    let mut kept = current.clone();
    if kept.len() > wanted {
        // Remove the least useful first: not running, then the newest.
        kept.sort_by_key(|i| {
            let running = i.status.as_ref().is_some_and(|s| s.phase == Phase::Running);
            (
                !running,
                std::cmp::Reverse(i.metadata.creation_timestamp.clone()),
            )
        });
        for extra in kept.split_off(wanted) {
            actions.push(Action::Delete(extra.metadata.name.clone(), "ScaledDown"));
        }
    }
    for _ in kept.len()..wanted {
        actions.push(Action::Create(Box::new(new_instance(workload))));
    }
    let ready = kept
        .iter()
        .filter(|i| i.status.as_ref().is_some_and(|s| s.ready))
        .count() as u32;
    let available = ready as usize >= wanted;
    let previous = workload.status.clone().unwrap_or_default();
    let old_condition = previous.conditions.iter().find(|c| c.kind == "Available");
    let status_word = if available { "True" } else { "False" };
    let condition = Condition {
        kind: "Available".into(),
        status: status_word.into(),
        reason: if available {
            "MinimumReplicasAvailable"
        } else {
            "MinimumReplicasUnavailable"
        }
        .into(),
        message: format!("{ready}/{wanted} instances ready"),
        last_transition_time: match old_condition {
            Some(c) if c.status == status_word => c.last_transition_time.clone(),
            _ => now_rfc3339(),
        },
    };
    let status = WorkloadStatus {
        observed_generation: workload.metadata.generation,
        replicas: kept.len().min(wanted) as u32,
        ready_replicas: ready,
        conditions: vec![condition],
    };
    if status != previous {
        actions.push(Action::SetStatus(status));
    }
    actions
}

fn new_instance(workload: &Workload) -> Instance {
    let alphabet = flotilla_spec::instance::NAME_SUFFIX_ALPHABET;
    let suffix: String = (0..flotilla_spec::instance::NAME_SUFFIX_LEN)
        .map(|_| alphabet[rand::random_range(0..alphabet.len())] as char)
        .collect();
    let mut labels = workload.metadata.labels.clone();
    labels.insert(WORKLOAD_LABEL.into(), workload.metadata.name.clone());
    Instance {
        api_version: API_VERSION.into(),
        kind: "Instance".into(),
        metadata: ObjectMeta {
            name: format!("{}-{suffix}", workload.metadata.name),
            namespace: workload.metadata.namespace.clone(),
            labels,
            owner_references: vec![OwnerReference {
                kind: "Workload".into(),
                name: workload.metadata.name.clone(),
                uid: workload.metadata.uid.clone(),
            }],
            ..ObjectMeta::default()
        },
        spec: InstanceSpec {
            workload: workload.metadata.name.clone(),
            node_name: String::new(),
            epoch: 0,
            template: workload.spec.clone(),
        },
        status: None,
    }
}

/// Brings one workload's instances to its spec (the work queue's unit of
/// work). A workload that is gone, or was re-created under the same name
/// (another uid), leaves instances no workload owns: they are deleted. A
/// workload or one of its instances that this version cannot decode is left
/// alone, rather than given replacements or deleted on a misreading.
pub fn reconcile_key(store: &dyn Store, cache: &Cache, key: &Key) -> Result<(), StoreError> {
    let workload = match cache.workloads.get(key) {
        Some(Entry {
            object: Some(workload),
            ..
        }) => Some(workload),
        Some(Entry { object: None, .. }) => return Ok(()),
        None => None,
    };
    let mut mine = Vec::new();
    for entry in cache.owned_by(key) {
        let owner_uid = entry.value["metadata"]["ownerReferences"][0]["uid"].as_str();
        let owned = workload.is_some_and(|w| owner_uid == Some(w.metadata.uid.as_str()));
        match (&entry.object, owned) {
            (Some(instance), true) => mine.push(instance.clone()),
            (None, true) => return Ok(()),
            // Owned by no workload, or by an earlier one of this name.
            (_, false) => {
                let name = entry.value["metadata"]["name"].as_str().unwrap_or_default();
                delete_instance(store, &key.0, name)?;
            }
        }
    }
    if let Some(workload) = workload {
        for action in reconcile(workload, &mine) {
            apply(store, workload, action)?;
        }
    }
    Ok(())
}

fn workload_ref(w: &Workload) -> ObjectRef {
    ObjectRef {
        kind: "Workload".into(),
        namespace: w.metadata.namespace.clone(),
        name: w.metadata.name.clone(),
    }
}

fn apply(store: &dyn Store, workload: &Workload, action: Action) -> Result<(), StoreError> {
    let ns = &workload.metadata.namespace;
    match action {
        Action::Create(instance) => {
            let mut value =
                serde_json::to_value(&*instance).map_err(|e| StoreError::Backend(e.to_string()))?;
            value["metadata"]["uid"] = uuid::Uuid::new_v4().to_string().into();
            value["metadata"]["creationTimestamp"] = now_rfc3339().into();
            value["metadata"]["generation"] = 1.into();
            store.create("Instance", ns, &instance.metadata.name, value)?;
            let message = format!("Created instance {}", instance.metadata.name);
            record(
                store,
                &event(
                    workload_ref(workload),
                    Severity::Normal,
                    "SuccessfulCreate",
                    message,
                    "workload-controller",
                ),
            )?;
        }
        Action::Delete(name, reason) => {
            delete_instance(store, ns, &name)?;
            let message = format!("Deleted instance {name} ({reason})");
            record(
                store,
                &event(
                    workload_ref(workload),
                    Severity::Normal,
                    "SuccessfulDelete",
                    message,
                    "workload-controller",
                ),
            )?;
        }
        Action::SetStatus(status) => {
            if let Some(mut stored) = store.get("Workload", ns, &workload.metadata.name)? {
                // Only if the workload did not change since we read it; the
                // next pass sees the new one anyway.
                // Only onto the version we reconciled: if the workload changed
                // meanwhile, the next pass computes its status afresh.
                let expected = workload.metadata.resource_version.parse().ok();
                stored["status"] = serde_json::to_value(&status)
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                match store.update("Workload", ns, &workload.metadata.name, stored, expected) {
                    Ok(_) | Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound { .. }) => {
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

fn delete_instance(store: &dyn Store, ns: &str, name: &str) -> Result<(), StoreError> {
    match store.delete("Instance", ns, name) {
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(replicas: u32, args: &[&str]) -> Workload {
        let mut w = Workload::default();
        w.metadata.name = "web".into();
        w.metadata.namespace = "default".into();
        w.spec.replicas = replicas;
        w.spec.args = args.iter().map(|a| a.to_string()).collect();
        w
    }

    fn deletes(actions: &[Action]) -> Vec<&'static str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Delete(_, why) => Some(*why),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn scaling_keeps_the_instances_there_are_and_a_new_template_replaces_them() {
        let old = workload(5, &["a"]);
        let owned: Vec<Instance> = (0..3).map(|_| new_instance(&old)).collect();
        // Made when 5 were wanted: 3 of them are still what 3 replicas ask for.
        let scaled = reconcile(&workload(3, &["a"]), &owned);
        assert!(deletes(&scaled).is_empty(), "{scaled:?}");
        assert!(!scaled.iter().any(|a| matches!(a, Action::Create(_))));
        // Scaled down to 2: one goes, as ScaledDown.
        assert_eq!(
            deletes(&reconcile(&workload(2, &["a"]), &owned)),
            ["ScaledDown"]
        );
        // Another template (args): all are outdated.
        let changed = reconcile(&workload(3, &["b"]), &owned);
        assert_eq!(deletes(&changed), ["OutdatedSpec"; 3]);
    }
}
