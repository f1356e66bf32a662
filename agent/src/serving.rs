//! Supervising a replica of an `http` workload: instead of running the
//! module, register it with the node's endpoints so the ingress instantiates
//! it per request. The replica is Ready while registered; a request that
//! traps, runs out of memory or passes its deadline fails alone (500/504)
//! and is logged, with an Event at most every few seconds per replica.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_spec::event::ObjectRef;
use flotilla_spec::instance::{Instance, InstanceStatus, Phase};
use flotilla_spec::meta::now_rfc3339_millis;
use flotilla_spec::workload::{Probe, DEFAULT_MAX_CONCURRENCY};
use tokio::sync::Semaphore;

/// The deadline of one request to an http workload without
/// `resources.limits.timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

use crate::config_refs::Unresolved;
use crate::endpoints::{Replica, RequestCounts, SharedSpec};
use crate::report::Severity;
use crate::runtime::{HandlerSpec, LoadedModule, Outcome};
use crate::supervisor::{run_spec, NodeContext, ProbeTimes};

/// How often a replica's request count is reported (when it changed), when
/// no probe ticks faster.
const COUNT_EVERY: Duration = Duration::from_secs(1);

/// Shortest time between two events about failed requests of one replica.
const FAILURE_EVENTS_EVERY: Duration = Duration::from_secs(5);

/// Serves `instance` until its task is aborted.
/// What an instance reads from Configs and Secrets, resolved, and its
/// `files` directories.
pub struct Resolved {
    /// The values (a replica that does not reload live holds no mounts).
    pub values: crate::config_refs::InstanceValues,
    /// Read-only directories of files.
    pub preopens: Vec<crate::runtime::Preopen>,
    /// The instance's folder of files (its name and uid).
    pub folder: String,
}

/// How often a `reload: live` replica reads its values again.
const RELOAD_EVERY: Duration = Duration::from_millis(500);

