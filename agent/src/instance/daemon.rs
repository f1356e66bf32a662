//! A daemon instance: its module's entry point run, and run again under
//! the restart policy with exponential backoff (then the node's restart
//! budget), its probes judged by the watchdog kicks of the run.

use std::sync::Arc;
use std::time::Instant;

use flotilla_spec::instance::Termination;
use flotilla_spec::meta::now_rfc3339_millis;

use super::lifecycle::Lifecycle;
use super::prepare::{granted_dirs, Prepared};
use super::probes::{Change, ProbeKind, ProbeSet};
use super::template::{run_spec, should_restart, BackoffTimes, ProbeTimes};
use super::NodeContext;
use crate::report::Severity;
use crate::runtime::{ExitReason, Outcome, RuntimeError, Stdio, Watchdog};

/// Runs the daemon of `life` until it ends for good or the task is aborted.
pub(crate) async fn run(ctx: Arc<NodeContext>, mut life: Lifecycle, prepared: Prepared) {
    let instance = life.instance().clone();
    let (ns, name) = (&instance.metadata.namespace, &instance.metadata.name);
    let template = &instance.spec.template;
    let backoff = BackoffTimes::of(template);
    let policy = template.restart_policy.policy;
    let mut consecutive = 0u32;
    let tracking = ctx.metrics.track(
        ns,
        name,
        &instance.spec.workload,
        template
            .resources
            .limits
            .memory
            .as_deref()
            .and_then(|m| flotilla_spec::parse_memory_bytes(m).ok()),
    );
    loop {
        let mut spec = run_spec(template, &instance.spec.workload, &prepared.values);
        spec.usage = Some(tracking.usage.clone());
        // Checked again before every run, and the resolved paths granted.
        match granted_dirs(&ctx, template) {
            Ok(resolved) => {
                for (dir, host) in spec.dirs.iter_mut().zip(resolved) {
                    dir.host = host;
                }
            }
            Err(message) => return life.fail("HostPathNotAllowed", message),
        }
        spec.dirs.extend(prepared.preopens.iter().cloned());
        let log = match ctx.logs.start_run(ns, name) {
            Ok(log) => Some(log),
            Err(e) => {
                tracing::warn!("instance {ns}/{name}: cannot open its log: {e}");
                None
            }
        };
        if let Some(log) = &log {
            spec.stdout = Stdio::Log(log.clone());
            spec.stderr = Stdio::Log(log.clone());
        }
        let started = Instant::now();
        let mut probes = ProbeSet::new(
            ProbeTimes::of(&template.probes.startup),
            ProbeTimes::of(&template.probes.readiness),
            ProbeTimes::of(&template.probes.liveness),
            started,
        );
        spec.host.keyvalue = prepared.keyvalue.clone();
        let watchdog = Watchdog::new();
        if !probes.is_empty() {
            spec.host.watchdog = Some(watchdog.clone());
        }
        life.running(probes.ready());
        life.event(
            Severity::Normal,
            "Started",
            // The same words each time, so restarts fold into one Event
            // with a count; the restart number is in the status.
            format!("Started on {}", ctx.node_name),
        );
        let run = {
            let module = prepared.module.clone();
            crate::guest_threads::run_on(ctx.guests.as_ref(), async move { module.run(spec).await })
        };
        let run = async {
            run.await.unwrap_or_else(|e| {
                Err(RuntimeError::Engine(format!("the run's task failed: {e}")))
            })
        };
        // Ok: the run ended; Err: a probe killed it, for this reason.
        let result = tokio::select! {
            result = run => Ok(result),
            why = watch(&mut probes, &watchdog, started, &mut life) => {
                life.event(Severity::Warning, "Unhealthy", why.clone());
                if let Some(log) = &log {
                    log.note(&format!("[flotilla] {why}; killing the instance"));
                }
                Err(why)
            }
            why = prepared.volumes.watch() => {
                // Evicted, as the kubelet does: stopped for good (its
                // workload replaces it, with empty volumes).
                if let Some(log) = &log {
                    log.note(&format!("[flotilla] {why}"));
                }
                life.ended(Termination {
                    reason: "VolumeQuotaExceeded".into(),
                    exit_code: None,
                    trap: None,
                    message: why.clone(),
                    finished_at: now_rfc3339_millis(),
                });
                return life.fail("VolumeQuotaExceeded", why);
            }
        };
        let (ended, exit) = match result {
            // Killed by a probe: a failure, for the restart policy.
            Err(why) => (
                Termination {
                    reason: "Unhealthy".into(),
                    exit_code: None,
                    trap: None,
                    message: format!("{why}; killed"),
                    finished_at: now_rfc3339_millis(),
                },
                ExitReason::Error,
            ),
            Ok(Ok(outcome)) => (termination(&outcome), outcome.reason),
            Ok(Err(e)) => {
                let ended = Termination {
                    reason: ExitReason::Error.to_string(),
                    exit_code: None,
                    trap: None,
                    message: format!("could not start: {e}"),
                    finished_at: now_rfc3339_millis(),
                };
                (ended, ExitReason::Error)
            }
        };
        let reason = ended.reason.clone();
        tracking.ended(&reason);
        let completed = exit == ExitReason::Completed;
        if let Some(log) = &log {
            log.note(&format!("[flotilla] run ended: {reason} {}", ended.message));
        }
        let severity = if completed {
            Severity::Normal
        } else {
            Severity::Warning
        };
        let detail = match (&ended.exit_code, &ended.trap) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(trap)) => format!("trap {trap}"),
            _ => ended.message.lines().next().unwrap_or_default().to_string(),
        };
        life.event(severity, &reason, format!("Run ended: {reason} ({detail})"));
        life.ended(ended);
        if !should_restart(policy, exit) {
            return life.finished(completed);
        }
        if started.elapsed() >= backoff.reset_after {
            consecutive = 0;
        }
        let own = backoff.delay(consecutive);
        consecutive = consecutive.saturating_add(1);
        life.restarting();
        if !own.is_zero() {
            let message = format!("back-off {own:?} restarting failed instance");
            life.back_off(message.clone());
            life.event(Severity::Warning, "BackOff", message);
            tokio::time::sleep(own).await;
        }
        // Then the node's budget: the slot is reserved only once this
        // instance's own backoff is over, so a long backoff holds up no one.
        let budget = ctx.restarts.reserve(Instant::now());
        if !budget.is_zero() {
            life.back_off(format!(
                "back-off {budget:?} restarting failed instance (this node restarts at most {} instances a second: --max-restarts-per-second)",
                ctx.restarts.per_second()
            ));
            tokio::time::sleep(budget).await;
        }
    }
}

