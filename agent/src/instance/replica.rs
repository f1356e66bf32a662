//! An http replica: instead of running the module, it registers with the
//! node's endpoints so the ingress instantiates it per request. It is
//! registered (Ready) once startup has passed and while readiness passes;
//! its `httpGet` probes are requests on fresh instances; a failed startup
//! or liveness probe restarts it in place (deregistered, counted, probed
//! anew). A request that traps, runs out of memory or passes its deadline
//! fails alone (500/504) and is logged, with an Event at most every few
//! seconds per replica.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_spec::event::ObjectRef;
use flotilla_spec::workload::{Probe, DEFAULT_MAX_CONCURRENCY};
use tokio::sync::Semaphore;

use super::lifecycle::Lifecycle;
use super::prepare::Prepared;
use super::probes::{Change, ProbeKind, ProbeSet};
use super::template::{run_spec, ProbeTimes};
use super::NodeContext;
use crate::endpoints::{Replica, RequestCounts, SharedSpec};
use crate::report::Severity;
use crate::runtime::{HandlerSpec, LoadedModule, Outcome};

/// The deadline of one request to an http workload without
/// `resources.limits.timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a replica's request count is reported (when it changed), when
/// no probe ticks faster.
const COUNT_EVERY: Duration = Duration::from_secs(1);

/// Shortest time between two events about failed requests of one replica.
const FAILURE_EVENTS_EVERY: Duration = Duration::from_secs(5);

