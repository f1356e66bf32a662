//! The workload controller: keeps `spec.replicas` Instances per Workload,
//! each carrying the Workload's current spec as its template; replaces
//! instances made from an older spec; deletes instances whose Workload is
//! gone; writes the Workload's status.

use flotilla_spec::event::ObjectRef;
use flotilla_spec::instance::{Instance, InstanceSpec};
use flotilla_spec::meta::{now_rfc3339, ObjectMeta, OwnerReference, API_VERSION};
use flotilla_spec::strategy::{StrategyKind, PROMOTE_ANNOTATION};
use flotilla_spec::workload::{
    CanaryStatus, Condition, Execution, Workload, WorkloadSpec, WorkloadStatus, ORDINAL_LABEL,
};

use std::collections::HashSet;
use std::time::SystemTime;

use super::rollout::{CanaryState, Gate, Promotion};

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
    /// The rollout failed: put the template of the revision with this hash
    /// back into the workload's spec, with this status, and say why.
    RollBack {
        /// The template hash of the last revision that completed.
        to: String,
        /// Why the rollout failed.
        reason: String,
        /// The status to write with it.
        status: Box<WorkloadStatus>,
    },
}

/// Restarts of a new instance within a rollout that make it a crash loop.
pub const CRASH_LOOP_RESTARTS: u32 = 3;

