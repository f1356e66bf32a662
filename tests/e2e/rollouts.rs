//! Rollouts on real processes: a canary split by request weight, promoted,
//! carried through a control-plane restart and undone; a bad version of
//! each kind (never ready, crash looping, answering 5xx) reverted by
//! itself while the stable one keeps serving; a daemon rolled within its
//! bounds while one of its agents dies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::Cluster;
use crate::http::{ingress_of, ready, request, two_agents};

/// What a load saw.
#[derive(Debug, Default)]
struct Tally {
    total: u64,
    /// Answers by body (trimmed), for 200s.
    bodies: HashMap<String, u64>,
    /// Every answer that was not a 200: status and body.
    failed: Vec<(u16, String)>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.total += other.total;
        for (body, n) in other.bodies {
            *self.bodies.entry(body).or_default() += n;
        }
        self.failed.extend(other.failed);
    }

    /// One request through `ingress`, counted.
    fn send(&mut self, ingress: &str, path: &str) {
        self.total += 1;
        let (status, body) = request(ingress, "GET", "hello.local", path, "");
        if status == 200 {
            *self.bodies.entry(body.trim().to_string()).or_default() += 1;
        } else {
            self.failed.push((status, body));
        }
    }

    fn count(&self, body: &str) -> u64 {
        self.bodies.get(body).copied().unwrap_or(0)
    }
}

/// `clients` connections sending requests one after another to `path`.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Tally>>,
    started: Instant,
}

impl Load {
    fn start(ingress: &str, path: &'static str, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| {
                let (ingress, stop) = (ingress.to_string(), stop.clone());
                std::thread::spawn(move || {
                    let mut tally = Tally::default();
                    while !stop.load(Ordering::Relaxed) {
                        tally.send(&ingress, path);
                    }
                    tally
                })
            })
            .collect();
        Self {
            stop,
            clients,
            started: Instant::now(),
        }
    }

    fn finish(self) -> (Tally, f64) {
        self.stop.store(true, Ordering::Relaxed);
        let mut tally = Tally::default();
        for client in self.clients {
            tally.add(client.join().unwrap());
        }
        let rate = tally.total as f64 / self.started.elapsed().as_secs_f64();
        (tally, rate)
    }
}

/// `n` requests, one after another.
fn send(ingress: &str, path: &str, n: usize) -> Tally {
    let mut tally = Tally::default();
    for _ in 0..n {
        tally.send(ingress, path);
    }
    tally
}

fn workload(c: &Cluster, name: &str) -> Value {
    serde_json::from_str(&c.ok(&["get", "workloads", name, "-o", "json"])).unwrap_or_default()
}

fn progressing(workload: &Value) -> Value {
    workload["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Progressing"))
        .cloned()
        .unwrap_or_default()
}

/// Waits until the canary of `name` stands at `step` with `weight`.
fn canary_at(c: &Cluster, name: &str, step: u64, weight: u64) {
    let mut last = Value::Null;
    c.wait_until(
        &format!("the canary at step {step}, weight {weight}"),
        Duration::from_secs(30),
        || {
            last = workload(c, name);
            last["status"]["canary"]["step"] == step && last["status"]["canary"]["weight"] == weight
        },
    );
}

