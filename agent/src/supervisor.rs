//! The supervisor: one task per Instance bound to this node. It fetches the
//! module by digest, runs it, and applies the restart policy with exponential
//! backoff, reporting phase, restarts and the last termination as it goes.
//! Stopping an instance is aborting its task: dropping the run drops the guest.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_client::Client;
use flotilla_spec::event::ObjectRef;
use flotilla_spec::instance::{Instance, InstanceStatus, Phase, Termination};
use flotilla_spec::meta::now_rfc3339_millis;
use flotilla_spec::workload::{Execution, RestartPolicyKind, WorkloadSpec};
use flotilla_spec::{parse_cpu_millis, parse_duration, parse_memory_bytes};

use crate::config_refs::{InstanceValues, Resolver, Unresolved};
use crate::logs::LogDir;
use crate::report::{Reporter, Severity};
use crate::runtime::{
    ExitReason, Limits, LoadedModule, Outcome, Preopen, RunSpec, Runtime, RuntimeError, Stdio,
    Watchdog,
};

/// What every supervisor on a node shares.
pub struct NodeContext {
    /// The node's Wasm runtime.
    pub runtime: Arc<Runtime>,
    /// The API, for module downloads.
    pub client: Client,
    /// This node's name.
    pub node_name: String,
    /// Where instance logs go.
    pub logs: LogDir,
    /// Where downloaded modules are kept, by digest.
    pub modules_dir: PathBuf,
    /// Where compiled code is cached.
    pub compiled_dir: PathBuf,
    /// Most bytes those two folders may take (see `disk_budget`).
    pub module_cache_bytes: u64,
    /// Status and event reporting.
    pub reporter: Reporter,
    /// The node's HTTP replicas, for the ingress.
    pub endpoints: Arc<crate::endpoints::LocalEndpoints>,
    /// The node's ingress, once it serves: where guests' calls to other
    /// workloads go.
    pub ingress: std::sync::OnceLock<Arc<crate::ingress::Ingress>>,
    /// Which host directories may be granted here.
    pub host_paths: crate::host_paths::HostPathPolicy,
    /// Where daemon runs execute (`None`: on the caller's runtime).
    pub guests: Option<tokio::runtime::Handle>,
    /// How fast the node restarts crashed instances, all together.
    pub restarts: crate::restart_budget::RestartBudget,
    /// Where instances' `files` are written.
    pub files: crate::config_files::FileDirs,
}

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

/// The watchdog probes of one run.
#[derive(Debug, Clone, Copy)]
struct WatchdogProbes {
    liveness: Option<ProbeTimes>,
    readiness: Option<ProbeTimes>,
    startup: Option<ProbeTimes>,
}

/// Evaluates the probes of a running instance until liveness or startup
/// fails (then returns why); updates readiness in `status` as it changes.
async fn watch_probes(
    watchdog: &Watchdog,
    probes: WatchdogProbes,
    status: &mut InstanceStatus,
    report: impl Fn(&InstanceStatus),
) -> String {
    let WatchdogProbes {
        liveness,
        readiness,
        startup,
    } = probes;
    let started = Instant::now();
    let period = [liveness, readiness, startup]
        .iter()
        .flatten()
        .map(|p| p.period)
        .min()
        .unwrap_or(Duration::from_secs(1));
    let (mut live_failures, mut ready_failures) = (0u32, 0u32);
    let mut started_up = startup.is_none();
    loop {
        tokio::time::sleep(period).await;
        if let (false, Some(probe)) = (started_up, startup) {
            // Liveness and readiness wait for the first kick.
            if watchdog.silence().is_some() {
                started_up = true;
                if readiness.is_none() {
                    status.set_ready(true);
                    report(status);
                }
            } else {
                let allowed = probe.period.saturating_mul(probe.failure_threshold);
                if started.elapsed() >= allowed {
                    return format!(
                        "startup probe failed: no watchdog kick within {allowed:?} ({} checks every {:?})",
                        probe.failure_threshold, probe.period
                    );
                }
                continue;
            }
        }
        // Before the first kick, the silence counts from the start.
        let silence = watchdog.silence().unwrap_or_else(|| started.elapsed());
        if let Some(probe) = readiness {
            let passing = watchdog.silence().is_some_and(|s| s <= probe.timeout);
            ready_failures = if passing { 0 } else { ready_failures + 1 };
            let ready = passing || (status.ready && ready_failures < probe.failure_threshold);
            if ready != status.ready {
                status.set_ready(ready);
                report(status);
            }
        }
        if let Some(probe) = liveness {
            live_failures = if silence > probe.timeout {
                live_failures + 1
            } else {
                0
            };
            if live_failures >= probe.failure_threshold {
                return format!(
                    "liveness probe failed: no watchdog kick for {silence:.1?} (timeout {:?}, {} checks in a row)",
                    probe.timeout, probe.failure_threshold
                );
            }
        }
    }
}

