//! Chaos, short form (CI): a server and two agents in network namespaces;
//! workloads applied, scaled and deleted while the server or an agent is
//! `kill -9`ed and restarted, an agent is cut off the network for 20 s, and
//! the server's file system fills up. After every step the invariants hold:
//!
//! - every Workload the API acknowledged converges to its replicas, Running;
//! - no acknowledged write is lost, nothing deleted comes back, nothing is
//!   orphaned (every Instance belongs to a Workload);
//! - no instance runs on two nodes beyond a heartbeat or two: only the node
//!   it is bound to still writes its log;
//! - a full disk answers clearly (507/503), the server stays up, and
//!   recovers with its store intact once space returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::netns::{ip, ready_nodes, Network};

const SLEEPER: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: NAME}
spec:
  module: {source: "file:MODULES/sleeper.wasm"}
  replicas: REPLICAS
  args: ["200"]
  resources: {requests: {memory: 8Mi}}
  placement: {strategy: spread}
"#;

/// What the API acknowledged: workload → replicas.
type Model = BTreeMap<String, u64>;

struct Chaos {
    net: Network,
    modules: PathBuf,
}

impl Chaos {
    /// A server and two agents in their namespaces, the server's data on a
    /// 48 MB tmpfs; `None` (with a message) where namespaces or mounts are
    /// not allowed.
    fn start(tag: &str) -> Option<(Chaos, PathBuf)> {
        let net = match Network::create(tag) {
            Ok(net) => net,
            Err(e) => {
                crate::support::cannot_run(&format!(
                    "chaos: cannot make network namespaces here ({e}); run as root with iproute2"
                ));
                return None;
            }
        };
        let data = net.dir.path().join("server-data");
        if let Err(e) = net.tmpfs(&data, "48m") {
            crate::support::cannot_run(&format!("chaos: cannot mount a tmpfs ({e}); run as root"));
            return None;
        }
        net.start_fleet(&data);
        let chaos = Chaos {
            modules: crate::support::root().join("target/sample-modules"),
            net,
        };
        Some((chaos, data))
    }

    fn cli_ok(&self, args: &[&str]) -> Result<String, String> {
        let out = self.net.cli(args);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn apply(&self, name: &str, replicas: u64) -> Result<String, String> {
        let text = SLEEPER
            .replace("NAME", name)
            .replace("REPLICAS", &replicas.to_string())
            .replace("MODULES", self.modules.to_str().unwrap());
        let path = self.net.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, text).unwrap();
        self.cli_ok(&["apply", "-f", path.to_str().unwrap()])
    }