/// Judges the run's probes by its watchdog until startup or liveness fails
/// (then returns why); readiness goes to the status as it changes. Without
/// probes, never returns.
async fn watch(
    probes: &mut ProbeSet,
    watchdog: &Watchdog,
    started: Instant,
    life: &mut Lifecycle,
) -> String {
    loop {
        let Some(due) = probes.next_due() else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(due.into()).await;
        let now = Instant::now();
        for (kind, times) in probes.due(now) {
            let result = check(kind, times, watchdog, started);
            match probes.record(kind, result, now) {
                Some(Change::Ready(ready)) => life.set_ready(ready),
                Some(Change::Failed(why)) => return why,
                None => {}
            }
        }
    }
}

/// One check of a watchdog probe: startup passes once the guest has kicked
/// at all; readiness while its last kick is within the timeout; liveness
/// too, its silence counted from the start until the first kick.
fn check(
    kind: ProbeKind,
    times: ProbeTimes,
    watchdog: &Watchdog,
    started: Instant,
) -> Result<(), String> {
    let silence = watchdog.silence();
    let passing = match kind {
        ProbeKind::Startup => silence.is_some(),
        ProbeKind::Readiness => silence.is_some_and(|s| s <= times.timeout),
        ProbeKind::Liveness => silence.unwrap_or_else(|| started.elapsed()) <= times.timeout,
    };
    if passing {
        return Ok(());
    }
    Err(match silence {
        None => format!(
            "no watchdog kick yet ({:.1?} since the start)",
            started.elapsed()
        ),
        Some(s) => format!("no watchdog kick for {s:.1?} (timeout {:?})", times.timeout),
    })
}

fn termination(outcome: &Outcome) -> Termination {
    Termination {
        reason: outcome.reason.to_string(),
        exit_code: outcome.exit_code,
        trap: outcome.trap.clone(),
        message: outcome.message.clone().unwrap_or_default(),
        finished_at: now_rfc3339_millis(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn watchdog_checks_follow_the_kicks() {
        let times = ProbeTimes {
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            failure_threshold: 1,
        };
        let watchdog = Watchdog::new();
        let started = Instant::now();
        // Never kicked: startup and readiness fail; liveness counts from the start.
        assert!(check(ProbeKind::Startup, times, &watchdog, started).is_err());
        assert!(check(ProbeKind::Readiness, times, &watchdog, started).is_err());
        assert!(check(ProbeKind::Liveness, times, &watchdog, started).is_ok());
        let long_ago = started - Duration::from_secs(10);
        let e = check(ProbeKind::Liveness, times, &watchdog, long_ago).unwrap_err();
        assert!(e.contains("no watchdog kick yet"), "{e}");
        watchdog.kick();
        for kind in [
            ProbeKind::Startup,
            ProbeKind::Readiness,
            ProbeKind::Liveness,
        ] {
            assert!(check(kind, times, &watchdog, long_ago).is_ok(), "{kind:?}");
        }
    }
}