/// Serves the replica of `life` until its task is aborted.
pub(crate) async fn serve(ctx: Arc<NodeContext>, mut life: Lifecycle, mut prepared: Prepared) {
    let instance = life.instance().clone();
    let (ns, name) = (&instance.metadata.namespace, &instance.metadata.name);
    let about = life.about().clone();
    let template = &instance.spec.template;
    let module = prepared.module.clone();
    if !module.is_http_handler() {
        return life.fail(
            "InvalidModule",
            format!(
                "module {} is not an HTTP handler: execution: http needs a wasi:http/proxy component or a WASI command module (WAGI)",
                module.name()
            ),
        );
    }
    let log = match ctx.logs.start_run(ns, name) {
        Ok(log) => Some(log),
        Err(e) => {
            tracing::warn!("instance {ns}/{name}: cannot open its log: {e}");
            None
        }
    };
    let run = run_spec(template, &instance.spec.workload, &prepared.values);
    let concurrency = template
        .max_concurrency
        .unwrap_or(DEFAULT_MAX_CONCURRENCY)
        .max(1) as usize;
    let mut limits = run.limits;
    // A request never runs unbounded: a handler that hangs (or waits on a
    // client that stalls its upload) would hold its slot forever.
    limits.timeout.get_or_insert(DEFAULT_REQUEST_TIMEOUT);
    let mut host = run.host;
    host.keyvalue = prepared.keyvalue.clone();
    host.outgoing.outbound = ctx.ingress.get().map(|ingress| {
        Arc::new(crate::outbound::Discovery {
            namespace: ns.clone(),
            workload: format!("{ns}/{}", instance.spec.workload),
            grants: template.grants.clone(),
            ingress: ingress.clone(),
            reporter: ctx.reporter.clone(),
            about: about.clone(),
        }) as Arc<dyn crate::runtime::Outbound>
    });
    // Every request's instance adds its CPU time and memory to the
    // replica's usage (the node's metrics), while the replica lives.
    let tracking = ctx
        .metrics
        .track(ns, name, &instance.spec.workload, limits.memory_bytes);
    let spec = HandlerSpec {
        env: run.env,
        host,
        dirs: prepared.preopens.clone(),
        limits,
        log: log.clone(),
        usage: Some(tracking.usage.clone()),
    };
    let workload = format!("{ns}/{}", instance.spec.workload);
    let template_hash = instance
        .metadata
        .labels
        .get(flotilla_spec::revision::TEMPLATE_HASH_LABEL)
        .cloned()
        .unwrap_or_default();
    let timing = ctx.metrics.time_requests(ns, &instance.spec.workload, name);
    let counts = Arc::new(RequestCounts {
        duration: Some(timing.histogram.clone()),
        ..RequestCounts::default()
    });
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
    let path = |p: &Option<Probe>| Some(p.as_ref()?.http_get.as_ref()?.path.clone());
    let paths = [
        (ProbeKind::Startup, path(&template.probes.startup)),
        (ProbeKind::Readiness, path(&template.probes.readiness)),
        (ProbeKind::Liveness, path(&template.probes.liveness)),
    ];
    // Only probes with a request to make (validation allows no other).
    let times = |p: &Option<Probe>| ProbeTimes::of(p).filter(|_| path(p).is_some());
    let mut probes = ProbeSet::new(
        times(&template.probes.startup),
        times(&template.probes.readiness),
        times(&template.probes.liveness),
        Instant::now(),
    );
    let host = template
        .routes
        .first()
        .map_or_else(|| "localhost".to_string(), |r| r.host.clone());

    // Registered (so the ingress routes to it) exactly while ready.
    let mut registration = probes.ready().then(register);
    life.running(registration.is_some());
    life.event(
        Severity::Normal,
        "Started",
        format!(
            "Serving HTTP on {} (a fresh instance per request)",
            ctx.node_name
        ),
    );
    // `reload: live`: its values read again beside the probes, on a timer of
    // its own, for as long as this replica serves.
    let live = template.reload == flotilla_spec::workload::Reload::Live;
    if !live {
        // Only a live replica compares them again; others hold no copy.
        prepared.values.mounts.clear();
    }
    let _reloader = live.then(|| {
        super::reload::start(
            ctx.clone(),
            instance.clone(),
            prepared.folder.clone(),
            shared.clone(),
            std::mem::take(&mut prepared.values),
        )
    });
    let serving = async {
        loop {
            let next = probes
                .next_due()
                .map_or(COUNT_EVERY, |due| {
                    due.saturating_duration_since(Instant::now())
                })
                .min(COUNT_EVERY);
            tokio::time::sleep(next).await;
            let now = Instant::now();
            for (kind, times) in probes.due(now) {
                let Some((_, Some(path))) = paths.iter().find(|(k, _)| *k == kind) else {
                    continue;
                };
                let result = check(&module, &shared.get(), &host, path, times.timeout).await;
                match probes.record(kind, result, now) {
                    Some(Change::Ready(true)) => {
                        registration.get_or_insert_with(register);
                        life.set_ready(true);
                    }
                    Some(Change::Ready(false)) => {
                        registration = None;
                        life.set_ready(false);
                    }
                    Some(Change::Failed(why)) => {
                        let message = format!("{why}; restarting the replica");
                        life.event(Severity::Warning, "Unhealthy", message.clone());
                        registration = None;
                        life.restarted(message);
                        probes.restart(Instant::now());
                        if probes.ready() {
                            registration = Some(register());
                            life.set_ready(true);
                        }
                        break;
                    }
                    None => {}
                }
            }
            life.counts(
                counts.served.load(Ordering::Relaxed),
                counts.server_errors.load(Ordering::Relaxed),
            );
        }
    };
    // Past a volume's sizeLimit it is stopped for good (its workload
    // replaces it, with empty volumes), as the kubelet evicts a pod.
    let why = tokio::select! {
        () = serving => return, // it never ends: it loops
        why = prepared.volumes.watch() => why,
    };
    drop(registration);
    life.fail("VolumeQuotaExceeded", why);
}

/// One probe request, on a fresh instance: healthy on 2xx/3xx within the
/// probe's timeout.
async fn check(
    module: &LoadedModule,
    spec: &HandlerSpec,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<(), String> {
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .header("user-agent", "flotilla-probe")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| format!("bad probe path {:?}: {e}", path))?;
    let served = tokio::time::timeout(timeout, module.serve(request, spec))
        .await
        .map_err(|_| format!("GET {} took longer than {:?}", path, timeout))?;
    let status = served.response.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("GET {} answered {status}", path))
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