/// Decides what to do for one workload given the instances it owns, at
/// `now`. Pure: the same inputs give the same actions (but for generated
/// names). Instances made from another template are replaced as the
/// workload's strategy allows ([`rollout::step`], [`rollout::canary`]); a
/// rollout that fails reverts to the last revision that completed.
pub fn reconcile<'a>(
    workload: &Workload,
    owned: &[&'a Instance],
    revision: &Current,
    now: SystemTime,
) -> Vec<Action> {
    let spec = &workload.spec;
    let gate = Gate::of(spec, now);
    let previous = workload.status.clone().unwrap_or_default();
    let (current, outdated): (Vec<&Instance>, Vec<&Instance>) = owned
        .iter()
        .copied()
        .partition(|i| i.spec.is_made_from(spec, &revision.config_digest));
    // A canary tries a new template against the stable one; going back to
    // the stable template (a rollback) is no canary: the new instances go.
    let is_canary = spec.strategy.kind == StrategyKind::Canary
        && !outdated.is_empty()
        && revision.hash != previous.current_template_hash;
    let http = spec.execution == Execution::Http;
    let canary_before = previous
        .canary
        .as_ref()
        .filter(|c| c.hash == revision.hash)
        .map(|c| CanaryState {
            step: c.step as usize,
            weight: c.weight,
            pause_start: c
                .pause_start_time
                .as_deref()
                .and_then(flotilla_spec::meta::parse_rfc3339),
        })
        .unwrap_or_default();
    // The canary's answers so far (node-reported: summed without overflow).
    let (requests, server_errors) = current.iter().fold((0u64, 0u64), |(r, e), i| {
        let s = i.status.clone().unwrap_or_default();
        (
            r.saturating_add(s.requests),
            e.saturating_add(s.server_errors),
        )
    });
    // A rollout that fails reverts, when there is a completed revision to
    // go back to (not while reverting, nor while paused).
    let impossible_before = previous.template_hash == revision.hash
        && previous
            .conditions
            .iter()
            .any(|c| c.kind == "Progressing" && c.reason == "RollbackImpossible");
    let reverting_possible = !previous.current_template_hash.is_empty()
        && previous.current_template_hash != revision.hash
        && !spec.paused
        && !impossible_before;
    let instance_failure = reverting_possible
        .then(|| instance_failure(workload, &current, (requests, server_errors)))
        .flatten();
    // A failed canary that is not rolled back stays where it stands.
    let held = !spec.strategy.auto_rollback
        && matches!(instance_failure, Some((Failure::CanaryAnalysis, _)));
    let (step, canary_now) = if held || (is_canary && spec.paused) {
        (rollout::Step::default(), canary_before)
    } else if is_canary {
        rollout::canary(
            spec,
            &current,
            &outdated,
            &gate,
            canary_before,
            promotion(workload, revision.number),
            http,
        )
    } else {
        (
            rollout::step(spec, &current, &outdated, &gate),
            canary_before,
        )
    };
    let deleted: HashSet<&str> = step.delete.iter().map(|(name, _)| name.as_str()).collect();
    let kept = |set: &Vec<&'a Instance>| -> Vec<&'a Instance> {
        set.iter()
            .copied()
            .filter(|i| !deleted.contains(i.metadata.name.as_str()))
            .collect()
    };
    let (updated, old) = (kept(&current), kept(&outdated));
    let count_available =
        |set: &[&Instance]| set.iter().filter(|i| gate.available(i)).count() as u32;
    let wanted = spec.replicas;
    let updated_available = count_available(&updated);
    let complete = old.is_empty() && updated.len() as u32 == wanted && updated_available == wanted;
    let moved = step.create > 0
        || step.create_outdated > 0
        || !step.delete.is_empty()
        || canary_now.step != canary_before.step
        // A new template starts a new rollout (and a new deadline).
        || previous.template_hash != revision.hash;
    let counts = |s: &WorkloadStatus| (s.updated_replicas, s.ready_replicas, s.available_replicas);
    let waiting_in_pause =
        is_canary && canary_now.pause_start.is_some() && step.create == 0 && step.delete.is_empty();
    let mut status = WorkloadStatus {
        observed_generation: workload.metadata.generation,
        desired_replicas: wanted,
        replicas: (updated.len() + old.len()) as u32,
        scheduled_replicas: updated
            .iter()
            .chain(&old)
            .filter(|i| !i.spec.node_name.is_empty())
            .count() as u32,
        misscheduled_replicas: 0,
        updated_replicas: updated.len() as u32,
        ready_replicas: owned
            .iter()
            .filter(|i| !deleted.contains(i.metadata.name.as_str()))
            .filter(|i| i.status.as_ref().is_some_and(|s| s.ready))
            .count() as u32,
        available_replicas: count_available(&updated) + count_available(&old),
        update_revision: revision.number,
        template_hash: revision.hash.clone(),
        current_revision: previous.current_revision,
        current_template_hash: previous.current_template_hash.clone(),
        rolled_back_to: Some(&previous.rolled_back_to)
            .filter(|hash| **hash == revision.hash)
            .cloned()
            .unwrap_or_default(),
        canary: if is_canary && !complete {
            Some(CanaryStatus {
                hash: revision.hash.clone(),
                step: canary_now.step as u32,
                weight: canary_now.weight,
                pause_start_time: canary_now.pause_start.map(rfc3339),
            })
        } else {
            retiring_canary(&previous, &revision.hash, &outdated, now)
        },
        conditions: Vec::new(),
    };
    if complete {
        status.current_revision = revision.number;
        status.current_template_hash = revision.hash.clone();
    }
    // More instances updated, ready or available is progress too.
    let (before, after) = (counts(&previous), counts(&status));
    let moved = moved || after.0 > before.0 || after.1 > before.1 || after.2 > before.2;
    let progressing = progressing_condition(
        workload,
        &previous,
        &status,
        complete,
        moved,
        waiting_in_pause,
        now,
    );
    let failure = instance_failure.or_else(|| {
        (reverting_possible && progressing.reason == "ProgressDeadlineExceeded")
            .then(|| (Failure::Deadline, progressing.message.clone()))
    });
    if let (Some((_, reason)), true) = (&failure, spec.strategy.auto_rollback) {
        let to = previous.current_template_hash.clone();
        status.rolled_back_to = to.clone();
        // Its instances get no more requests while they are removed.
        status.canary = Some(CanaryStatus {
            hash: revision.hash.clone(),
            weight: 0,
            ..CanaryStatus::default()
        });
        let message = format!(
            "workload {} rolled back from revision {} to revision {}: {reason}",
            workload.metadata.name, revision.number, previous.current_revision
        );
        status.conditions = vec![
            available_condition(&previous, status.available_replicas, wanted, now),
            condition(
                &previous,
                "Progressing",
                false,
                "RolledBack",
                message,
                now,
                true,
            ),
        ];
        return vec![Action::RollBack {
            to,
            reason: reason.clone(),
            status: Box::new(status),
        }];
    }
    let mut actions = Vec::new();
    let mut ordinals = free_ordinals(updated.iter().chain(&old).copied());
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
            instance.spec.config_digest = model.spec.config_digest.clone();
            if let Some(hash) = model.metadata.labels.get(TEMPLATE_HASH_LABEL) {
                instance
                    .metadata
                    .labels
                    .insert(TEMPLATE_HASH_LABEL.into(), hash.clone());
            }
            actions.push(Action::Create(Box::new(with_ordinal(
                instance,
                &mut ordinals,
            ))));
        }
    }
    for (name, reason) in &step.delete {
        actions.push(Action::Delete(name.clone(), reason));
    }
    for _ in 0..step.create {
        let mut instance = new_instance(workload);
        instance.spec.config_digest = revision.config_digest.clone();
        instance
            .metadata
            .labels
            .insert(TEMPLATE_HASH_LABEL.into(), revision.hash.clone());
        actions.push(Action::Create(Box::new(with_ordinal(
            instance,
            &mut ordinals,
        ))));
    }
    status.conditions = vec![
        available_condition(&previous, status.available_replicas, wanted, now),
        if held {
            // Its message has no counts: they change with every report.
            condition(
                &previous,
                "Progressing",
                false,
                "CanaryAnalysisFailed",
                format!(
                    "the canary's share of 5xx answers is above maxErrorRate: it stays where it stands; `flotilla rollout undo workload/{}` reverts it",
                    workload.metadata.name
                ),
                now,
                false,
            )
        } else {
            progressing
        },
    ];
    if status != previous {
        actions.push(Action::SetStatus(status));
    }
    actions
}

