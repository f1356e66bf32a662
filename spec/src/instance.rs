//! `Instance`: one replica of a Workload, bound to one node (the "pod").

use serde::{Deserialize, Serialize};

use crate::meta::Resource;
use crate::workload::WorkloadSpec;

/// An Instance resource.
pub type Instance = Resource<InstanceSpec, InstanceStatus>;

/// The characters of the random suffix of an instance's name (no vowels,
/// no look-alikes), as Kubernetes names a ReplicaSet's pods.
pub const NAME_SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// The length of that suffix.
pub const NAME_SUFFIX_LEN: usize = 5;

/// Whether `instance` is named as an instance of workload `workload`
/// (`<workload>-<suffix>`): `web-api-x7k2q` belongs to `web-api`, not to `web`.
pub fn is_named_for(workload: &str, instance: &str) -> bool {
    instance
        .strip_prefix(workload)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|suffix| {
            suffix.len() == NAME_SUFFIX_LEN
                && suffix.bytes().all(|b| NAME_SUFFIX_ALPHABET.contains(&b))
        })
}

#[cfg(test)]
mod naming_tests {
    #[test]
    fn an_instance_belongs_to_its_workload_only() {
        assert!(super::is_named_for("web", "web-x7k2q"));
        assert!(!super::is_named_for("web", "web-api-x7k2q"));
        assert!(super::is_named_for("web-api", "web-api-x7k2q"));
        assert!(!super::is_named_for("web", "web"));
        assert!(!super::is_named_for("web", "webx-x7k2q"));
    }
}

/// What to run and where; written by the workload controller and the scheduler.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceSpec {
    /// The owning workload's name.
    pub workload: String,
    /// The node it is bound to; empty until scheduled.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    /// The node's fencing epoch when this binding was made. An agent that
    /// learns its node has a higher epoch (its instances were evicted while
    /// it was away) stops instances of older epochs.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u64,
    /// The workload's spec at the generation this instance was made from.
    pub template: WorkloadSpec,
    /// The digest of the Config and Secret values its template read when
    /// it was made: an instance of other values is outdated (a change of a
    /// Config it reads is a rollout). Empty when it reads none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config_digest: String,
}

impl InstanceSpec {
    /// Whether this instance is what `spec`, reading values of
    /// `config_digest`, asks for.
    pub fn is_made_from(&self, spec: &WorkloadSpec, config_digest: &str) -> bool {
        self.template.same_template(spec) && self.config_digest == config_digest
    }
}

/// Lifecycle phase, as `kubectl get pods` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Accepted, not running yet (unscheduled, fetching, starting).
    #[default]
    Pending,
    /// Running.
    Running,
    /// Ended successfully and will not be restarted.
    Succeeded,
    /// Ended unsuccessfully and will not be restarted.
    Failed,
    /// Ended and waiting out its restart backoff.
    CrashLoopBackOff,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// What the agent observed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InstanceStatus {
    /// Lifecycle phase.
    pub phase: Phase,
    /// Restarts so far.
    pub restarts: u32,
    /// Whether it is ready now: traffic goes to it, a rollout counts it.
    /// Set with [`InstanceStatus::set_ready`].
    pub ready: bool,
    /// Since when it has been ready (RFC 3339, the agent's clock):
    /// `minReadySeconds` counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_since: Option<String>,
    /// When the current run started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// How the previous run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_termination: Option<Termination>,
    /// Requests served (http workloads), as last reported.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub requests: u64,
    /// Of those, answered with a 5xx (what a canary's analysis judges).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub server_errors: u64,
    /// Why it is in this phase, when that needs saying.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl InstanceStatus {
    /// Marks it ready or not; `readySince` starts when it becomes ready and
    /// is cleared when it stops being so.
    pub fn set_ready(&mut self, ready: bool) {
        if ready && !self.ready {
            self.ready_since = Some(crate::meta::now_rfc3339_millis());
        } else if !ready {
            self.ready_since = None;
        }
        self.ready = ready;
    }
}

/// How one run ended: the runtime's classes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Termination {
    /// Completed, Error, Trap, OOMKilled, DeadlineExceeded.
    pub reason: String,
    /// The guest's exit code, if it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The trap kind, for traps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trap: Option<String>,
    /// Detail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When it ended (RFC 3339).
    pub finished_at: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
