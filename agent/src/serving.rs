//! Supervising a replica of an `http` workload: instead of running the
//! module, register it with the node's endpoints so the ingress instantiates
//! it per request. The replica is Ready while registered; a request that
//! traps, runs out of memory or passes its deadline fails alone (500/504)
//! and is logged, with an Event at most every few seconds per replica.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_spec::event::ObjectRef;
use flotilla_spec::instance::{Instance, InstanceStatus, Phase};
use flotilla_spec::meta::now_rfc3339_millis;
use flotilla_spec::workload::DEFAULT_MAX_CONCURRENCY;
use tokio::sync::Semaphore;

use crate::endpoints::Replica;
use crate::report::Severity;
use crate::runtime::{HandlerSpec, LoadedModule, Outcome};
use crate::supervisor::{run_spec, NodeContext};

/// How often a replica's request count is reported (when it changed).
const COUNT_EVERY: Duration = Duration::from_secs(1);

/// Shortest time between two events about failed requests of one replica.
const FAILURE_EVENTS_EVERY: Duration = Duration::from_secs(5);

/// Serves `instance` until its task is aborted.
pub async fn serve_replica(
    ctx: Arc<NodeContext>,
    instance: Instance,
    module: Arc<LoadedModule>,
    mut status: InstanceStatus,
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
    let run = run_spec(template, &instance.spec.workload);
    let concurrency = template
        .max_concurrency
        .unwrap_or(DEFAULT_MAX_CONCURRENCY)
        .max(1) as usize;
    let replica = Replica {
        instance: name.clone(),
        module,
        spec: HandlerSpec {
            env: run.env,
            limits: run.limits,
            log: log.clone(),
            outbound: ctx.ingress.get().map(|ingress| {
                Arc::new(crate::outbound::Discovery {
                    namespace: ns.clone(),
                    grants: template.grants.clone(),
                    ingress: ingress.clone(),
                    reporter: ctx.reporter.clone(),
                    about: about.clone(),
                }) as Arc<dyn crate::runtime::Outbound>
            }),
        },
        routes: template.routes.clone(),
        slots: Semaphore::new(concurrency),
        outstanding: AtomicUsize::new(0),
        served: AtomicU64::new(0),
        on_failure: Box::new(failure_reporter(ctx.clone(), about.clone())),
    };
    let workload = format!("{ns}/{}", instance.spec.workload);
    let registered = ctx.endpoints.register(workload, replica);
    status.phase = Phase::Running;
    status.ready = true;
    status.started_at = Some(now_rfc3339_millis());
    status.message.clear();
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
    // Report the request count when it changed, at most every period.
    loop {
        tokio::time::sleep(COUNT_EVERY).await;
        let served = registered.replica().served.load(Ordering::Relaxed);
        if served != status.requests {
            status.requests = served;
            ctx.reporter.status(&instance, status.clone());
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