/// A canary of a template no longer wanted (rolled back, or replaced by
/// a newer one) keeps a split of weight 0 while its instances remain, and
/// [`rollout::TRAFFIC_SHIFT`] after (`pauseStartTime` then says since
/// when they are gone): an ingress learns of a deleted instance and of a
/// changed workload on two streams, so the split must outlast the
/// instances, or an ingress could route to them without it.
fn retiring_canary(
    previous: &WorkloadStatus,
    hash: &str,
    outdated: &[&Instance],
    now: SystemTime,
) -> Option<CanaryStatus> {
    let canary = previous.canary.as_ref().filter(|c| c.hash != hash)?;
    let present = outdated
        .iter()
        .any(|i| i.metadata.labels.get(TEMPLATE_HASH_LABEL) == Some(&canary.hash));
    let gone_since = canary
        .pause_start_time
        .as_deref()
        .and_then(flotilla_spec::meta::parse_rfc3339)
        .filter(|_| canary.weight == 0 && !present);
    match gone_since {
        _ if present => Some(CanaryStatus {
            weight: 0,
            pause_start_time: None,
            ..canary.clone()
        }),
        None => Some(CanaryStatus {
            weight: 0,
            pause_start_time: Some(flotilla_spec::meta::rfc3339_millis(now)),
            ..canary.clone()
        }),
        Some(since) if now.duration_since(since).unwrap_or_default() < rollout::TRAFFIC_SHIFT => {
            Some(canary.clone())
        }
        Some(_) => None,
    }
}

/// What `flotilla rollout promote` asked of the canary of revision
/// `revision` (a number no later template shares: a template brought back
/// takes a new one, so an old promotion never applies to it).
fn promotion(workload: &Workload, revision: u64) -> Promotion {
    let Some(value) = workload.metadata.annotations.get(PROMOTE_ANNOTATION) else {
        return Promotion::None;
    };
    let of_this = |of: &str| of.parse::<u64>().is_ok_and(|n| n == revision);
    match value.split_once('/') {
        Some((of, "full")) if of_this(of) => Promotion::Full,
        Some((of, step)) if of_this(of) => step.parse().map_or(Promotion::None, Promotion::Step),
        _ => Promotion::None,
    }
}

