//! The job controller: runs each Job's attempts as Instances (made with
//! restart policy `Never`, or `OnFailure` to restart in place), as many at
//! once as `parallelism` allows, until `completions` succeed; counts the
//! failures against `backoffLimit`, retrying with an exponential backoff;
//! fails the Job on its deadline; deletes it `ttlSecondsAfterFinished`
//! after it finished. Level-triggered like the rest: [`reconcile`] decides
//! from the Job and the instances it owns as they are now.
//!
//! Finished attempts are kept (with their logs on their nodes) until the
//! Job is deleted: they are what `succeeded`, `failed` and
//! `completedIndexes` are counted from. An attempt whose node died is
//! deleted by the node lifecycle, not failed: it is simply made again.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use flotilla_spec::instance::{Instance, Phase};
use flotilla_spec::job::{
    format_indexes, CompletionMode, Job, JobRestartPolicy, JobStatus, JOB_INDEX_ENV,
    JOB_INDEX_LABEL, JOB_LABEL,
};
use flotilla_spec::meta::{now_rfc3339, parse_rfc3339, OwnerReference, API_VERSION};
use flotilla_spec::workload::{Condition, EnvVar, RestartPolicy, RestartPolicyKind, Workload};
use serde_json::Value;

use super::cache::Cache;
use super::events::{event, record, Severity};
use super::workloads::WORKLOAD_LABEL;
use crate::store::{Store, StoreError};

/// The first retry's delay; each failure doubles it, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest delay between a failure and the next attempt.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What a reconcile decided.
#[derive(Debug, Clone, PartialEq)]
pub enum JobAction {
    /// Create this attempt.
    Create(Box<Instance>),
    /// Delete this attempt (stopped: finished Job, deadline), for this reason.
    Delete(String, &'static str),
    /// Write this status.
    SetStatus(JobStatus),
    /// The TTL after it finished has passed: delete the Job.
    DeleteJob,
}

/// The index of an Indexed Job's attempt.
fn index_of(instance: &Instance) -> Option<u32> {
    instance.metadata.labels.get(JOB_INDEX_LABEL)?.parse().ok()
}

fn phase(instance: &Instance) -> Phase {
    instance
        .status
        .as_ref()
        .map(|s| s.phase)
        .unwrap_or(Phase::Pending)
}

/// When an attempt ended: its last run's end, or — one that never ran (a
/// module that does not load, a grant refused) — when it was made.
fn finished_at(instance: &Instance) -> Option<SystemTime> {
    instance
        .status
        .as_ref()
        .and_then(|s| s.last_termination.as_ref())
        .and_then(|t| parse_rfc3339(&t.finished_at))
        .or_else(|| {
            instance
                .metadata
                .creation_timestamp
                .as_deref()
                .and_then(parse_rfc3339)
        })
}

fn condition(kind: &str, reason: &str, message: String) -> Condition {
    Condition {
        kind: kind.into(),
        status: "True".into(),
        reason: reason.into(),
        message,
        last_transition_time: now_rfc3339(),
        last_update_time: None,
    }
}

/// The delay before the attempt after `failures` failures.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

/// Decides what to do for one Job given the instances it owns, at `now`.
pub fn reconcile(job: &Job, owned: &[&Instance], now: SystemTime) -> Vec<JobAction> {
    let spec = &job.spec;
    let previous = job.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    if status.start_time.is_none() {
        status.start_time = Some(now_rfc3339());
    }
    let indexed = spec.completion_mode == CompletionMode::Indexed;
    let succeeded: Vec<&Instance> = owned
        .iter()
        .copied()
        .filter(|i| phase(i) == Phase::Succeeded)
        .collect();
    let failed_instances: Vec<&Instance> = owned
        .iter()
        .copied()
        .filter(|i| phase(i) == Phase::Failed)
        .collect();
    let active: Vec<&Instance> = owned
        .iter()
        .copied()
        .filter(|i| !matches!(phase(i), Phase::Succeeded | Phase::Failed))
        .collect();
    // Restarted in place, each restart was a failed attempt.
    let restarts: u32 = match spec.restart_policy {
        JobRestartPolicy::OnFailure => owned
            .iter()
            .map(|i| i.status.as_ref().map_or(0, |s| s.restarts))
            .fold(0, u32::saturating_add),
        JobRestartPolicy::Never => 0,
    };
    let failed = (failed_instances.len() as u32).saturating_add(restarts);
    let completed: BTreeSet<u32> = if indexed {
        succeeded
            .iter()
            .filter_map(|i| index_of(i))
            .filter(|n| *n < spec.completions)
            .collect()
    } else {
        BTreeSet::new()
    };
    let done = if indexed {
        completed.len() as u32
    } else {
        succeeded.len() as u32
    };
    status.succeeded = done;
    status.failed = failed;
    status.completed_indexes = format_indexes(completed.iter().copied());
    let mut actions = Vec::new();
    let stop_all = |actions: &mut Vec<JobAction>, reason: &'static str| {
        for i in &active {
            actions.push(JobAction::Delete(i.metadata.name.clone(), reason));
        }
    };
    if let Some(finished) = previous.finished().cloned() {
        // Finished: nothing more runs; gone once its TTL passes.
        stop_all(&mut actions, "JobFinished");
        status.active = 0;
        if let (Some(ttl), Some(at)) = (
            spec.ttl_seconds_after_finished,
            parse_rfc3339(&finished.last_transition_time),
        ) {
            if now.duration_since(at).unwrap_or_default() >= Duration::from_secs(ttl) {
                return vec![JobAction::DeleteJob];
            }
        }
    } else if done >= spec.completions {
        stop_all(&mut actions, "JobComplete");
        status.active = 0;
        status.completion_time = Some(now_rfc3339());
        status.conditions.push(condition(
            "Complete",
            "Completed",
            format!("{done} of {} completions succeeded", spec.completions),
        ));
    } else if failed > spec.backoff_limit {
        stop_all(&mut actions, "BackoffLimitExceeded");
        status.active = 0;
        status.conditions.push(condition(
            "Failed",
            "BackoffLimitExceeded",
            format!(
                "Job has reached the specified backoff limit: {failed} failed attempts, backoffLimit {}",
                spec.backoff_limit
            ),
        ));
    } else if let Some(deadline) = spec.active_deadline_seconds.filter(|d| {
        let started = status.start_time.as_deref().and_then(parse_rfc3339);
        started
            .is_some_and(|s| now.duration_since(s).unwrap_or_default() >= Duration::from_secs(*d))
    }) {
        stop_all(&mut actions, "DeadlineExceeded");
        status.active = 0;
        status.conditions.push(condition(
            "Failed",
            "DeadlineExceeded",
            format!("Job was active longer than specified deadline ({deadline}s)"),
        ));
    } else {
        let remaining = spec.completions - done;
        let wanted = spec.parallelism.min(remaining) as usize;
        status.active = active.len() as u32;
        let last_failure = failed_instances.iter().filter_map(|i| finished_at(i)).max();
        let waiting = last_failure
            .is_some_and(|at| now.duration_since(at).unwrap_or_default() < backoff(failed));
        if active.len() < wanted && !waiting {
            let count = wanted - active.len();
            let indexes: Vec<Option<u32>> = if indexed {
                let busy: BTreeSet<u32> = active.iter().filter_map(|i| index_of(i)).collect();
                (0..spec.completions)
                    .filter(|n| !completed.contains(n) && !busy.contains(n))
                    .take(count)
                    .map(Some)
                    .collect()
            } else {
                vec![None; count]
            };
            for index in indexes {
                actions.push(JobAction::Create(Box::new(attempt(job, index))));
            }
        }
    }
    if status != previous {
        actions.push(JobAction::SetStatus(status));
    }
    actions
}

