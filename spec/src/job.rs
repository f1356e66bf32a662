//! `Job`: work that runs to completion (Kubernetes' Job). `completions`
//! attempts must succeed (a guest that exits 0), at most `parallelism` at
//! once; a failed attempt (any other exit, a trap, OOMKilled, a timeout) is
//! retried with backoff until `backoffLimit` failures, then the Job fails.
//! An `Indexed` Job gives each completion an index (`FLOTILLA_JOB_INDEX`
//! in the guest's environment) and completes when every index has
//! succeeded once.

use serde::{Deserialize, Serialize};

use crate::meta::Resource;
use crate::workload::{Condition, Execution, WorkloadSpec};

/// A Job resource.
pub type Job = Resource<JobSpec, JobStatus>;

/// The label on a Job's instances naming it.
pub const JOB_LABEL: &str = "flotilla.dev/job";
/// The label (and annotation-like env) carrying an Indexed Job's index.
pub const JOB_INDEX_LABEL: &str = "flotilla.dev/job-index";
/// The variable an Indexed Job's guest reads its index from.
pub const JOB_INDEX_ENV: &str = "FLOTILLA_JOB_INDEX";
/// Most completions a Job may ask for (its instances are kept until it is
/// deleted or its TTL passes: this bounds them).
pub const MAX_COMPLETIONS: u32 = 1000;

/// What to run, how many times, and how failure is handled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSpec {
    /// Successful attempts needed (default 1).
    #[serde(default = "one")]
    pub completions: u32,
    /// Attempts running at once (default 1).
    #[serde(default = "one")]
    pub parallelism: u32,
    /// `NonIndexed` (the default) or `Indexed`.
    #[serde(default)]
    pub completion_mode: CompletionMode,
    /// Failed attempts before the Job fails (default 6).
    #[serde(default = "six")]
    pub backoff_limit: u32,
    /// Seconds from the start after which the Job fails and its attempts
    /// are stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<u64>,
    /// Seconds after it finished that the Job (and its instances, with
    /// their logs) is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<u64>,
    /// `Never` (the default: a failed attempt is replaced by a new one,
    /// possibly on another node) or `OnFailure` (restarted in place, each
    /// restart a failed attempt).
    #[serde(default)]
    pub restart_policy: JobRestartPolicy,
    /// The run fields of a Workload (module, args, env, resources, volumes…).
    pub template: WorkloadSpec,
}

impl Default for JobSpec {
    fn default() -> Self {
        Self {
            completions: 1,
            parallelism: 1,
            completion_mode: CompletionMode::default(),
            backoff_limit: 6,
            active_deadline_seconds: None,
            ttl_seconds_after_finished: None,
            restart_policy: JobRestartPolicy::default(),
            template: WorkloadSpec::default(),
        }
    }
}

fn one() -> u32 {
    1
}

fn six() -> u32 {
    6
}

/// How completions are counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompletionMode {
    /// Any `completions` successes.
    #[default]
    NonIndexed,
    /// One success for each index `0..completions`.
    Indexed,
}

/// What happens to an attempt that fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobRestartPolicy {
    /// A new attempt replaces it.
    #[default]
    Never,
    /// It restarts in place.
    OnFailure,
}

/// What the job controller observed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// Attempts running (or waiting to run) now.
    #[serde(default)]
    pub active: u32,
    /// Attempts that succeeded.
    #[serde(default)]
    pub succeeded: u32,
    /// Attempts that failed.
    #[serde(default)]
    pub failed: u32,
    /// Indexed Jobs: the indexes that succeeded, as `0-2,5`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub completed_indexes: String,
    /// When the controller first started it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When it completed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// `Complete` or `Failed` (reason `BackoffLimitExceeded`,
    /// `DeadlineExceeded`), once finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl JobStatus {
    /// The finishing condition, if it finished.
    pub fn finished(&self) -> Option<&Condition> {
        self.conditions
            .iter()
            .find(|c| (c.kind == "Complete" || c.kind == "Failed") && c.status == "True")
    }
}

impl JobSpec {
    /// Problems, with field paths.
    pub fn validate(&self) -> Result<(), String> {
        if self.completions == 0 || self.completions > MAX_COMPLETIONS {
            return Err(format!(
                "spec.completions: {} is out of range: from 1 to {MAX_COMPLETIONS}",
                self.completions
            ));
        }
        if self.parallelism == 0 || self.parallelism > MAX_COMPLETIONS {
            return Err(format!(
                "spec.parallelism: {} is out of range: from 1 to {MAX_COMPLETIONS}",
                self.parallelism
            ));
        }
        if self.active_deadline_seconds == Some(0) {
            return Err("spec.activeDeadlineSeconds: must be at least 1".into());
        }
        let t = &self.template;
        if t.execution != Execution::Daemon {
            return Err(
                "spec.template.execution: a Job runs its module's entry point to completion; http workloads serve, they do not complete (use a Workload)"
                    .into(),
            );
        }
        if t.replicas != 1 {
            return Err(
                "spec.template.replicas: a Job's size is spec.completions and spec.parallelism"
                    .into(),
            );
        }
        if t.placement.every_node {
            return Err(
                "spec.template.placement.everyNode: not supported for Jobs yet: run one Job per node with a nodeSelector"
                    .into(),
            );
        }
        if t.is_stateful() {
            return Err(
                "spec.template.volumes: persistent volumes follow a Workload's replicas; a Job's attempts may use emptyDir or a granted hostPath"
                    .into(),
            );
        }
        if !t.probes.is_empty() {
            return Err(
                "spec.template.probes: a Job's attempts are judged by their exit, not by probes"
                    .into(),
            );
        }
        if t.restart_policy != Default::default() {
            return Err(
                "spec.template.restartPolicy: a Job's attempts are restarted by spec.restartPolicy (Never or OnFailure) and spec.backoffLimit"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Indexes as Kubernetes writes `completedIndexes`: sorted, runs joined
/// (`0-2,5,7-8`).
pub fn format_indexes(indexes: impl IntoIterator<Item = u32>) -> String {
    let mut sorted: Vec<u32> = indexes.into_iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        runs.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    runs.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> JobSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_are_kubernetes_ones() {
        let s = spec("template: {module: {source: m.wasm}}");
        assert_eq!((s.completions, s.parallelism, s.backoff_limit), (1, 1, 6));
        assert_eq!(s.completion_mode, CompletionMode::NonIndexed);
        assert_eq!(s.restart_policy, JobRestartPolicy::Never);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn what_a_job_cannot_be_is_refused_naming_the_field() {
        for (yaml, field) in [
            (
                "completions: 0\ntemplate: {module: {source: m.wasm}}",
                "spec.completions",
            ),
            (
                "parallelism: 0\ntemplate: {module: {source: m.wasm}}",
                "spec.parallelism",
            ),
            (
                "template: {module: {source: m.wasm}, execution: http, routes: [{host: a}]}",
                "spec.template.execution",
            ),
            (
                "template: {module: {source: m.wasm}, replicas: 3}",
                "spec.template.replicas",
            ),
            (
                "template: {module: {source: m.wasm}, restartPolicy: {policy: OnFailure}}",
                "spec.template.restartPolicy",
            ),
        ] {
            let err = spec(yaml).validate().unwrap_err();
            assert!(err.starts_with(field), "{yaml}: {err}");
        }
    }

    #[test]
    fn indexes_are_written_as_runs() {
        assert_eq!(format_indexes([5, 0, 1, 2, 8, 7]), "0-2,5,7-8");
        assert_eq!(format_indexes([3]), "3");
        assert_eq!(format_indexes([]), "");
    }
}