enum FetchError {
    /// Worth retrying (server unreachable…).
    Transient(String),
    /// Will never work (invalid module).
    Permanent(String),
}

/// The module for `digest`: from the node's module cache, else downloaded;
/// verified and loaded into the runtime off the async threads (see
/// [`Runtime::load_bytes_in_background`]).
async fn fetch_module(
    ctx: &NodeContext,
    digest: &str,
    label: &str,
) -> Result<Arc<LoadedModule>, FetchError> {
    if let Some(loaded) = ctx.runtime.loaded(digest) {
        return Ok(loaded);
    }
    let path = ctx.modules_dir.join(format!("{digest}.wasm"));
    let (bytes, downloaded) = match tokio::fs::read(&path).await {
        Ok(bytes) => (bytes, false),
        Err(_) => {
            let bytes = ctx
                .client
                .get_blob(digest)
                .await
                .map_err(|e| FetchError::Transient(e.to_string()))?;
            (bytes, true)
        }
    };
    let keep = downloaded.then(|| bytes.clone());
    let loaded = ctx
        .runtime
        .load_bytes_in_background(label, bytes, Some(digest))
        .await;
    match loaded {
        Ok(module) => {
            match keep {
                Some(bytes) => keep_module(ctx.modules_dir.clone(), path, bytes).await,
                None => crate::disk_budget::touch(&path),
            }
            prune_module_files(ctx).await;
            Ok(module)
        }
        Err(e @ RuntimeError::DigestMismatch { .. }) => {
            // A damaged copy on disk is removed, so the next try downloads.
            let _ = tokio::fs::remove_file(&path).await;
            Err(FetchError::Transient(e.to_string()))
        }
        Err(e) => Err(FetchError::Permanent(e.to_string())),
    }
}

/// Keeps the module folders within their budget, off the async threads;
/// modules loaded now are never removed.
async fn prune_module_files(ctx: &NodeContext) {
    let (modules, compiled) = (ctx.modules_dir.clone(), ctx.compiled_dir.clone());
    let (runtime, budget) = (ctx.runtime.clone(), ctx.module_cache_bytes);
    let _ = tokio::task::spawn_blocking(move || {
        crate::disk_budget::prune(&[&modules, &compiled], budget, |digest| {
            runtime.in_use(digest)
        })
    })
    .await;
}

/// Keeps a downloaded (and verified) module in the node's module folder,
/// written atomically off the async threads.
async fn keep_module(dir: PathBuf, path: PathBuf, bytes: Vec<u8>) {
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
        std::io::Write::write_all(&mut tmp, &bytes)?;
        tmp.persist(&path).map_err(|e| e.error).map(drop)
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("cannot keep a downloaded module: {e}"),
        Err(e) => tracing::warn!("cannot keep a downloaded module: {e}"),
    }
}