/// How a rollout failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// No progress for `progressDeadlineSeconds`.
    Deadline,
    /// A new instance restarted [`CRASH_LOOP_RESTARTS`] times.
    CrashLoop,
    /// The canary's 5xx share is above `maxErrorRate`.
    CanaryAnalysis,
}

/// Whether the new template's instances show the rollout failed: one of
/// them crash loops, or (an http canary) their share of 5xx answers is
/// above `maxErrorRate`. (The deadline is judged with the Progressing
/// condition.)
fn instance_failure(
    workload: &Workload,
    current: &[&Instance],
    (requests, server_errors): (u64, u64),
) -> Option<(Failure, String)> {
    for instance in current {
        let status = instance.status.clone().unwrap_or_default();
        if status.restarts >= CRASH_LOOP_RESTARTS {
            let last = status
                .last_termination
                .map(|t| format!(" (last: {} {})", t.reason, t.message))
                .unwrap_or_default();
            return Some((
                Failure::CrashLoop,
                format!(
                    "new instance {} crash loops: {} restarts{last}",
                    instance.metadata.name, status.restarts
                ),
            ));
        }
    }
    let analysis = workload.spec.strategy.canary.as_ref()?.analysis.as_ref()?;
    let max = analysis.max_error_fraction().ok()?;
    let rate = server_errors as f64 / requests.max(1) as f64;
    (workload.spec.strategy.kind == StrategyKind::Canary
        && requests >= analysis.min_requests
        && rate > max)
        .then(|| {
            let message = format!(
                "the canary answered {server_errors} of {requests} requests with a 5xx ({:.1}%, above maxErrorRate {})",
                rate * 100.0,
                analysis.max_error_rate
            );
            (Failure::CanaryAnalysis, message)
        })
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
    status: &WorkloadStatus,
    complete: bool,
    moved: bool,
    waiting_in_pause: bool,
    now: SystemTime,
) -> Condition {
    let name = &workload.metadata.name;
    let earlier = previous.conditions.iter().find(|c| c.kind == "Progressing");
    if !status.rolled_back_to.is_empty() {
        // Rolled back, and nothing else applied since: it says so until then.
        return match earlier.filter(|c| c.reason == "RolledBack") {
            Some(c) => c.clone(),
            None => condition(
                previous,
                "Progressing",
                false,
                "RolledBack",
                format!("workload {name} was rolled back"),
                now,
                false,
            ),
        };
    }
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
    if waiting_in_pause {
        // A canary's pause is not a lack of progress.
        let canary = status.canary.clone().unwrap_or_default();
        let message = format!(
            "workload {name}'s canary is paused at step {} with weight {}%: it continues after the pause's duration, or at `flotilla rollout promote workload/{name}`",
            canary.step + 1,
            canary.weight
        );
        return condition(
            previous,
            "Progressing",
            true,
            "CanaryPaused",
            message,
            now,
            false,
        );
    }
    let new_rollout = earlier.is_none_or(|c| {
        [
            "NewRevisionAvailable",
            "RolloutPaused",
            "CanaryPaused",
            "RolledBack",
        ]
        .contains(&c.reason.as_str())
    });
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

/// The ordinals a stateful workload's new instances take, lowest first:
/// those no instance it keeps holds (as a StatefulSet's `NAME-0`…).
fn free_ordinals<'a>(kept: impl Iterator<Item = &'a Instance>) -> impl Iterator<Item = u32> {
    let held: std::collections::BTreeSet<u32> = kept.filter_map(ordinal).collect();
    (0..).filter(move |o| !held.contains(o))
}

