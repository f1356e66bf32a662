//! A template, as this node runs it: the runtime's [`RunSpec`], the restart
//! policy's backoff, and the probes' timing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flotilla_spec::workload::{RestartPolicyKind, WorkloadSpec};
use flotilla_spec::{parse_cpu_millis, parse_duration, parse_memory_bytes};

use crate::config_refs::InstanceValues;
use crate::runtime::{ExitReason, Limits, Preopen, RunSpec, Stdio};

/// The backoff of a restart policy, parsed.
#[derive(Debug, Clone, Copy)]
pub struct BackoffTimes {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Run time after which the backoff starts over.
    pub reset_after: Duration,
}

impl BackoffTimes {
    /// From a workload spec (validated at admission; defaults otherwise).
    pub fn of(spec: &WorkloadSpec) -> Self {
        let b = &spec.restart_policy.backoff;
        let parse =
            |t: &str, default: u64| parse_duration(t).unwrap_or(Duration::from_secs(default));
        Self {
            initial: parse(&b.initial, 1),
            max: parse(&b.max, 60),
            reset_after: parse(&b.reset_after, 600),
        }
    }

    /// The delay before restart number `consecutive` (0-based).
    pub fn delay(&self, consecutive: u32) -> Duration {
        let factor = 2u32.saturating_pow(consecutive.min(30));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Whether a run that ended this way is restarted under `policy`.
pub fn should_restart(policy: RestartPolicyKind, reason: ExitReason) -> bool {
    match policy {
        RestartPolicyKind::Always => true,
        RestartPolicyKind::OnFailure => reason != ExitReason::Completed,
        RestartPolicyKind::Never => false,
    }
}

/// The runtime's view of a template, with its Config and Secret values
/// read ([`crate::config_refs::Resolver::all`]).
pub(crate) fn run_spec(template: &WorkloadSpec, name: &str, values: &InstanceValues) -> RunSpec {
    let limits = &template.resources.limits;
    RunSpec {
        program_name: name.to_string(),
        args: template.args.clone(),
        env: values.env.clone(),
        host: flotilla_host_api::HostCtx {
            granted: template.capabilities(),
            config: Arc::new(values.config.iter().cloned().collect()),
            ..Default::default()
        },
        dirs: template
            .dirs
            .iter()
            .map(|d| Preopen {
                host: PathBuf::from(&d.host_path),
                guest: d.guest_path.clone(),
                read_only: d.read_only,
            })
            .collect(),
        limits: Limits {
            memory_bytes: limits
                .memory
                .as_deref()
                .and_then(|m| parse_memory_bytes(m).ok()),
            cpu_millis: limits.cpu.as_deref().and_then(|c| parse_cpu_millis(c).ok()),
            timeout: limits
                .timeout
                .as_deref()
                .and_then(|t| parse_duration(t).ok()),
        },
        stdout: Stdio::Null,
        stderr: Stdio::Null,
        stdin: None,
        usage: None,
    }
}

/// A probe, parsed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbeTimes {
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
}

impl ProbeTimes {
    /// The timing of `probe`, if there is one.
    pub(crate) fn of(probe: &Option<flotilla_spec::workload::Probe>) -> Option<Self> {
        probe.as_ref().map(|p| Self {
            period: parse_duration(&p.period).unwrap_or(Duration::from_secs(1)),
            timeout: parse_duration(&p.timeout).unwrap_or(Duration::from_secs(3)),
            failure_threshold: p.failure_threshold.max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_max() {
        let b = BackoffTimes {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            reset_after: Duration::from_secs(600),
        };
        let delays: Vec<u64> = (0..8).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.delay(1000).as_secs(), 60);
    }

    #[test]
    fn policies() {
        assert!(should_restart(
            RestartPolicyKind::Always,
            ExitReason::Completed
        ));
        assert!(!should_restart(
            RestartPolicyKind::OnFailure,
            ExitReason::Completed
        ));
        assert!(should_restart(
            RestartPolicyKind::OnFailure,
            ExitReason::OomKilled
        ));
        assert!(!should_restart(RestartPolicyKind::Never, ExitReason::Trap));
    }
}
