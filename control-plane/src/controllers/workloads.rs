//! The workload controller: keeps `spec.replicas` Instances per Workload,
//! each carrying the Workload's current spec as its template; replaces
//! instances made from an older spec; deletes instances whose Workload is
//! gone; writes the Workload's status.

use flotilla_spec::event::ObjectRef;
use flotilla_spec::instance::{Instance, InstanceSpec};
use flotilla_spec::meta::{now_rfc3339, ObjectMeta, OwnerReference, API_VERSION};
use flotilla_spec::workload::{Condition, Workload, WorkloadStatus};

use std::time::SystemTime;

use super::cache::{Cache, Entry, Key};
use super::events::{event, record, Severity};
use super::revisions::Current;
use super::rollout;
use crate::store::{Store, StoreError};
use flotilla_spec::revision::TEMPLATE_HASH_LABEL;

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

/// Decides what to do for one workload given the instances it owns, at
/// `now`. Pure: the same inputs give the same actions (but for generated
/// names). Instances made from another template are replaced as the
/// workload's strategy allows ([`rollout::step`]).
pub fn reconcile(
    workload: &Workload,
    owned: &[&Instance],
    revision: &Current,
    now: SystemTime,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let (current, outdated): (Vec<&Instance>, Vec<&Instance>) = owned
        .iter()
        .copied()
        .partition(|i| i.spec.template.same_template(&workload.spec));
    let step = rollout::step(&workload.spec, &current, &outdated);
    let deleted: std::collections::HashSet<String> =
        step.delete.iter().map(|(name, _)| name.clone()).collect();
    let remaining = |set: &[&Instance]| -> usize {
        set.iter()
            .filter(|i| !deleted.contains(i.metadata.name.as_str()))
            .count()
    };
    let (updated, old) = (remaining(&current), remaining(&outdated));
    let changed = step.create > 0 || step.create_outdated > 0 || !step.delete.is_empty();
    // Paused mid-rollout: more of the version it was paused at (the newest
    // outdated instance's template), not of the new one.
    if let Some(model) = outdated.iter().max_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
    }) {
        for _ in 0..step.create_outdated {
            let mut instance = new_instance(workload);
            instance.spec.template = model.spec.template.clone();
            if let Some(hash) = model.metadata.labels.get(TEMPLATE_HASH_LABEL) {
                instance
                    .metadata
                    .labels
                    .insert(TEMPLATE_HASH_LABEL.into(), hash.clone());
            }
            actions.push(Action::Create(Box::new(instance)));
        }
    }
    for (name, reason) in step.delete {
        actions.push(Action::Delete(name, reason));
    }
    for _ in 0..step.create {
        let mut instance = new_instance(workload);
        instance
            .metadata
            .labels
            .insert(TEMPLATE_HASH_LABEL.into(), revision.hash.clone());
        actions.push(Action::Create(Box::new(instance)));
    }
    let ready = owned
        .iter()
        .filter(|i| !deleted.contains(i.metadata.name.as_str()))
        .filter(|i| rollout::available(i))
        .count() as u32;
    let updated_ready = current
        .iter()
        .filter(|i| !deleted.contains(i.metadata.name.as_str()))
        .filter(|i| rollout::available(i))
        .count() as u32;
    let wanted = workload.spec.replicas;
    let previous = workload.status.clone().unwrap_or_default();
    let complete = old == 0 && updated as u32 == wanted && updated_ready == wanted;
    let status = WorkloadStatus {
        observed_generation: workload.metadata.generation,
        replicas: (updated + old) as u32,
        updated_replicas: updated as u32,
        ready_replicas: ready,
        available_replicas: ready,
        revision: revision.number,
        template_hash: revision.hash.clone(),
        conditions: vec![
            available_condition(&previous, ready, wanted, now),
            progressing_condition(
                workload,
                &previous,
                complete,
                // A new template starts a new rollout (and a new deadline).
                changed || previous.template_hash != revision.hash,
                now,
            ),
        ],
    };
    if status != previous {
        actions.push(Action::SetStatus(status));
    }
    actions
}

fn rfc3339(time: SystemTime) -> String {
    flotilla_spec::meta::rfc3339(time)
}

/// `Available`: every wanted replica is ready.
fn available_condition(
    previous: &WorkloadStatus,
    ready: u32,
    wanted: u32,
    now: SystemTime,
) -> Condition {
    let available = ready >= wanted;
    let reason = if available {
        "MinimumReplicasAvailable"
    } else {
        "MinimumReplicasUnavailable"
    };
    condition(
        previous,
        "Available",
        available,
        reason,
        format!("{ready}/{wanted} instances ready"),
        now,
        false,
    )
}