/// A stateful instance's ordinal.
pub fn ordinal(instance: &Instance) -> Option<u32> {
    instance.metadata.labels.get(ORDINAL_LABEL)?.parse().ok()
}

/// Names a stateful workload's new instance after its ordinal.
fn with_ordinal(mut instance: Instance, ordinals: &mut impl Iterator<Item = u32>) -> Instance {
    if !instance.spec.template.is_stateful() {
        return instance;
    }
    if let Some(ordinal) = ordinals.next() {
        instance.metadata.name = format!("{}-{ordinal}", instance.spec.workload);
        instance
            .metadata
            .labels
            .insert(ORDINAL_LABEL.into(), ordinal.to_string());
    }
    instance
}

pub(super) fn new_instance(workload: &Workload) -> Instance {
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
            // Registry credentials are the control plane's business: what
            // a node runs does not even name them.
            template: WorkloadSpec {
                image_pull_secrets: Vec::new(),
                ..workload.spec.clone()
            },
            config_digest: String::new(),
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
        super::volumes::release(store, &key.0, &key.1)?;
        return Ok(true);
    };
    let digest = super::config_values::digest(store, workload)?;
    let revision = super::revisions::record(store, workload, &digest)?;
    let now = SystemTime::now();
    let actions = if workload.spec.placement.every_node {
        let eligible = super::every_node::eligible(workload, &cache.nodes);
        super::every_node::reconcile(workload, &mine, &eligible, &revision, now)
    } else {
        reconcile(workload, &mine, &revision, now)
    };
    let actions = within_budgets(store, workload, &mine, actions)?;
    // Waiting out minReadySeconds or a canary's pause is a matter of time
    // too: not settled until every instance is new and available.
    let gate = Gate::of(&workload.spec, now);
    let settled = mine
        .iter()
        .all(|i| i.spec.is_made_from(&workload.spec, &digest) && gate.available(i))
        // A canary split (under way or retiring) ends on time too.
        && workload.status.as_ref().is_none_or(|s| s.canary.is_none())
        && actions.is_empty();
    for action in actions {
        apply(store, workload, action)?;
    }
    Ok(settled)
}

/// A rolling update replaces ready instances only as fast as the
/// disruption budgets selecting them allow: deletions of ready outdated
/// instances past the budgets' allowance wait for a later pass (the
/// workload is not settled while outdated instances remain). Only rolling
/// updates with a surge are held (new instances come first, so the budget
/// frees up); scaling down is no disruption, and a Recreate rollout or one
/// without a surge (stateful and every-node ones) takes old instances down
/// before new ones come — a budget would stop it for good.
fn within_budgets(
    store: &dyn Store,
    workload: &Workload,
    mine: &[&Instance],
    actions: Vec<Action>,
) -> Result<Vec<Action>, StoreError> {
    let ready = |name: &str| {
        mine.iter()
            .any(|i| i.metadata.name == name && i.status.as_ref().is_some_and(|s| s.ready))
    };
    let disrupting = |a: &Action| matches!(a, Action::Delete(name, "OutdatedSpec") if ready(name));
    // Without a surge the new instances come only once old ones went: a
    // budget allowing nothing would stop the rollout (and its rollback)
    // for good.
    let surge = !workload.spec.is_stateful()
        && !workload.spec.placement.every_node
        && flotilla_spec::strategy::rolling_bounds(&workload.spec.strategy, workload.spec.replicas)
            .is_ok_and(|(surge, _)| surge > 0);
    if workload.spec.strategy.kind == StrategyKind::Recreate
        || !surge
        || !actions.iter().any(disrupting)
    {
        return Ok(actions);
    }
    let Some((budget, mut allowed)) = crate::disruption::rollout_allowance(store, workload)? else {
        return Ok(actions);
    };
    let mut held = 0;
    let kept = actions
        .into_iter()
        .filter(|a| {
            if !disrupting(a) {
                return true;
            }
            if allowed == 0 {
                held += 1;
                return false;
            }
            allowed -= 1;
            true
        })
        .collect();
    if held > 0 {
        // Repeats fold into one Event with a count.
        let message = format!(
            "Rolling update waits: disruption budget {budget} allows no more ready instances down now ({held} to replace)"
        );
        record(
            store,
            &event(
                workload_ref(workload),
                Severity::Normal,
                "DisruptionBudget",
                message,
                "workload-controller",
            ),
        )?;
    }
    Ok(kept)
}

