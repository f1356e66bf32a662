//! A control plane of several servers on real etcd members: the leader
//! killed while a client writes and during a rollout, a node's disk
//! filled, etcd members lost one and two at a time,
//! a watch resumed past a compaction, and a single server's store migrated
//! into etcd.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster::*;
use crate::etcd::Etcd;
use crate::fleet::Agent;
use crate::rollouts::rolled_out;
/// Stateful replicas `db-0` and `db-1`, spread, each with a persistent
/// volume on its node; the guest reads its volume, writes a file, sleeps.
use crate::volumes::STATEFUL;

const SLEEPERS: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: sleepers}
spec:
  module: {source: "file:MODULES/sleeper.wasm"}
  replicas: 3
  args: ["3600"]
  resources: {requests: {memory: 16Mi, cpu: 10m}}
"#;

/// An agent that knows every server.
fn agent(first: &Cluster, servers: &str, name: &str) -> Agent {
    agent_with(first, servers, name, &[])
}

/// An agent that knows every server, with `extra` arguments; its data
/// folder is `agent-NAME` in `first`'s folder.
fn agent_with(first: &Cluster, servers: &str, name: &str, extra: &[&str]) -> Agent {
    let token_file = first.dir.path().join(format!("token-{name}"));
    std::fs::copy(first.data_dir().join("join-token"), &token_file).unwrap();
    let log = std::fs::File::create(first.dir.path().join(format!("agent-{name}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["agent", "--server", servers, "--token-file"])
        .arg(&token_file)
        .args(["--name", name, "--ingress", "127.0.0.1:0", "--data-dir"])
        .arg(first.dir.path().join(format!("agent-{name}")))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .env("FLOTILLA_LOG", "info")
        .spawn()
        .unwrap();
    Agent(child)
}

fn servers_of(servers: &[&Cluster]) -> String {
    let all: Vec<String> = servers.iter().map(|s| s.base()).collect();
    all.join(",")
}

/// A config naming every server, for the CLI.
fn shared_config(first: &Cluster, servers: &[&Cluster]) -> std::path::PathBuf {
    let path = first.dir.path().join("all-servers.yaml");
    let text = std::fs::read_to_string(first.config()).unwrap();
    let mut config: Value = serde_yaml_ng::from_str(&text).unwrap();
    config["servers"] = servers.iter().map(|s| s.base()).collect::<Vec<_>>().into();
    std::fs::write(&path, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
    path
}

fn cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .env("FLOTILLA_CONFIG", config)
        .output()
        .unwrap()
}

fn running(c: &Cluster, workload: &str) -> usize {
    c.items("instances")
        .iter()
        .filter(|i| i["spec"]["workload"] == workload && i["status"]["phase"] == "Running")
        .count()
}

/// The URL of the server whose controllers lead (from the leader key).
fn leader(etcd: &Etcd, prefix: &str) -> Option<String> {
    let out = etcd.ctl(&["get", &format!("/{prefix}/leader"), "--print-value-only"]);
    let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
    value
        .split(' ')
        .next()
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Three servers on `etcd` under `prefix` (with a 2 s leader lease) and
/// `agents` agents (`node-1`…) that know all three, once their nodes are
/// Ready.
fn three_servers(etcd: &Etcd, prefix: &str, agents: usize) -> ([Cluster; 3], Vec<Agent>) {
    let store = etcd.url(prefix);
    let args = ["--store", store.as_str(), "--leader-lease", "2s"];
    let first = Cluster::start_server_with(&args);
    let second = Cluster::start_server_sharing(&first, &args);
    let third = Cluster::start_server_sharing(&first, &args);
    let list = servers_of(&[&first, &second, &third]);
    let agents: Vec<Agent> = (1..=agents)
        .map(|i| agent(&first, &list, &format!("node-{i}")))
        .collect();
    first.wait_until("every node Ready", Duration::from_secs(30), || {
        ready_nodes(&first) == agents.len()
    });
    ([first, second, third], agents)
}

#[test]
fn killing_the_leading_server_loses_no_acknowledged_write_and_another_leads_within_5s() {
    let Some(etcd) = Etcd::start(3) else { return };
    let ([first, second, third], _agents) = three_servers(&etcd, "ha", 3);
    let servers = [&first, &second, &third];
    let list = servers_of(&servers);
    // An upload through one server, run by agents of all three.
    first.apply("sleepers.yaml", SLEEPERS);
    first.wait_until("3 sleepers run", Duration::from_secs(30), || {
        running(&first, "sleepers") == 3
    });
    let leading = leader(&etcd, "ha").expect("a leader");
    let (victim, rest): (Vec<&Cluster>, Vec<&Cluster>) =
        servers.iter().partition(|s| s.base() == leading);
    assert_eq!(
        victim.len(),
        1,
        "the leader {leading} is one of the servers"
    );
    let survivor = rest[0];

    // A client writing continuously through any server.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = flotilla_client::Client::new(
        &list,
        flotilla_client::Credentials {
            ca_pem: first.ca_pem(),
            token: Some(first.token()),
            identity: None,
        },
    )
    .unwrap();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, acknowledged, stop) = (client.clone(), acknowledged.clone(), stop.clone());
        let handle = runtime.handle().clone();
        std::thread::spawn(move || {
            let mut refused = 0;
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let name = format!("ack-{i}");
                let object = json!({"apiVersion": "flotilla.dev/v1", "kind": "Config",
                    "metadata": {"name": name, "namespace": "default"}, "data": {"i": i.to_string()}});
                let path = "/apis/flotilla.dev/v1/namespaces/default/configs";
                match handle.block_on(client.create(path, &object)) {
                    Ok(_) => acknowledged.lock().unwrap().push(name),
                    Err(_) => refused += 1,
                }
            }
            refused
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY of the cast: the victim is one of ours; kill -9 by pid.
    let killed_at = Instant::now();
    let pid = victim[0].pid();
    assert!(Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let mut took = None;
    while killed_at.elapsed() < Duration::from_secs(15) {
        if let Some(now) = leader(&etcd, "ha").filter(|l| *l != leading) {
            took = Some((killed_at.elapsed(), now));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (took, new_leader) = took.expect("another server leads");
    eprintln!("{new_leader} leads {took:?} after the leader was killed");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // The workloads converge under the new leader: scaled, and bound.
    let config = shared_config(&first, &servers);
    let scaled = cli(
        &config,
        &["scale", "workload", "sleepers", "--replicas", "6"],
    );
    assert!(
        scaled.status.success(),
        "{}",
        String::from_utf8_lossy(&scaled.stderr)
    );
    survivor.wait_until("6 sleepers run", Duration::from_secs(30), || {
        running(survivor, "sleepers") == 6
    });
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let refused = writer.join().unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    eprintln!(
        "{} writes acknowledged, {refused} refused",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() > 20,
        "the writer wrote on: {}",
        acknowledged.len()
    );
    // Every acknowledged write is there, read through a surviving server.
    let stored: std::collections::HashSet<String> = survivor
        .items("configs")
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|n| !stored.contains(*n))
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
}

/// A rolling update of at least 4 × 2 s: one new instance at a time, each
/// Ready 2 s before the next (time for the leader to die in the middle).
const SLOW_ROLL: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: sleepers}
spec:
  module: {source: "file:MODULES/sleeper.wasm"}
  replicas: 4
  args: ["3600"]
  minReadySeconds: 2
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  resources: {requests: {memory: 16Mi, cpu: 10m}}
"#;

/// The node each Running `db-N` is on, by name.
fn db_nodes(c: &Cluster) -> Vec<(String, String)> {
    c.items("instances")
        .iter()
        .filter(|i| i["spec"]["workload"] == "db" && i["status"]["phase"] == "Running")
        .map(|i| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (text(&i["metadata"]["name"]), text(&i["spec"]["nodeName"]))
        })
        .collect()
}

#[test]
fn killing_the_leader_during_a_rollout_finishes_it_and_never_moves_or_doubles_a_stateful_replica() {
    let Some(etcd) = Etcd::start(3) else { return };
    let ([first, second, third], _agents) = three_servers(&etcd, "roll", 2);
    let servers = [&first, &second, &third];
    // Each new db-N Ready 3 s before the next is replaced: the leader dies
    // with this rollout under way too.
    let slow_db = STATEFUL.replace("  replicas: 2\n", "  replicas: 2\n  minReadySeconds: 3\n");
    assert_ne!(slow_db, STATEFUL);
    first.apply("db.yaml", &slow_db);
    first.apply("sleepers.yaml", SLOW_ROLL);
    let mut pinned = Vec::new();
    first.wait_until("db-0 and db-1 run", Duration::from_secs(60), || {
        pinned = db_nodes(&first);
        pinned.len() == 2
    });
    pinned.sort();
    rolled_out(&first, "sleepers", 4, Duration::from_secs(60));
    let leading = leader(&etcd, "roll").expect("a leader");
    let victim = *servers
        .iter()
        .find(|s| s.base() == leading)
        .expect("the leader is one of the servers");
    let survivor = *servers.iter().find(|s| s.base() != leading).unwrap();

    // From now until the end, sampled through the survivor: a db-N Running
    // anywhere but on the node holding its volume is a replica moved or
    // run twice.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, pinned) = (stop.clone(), pinned.clone());
        let config = survivor.config();
        std::thread::spawn(move || {
            // Counted only when the list was answered and showed db's
            // replicas: a failed call checks nothing.
            let mut samples = 0;
            while !stop.load(Ordering::Relaxed) {
                let Ok(out) = Command::new(env!("CARGO_BIN_EXE_flotilla"))
                    .args(["get", "instances", "-o", "json"])
                    .env("FLOTILLA_CONFIG", &config)
                    .output()
                else {
                    continue;
                };
                let listed: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                let mut seen = false;
                for i in listed["items"].as_array().into_iter().flatten() {
                    if i["spec"]["workload"] != "db" || i["status"]["phase"] != "Running" {
                        continue;
                    }
                    let (name, node) = (&i["metadata"]["name"], &i["spec"]["nodeName"]);
                    if !pinned.iter().any(|(n, o)| n == name && o == node) {
                        return Err(format!(
                            "{name} Running on {node}, its volume is on {pinned:?}"
                        ));
                    }
                    seen = true;
                }
                samples += usize::from(out.status.success() && seen);
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(samples)
        })
    };

    // New versions of both, acknowledged; the leader dies once the rolling
    // update has begun and before it is done.
    survivor.apply("db.yaml", &slow_db.replace("600000", "600001"));
    survivor.apply("sleepers.yaml", &SLOW_ROLL.replace("3600", "3601"));
    survivor.wait_until("the rollout is under way", Duration::from_secs(30), || {
        let w: Value =
            serde_json::from_str(&survivor.ok(&["get", "workloads", "sleepers", "-o", "json"]))
                .unwrap_or_default();
        w["status"]["updatedReplicas"]
            .as_u64()
            .is_some_and(|n| (1..4).contains(&n))
    });
    let db: Value = serde_json::from_str(&survivor.ok(&["get", "workloads", "db", "-o", "json"]))
        .unwrap_or_default();
    let killed_at = Instant::now();
    assert!(Command::new("kill")
        .args(["-9", &victim.pid().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(
        db["status"]["updatedReplicas"].as_u64().unwrap_or(0) < 2,
        "db's rollout was under way when the leader died: {}",
        db["status"]
    );
    survivor.wait_until("another server leads", Duration::from_secs(10), || {
        leader(&etcd, "roll").is_some_and(|l| l != leading)
    });
    // Both finish under the new leader, within a bound.
    rolled_out(survivor, "sleepers", 4, Duration::from_secs(60));
    survivor.wait_until(
        "db-0 and db-1 run the new version",
        Duration::from_secs(60),
        || {
            survivor
                .items("instances")
                .iter()
                .filter(|i| i["spec"]["workload"] == "db" && i["status"]["phase"] == "Running")
                .filter(|i| i["spec"]["template"]["args"].to_string().contains("600001"))
                .count()
                == 2
        },
    );
    eprintln!(
        "converged {:?} after the leader was killed",
        killed_at.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    let samples = sampler
        .join()
        .expect("the sampler ran")
        .expect("no stateful replica moved or ran twice");
    assert!(
        samples > 10,
        "the sampler saw db's replicas {samples} times"
    );
    let mut now = db_nodes(survivor);
    now.sort();
    assert_eq!(now, pinned, "each db-N is back on the node of its volume");
    // Each replica's new run read what its old one wrote, on its own node,
    // and runs there only (an agent removes the log folder of an instance
    // that leaves it, so this sees where it runs now, not every past run:
    // the sampler above is what watched it all along).
    for (name, node) in &pinned {
        let said =
            String::from_utf8_lossy(&survivor.cli(&["logs", "db", "--instance", name]).stdout)
                .to_string();
        assert!(
            said.contains(r#"read /data/written-by-guest.txt: "hello from the guest""#),
            "{name}: {said}"
        );
        for other in ["node-1", "node-2"] {
            let ran_there = first
                .dir
                .path()
                .join(format!("agent-{other}/logs/default/{name}"))
                .exists();
            assert_eq!(
                ran_there,
                other == node,
                "{name} ran on {other}; its volume is on {node}"
            );
        }
    }
}

/// The `get nodes` line of `node`.
fn node_row(c: &Cluster, node: &str) -> String {
    c.ok(&["get", "nodes"])
        .lines()
        .find(|l| l.starts_with(node))
        .unwrap_or_default()
        .to_string()
}

/// When each Running `db-N` started, by name.
fn db_started(c: &Cluster) -> Vec<(String, String)> {
    let mut started: Vec<(String, String)> = c
        .items("instances")
        .iter()
        .filter(|i| i["spec"]["workload"] == "db" && i["status"]["phase"] == "Running")
        .map(|i| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (
                text(&i["metadata"]["name"]),
                text(&i["status"]["startedAt"]),
            )
        })
        .collect();
    started.sort();
    started
}

#[test]
fn a_nodes_full_disk_is_disk_pressure_what_runs_there_runs_on_and_nothing_is_lost() {
    let Some(etcd) = Etcd::start(3) else { return };
    let ([first, second, third], mut agents) = three_servers(&etcd, "disk", 1);
    let list = servers_of(&[&first, &second, &third]);
    // node-2's data folder on a 64 MiB disk of its own.
    let data = first.dir.path().join("agent-node-2");
    let _disk = match crate::support::Tmpfs::mount(&data, "64m") {
        Ok(disk) => disk,
        Err(e) => {
            crate::support::cannot_run(&format!("ha: cannot mount a tmpfs ({e}); run as root"));
            return;
        }
    };
    agents.push(agent_with(
        &first,
        &list,
        "node-2",
        &["--disk-pressure-below", "16Mi"],
    ));
    first.wait_until("two nodes Ready", Duration::from_secs(30), || {
        ready_nodes(&first) == 2
    });
    first.apply("db.yaml", STATEFUL);
    first.wait_until("db-0 and db-1 run", Duration::from_secs(60), || {
        db_nodes(&first).len() == 2
    });
    let started = db_started(&first);
    let volume_file = || {
        files(&data)
            .into_iter()
            .find(|f| f.ends_with("written-by-guest.txt"))
    };
    first.wait_until(
        "the replica on node-2 wrote its volume",
        Duration::from_secs(30),
        || volume_file().is_some(),
    );

    // The disk fills up (a runaway download, a log): writes fail there.
    let filler = data.join("filler");
    let full = {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1 << 20];
        std::iter::repeat_with(|| file.write_all(&chunk))
            .find(Result::is_err)
            .and_then(Result::err)
    };
    assert!(full.is_some(), "the 64 MiB disk filled");
    first.wait_until(
        "node-2 reports DiskPressure",
        Duration::from_secs(30),
        || node_row(&first, "node-2").contains("DiskPressure"),
    );
    // New instances go to the other node; what runs on node-2 runs on, the
    // same runs (not restarted), and its agent is up.
    let survivor = &second;
    survivor.apply("sleepers.yaml", SLEEPERS);
    survivor.wait_until("3 sleepers run", Duration::from_secs(30), || {
        running(survivor, "sleepers") == 3
    });
    for i in survivor.items("instances") {
        if i["spec"]["workload"] == "sleepers" {
            assert_eq!(i["spec"]["nodeName"], "node-1", "{i:#}");
        }
    }
    assert_eq!(
        db_started(survivor),
        started,
        "db-N kept running through the full disk"
    );
    assert!(
        agents[1].0.try_wait().unwrap().is_none(),
        "node-2's agent is up with its disk full"
    );

    // Space freed: the pressure clears, and nothing was lost.
    std::fs::remove_file(&filler).unwrap();
    survivor.wait_until(
        "node-2's DiskPressure clears",
        Duration::from_secs(30),
        || {
            let row = node_row(survivor, "node-2");
            row.contains("Ready") && !row.contains("DiskPressure")
        },
    );
    assert_eq!(db_started(survivor), started);
    let kept = std::fs::read_to_string(volume_file().expect("the volume is still there")).unwrap();
    assert_eq!(kept, "hello from the guest\n");
    survivor.ok(&["create", "config", "after", "--from-literal", "a=b"]);
}

#[test]
fn one_etcd_member_lost_is_invisible_two_give_a_503_naming_etcd_and_nothing_is_lost() {
    let Some(mut etcd) = Etcd::start(3) else {
        return;
    };
    let store = etcd.url("quorum");
    let mut c = Cluster::start_server_with(&["--store", &store, "--leader-lease", "2s"]);
    let _agent = agent(&c, &c.base(), "node-1");
    c.apply("sleepers.yaml", SLEEPERS);
    c.wait_until("3 sleepers run", Duration::from_secs(30), || {
        running(&c, "sleepers") == 3
    });
    let before: Vec<String> = names(&c.items("instances"));

    etcd.kill(0);
    let config = |name: &str| {
        format!(
            r#"{{"apiVersion":"flotilla.dev/v1","kind":"Config","metadata":{{"name":"{name}"}},"data":{{"a":"b"}}}}"#
        )
    };
    let path = "/apis/flotilla.dev/v1/namespaces/default/configs";
    let token = c.token();
    // Not seen: every write and read succeeds at once.
    for i in 0..10 {
        let name = format!("with-two-{i}");
        let (code, body) = c.raw("POST", path, &Who::Token(&token), &config(&name));
        assert_eq!(code, 201, "{body}");
        let (code, body) = c.raw("GET", &format!("{path}/{name}"), &Who::Token(&token), "");
        assert_eq!(code, 200, "{body}");
    }
    assert_eq!(running(&c, "sleepers"), 3);

    etcd.kill(1);
    let started = Instant::now();
    let (code, body) = loop {
        let (code, body) = c.raw("POST", path, &Who::Token(&token), &config("with-one"));
        if code != 201 || started.elapsed() > Duration::from_secs(20) {
            break (code, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("etcd") && body.contains("majority"), "{body}");
    let (code, body) = c.raw("GET", path, &Who::Token(&token), "");
    assert_eq!(code, 503, "reads too: {body}");
    // The node keeps its instances running meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    assert!(c.alive(), "the server stays up");

    etcd.launch(0);
    etcd.launch(1);
    etcd.wait_healthy(Duration::from_secs(30));
    c.wait_until("the API answers again", Duration::from_secs(30), || {
        c.raw("GET", path, &Who::Token(&token), "").0 == 200
    });
    let stored = names(&c.items("configs"));
    assert!(stored.contains(&"with-two-9".to_string()), "{stored:?}");
    c.wait_until("the same 3 instances run", Duration::from_secs(30), || {
        running(&c, "sleepers") == 3
    });
    let after = names(&c.items("instances"));
    assert_eq!(before, after, "no instance was replaced");
    let restarts: u64 = c
        .items("instances")
        .iter()
        .map(|i| i["status"]["restarts"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(restarts, 0);
}

#[test]
fn a_watch_from_before_a_compaction_gets_410_and_agents_and_the_cli_recover() {
    let Some(etcd) = Etcd::start(1) else { return };
    let store = etcd.url("compact");
    let mut c = Cluster::start_server_with(&[
        "--store",
        &store,
        "--leader-lease",
        "2s",
        "--etcd-compaction-interval",
        "1s",
    ]);
    let _agent = agent(&c, &c.base(), "node-1");
    c.apply("sleepers.yaml", SLEEPERS);
    c.wait_until("3 sleepers run", Duration::from_secs(30), || {
        running(&c, "sleepers") == 3
    });
    let token = c.token();
    let configs = "/apis/flotilla.dev/v1/namespaces/default/configs";
    let (code, body) = c.raw("GET", configs, &Who::Token(&token), "");
    assert_eq!(code, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    let old = listed["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 0..5 {
        c.ok(&[
            "create",
            "config",
            &format!("c{i}"),
            "--from-literal",
            "a=b",
        ]);
    }
    // Compacted past the first change after `old` by the leader (each
    // period compacts up to the revision of the one before). Not just past
    // `old`: a watch from `old` asks for the changes after it, and a
    // compaction to old+1 keeps them all, so that watch is still answered
    // (an ADDED, not 410: a run here saw exactly that).
    let first_change: u64 = old.parse::<u64>().unwrap() + 1;
    etcd_compacted_past(&etcd, &first_change.to_string());
    // A server starting now cannot replay what was compacted.
    c.kill();
    c.launch();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let first = runtime.block_on(async {
        use futures_util::StreamExt;
        let client = c.client(&token);
        let events = client.watch(configs, "", &old).await.unwrap();
        let mut events = std::pin::pin!(events);
        events.next().await.unwrap().unwrap()
    });
    assert_eq!(first.kind, "ERROR", "{:?}", first.object);
    assert_eq!(first.object["code"], 410, "{:?}", first.object);
    assert!(
        first.object["message"]
            .as_str()
            .unwrap_or_default()
            .contains("list again"),
        "{:?}",
        first.object
    );
    // The agent lists again by itself: a change reaches it.
    c.ok(&["scale", "workload", "sleepers", "--replicas", "4"]);
    c.wait_until("4 sleepers run", Duration::from_secs(30), || {
        running(&c, "sleepers") == 4
    });
}

/// Waits until etcd refuses to read at revision `old` (compacted).
fn etcd_compacted_past(etcd: &Etcd, old: &str) {
    let started = Instant::now();
    loop {
        let out = etcd.ctl(&[
            "get",
            "/compact/",
            "--prefix",
            "--keys-only",
            &format!("--rev={old}"),
        ]);
        if String::from_utf8_lossy(&out.stderr).contains("compacted") {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "etcd was not compacted past {old}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_single_servers_store_migrates_into_etcd_with_its_secrets_and_modules() {
    let Some(etcd) = Etcd::start(1) else { return };
    let mut c = Cluster::start_server();
    c.apply("sleepers.yaml", SLEEPERS);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal",
        "password=hunter2",
    ]);
    let uid = c.items("workloads")[0]["metadata"]["uid"].clone();
    c.kill();
    let store = etcd.url("migrated");
    let db = c.data_dir().join("store.db");
    let out = c.cli(&[
        "migrate",
        "--from",
        &format!("sqlite:{}", db.display()),
        "--to",
        &store,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("modules"), "{said}");
    // Into a prefix that holds objects: refused, nothing overwritten.
    let again = c.cli(&[
        "migrate",
        "--from",
        &format!("sqlite:{}", db.display()),
        "--to",
        &store,
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("empty prefix"));

    // The same server on etcd, with a fresh blob folder: modules come from etcd.
    std::fs::remove_dir_all(c.data_dir().join("blobs")).unwrap();
    std::fs::remove_file(&db).unwrap();
    let mut on_etcd = Cluster::start_server_sharing(&c, &["--store", &store]);
    assert_eq!(on_etcd.items("workloads")[0]["metadata"]["uid"], uid);
    let secret = on_etcd.ok(&["get", "secret", "db", "-o", "json"]);
    assert!(secret.contains("password"), "{secret}");
    let _agent = agent(&on_etcd, &on_etcd.base(), "node-1");
    on_etcd.wait_until("the migrated sleepers run", Duration::from_secs(30), || {
        running(&on_etcd, "sleepers") == 3
    });
    on_etcd.kill();
}

#[test]
fn a_leader_paused_past_its_lease_is_fenced_and_steps_down_without_doubling_instances() {
    let Some(etcd) = Etcd::start(1) else { return };
    let store = etcd.url("fence");
    let args = ["--store", store.as_str(), "--leader-lease", "2s"];
    let first = Cluster::start_server_with(&args);
    let second = Cluster::start_server_sharing(&first, &args);
    let servers = [&first, &second];
    let _agent = agent(&first, &servers_of(&servers), "node-1");
    first.apply("sleepers.yaml", SLEEPERS);
    first.wait_until("3 sleepers run", Duration::from_secs(30), || {
        running(&first, "sleepers") == 3
    });
    let leading = leader(&etcd, "fence").expect("a leader");
    let (paused, other) = if first.base() == leading {
        (&first, &second)
    } else {
        (&second, &first)
    };
    let pid = paused.pid().to_string();
    // Stopped, not killed: it wakes later believing nothing happened.
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    other.wait_until("the other server leads", Duration::from_secs(10), || {
        leader(&etcd, "fence").is_some_and(|l| l == other.base())
    });
    other.ok(&["scale", "workload", "sleepers", "--replicas", "5"]);
    other.wait_until("5 sleepers run", Duration::from_secs(30), || {
        running(other, "sleepers") == 5
    });
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    // It notices it no longer leads, and none of its stale writes land.
    paused.wait_until(
        "the paused server steps down",
        Duration::from_secs(15),
        || paused.log().contains("no longer leads"),
    );
    std::thread::sleep(Duration::from_secs(3));
    let instances: Vec<Value> = other
        .items("instances")
        .into_iter()
        .filter(|i| i["spec"]["workload"] == "sleepers")
        .collect();
    assert_eq!(instances.len(), 5, "{:?}", names(&instances));
    assert_eq!(leader(&etcd, "fence"), Some(other.base()));
}

/// Runs `flotilla server` on `store` with `extra` until it exits (within
/// 60 s: it must give up, not hang), and gives its log.
fn server_refused(store: &str, extra: &[&std::ffi::OsStr]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--store",
            store,
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!(
                "the server neither connected nor gave up: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    std::fs::read_to_string(&log).unwrap()
}

#[test]
fn a_server_speaks_tls_to_etcd_with_a_client_certificate_and_names_what_is_wrong_without_one() {
    let Some(etcd) = Etcd::start_tls() else {
        return;
    };
    let tls = etcd.tls();
    let store = etcd.url("tls");
    let ca = tls.ca.to_str().unwrap();
    let (cert, key) = (tls.cert.to_str().unwrap(), tls.key.to_str().unwrap());

    // Plain HTTP to a TLS port, TLS with no client certificate, and a CA
    // that did not sign etcd's certificate: each refused, with its fix.
    let plain = server_refused(&store, &[]);
    assert!(plain.contains("pass --etcd-ca"), "{plain}");
    let anonymous = server_refused(&store, &["--etcd-ca".as_ref(), tls.ca.as_os_str()]);
    assert!(
        anonymous.contains("--client-cert-auth")
            && anonymous.contains("pass --etcd-cert and --etcd-key"),
        "{anonymous}"
    );
    let stranger = etcd.dir.path().join("etcd-client.crt");
    let unverified = server_refused(
        &store,
        &[
            "--etcd-ca".as_ref(),
            stranger.as_os_str(),
            "--etcd-cert".as_ref(),
            tls.cert.as_os_str(),
            "--etcd-key".as_ref(),
            tls.key.as_os_str(),
        ],
    );
    assert!(
        unverified.contains("not one --etcd-ca trusts"),
        "{unverified}"
    );

    let c = Cluster::start_server_with(&[
        "--store",
        &store,
        "--etcd-ca",
        ca,
        "--etcd-cert",
        cert,
        "--etcd-key",
        key,
    ]);
    let _agent = agent(&c, &c.base(), "node-1");
    c.apply("sleepers.yaml", SLEEPERS);
    c.wait_until("3 sleepers run", Duration::from_secs(30), || {
        running(&c, "sleepers") == 3
    });
    // What the API acknowledged is in etcd, over TLS.
    let keys = etcd.ctl(&["get", "/tls/", "--prefix", "--keys-only"]);
    let keys = String::from_utf8_lossy(&keys.stdout);
    assert!(keys.contains("sleepers"), "{keys}");
}