/// `Progressing`, as a Deployment's: `True` while a rollout moves (its
/// `lastUpdateTime` the last move) or once it is complete
/// (`NewRevisionAvailable`); `False, ProgressDeadlineExceeded` when it has
/// not moved for `progressDeadlineSeconds`.
fn progressing_condition(
    workload: &Workload,
    previous: &WorkloadStatus,
    complete: bool,
    moved: bool,
    now: SystemTime,
) -> Condition {
    let name = &workload.metadata.name;
    let earlier = previous.conditions.iter().find(|c| c.kind == "Progressing");
    if complete {
        let message = format!("workload {name} has finished rolling out");
        return condition(
            previous,
            "Progressing",
            true,
            "NewRevisionAvailable",
            message,
            now,
            false,
        );
    }
    if workload.spec.paused {
        let message = format!("workload {name} is paused: flotilla rollout resume continues it");
        return condition(
            previous,
            "Progressing",
            false,
            "RolloutPaused",
            message,
            now,
            false,
        );
    }
    let new_rollout =
        earlier.is_none_or(|c| c.reason == "NewRevisionAvailable" || c.reason == "RolloutPaused");
    let last_move = earlier
        .and_then(|c| c.last_update_time.as_deref())
        .and_then(flotilla_spec::meta::parse_rfc3339)
        .filter(|_| !moved && !new_rollout);
    let deadline = std::time::Duration::from_secs(workload.spec.progress_deadline_seconds.into());
    match last_move {
        Some(at) if now.duration_since(at).unwrap_or_default() > deadline => condition(
            previous,
            "Progressing",
            false,
            "ProgressDeadlineExceeded",
            format!(
                "workload {name} has not progressed for {}s (progressDeadlineSeconds): its new instances do not become ready",
                workload.spec.progress_deadline_seconds
            ),
            now,
            false,
        ),
        Some(_) => earlier.cloned().unwrap_or_default(),
        None => condition(
            previous,
            "Progressing",
            true,
            "RevisionProgressing",
            format!("workload {name} is rolling out"),
            now,
            true,
        ),
    }
}

/// A condition of `kind`, keeping the previous transition time while its
/// status stays; `touch` moves `lastUpdateTime` to `now`.
fn condition(
    previous: &WorkloadStatus,
    kind: &str,
    status: bool,
    reason: &str,
    message: String,
    now: SystemTime,
    touch: bool,
) -> Condition {
    let word = if status { "True" } else { "False" };
    let earlier = previous.conditions.iter().find(|c| c.kind == kind);
    let last_update_time = match earlier {
        Some(c) if !touch && c.reason == reason => c.last_update_time.clone(),
        _ => Some(rfc3339(now)),
    };
    Condition {
        kind: kind.into(),
        status: word.into(),
        reason: reason.into(),
        message,
        last_transition_time: match earlier {
            Some(c) if c.status == word => c.last_transition_time.clone(),
            _ => rfc3339(now),
        },
        last_update_time,
    }
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
/// Returns whether the workload is settled: `false` while a rollout is under
/// way (its progress deadline is a matter of time, so it is looked at again
/// soon even if nothing changes).
pub fn reconcile_key(store: &dyn Store, cache: &Cache, key: &Key) -> Result<bool, StoreError> {
    let workload = match cache.workloads.get(key) {
        Some(Entry {
            object: Some(workload),
            ..
        }) => Some(workload),
        Some(Entry { object: None, .. }) => return Ok(true),
        None => None,
    };
    let mut mine = Vec::new();
    for entry in cache.owned_by(key) {
        let owner_uid = entry.value["metadata"]["ownerReferences"][0]["uid"].as_str();
        let owned = workload.is_some_and(|w| owner_uid == Some(w.metadata.uid.as_str()));
        match (&entry.object, owned) {
            (Some(instance), true) => mine.push(instance),
            (None, true) => return Ok(true),
            // Owned by no workload, or by an earlier one of this name.
            (_, false) => {
                let name = entry.value["metadata"]["name"].as_str().unwrap_or_default();
                delete_instance(store, &key.0, name)?;
            }
        }
    }
    let Some(workload) = workload else {
        super::revisions::forget(store, &key.0, &key.1)?;
        return Ok(true);
    };
    let revision = super::revisions::record(store, workload)?;
    let actions = reconcile(workload, &mine, &revision, SystemTime::now());
    let settled = mine
        .iter()
        .all(|i| i.spec.template.same_template(&workload.spec))
        && actions.is_empty();
    for action in actions {
        apply(store, workload, action)?;
    }
    Ok(settled)
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
    super::delete_if_present(store, "Instance", ns, name)
}

#[cfg(test)]
fn refs(instances: &[Instance]) -> Vec<&Instance> {
    instances.iter().collect()
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
    fn a_paused_rollout_scales_the_version_it_was_paused_at() {
        let old = workload(2, &["a"]);
        let owned: Vec<Instance> = (0..2).map(|_| new_instance(&old)).collect();
        let mut paused = workload(3, &["b"]);
        paused.spec.paused = true;
        let actions = reconcile(
            &paused,
            &refs(&owned),
            &Current::default(),
            SystemTime::now(),
        );
        let created: Vec<&Instance> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Create(i) => Some(&**i),
                _ => None,
            })
            .collect();
        assert_eq!(created.len(), 1, "{actions:?}");
        assert_eq!(created[0].spec.template.args, ["a"]);
        assert!(deletes(&actions).is_empty());
    }

    #[test]
    fn scaling_keeps_the_instances_there_are_and_a_new_template_replaces_them() {
        let old = workload(5, &["a"]);
        let owned: Vec<Instance> = (0..3).map(|_| new_instance(&old)).collect();
        // Made when 5 were wanted: 3 of them are still what 3 replicas ask for.
        let scaled = reconcile(
            &workload(3, &["a"]),
            &refs(&owned),
            &Current::default(),
            SystemTime::now(),
        );
        assert!(deletes(&scaled).is_empty(), "{scaled:?}");
        assert!(!scaled.iter().any(|a| matches!(a, Action::Create(_))));
        // Scaled down to 2: one goes, as ScaledDown.
        assert_eq!(
            deletes(&reconcile(
                &workload(2, &["a"]),
                &refs(&owned),
                &Current::default(),
                SystemTime::now()
            )),
            ["ScaledDown"]
        );
        // Another template (args): a rolling update begins. 25% of 3 is a
        // surge of 1 (rounded up) and no unavailability (rounded down): one
        // new instance, and no old one goes before a new one is ready.
        let changed = reconcile(
            &workload(3, &["b"]),
            &refs(&owned),
            &Current::default(),
            SystemTime::now(),
        );
        assert!(deletes(&changed).is_empty(), "{changed:?}");
        let created = changed
            .iter()
            .filter(|a| matches!(a, Action::Create(_)))
            .count();
        assert_eq!(created, 1);
    }
}