/// The resolved host paths of the template's `dirs`, if this node allows
/// every one of them (see `host_paths`).
fn granted_dirs(ctx: &NodeContext, template: &WorkloadSpec) -> Result<Vec<PathBuf>, String> {
    template
        .dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            ctx.host_paths.check(
                &format!("spec.dirs[{i}].hostPath"),
                std::path::Path::new(&dir.host_path),
                &ctx.node_name,
            )
        })
        .collect()
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

/// Supervises one instance until it ends for good or the task is aborted.
pub async fn supervise(ctx: Arc<NodeContext>, instance: Instance) {
    let ns = instance.metadata.namespace.clone();
    let name = instance.metadata.name.clone();
    let about = ObjectRef {
        kind: "Instance".into(),
        namespace: ns.clone(),
        name: name.clone(),
    };
    let template = &instance.spec.template;
    let mut status = instance.status.clone().unwrap_or_default();
    let report = |status: &InstanceStatus| ctx.reporter.status(&instance, status.clone());
    let event = |severity, reason: &str, message: String| {
        ctx.reporter.event(&about, severity, reason, message)
    };
    // Failed for good: it will never run here.
    let fail = |status: &mut InstanceStatus, reason: &str, message: String| {
        tracing::warn!("instance {ns}/{name}: {message}");
        status.phase = Phase::Failed;
        status.set_ready(false);
        status.message = message.clone();
        report(status);
        event(Severity::Warning, reason, message);
    };

    if let Err(message) = granted_dirs(&ctx, template) {
        return fail(&mut status, "HostPathNotAllowed", message);
    }
    let digest = template.module.sha256.clone().unwrap_or_default();
    let mut wait = Duration::from_millis(500);
    let module = loop {
        match fetch_module(&ctx, &digest, &instance.spec.workload).await {
            Ok(module) => break module,
            Err(FetchError::Permanent(message)) => {
                return fail(&mut status, "InvalidModule", message);
            }
            Err(FetchError::Transient(message)) => {
                status.phase = Phase::Pending;
                status.message = format!("fetching module: {message}");
                report(&status);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    };

    // A guest that imports a capability its workload does not grant would
    // fail the same way on every start: it fails once, naming the grant.
    if let Err(e) = module.check_grants(&template.capabilities()) {
        return fail(&mut status, "CapabilityNotGranted", e.to_string());
    }

    // The values it reads from Configs and Secrets: it waits for missing
    // ones (ConfigMissing), said once, looked for again every few seconds.
    let mut wait = Duration::from_secs(1);
    let mut said = String::new();
    let mut values = loop {
        let resolved = Resolver::new(&ctx.client, &ns).all(template).await;
        match resolved {
            Ok(resolved) => break resolved,
            Err(unresolved) => {
                status.phase = Phase::Pending;
                match unresolved {
                    Unresolved::Missing(message) => {
                        status.message = format!("ConfigMissing: {message}");
                        if said != message {
                            event(Severity::Warning, "ConfigMissing", message.clone());
                            said = message;
                        }
                    }
                    Unresolved::Unreachable(message) => status.message = message,
                }
                report(&status);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    };
    // Kept for as long as the instance runs here; removed with it.
    let folder = format!("{name}-{}", instance.metadata.uid);
    let (_files, preopens) = match ctx.files.write(&ns, &folder, &values.mounts) {
        Ok(written) => written,
        Err(message) => return fail(&mut status, "FilesNotWritten", message),
    };
    if template.execution == Execution::Http {
        let live = template.reload == flotilla_spec::workload::Reload::Live;
        if !live {
            // Only a live replica compares them again; others hold no copy.
            values.mounts.clear();
        }
        let resolved = crate::serving::Resolved {
            values,
            preopens,
            folder,
        };
        return crate::serving::serve_replica(
            ctx.clone(),
            instance.clone(),
            module,
            status,
            resolved,
        )
        .await;
    }
    let backoff = BackoffTimes::of(template);
    let policy = template.restart_policy.policy;
    let mut consecutive = 0u32;
    loop {
        let mut spec = run_spec(template, &instance.spec.workload, &values);
        // Checked again before every run, and the resolved paths granted.
        match granted_dirs(&ctx, template) {
            Ok(resolved) => {
                for (dir, host) in spec.dirs.iter_mut().zip(resolved) {
                    dir.host = host;
                }
            }
            Err(message) => return fail(&mut status, "HostPathNotAllowed", message),
        }
        spec.dirs.extend(preopens.iter().cloned());
        let log = match ctx.logs.start_run(&ns, &name) {
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
        let probes = WatchdogProbes {
            liveness: ProbeTimes::of(&template.probes.liveness),
            readiness: ProbeTimes::of(&template.probes.readiness),
            startup: ProbeTimes::of(&template.probes.startup),
        };
        let probed = !template.probes.is_empty();
        let watchdog = Watchdog::new();
        if probed {
            spec.host.watchdog = Some(watchdog.clone());
        }
        status.phase = Phase::Running;
        status.set_ready(probes.readiness.is_none() && probes.startup.is_none());
        status.started_at = Some(now_rfc3339_millis());
        status.message.clear();
        report(&status);
        event(
            Severity::Normal,
            "Started",
            // The same words each time, so restarts fold into one Event
            // with a count; the restart number is in the status.
            format!("Started on {}", ctx.node_name),
        );
        let started = Instant::now();
        let run = {
            let module = module.clone();
            crate::guest_threads::run_on(ctx.guests.as_ref(), async move { module.run(spec).await })
        };
        let run = async {
            run.await.unwrap_or_else(|e| {
                Err(RuntimeError::Engine(format!("the run's task failed: {e}")))
            })
        };
        let result = if probed {
            tokio::select! {
                result = run => Some(result),
                why = watch_probes(&watchdog, probes, &mut status, report) => {
                    event(Severity::Warning, "Unhealthy", why.clone());
                    if let Some(log) = &log {
                        log.note(&format!("[flotilla] {why}; killing the instance"));
                    }
                    status.last_termination = Some(Termination {
                        reason: "Unhealthy".into(),
                        exit_code: None,
                        trap: None,
                        message: format!("{why}; killed"),
                        finished_at: now_rfc3339_millis(),
                    });
                    None
                }
            }
        } else {
            Some(run.await)
        };
        let (ended, exit) = match result {
            // Killed by its liveness probe: a failure, for the restart policy.
            None => (
                status.last_termination.clone().unwrap_or_default(),
                ExitReason::Error,
            ),
            Some(Ok(outcome)) => (termination(&outcome), outcome.reason),
            Some(Err(e)) => {
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
        event(severity, &reason, format!("Run ended: {reason} ({detail})"));
        status.set_ready(false);
        status.last_termination = Some(ended);
        if !should_restart(policy, exit) {
            status.phase = if completed {
                Phase::Succeeded
            } else {
                Phase::Failed
            };
            report(&status);
            return;
        }
        if started.elapsed() >= backoff.reset_after {
            consecutive = 0;
        }
        let own = backoff.delay(consecutive);
        consecutive = consecutive.saturating_add(1);
        status.restarts += 1;
        if !own.is_zero() {
            status.phase = Phase::CrashLoopBackOff;
            status.message = format!("back-off {own:?} restarting failed instance");
            report(&status);
            event(Severity::Warning, "BackOff", status.message.clone());
            tokio::time::sleep(own).await;
        }
        // Then the node's budget: the slot is reserved only once this
        // instance's own backoff is over, so a long backoff holds up no one.
        let budget = ctx.restarts.reserve(Instant::now());
        if !budget.is_zero() {
            status.phase = Phase::CrashLoopBackOff;
            status.message = format!(
                "back-off {budget:?} restarting failed instance (this node restarts at most {} instances a second: --max-restarts-per-second)",
                ctx.restarts.per_second()
            );
            report(&status);
            tokio::time::sleep(budget).await;
        }
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