    /// Waits until the cluster shows exactly `model`, all Running.
    fn converged(&self, model: &Model, why: &str) {
        let started = std::time::Instant::now();
        let mut last = String::new();
        loop {
            let workloads = self.net.items("workloads");
            let instances = self.net.items("instances");
            let stored: Model = workloads
                .iter()
                .map(|w| {
                    (
                        w["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        w["spec"]["replicas"].as_u64().unwrap_or(1),
                    )
                })
                .collect();
            let mut running: BTreeMap<String, u64> = BTreeMap::new();
            let mut orphans = 0;
            for i in &instances {
                let workload = i["spec"]["workload"].as_str().unwrap_or_default();
                if !stored.contains_key(workload) {
                    orphans += 1;
                }
                if i["status"]["phase"] == "Running" {
                    *running.entry(workload.to_string()).or_default() += 1;
                }
            }
            let total: u64 = model.values().sum();
            let done = stored == *model
                && orphans == 0
                && instances.len() as u64 == total
                && model
                    .iter()
                    .all(|(w, n)| running.get(w).copied().unwrap_or(0) == *n);
            if done {
                eprintln!("chaos: converged after {why} in {:?}", started.elapsed());
                return;
            }
            if !workloads.is_empty() || !model.is_empty() {
                last = format!(
                    "acknowledged {model:?}, stored {stored:?}, running {running:?}, {} instances, {orphans} orphans",
                    instances.len()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no convergence after {why}: {last}\nserver:\n{}\na:\n{}\nb:\n{}",
                self.net.log("server"),
                self.net.log("a"),
                self.net.log("b")
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Every instance the API shows Running really runs — its log grows on
    /// the node it is bound to (a status written before a `kill -9` would
    /// otherwise pass for it) — and only that node writes its log.
    fn runs_once(&self) {
        let instances = self.net.items("instances");
        let name_of = |i: &serde_json::Value| {
            i["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let bound: BTreeMap<String, String> = instances
            .iter()
            .map(|i| {
                (
                    name_of(i),
                    i["spec"]["nodeName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        let running: Vec<String> = instances
            .iter()
            .filter(|i| i["status"]["phase"] == "Running")
            .map(name_of)
            .collect();
        let sizes = || -> Vec<(String, String, u64)> {
            let mut found = Vec::new();
            for (host, node) in [("a", "edge-a"), ("b", "edge-b")] {
                let dir = self
                    .net
                    .dir
                    .path()
                    .join(format!("agent-{host}/logs/default"));
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let size = std::fs::metadata(entry.path().join("current.log"))
                        .map(|m| m.len())
                        .unwrap_or(0);
                    found.push((node.to_string(), name, size));
                }
            }
            found
        };
        // Two heartbeats of slack for a node to hear of an eviction.
        std::thread::sleep(Duration::from_secs(2));
        let before = sizes();
        std::thread::sleep(Duration::from_secs(2));
        let after = sizes();
        let grew = |node: &str, name: &str| {
            after.iter().any(|(n, i, size)| {
                n == node
                    && i == name
                    && before
                        .iter()
                        .any(|(bn, bi, bs)| bn == n && bi == i && bs < size)
            })
        };
        for (node, name, _) in &after {
            if grew(node, name) {
                assert_eq!(
                    bound.get(name),
                    Some(node),
                    "instance {name} still runs on {node}, bound to {:?}",
                    bound.get(name)
                );
            }
        }
        for name in &running {
            let node = &bound[name];
            assert!(
                grew(node, name),
                "instance {name} is Running on {node} as the API tells it, but its log there does not grow\n{}:\n{}",
                node,
                self.net.log(node.trim_start_matches("edge-"))
            );
        }
    }
}

fn fill(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    let chunk = vec![0u8; 1 << 20];
    loop {
        file.write_all(&chunk)?;
    }
}

#[test]
fn workloads_converge_through_kills_a_partition_and_a_full_disk() {
    let Some((chaos, data)) = Chaos::start("c") else {
        return;
    };
    let net = &chaos.net;

    let mut model = Model::new();
    let acknowledge = |model: &mut Model, name: &str, replicas: u64| {
        chaos
            .apply(name, replicas)
            .unwrap_or_else(|e| panic!("apply {name}: {e}"));
        model.insert(name.to_string(), replicas);
    };
    acknowledge(&mut model, "w1", 2);
    acknowledge(&mut model, "w2", 3);
    chaos.converged(&model, "the first applies");
    chaos.runs_once();

    // 1. kill -9 of the server while writing; what it acknowledged survives.
    acknowledge(&mut model, "w3", 1);
    net.kill("server");
    // Writes while it is down fail clearly and are not in the model.
    let down = chaos.apply("lost", 1).unwrap_err();
    assert!(down.contains("cannot reach the Flotilla API"), "{down}");
    net.restart("server");
    chaos.converged(&model, "kill -9 of the server");
    chaos.runs_once();

    // 2. kill -9 of an agent while scaling and deleting.
    net.kill("a");
    acknowledge(&mut model, "w2", 1);
    chaos.cli_ok(&["delete", "workload", "w1"]).unwrap();
    model.remove("w1");
    net.restart("a");
    chaos.converged(&model, "kill -9 of edge-a");
    chaos.runs_once();

    // 3. edge-b cut off the network for 20 s: its instances move to edge-a;
    // when it comes back it stops them (fenced), so none runs twice.
    ip(&["-n", &net.ns("b"), "link", "set", "eth0", "down"]).unwrap();
    acknowledge(&mut model, "w4", 2);
    std::thread::sleep(Duration::from_secs(20));
    let alone: Vec<_> = net
        .items("instances")
        .into_iter()
        .filter(|i| i["status"]["phase"] == "Running")
        .filter(|i| i["spec"]["nodeName"] != "edge-a")
        .collect();
    assert!(
        alone.is_empty(),
        "everything Running is on edge-a: {alone:?}"
    );
    ip(&["-n", &net.ns("b"), "link", "set", "eth0", "up"]).unwrap();
    net.wait_until("edge-b is back", Duration::from_secs(30), || {
        ready_nodes(net) == 2
    });
    chaos.converged(&model, "a 20 s partition of edge-b");
    chaos.runs_once();

    // 4. the server's file system fills up: clear errors, still up, and
    // everything works again once space returns.
    let filler = data.join("filler");
    let _ = fill(&filler);
    // SQLite may have room left in pages it holds: write until it has none.
    let mut refused = None;
    for n in 0..50 {
        let name = format!("full{n}");
        match chaos.apply(&name, 0) {
            Ok(_) => {
                model.insert(name, 0);
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("a full disk refuses writes");
    assert!(
        refused.contains("disk is full") && refused.contains("free space"),
        "a full disk is named, with the fix: {refused}"
    );
    eprintln!("chaos: on a full disk: {}", refused.trim());
    assert!(
        chaos.cli_ok(&["get", "workloads"]).is_ok(),
        "reads still work on a full disk"
    );
    std::fs::remove_file(&filler).unwrap();
    acknowledge(&mut model, "w6", 1);
    chaos.converged(&model, "a full disk, then space again");
    // The store is intact after a restart too.
    net.kill("server");
    net.restart("server");
    chaos.converged(&model, "a restart after the full disk");
    chaos.runs_once();
}

/// Applies, scales or deletes at random (up to six workloads), recording in
/// `model` what the API acknowledged.
fn write_randomly(
    chaos: &Chaos,
    rng: &mut StdRng,
    model: &mut Model,
    next: &mut u32,
    times: usize,
) {
    for _ in 0..times {
        let existing: Vec<String> = model.keys().cloned().collect();
        let pick = |rng: &mut StdRng| existing[rng.random_range(0..existing.len())].clone();
        match rng.random_range(0..3) {
            0 if existing.len() < 6 => {
                *next += 1;
                let (name, replicas) = (format!("r{next}"), rng.random_range(0..=3));
                chaos
                    .apply(&name, replicas)
                    .unwrap_or_else(|e| panic!("apply {name}: {e}"));
                model.insert(name, replicas);
            }
            1 if !existing.is_empty() => {
                let (name, replicas) = (pick(rng), rng.random_range(0..=3));
                chaos
                    .apply(&name, replicas)
                    .unwrap_or_else(|e| panic!("scale {name}: {e}"));
                model.insert(name, replicas);
            }
            _ if !existing.is_empty() => {
                let name = pick(rng);
                chaos
                    .cli_ok(&["delete", "workload", &name])
                    .unwrap_or_else(|e| panic!("delete {name}: {e}"));
                model.remove(&name);
            }
            _ => {}
        }
    }
}

/// The long form: random faults in a random order, with random writes
/// around them. `CHAOS_STEPS` (default 6 in CI) and `CHAOS_SEED` (default:
/// the clock; printed, so a failure can be replayed).
#[test]
fn a_random_loop_of_faults_keeps_the_invariants() {
    let steps: usize = std::env::var("CHAOS_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    eprintln!(
        "chaos loop: {steps} steps, seed {seed} (CHAOS_SEED={seed} CHAOS_STEPS={steps} replays it)"
    );
    let Some((chaos, data)) = Chaos::start("r") else {
        return;
    };
    let net = &chaos.net;
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut model, mut next) = (Model::new(), 0);
    write_randomly(&chaos, &mut rng, &mut model, &mut next, 3);
    chaos.converged(&model, "the first writes");
    for step in 1..=steps {
        let what = match rng.random_range(0..5) {
            0 => {
                net.kill("server");
                let down = chaos.apply("lost", 1).unwrap_err();
                assert!(down.contains("cannot reach the Flotilla API"), "{down}");
                net.restart("server");
                "kill -9 of the server".to_string()
            }
            1 => {
                let agent = ["a", "b"][rng.random_range(0..2)];
                net.kill(agent);
                write_randomly(&chaos, &mut rng, &mut model, &mut next, 3);
                net.restart(agent);
                format!("kill -9 of edge-{agent} while writing")
            }
            2 => {
                let agent = ["a", "b"][rng.random_range(0..2)];
                let seconds = rng.random_range(3..=12);
                ip(&["-n", &net.ns(agent), "link", "set", "eth0", "down"]).unwrap();
                write_randomly(&chaos, &mut rng, &mut model, &mut next, 2);
                std::thread::sleep(Duration::from_secs(seconds));
                ip(&["-n", &net.ns(agent), "link", "set", "eth0", "up"]).unwrap();
                net.wait_until("both nodes Ready", Duration::from_secs(30), || {
                    ready_nodes(net) == 2
                });
                format!("a {seconds} s partition of edge-{agent}")
            }
            3 => {
                // kill -9 while the disk is full, then start on it again.
                let filler = data.join("filler");
                let _ = fill(&filler);
                for n in 0..50 {
                    if chaos.apply(&format!("full{step}x{n}"), 0).is_err() {
                        break;
                    }
                    model.insert(format!("full{step}x{n}"), 0);
                }
                net.kill("server");
                std::fs::remove_file(&filler).unwrap();
                net.restart("server");
                "kill -9 on a full disk".to_string()
            }
            _ => {
                write_randomly(&chaos, &mut rng, &mut model, &mut next, 4);
                "writes".to_string()
            }
        };
        chaos.converged(&model, &format!("step {step}: {what} (seed {seed})"));
        chaos.runs_once();
    }
}