#[cfg(test)]
mod progress_tests {
    use super::*;
    use std::time::Duration;

    fn condition_of(actions: &[Action], kind: &str) -> Condition {
        actions
            .iter()
            .find_map(|a| match a {
                Action::SetStatus(s) => s.conditions.iter().find(|c| c.kind == kind).cloned(),
                _ => None,
            })
            .expect("a status")
    }

    #[test]
    fn a_rollout_that_stops_moving_exceeds_its_deadline_and_one_that_finishes_says_so() {
        let mut old = Workload::default();
        old.metadata.name = "web".into();
        old.spec.replicas = 2;
        let mut instances: Vec<Instance> = (0..2).map(|_| new_instance(&old)).collect();
        for i in &mut instances {
            i.status = Some(flotilla_spec::instance::InstanceStatus {
                ready: true,
                ..Default::default()
            });
        }
        let mut web = old.clone();
        web.spec.args = vec!["v2".into()];
        web.spec.progress_deadline_seconds = 60;
        let start = SystemTime::now();
        // The rollout moves: Progressing, last moved now.
        let first = reconcile(&web, &refs(&instances), &Current::default(), start);
        let progressing = condition_of(&first, "Progressing");
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_str()),
            ("True", "RevisionProgressing")
        );
        web.status = Some(WorkloadStatus {
            conditions: vec![progressing],
            ..Default::default()
        });
        // A new instance that never gets ready: the same state, later.
        let mut stuck = instances.clone();
        stuck.push(new_instance(&web));
        let later = reconcile(
            &web,
            &refs(&stuck),
            &Current::default(),
            start + Duration::from_secs(30),
        );
        assert!(
            later.iter().all(|a| !matches!(a, Action::SetStatus(s) if s.conditions.iter().any(|c| c.reason == "ProgressDeadlineExceeded"))),
            "within the deadline: {later:?}"
        );
        let past = reconcile(
            &web,
            &refs(&stuck),
            &Current::default(),
            start + Duration::from_secs(61),
        );
        let failed = condition_of(&past, "Progressing");
        assert_eq!(
            (failed.status.as_str(), failed.reason.as_str()),
            ("False", "ProgressDeadlineExceeded")
        );
        // Every instance new and ready: the rollout is complete.
        let mut done: Vec<Instance> = (0..2).map(|_| new_instance(&web)).collect();
        for i in &mut done {
            i.status = Some(flotilla_spec::instance::InstanceStatus {
                ready: true,
                ..Default::default()
            });
        }
        let complete = condition_of(
            &reconcile(
                &web,
                &refs(&done),
                &Current::default(),
                start + Duration::from_secs(90),
            ),
            "Progressing",
        );
        assert_eq!(complete.reason, "NewRevisionAvailable");
    }
}