/// A new attempt of `job` (for `index`, when Indexed).
pub fn attempt(job: &Job, index: Option<u32>) -> Instance {
    let mut template = job.spec.template.clone();
    template.restart_policy = RestartPolicy {
        policy: match job.spec.restart_policy {
            JobRestartPolicy::Never => RestartPolicyKind::Never,
            JobRestartPolicy::OnFailure => RestartPolicyKind::OnFailure,
        },
        ..RestartPolicy::default()
    };
    let mut metadata = job.metadata.clone();
    if let Some(index) = index {
        template.env.push(EnvVar {
            name: JOB_INDEX_ENV.into(),
            value: index.to_string(),
            ..EnvVar::default()
        });
        metadata.name = format!("{}-{index}", job.metadata.name);
    }
    let as_workload = Workload {
        api_version: API_VERSION.into(),
        kind: "Workload".into(),
        metadata,
        spec: template,
        status: None,
    };
    let mut instance = super::workloads::new_instance(&as_workload);
    instance.spec.workload = job.metadata.name.clone();
    let labels = &mut instance.metadata.labels;
    labels.remove(WORKLOAD_LABEL);
    labels.insert(JOB_LABEL.into(), job.metadata.name.clone());
    if let Some(index) = index {
        labels.insert(JOB_INDEX_LABEL.into(), index.to_string());
    }
    instance.metadata.owner_references = vec![OwnerReference {
        kind: "Job".into(),
        name: job.metadata.name.clone(),
        uid: job.metadata.uid.clone(),
    }];
    instance
}