pub async fn serve_replica(
    ctx: Arc<NodeContext>,
    instance: Instance,
    module: Arc<LoadedModule>,
    mut status: InstanceStatus,
    resolved: Resolved,
) {
    let ns = &instance.metadata.namespace;
    let name = &instance.metadata.name;
    let about = ObjectRef {
        kind: "Instance".into(),
        namespace: ns.clone(),
        name: name.clone(),
    };
    let template = &instance.spec.template;
    if !module.is_http_handler() {
        let message = format!(
            "module {} is not an HTTP handler: execution: http needs a wasi:http/proxy component or a WASI command module (WAGI)",
            module.name()
        );
        status.phase = Phase::Failed;
        status.message = message.clone();
        ctx.reporter.status(&instance, status);
        ctx.reporter
            .event(&about, Severity::Warning, "InvalidModule", message);
        return;
    }
    let log = match ctx.logs.start_run(ns, name) {
        Ok(log) => Some(log),
        Err(e) => {
            tracing::warn!("instance {ns}/{name}: cannot open its log: {e}");
            None
        }
    };
    let run = run_spec(template, &instance.spec.workload, &resolved.values);
    let concurrency = template
        .max_concurrency
        .unwrap_or(DEFAULT_MAX_CONCURRENCY)
        .max(1) as usize;
    let mut limits = run.limits;
    // A request never runs unbounded: a handler that hangs (or waits on a
    // client that stalls its upload) would hold its slot forever.
    limits.timeout.get_or_insert(DEFAULT_REQUEST_TIMEOUT);
    let mut host = run.host;
    host.outgoing.outbound = ctx.ingress.get().map(|ingress| {
        Arc::new(crate::outbound::Discovery {
            namespace: ns.clone(),
            grants: template.grants.clone(),
            ingress: ingress.clone(),
            reporter: ctx.reporter.clone(),
            about: about.clone(),
        }) as Arc<dyn crate::runtime::Outbound>
    });
    let spec = HandlerSpec {
        env: run.env,
        host,
        dirs: resolved.preopens,
        limits,
        log: log.clone(),
    };
    let workload = format!("{ns}/{}", instance.spec.workload);
    let template_hash = instance
        .metadata
        .labels
        .get(flotilla_spec::revision::TEMPLATE_HASH_LABEL)
        .cloned()
        .unwrap_or_default();
    let counts = Arc::new(RequestCounts::default());
    let shared = SharedSpec::new(spec);
    let register = || {
        let replica = Replica {
            instance: name.clone(),
            module: module.clone(),
            spec: shared.clone(),
            routes: template.routes.clone(),
            slots: Semaphore::new(concurrency),
            outstanding: AtomicUsize::new(0),
            template_hash: template_hash.clone(),
            counts: counts.clone(),
            on_failure: Box::new(failure_reporter(ctx.clone(), about.clone())),
        };
        ctx.endpoints.register(workload.clone(), replica)
    };
    let probe = |p: &Option<Probe>| {
        let times = ProbeTimes::of(p)?;
        let path = p.as_ref()?.http_get.as_ref()?.path.clone();
        Some(HttpProbe { times, path })
    };
    let (startup, readiness, liveness) = (
        probe(&template.probes.startup),
        probe(&template.probes.readiness),
        probe(&template.probes.liveness),
    );
    let host = template
        .routes
        .first()
        .map_or_else(|| "localhost".to_string(), |r| r.host.clone());

    // Ready (registered, so the ingress routes to it) once startup has
    // passed and while readiness passes; liveness failing re-registers it,
    // as a restart.
    let mut registration = None;
    let mut started_up = startup.is_none();
    let (mut start_failures, mut ready_failures, mut live_failures) = (0u32, 0u32, 0u32);
    status.phase = Phase::Running;
    status.started_at = Some(now_rfc3339_millis());
    status.message.clear();
    if started_up && readiness.is_none() {
        registration = Some(register());
    }
    status.set_ready(registration.is_some());
    ctx.reporter.status(&instance, status.clone());
    ctx.reporter.event(
        &about,
        Severity::Normal,
        "Started",
        format!(
            "Serving HTTP on {} (a fresh instance per request)",
            ctx.node_name
        ),
    );
    // `reload: live`: its values read again beside the probes, on a timer of
    // its own, for as long as this replica serves.
    let _reloader = (template.reload == flotilla_spec::workload::Reload::Live).then(|| {
        let (ctx, instance, shared) = (ctx.clone(), instance.clone(), shared.clone());
        let (folder, mut values) = (resolved.folder, resolved.values);
        AbortOnDrop(tokio::spawn(async move {
            let mut said = String::new();
            loop {
                tokio::time::sleep(RELOAD_EVERY).await;
                // A control plane that does not answer is waited for on the
                // next turn, not forever.
                let turn = reload(&ctx, &instance, &folder, &shared, &mut values, &mut said);
                let _ = tokio::time::timeout(RELOAD_EVERY * 4, turn).await;
            }
        }))
    });
    let tick = [&startup, &readiness, &liveness]
        .into_iter()
        .flatten()
        .map(|p| p.times.period)
        .min()
        .unwrap_or(COUNT_EVERY);
    loop {
        tokio::time::sleep(tick).await;
        let mut changed = false;
        if !started_up {
            if let Some(probe) = &startup {
                match check(&module, &shared.get(), &host, probe).await {
                    Ok(()) => {
                        started_up = true;
                        start_failures = 0;
                    }
                    Err(why) => {
                        start_failures += 1;
                        if start_failures == probe.times.failure_threshold {
                            let message = format!("startup probe failing: {why}");
                            ctx.reporter.event(
                                &about,
                                Severity::Warning,
                                "Unhealthy",
                                message.clone(),
                            );
                            status.message = message;
                            changed = true;
                        }
                    }
                }
            }
        }
        let mut ready = started_up;
        if started_up {
            if let Some(probe) = &readiness {
                ready_failures = match check(&module, &shared.get(), &host, probe).await {
                    Ok(()) => 0,
                    Err(_) => ready_failures + 1,
                };
                // Not ready until it first passes; then until it fails enough.
                ready = ready_failures == 0
                    || (registration.is_some() && ready_failures < probe.times.failure_threshold);
            }
            if let Some(probe) = &liveness {
                live_failures = match check(&module, &shared.get(), &host, probe).await {
                    Ok(()) => 0,
                    Err(why) => {
                        if live_failures + 1 >= probe.times.failure_threshold {
                            let message =
                                format!("liveness probe failed: {why}; restarting the replica");
                            ctx.reporter.event(
                                &about,
                                Severity::Warning,
                                "Unhealthy",
                                message.clone(),
                            );
                            status.restarts += 1;
                            status.message = message;
                            registration = None;
                            started_up = startup.is_none();
                            ready = false;
                            changed = true;
                            0
                        } else {
                            live_failures + 1
                        }
                    }
                };
            }
        }
        match (ready, registration.is_some()) {
            (true, false) => {
                registration = Some(register());
                status.message.clear();
            }
            (false, true) => {
                registration = None;
            }
            _ => {}
        }
        if status.ready != ready {
            status.set_ready(ready);
            changed = true;
        }
        let served = counts.served.load(Ordering::Relaxed);
        let server_errors = counts.server_errors.load(Ordering::Relaxed);
        if (served, server_errors) != (status.requests, status.server_errors) {
            status.requests = served;
            status.server_errors = server_errors;
            changed = true;
        }
        if changed {
            ctx.reporter.status(&instance, status.clone());
        }
    }
}