/// Waits until every one of `replicas` instances of `name` is of its
/// current template and ready, and the workload says the rollout is done.
pub(crate) fn rolled_out(c: &Cluster, name: &str, replicas: usize, limit: Duration) -> Value {
    let started = Instant::now();
    loop {
        let last = workload(c, name);
        let hash = last["status"]["templateHash"].clone();
        let instances: Vec<Value> = c
            .items("instances")
            .into_iter()
            .filter(|i| i["spec"]["workload"] == name)
            .collect();
        let new_and_ready = instances
            .iter()
            .filter(|i| i["metadata"]["labels"]["flotilla.dev/template-hash"] == hash)
            .filter(|i| i["status"]["ready"] == true)
            .count();
        if instances.len() == replicas
            && new_and_ready == replicas
            && last["status"]["updatedReplicas"] == replicas
            && last["status"]["canary"].is_null()
        {
            return last;
        }
        assert!(
            started.elapsed() < limit,
            "{name} did not roll out in {limit:?}: {last}\n{instances:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const HELLO: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: hello}
spec:
  module: {source: "file:MODULES/GUEST.component.wasm"}
  execution: http
  replicas: 4
  placement: {strategy: spread}
  resources: {requests: {memory: 10Mi}}
  routes: [{host: hello.local, pathPrefix: /}]
"#;

/// The hello workload of `module` (`http-hello` answers `hello from
/// flotilla`, `http-trap` answers `fine` and fails on `/trap`), with
/// `extra` spec lines.
fn hello(module: &str, extra: &str) -> String {
    HELLO.replace("GUEST", module) + extra
}

const CANARY: &str = "  strategy:
    type: Canary
    canary:
      steps: [{setWeight: 10}, {pause: {}}, {setWeight: 50}, {pause: {}}]
";

#[test]
fn a_canary_gets_its_weight_of_requests_survives_a_control_plane_restart_and_is_promoted_and_undone(
) {
    // Its load threads would be another test's noise (RSS, CPU).
    let _serial = crate::support::timing_lock();
    let (mut c, _a, _b) = two_agents();
    c.apply("hello.yaml", &hello("http-hello", CANARY));
    ready(&c, "hello", 4);
    rolled_out(&c, "hello", 4, Duration::from_secs(30));
    let ingress = ingress_of(&c, "edge-a");
    // The new version answers `fine`: 10% of the requests, whatever its
    // one replica is of five.
    c.apply("hello.yaml", &hello("http-trap", CANARY));
    canary_at(&c, "hello", 1, 10);
    c.wait_until("the ingress splits", Duration::from_secs(10), || {
        send(&ingress, "/", 20).count("fine") > 0
    });
    let tenth = send(&ingress, "/", 2000);
    eprintln!("weight 10: {:?}", tenth.bodies);
    assert!(tenth.failed.is_empty(), "{:?}", tenth.failed);
    let share = tenth.count("fine") as f64 / 2000.0;
    assert!((0.07..=0.13).contains(&share), "canary share {share}");
    // An open pause waits: `rollout status` says so and does not finish.
    let status = c.cli(&["rollout", "status", "workload/hello", "--timeout", "2s"]);
    let out = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        out.contains("weight 10%") && out.contains("rollout promote"),
        "{out}"
    );
    assert!(!status.status.success());
    c.ok(&["rollout", "promote", "workload/hello"]);
    canary_at(&c, "hello", 3, 50);
    // The control plane killed at the second pause: the canary stays where
    // it stood, and the ingress keeps splitting meanwhile.
    c.kill();
    let half = send(&ingress, "/", 2000);
    c.launch();
    eprintln!("weight 50 (control plane down): {:?}", half.bodies);
    assert!(half.failed.is_empty(), "{:?}", half.failed);
    let share = half.count("fine") as f64 / 2000.0;
    assert!((0.47..=0.53).contains(&share), "canary share {share}");
    let after = workload(&c, "hello");
    assert_eq!(after["status"]["canary"]["step"], 3, "{after}");
    assert_eq!(progressing(&after)["reason"], "CanaryPaused", "{after}");
    c.ok(&["rollout", "promote", "workload/hello", "--full"]);
    let done = rolled_out(&c, "hello", 4, Duration::from_secs(60));
    assert_eq!(
        progressing(&done)["reason"],
        "NewRevisionAvailable",
        "{done}"
    );
    assert_eq!(done["status"]["currentRevision"], 2, "{done}");
    // The agents' views caught up (after the control plane's restart their
    // watches came back with a backoff of up to 5 s): only the new version.
    c.wait_until(
        "the ingress sees only revision 2",
        Duration::from_secs(15),
        || send(&ingress, "/", 20).count("fine") == 20,
    );
    assert_eq!(send(&ingress, "/", 50).count("fine"), 50);
    // Back to revision 1, as a new rollout (a canary again): promoted.
    c.ok(&["rollout", "undo", "workload/hello", "--to-revision", "1"]);
    c.wait_until("the undo's canary", Duration::from_secs(30), || {
        !workload(&c, "hello")["status"]["canary"].is_null()
    });
    c.ok(&["rollout", "promote", "workload/hello", "--full"]);
    let undone = rolled_out(&c, "hello", 4, Duration::from_secs(60));
    assert_eq!(undone["status"]["updateRevision"], 3, "{undone}");
    assert_eq!(
        send(&ingress, "/", 50).count("hello from flotilla"),
        50,
        "revision 1 serves again"
    );
}

/// Applies `bad` and waits for the automatic rollback: returns the
/// condition's message. The workload is back at `http-hello` after.
fn rolls_back(c: &Cluster, bad: &str, limit: Duration) -> String {
    let started = Instant::now();
    // The bad template takes the next revision number, the rollback the
    // one after: a rollback before this one does not count.
    let before = workload(c, "hello")["status"]["updateRevision"]
        .as_u64()
        .unwrap_or(0);
    c.apply("hello.yaml", bad);
    let mut last = Value::Null;
    c.wait_until("the rollback", limit, || {
        last = workload(c, "hello");
        last["status"]["updateRevision"].as_u64().unwrap_or(0) >= before + 2
            && progressing(&last)["reason"] == "RolledBack"
    });
    eprintln!("rolled back after {:?}", started.elapsed());
    assert!(
        last["spec"]["module"]["source"]
            .as_str()
            .unwrap_or_default()
            .contains("http-hello"),
        "the stable template is back: {last}"
    );
    // `rollout status` fails, with the reason.
    let status = c.cli(&["rollout", "status", "workload/hello"]);
    let err = String::from_utf8_lossy(&status.stderr).to_string();
    assert!(
        !status.status.success() && err.contains("rolled back"),
        "{err}"
    );
    progressing(&last)["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn each_kind_of_bad_version_rolls_back_by_itself_while_the_stable_one_serves() {
    let _serial = crate::support::timing_lock();
    let (c, _a, _b) = two_agents();
    c.apply("hello.yaml", &hello("http-hello", ""));
    ready(&c, "hello", 4);
    rolled_out(&c, "hello", 4, Duration::from_secs(30));
    let ingress = ingress_of(&c, "edge-a");

    // Never ready: the progress deadline passes.
    let load = Load::start(&ingress, "/", 8);
    let never_ready = hello(
        "http-trap",
        "  progressDeadlineSeconds: 5\n  probes: {readiness: {httpGet: {path: /trap}, period: 1s}}\n",
    );
    let why = rolls_back(&c, &never_ready, Duration::from_secs(40));
    assert!(why.contains("has not progressed"), "{why}");
    rolled_out(&c, "hello", 4, Duration::from_secs(30));
    let (tally, rate) = load.finish();
    eprintln!("never ready: {} requests ({rate:.0}/s)", tally.total);
    // How fast is a benchmark's business (benches/rollout.py); here, only
    // that the stable version kept answering all along.
    assert!(tally.total >= 50, "only {} requests in all", tally.total);
    assert!(
        tally.failed.is_empty(),
        "{:?}",
        &tally.failed[..tally.failed.len().min(5)]
    );
    assert_eq!(tally.count("fine"), 0, "the bad version never got traffic");

    // Crash looping: its liveness fails; minReadySeconds keeps it from
    // counting as available before that shows.
    let load = Load::start(&ingress, "/", 8);
    let crash_loop = hello(
        "http-trap",
        "  minReadySeconds: 30\n  probes: {liveness: {httpGet: {path: /trap}, period: 1s, failureThreshold: 1}}\n",
    );
    // minReadySeconds well past the first liveness failures, even on a
    // loaded machine: the bad version must never count as available.
    let why = rolls_back(&c, &crash_loop, Duration::from_secs(60));
    assert!(why.contains("crash loops"), "{why}");
    rolled_out(&c, "hello", 4, Duration::from_secs(60));
    let (tally, rate) = load.finish();
    eprintln!("crash loop: {} requests ({rate:.0}/s)", tally.total);
    assert!(
        tally.failed.is_empty(),
        "{:?}",
        &tally.failed[..tally.failed.len().min(5)]
    );

    // Answering 5xx: a canary on /trap, where the stable version answers
    // and the new one fails; the analysis reverts it.
    let load = Load::start(&ingress, "/trap", 8);
    let failing_canary = hello(
        "http-trap",
        "  strategy:\n    type: Canary\n    canary:\n      steps: [{setWeight: 20}, {pause: {}}]\n      analysis: {maxErrorRate: 5%, minRequests: 50}\n",
    );
    let why = rolls_back(&c, &failing_canary, Duration::from_secs(40));
    assert!(why.contains("5xx"), "{why}");
    let (tally, rate) = load.finish();
    eprintln!("failing canary: {} requests ({rate:.0}/s)", tally.total);
    // The canary's 5xx were answered again by the stable side: no client
    // saw one, and the stable version answered every request.
    assert!(
        tally.failed.is_empty(),
        "{} of {} failed: {:?}",
        tally.failed.len(),
        tally.total,
        &tally.failed[..tally.failed.len().min(5)]
    );
    assert_eq!(tally.count("hello from flotilla"), tally.total);
    rolled_out(&c, "hello", 4, Duration::from_secs(30));
    let after = send(&ingress, "/trap", 200);
    assert!(after.failed.is_empty(), "{:?}", after.failed);
    // Events are written after the status they tell of: wait for them.
    c.wait_until("three RolledBack events", Duration::from_secs(20), || {
        c.ok(&["get", "events"]).matches("RolledBack").count() >= 3
    });
}

const DAEMON: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: sleepy}
spec:
  module: {source: "file:MODULES/sleeper.wasm"}
  replicas: 8
  args: ["ARG"]
  minReadySeconds: 1
  placement: {strategy: spread}
  resources: {requests: {memory: 10Mi}}
  strategy: {rollingUpdate: {maxSurge: 2, maxUnavailable: 1}}
"#;

#[test]
fn a_daemon_rolls_within_its_bounds_and_finishes_when_one_of_its_agents_dies() {
    let (c, _a, b) = two_agents();
    c.apply("sleepy.yaml", &DAEMON.replace("ARG", "3600"));
    rolled_out(&c, "sleepy", 8, Duration::from_secs(30));
    c.apply("sleepy.yaml", &DAEMON.replace("ARG", "3601"));
    // Sampled every 50 ms: never more than 8 + maxSurge 2 instances, never
    // fewer than 8 − maxUnavailable 1 Ready — until an agent dies.
    let started = Instant::now();
    let mut samples = 0;
    let mut b = Some(b);
    let mut new_seen = 0;
    loop {
        let instances: Vec<Value> = c
            .items("instances")
            .into_iter()
            .filter(|i| i["spec"]["workload"] == "sleepy")
            .collect();
        let ready = instances
            .iter()
            .filter(|i| i["status"]["ready"] == true)
            .count();
        let new = instances
            .iter()
            .filter(|i| i["spec"]["template"]["args"][0] == "3601")
            .count();
        if b.is_some() {
            samples += 1;
            assert!(
                instances.len() <= 10,
                "{} instances: {instances:?}",
                instances.len()
            );
            assert!(ready >= 7, "only {ready} Ready: {instances:?}");
            new_seen = new;
            if new >= 5 {
                // Half way: edge-b dies; its instances count as unavailable
                // once its lease runs out, and are replaced on edge-a.
                drop(b.take());
            }
        } else if new == 8 && instances.len() == 8 && ready == 8 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the rollout did not finish: {instances:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "daemon rollout: {samples} samples before the agent died ({new_seen} new), done in {:?}",
        started.elapsed()
    );
    assert!(samples >= 5, "too fast to sample: {samples}");
    // Once edge-b's lease runs out, its instances are replaced on edge-a.
    c.wait_until(
        "every new instance ready on edge-a",
        Duration::from_secs(60),
        || {
            let instances: Vec<Value> = c
                .items("instances")
                .into_iter()
                .filter(|i| i["spec"]["workload"] == "sleepy")
                .collect();
            instances.len() == 8
                && instances.iter().all(|i| {
                    i["spec"]["nodeName"] == "edge-a"
                        && i["status"]["ready"] == true
                        && i["spec"]["template"]["args"][0] == "3601"
                })
        },
    );
    rolled_out(&c, "sleepy", 8, Duration::from_secs(30));
    c.wait_until(
        "the rollout says it is done",
        Duration::from_secs(15),
        || progressing(&workload(&c, "sleepy"))["reason"] == "NewRevisionAvailable",
    );
}