/// Whether a stored instance is owned by a Job (not a Workload).
pub fn owned_by_a_job(instance: &Value) -> bool {
    instance["metadata"]["ownerReferences"][0]["kind"] == "Job"
}

/// One pass over every Job, and over instances owned by a Job that is gone
/// (deleted: what it ran stops).
pub fn pass(store: &dyn Store, cache: &Cache) -> Result<(), StoreError> {
    let jobs = crate::store::decoded_by_namespace::<Job>(store, "Job")?;
    let mut by_owner: HashMap<(String, String), Vec<&Instance>> = HashMap::new();
    let mut orphans = Vec::new();
    for key in cache.instances.keys() {
        let Some(entry) = cache.instances.get(key) else {
            continue;
        };
        if !owned_by_a_job(&entry.value) {
            continue;
        }
        let owner_uid = entry.value["metadata"]["ownerReferences"][0]["uid"]
            .as_str()
            .unwrap_or_default();
        let owner = entry.value["metadata"]["ownerReferences"][0]["name"]
            .as_str()
            .unwrap_or_default();
        let job = jobs
            .get(&key.0)
            .and_then(|list| list.iter().find(|(_, j)| j.metadata.name == owner));
        match (job, &entry.object) {
            (Some((_, job)), Some(instance)) if job.metadata.uid == owner_uid => by_owner
                .entry((key.0.clone(), owner.to_string()))
                .or_default()
                .push(instance),
            // Undecodable by this version: left alone.
            (Some((_, job)), None) if job.metadata.uid == owner_uid => {}
            _ => orphans.push((key.clone(), owner.to_string(), owner_uid.to_string())),
        }
    }
    for ((namespace, name), owner, owner_uid) in orphans {
        // A Job this version cannot decode keeps its attempts (as the
        // workload controller leaves such objects alone).
        let undecodable_owner = store
            .get("Job", &namespace, &owner)?
            .is_some_and(|job| job["metadata"]["uid"] == owner_uid.as_str());
        if !undecodable_owner {
            super::delete_if_present(store, "Instance", &namespace, &name)?;
        }
    }
    let now = SystemTime::now();
    for (namespace, list) in &jobs {
        for (value, job) in list {
            let owned = by_owner
                .get(&(namespace.clone(), job.metadata.name.clone()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            // One Job's failure (a full disk, a conflict) is logged and
            // tried again next pass; the others go on.
            let applied = reconcile(job, owned, now)
                .into_iter()
                .try_for_each(|action| apply(store, value, job, action));
            if let Err(e) = applied {
                tracing::warn!("job controller: {namespace}/{}: {e}", job.metadata.name);
            }
        }
    }
    Ok(())
}

fn apply(store: &dyn Store, value: &Value, job: &Job, action: JobAction) -> Result<(), StoreError> {
    let ns = &job.metadata.namespace;
    let about = flotilla_spec::event::ObjectRef {
        kind: "Job".into(),
        namespace: ns.clone(),
        name: job.metadata.name.clone(),
    };
    match action {
        JobAction::Create(instance) => {
            super::workloads::create_instance(store, &instance)?;
            let message = format!("Created instance {}", instance.metadata.name);
            record(
                store,
                &event(
                    about,
                    Severity::Normal,
                    "SuccessfulCreate",
                    message,
                    "job-controller",
                ),
            )?;
        }
        JobAction::Delete(name, reason) => {
            super::delete_if_present(store, "Instance", ns, &name)?;
            let message = format!("Deleted instance {name} ({reason})");
            record(
                store,
                &event(
                    about,
                    Severity::Normal,
                    "SuccessfulDelete",
                    message,
                    "job-controller",
                ),
            )?;
        }
        JobAction::SetStatus(status) => {
            let finished_now = status
                .finished()
                .cloned()
                .filter(|_| job.status.as_ref().and_then(JobStatus::finished).is_none());
            let mut object = value.clone();
            object["status"] =
                serde_json::to_value(&status).map_err(|e| StoreError::Backend(e.to_string()))?;
            let expected = crate::store::revision_of(value);
            match store.update("Job", ns, &job.metadata.name, object, expected) {
                // Changed meanwhile: the next pass decides again.
                Ok(_) | Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            if let Some(c) = finished_now {
                let severity = if c.kind == "Complete" {
                    Severity::Normal
                } else {
                    Severity::Warning
                };
                record(
                    store,
                    &event(about, severity, &c.reason, c.message, "job-controller"),
                )?;
            }
        }
        JobAction::DeleteJob => {
            super::delete_if_present(store, "Job", ns, &job.metadata.name)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_spec::instance::{InstanceStatus, Termination};

    fn job(extra: Value) -> Job {
        let mut spec = serde_json::json!({"template": {"module": {"sha256": "ab"}}});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let mut job: Job = serde_json::from_value(serde_json::json!({
            "apiVersion": "flotilla.dev/v1", "kind": "Job",
            "metadata": {"name": "crunch", "namespace": "default", "uid": "j1"},
            "spec": spec,
        }))
        .unwrap();
        job.metadata.creation_timestamp = Some(now_rfc3339());
        job
    }

    fn ended(mut instance: Instance, phase: Phase, at: SystemTime) -> Instance {
        instance.status = Some(InstanceStatus {
            phase,
            last_termination: Some(Termination {
                reason: "Error".into(),
                finished_at: flotilla_spec::meta::rfc3339_millis(at),
                ..Termination::default()
            }),
            ..InstanceStatus::default()
        });
        instance
    }

    fn created(actions: &[JobAction]) -> Vec<Option<u32>> {
        actions
            .iter()
            .filter_map(|a| match a {
                JobAction::Create(i) => Some(index_of(i)),
                _ => None,
            })
            .collect()
    }

    fn status(actions: &[JobAction]) -> JobStatus {
        actions
            .iter()
            .find_map(|a| match a {
                JobAction::SetStatus(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn an_indexed_job_retries_a_failed_index_after_its_backoff() {
        let job = job(
            serde_json::json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
        );
        let now = SystemTime::now();
        assert_eq!(
            created(&reconcile(&job, &[], now)),
            [Some(0), Some(1), Some(2)]
        );
        let zero = ended(attempt(&job, Some(0)), Phase::Succeeded, now);
        let one = ended(attempt(&job, Some(1)), Phase::Failed, now);
        let two = ended(attempt(&job, Some(2)), Phase::Succeeded, now);
        let owned = [&zero, &one, &two];
        // Within the first second after the failure: nothing new.
        assert!(created(&reconcile(&job, &owned, now)).is_empty());
        let later = now + FIRST_BACKOFF;
        let actions = reconcile(&job, &owned, later);
        assert_eq!(created(&actions), [Some(1)], "only the failed index again");
        let s = status(&actions);
        assert_eq!((s.succeeded, s.failed), (2, 1));
        assert_eq!(s.completed_indexes, "0,2");
        let again = ended(attempt(&job, Some(1)), Phase::Succeeded, later);
        let actions = reconcile(&job, &[&zero, &one, &two, &again], later);
        let s = status(&actions);
        assert_eq!(s.finished().map(|c| c.kind.as_str()), Some("Complete"));
        assert_eq!(s.completed_indexes, "0-2");
    }

    #[test]
    fn failures_past_the_backoff_limit_fail_it_and_completion_wins_over_them() {
        let job_ = job(serde_json::json!({"backoffLimit": 1}));
        let now = SystemTime::now();
        let a = ended(attempt(&job_, None), Phase::Failed, now);
        let b = ended(attempt(&job_, None), Phase::Failed, now);
        let s = status(&reconcile(&job_, &[&a, &b], now));
        let failed = s.finished().unwrap();
        assert_eq!(
            (failed.kind.as_str(), failed.reason.as_str()),
            ("Failed", "BackoffLimitExceeded")
        );
        let c = ended(attempt(&job_, None), Phase::Succeeded, now);
        let s = status(&reconcile(&job_, &[&a, &b, &c], now));
        assert_eq!(s.finished().map(|c| c.kind.as_str()), Some("Complete"));
        // Backoff doubles, capped.
        assert_eq!(backoff(1), FIRST_BACKOFF);
        assert_eq!(backoff(3), FIRST_BACKOFF * 4);
        assert_eq!(backoff(40), MAX_BACKOFF);
    }

    #[test]
    fn a_deadline_fails_it_and_stops_what_runs_and_the_ttl_deletes_it() {
        let mut job_ =
            job(serde_json::json!({"activeDeadlineSeconds": 5, "ttlSecondsAfterFinished": 60}));
        let now = SystemTime::now();
        let running = attempt(&job_, None);
        job_.status = Some(JobStatus {
            start_time: Some(flotilla_spec::meta::rfc3339(now - Duration::from_secs(10))),
            ..JobStatus::default()
        });
        let actions = reconcile(&job_, &[&running], now);
        assert!(actions.contains(&JobAction::Delete(
            running.metadata.name.clone(),
            "DeadlineExceeded"
        )));
        let s = status(&actions);
        assert_eq!(
            s.finished().map(|c| c.reason.as_str()),
            Some("DeadlineExceeded")
        );
        job_.status = Some(s);
        assert!(
            !reconcile(&job_, &[], now + Duration::from_secs(30)).contains(&JobAction::DeleteJob)
        );
        assert_eq!(
            reconcile(&job_, &[], now + Duration::from_secs(61)),
            [JobAction::DeleteJob]
        );
    }
}