fn workload_ref(w: &Workload) -> ObjectRef {
    ObjectRef {
        kind: "Workload".into(),
        namespace: w.metadata.namespace.clone(),
        name: w.metadata.name.clone(),
    }
}

/// Stores an instance a controller made, with the fields the API server
/// sets on what it creates (a controller writes the store directly).
pub(super) fn create_instance(store: &dyn Store, instance: &Instance) -> Result<(), StoreError> {
    let mut value =
        serde_json::to_value(instance).map_err(|e| StoreError::Backend(e.to_string()))?;
    value["metadata"]["uid"] = uuid::Uuid::new_v4().to_string().into();
    value["metadata"]["creationTimestamp"] = now_rfc3339().into();
    value["metadata"]["generation"] = 1.into();
    let meta = &instance.metadata;
    store
        .create("Instance", &meta.namespace, &meta.name, value)
        .map(drop)
}

fn apply(store: &dyn Store, workload: &Workload, action: Action) -> Result<(), StoreError> {
    let ns = &workload.metadata.namespace;
    match action {
        Action::Create(instance) => {
            create_instance(store, &instance)?;
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
        Action::RollBack { to, reason, status } => {
            let template = super::revisions::template_of(store, workload, &to)?
                // Going back to the same template changes nothing: the
                // failing change was of Config or Secret values.
                .filter(|t| !t.same_template(&workload.spec));
            // Not past today's ModulePolicies, nor onto a host another
            // namespace took meanwhile, nor past the namespace's quotas: a
            // rollback skips admission.
            let refusal = match &template {
                Some(t) => match super::module_policy::rollback_refusal(store, ns, &t.module)? {
                    Some(why) => Some(why),
                    None => {
                        let spec = workload.spec.with_template(t);
                        let back = serde_json::json!({"spec": &spec});
                        let now = serde_json::json!({"spec": &workload.spec});
                        match crate::route_hosts::conflict(store, ns, &back, Some(&now))? {
                            Some(why) => Some(why),
                            None => crate::quota::rollback_refusal(
                                store,
                                ns,
                                &workload.metadata.name,
                                &spec,
                            )?,
                        }
                    }
                },
                None => None,
            };
            let Some(template) = template.filter(|_| refusal.is_none()) else {
                // Its revision is gone: nothing to go back to; the failure
                // is said, the instances stay as they are.
                let mut failed = (*status).clone();
                failed.rolled_back_to.clear();
                failed.canary = workload.status.as_ref().and_then(|s| s.canary.clone());
                for c in failed
                    .conditions
                    .iter_mut()
                    .filter(|c| c.kind == "Progressing")
                {
                    c.reason = "RollbackImpossible".into();
                    c.message = match &refusal {
                        Some(why) => format!(
                            "the rollout failed ({reason}) and revision {to} is not put back by itself: {why}; fix the new version, or `flotilla rollout undo --to-revision N` (checked at admission)"
                        ),
                        None => format!(
                            "the rollout failed ({reason}) and there is no template to go back to (revision {to} is gone, or only Config/Secret values changed): fix them, or `flotilla rollout undo --to-revision N`"
                        ),
                    };
                }
                return apply(store, workload, Action::SetStatus(failed));
            };
            let Some(mut stored) = store.get("Workload", ns, &workload.metadata.name)? else {
                return Ok(());
            };
            let spec = workload.spec.with_template(&template);
            stored["spec"] =
                serde_json::to_value(&spec).map_err(|e| StoreError::Backend(e.to_string()))?;
            stored["status"] =
                serde_json::to_value(&*status).map_err(|e| StoreError::Backend(e.to_string()))?;
            stored["metadata"]["generation"] = (workload.metadata.generation + 1).into();
            // Only onto the version judged: a change meanwhile is judged again.
            let expected = workload.metadata.resource_version.parse().ok();
            match store.update("Workload", ns, &workload.metadata.name, stored, expected) {
                Ok(_) => {}
                Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound { .. }) => {
                    return Ok(())
                }
                Err(e) => return Err(e),
            }
            let message = format!(
                "Rolled back to revision {} (template {to}): {reason}",
                status.current_revision
            );
            record(
                store,
                &event(
                    workload_ref(workload),
                    Severity::Warning,
                    "RolledBack",
                    message,
                    "workload-controller",
                ),
            )?;
        }
        Action::SetStatus(status) => {
            if let Some(mut stored) = store.get("Workload", ns, &workload.metadata.name)? {
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
        // A new instance that never gets ready: created (a move), then the
        // same state, later.
        let mut stuck = instances.clone();
        stuck.push(new_instance(&web));
        let created = reconcile(&web, &refs(&stuck), &Current::default(), start);
        web.status = created.iter().find_map(|a| match a {
            Action::SetStatus(s) => Some(s.clone()),
            _ => None,
        });
        assert!(web.status.is_some(), "{created:?}");
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

#[cfg(test)]
mod rollback_tests {
    use super::*;
    use flotilla_spec::instance::InstanceStatus;

    /// `web` at template `v2`, whose last completed revision is `v1`.
    fn rolling_out() -> (Workload, Vec<Instance>) {
        let mut v1 = Workload::default();
        v1.metadata.name = "web".into();
        v1.spec.replicas = 2;
        v1.spec.args = vec!["v1".into()];
        let stable: Vec<Instance> = (0..2)
            .map(|_| {
                let mut i = new_instance(&v1);
                i.status = Some(InstanceStatus {
                    ready: true,
                    ..Default::default()
                });
                i
            })
            .collect();
        let mut v2 = v1.clone();
        v2.spec.args = vec!["v2".into()];
        v2.status = Some(WorkloadStatus {
            current_revision: 1,
            current_template_hash: "hash-v1".into(),
            ..Default::default()
        });
        (v2, stable)
    }

    fn current() -> Current {
        Current {
            number: 2,
            hash: "hash-v2".into(),
            config_digest: String::new(),
        }
    }

    fn last_status(instances: &mut [Instance]) -> &mut InstanceStatus {
        let last = instances.last_mut().expect("an instance");
        last.status.get_or_insert_with(Default::default)
    }

    fn rollback(actions: &[Action]) -> Option<(&str, &str)> {
        actions.iter().find_map(|a| match a {
            Action::RollBack { to, reason, .. } => Some((to.as_str(), reason.as_str())),
            _ => None,
        })
    }

    #[test]
    fn a_crash_looping_new_instance_rolls_back_to_the_last_completed_revision() {
        let (web, mut instances) = rolling_out();
        let mut bad = new_instance(&web);
        bad.status = Some(InstanceStatus {
            restarts: 2,
            ..Default::default()
        });
        instances.push(bad.clone());
        let now = SystemTime::now();
        assert_eq!(
            rollback(&reconcile(&web, &refs(&instances), &current(), now)),
            None
        );
        last_status(&mut instances).restarts = 3;
        let actions = reconcile(&web, &refs(&instances), &current(), now);
        let (to, reason) = rollback(&actions).expect("a rollback");
        assert_eq!(to, "hash-v1");
        assert!(reason.contains("crash loops"), "{reason}");
        assert_eq!(
            actions.len(),
            1,
            "nothing else in the same pass: {actions:?}"
        );
        let Action::RollBack { status, .. } = &actions[0] else {
            unreachable!()
        };
        assert_eq!(status.rolled_back_to, "hash-v1");
        let progressing = status
            .conditions
            .iter()
            .find(|c| c.kind == "Progressing")
            .unwrap();
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_str()),
            ("False", "RolledBack")
        );
        // Without autoRollback, or with nothing completed before: no revert.
        let mut manual = web.clone();
        manual.spec.strategy.auto_rollback = false;
        assert_eq!(
            rollback(&reconcile(&manual, &refs(&instances), &current(), now)),
            None
        );
        let mut first = web.clone();
        first.status = None;
        assert_eq!(
            rollback(&reconcile(&first, &refs(&instances), &current(), now)),
            None
        );
    }

    #[test]
    fn a_canary_answering_too_many_5xx_rolls_back_once_enough_requests_are_in() {
        use flotilla_spec::strategy::{Analysis, Canary, CanaryStep, Strategy};
        let (mut web, mut instances) = rolling_out();
        web.spec.execution = Execution::Http;
        web.spec.strategy = Strategy {
            kind: StrategyKind::Canary,
            canary: Some(Canary {
                steps: vec![CanaryStep {
                    set_weight: Some(10),
                    pause: None,
                }],
                analysis: Some(Analysis {
                    max_error_rate: "5%".into(),
                    min_requests: 50,
                }),
            }),
            ..Strategy::default()
        };
        let mut canary = new_instance(&web);
        canary.status = Some(InstanceStatus {
            ready: true,
            requests: 40,
            server_errors: 20,
            ..Default::default()
        });
        instances.push(canary);
        let now = SystemTime::now();
        assert_eq!(
            rollback(&reconcile(&web, &refs(&instances), &current(), now)),
            None,
            "40 requests are fewer than minRequests"
        );
        let status = last_status(&mut instances);
        status.requests = 100;
        status.server_errors = 5;
        assert_eq!(
            rollback(&reconcile(&web, &refs(&instances), &current(), now)),
            None,
            "5% is not above 5%"
        );
        last_status(&mut instances).server_errors = 6;
        let actions = reconcile(&web, &refs(&instances), &current(), now);
        let (_, reason) = rollback(&actions).expect("a rollback");
        assert!(reason.contains("6 of 100"), "{reason}");
    }

    #[test]
    fn once_rolled_back_the_condition_stays_until_another_template_comes() {
        let (mut web, instances) = rolling_out();
        // The rolled-back-to template is the workload's again, and complete.
        web.spec.args = vec!["v1".into()];
        let message = "rolled back: crash loop".to_string();
        web.status = Some(WorkloadStatus {
            current_revision: 1,
            current_template_hash: "hash-v1".into(),
            rolled_back_to: "hash-v1".into(),
            conditions: vec![Condition {
                kind: "Progressing".into(),
                status: "False".into(),
                reason: "RolledBack".into(),
                message: message.clone(),
                ..Default::default()
            }],
            ..Default::default()
        });
        let v1 = Current {
            number: 3,
            hash: "hash-v1".into(),
            config_digest: String::new(),
        };
        let actions = reconcile(&web, &refs(&instances), &v1, SystemTime::now());
        let Some(Action::SetStatus(status)) = actions.last() else {
            panic!("{actions:?}")
        };
        let progressing = status
            .conditions
            .iter()
            .find(|c| c.kind == "Progressing")
            .unwrap();
        assert_eq!(
            (progressing.reason.as_str(), progressing.message.as_str()),
            ("RolledBack", message.as_str())
        );
        // Another template: the marker is gone.
        let v4 = Current {
            number: 4,
            hash: "hash-v4".into(),
            config_digest: String::new(),
        };
        web.spec.args = vec!["v4".into()];
        let actions = reconcile(&web, &refs(&instances), &v4, SystemTime::now());
        let Some(Action::SetStatus(status)) = actions.last() else {
            panic!("{actions:?}")
        };
        assert!(status.rolled_back_to.is_empty());
        let progressing = status
            .conditions
            .iter()
            .find(|c| c.kind == "Progressing")
            .unwrap();
        assert_eq!(progressing.reason, "RevisionProgressing");
    }
}