/// An `httpGet` probe of an http replica.
struct HttpProbe {
    times: ProbeTimes,
    path: String,
}

/// One probe request, on a fresh instance: healthy on 2xx/3xx within the
/// probe's timeout.
async fn check(
    module: &LoadedModule,
    spec: &HandlerSpec,
    host: &str,
    probe: &HttpProbe,
) -> Result<(), String> {
    let request = http::Request::get(&probe.path)
        .header(http::header::HOST, host)
        .header("user-agent", "flotilla-probe")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| format!("bad probe path {:?}: {e}", probe.path))?;
    let served = tokio::time::timeout(probe.times.timeout, module.serve(request, spec))
        .await
        .map_err(|_| {
            format!(
                "GET {} took longer than {:?}",
                probe.path, probe.times.timeout
            )
        })?;
    let status = served.response.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("GET {} answered {status}", probe.path))
    }
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `reload: live`: reads the replica's Config and Secret values again; a
/// changed environment goes into the spec later requests take, changed
/// files are replaced where the guest reads them. A value that cannot be
/// read now keeps the last one (and says so in the agent's log).
async fn reload(
    ctx: &NodeContext,
    instance: &Instance,
    folder: &str,
    shared: &SharedSpec,
    values: &mut crate::config_refs::InstanceValues,
    said: &mut String,
) {
    let ns = &instance.metadata.namespace;
    let template = &instance.spec.template;
    let read = crate::config_refs::Resolver::new(&ctx.client, ns)
        .all(template)
        .await;
    let fresh = match read {
        Ok(read) => read,
        Err(Unresolved::Missing(why)) => {
            // Said once per cause: the replica keeps serving its last values.
            if *said != why {
                let about = ObjectRef {
                    kind: "Instance".into(),
                    namespace: ns.clone(),
                    name: instance.metadata.name.clone(),
                };
                ctx.reporter.event(
                    &about,
                    Severity::Warning,
                    "ConfigMissing",
                    format!("{why}; it keeps serving its last values"),
                );
                *said = why;
            }
            return;
        }
        Err(Unresolved::Unreachable(why)) => {
            tracing::debug!("instance {ns}/{}: {why}", instance.metadata.name);
            return;
        }
    };
    said.clear();
    if fresh.env != values.env || fresh.config != values.config {
        let mut next = (*shared.get()).clone();
        next.env = fresh.env.clone();
        next.host.config = Arc::new(fresh.config.iter().cloned().collect());
        shared.set(next);
        values.env = fresh.env;
        values.config = fresh.config;
    }
    if fresh.mounts != values.mounts {
        match ctx.files.refresh(ns, folder, &fresh.mounts) {
            Ok(()) => values.mounts = fresh.mounts,
            Err(e) => tracing::warn!("instance {ns}/{}: {e}", instance.metadata.name),
        }
    }
}

/// Reports failed requests: every one to the log, an Event at most every
/// [`FAILURE_EVENTS_EVERY`].
fn failure_reporter(ctx: Arc<NodeContext>, about: ObjectRef) -> impl Fn(&Outcome) + Send + Sync {
    let last = Mutex::new(None::<Instant>);
    move |outcome: &Outcome| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < FAILURE_EVENTS_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        let detail = outcome
            .trap
            .clone()
            .or_else(|| outcome.message.clone())
            .unwrap_or_default();
        ctx.reporter.event(
            &about,
            Severity::Warning,
            outcome.reason.as_str(),
            format!("A request failed: {} {detail}", outcome.reason),
        );
    }
}
