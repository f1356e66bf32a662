//! Many nodes: one `flotilla server` and agents as separate processes.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::*;

pub struct Agent(pub Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn agent(c: &Cluster, name: &str, token: &str, memory: &str) -> Agent {
    agent_with(c, name, token, memory, &[])
}

/// [`agent`], with more flags.
pub fn agent_with(c: &Cluster, name: &str, token: &str, memory: &str, extra: &[&str]) -> Agent {
    let token_file = c.dir.path().join(format!("token-{name}"));
    std::fs::write(&token_file, token).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["agent", "--server", &c.base(), "--token-file"])
        .arg(&token_file)
        .args([
            "--name",
            name,
            "--capacity-memory",
            memory,
            "--capacity-cpu",
            "1000m",
            "--ingress",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(c.dir.path().join(format!("agent-{name}")))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(agent_log(c, name))
        .env("FLOTILLA_LOG", "info")
        .spawn()
        .unwrap();
    Agent(child)
}

/// The agent's stderr, appended across restarts.
fn agent_log(c: &Cluster, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(c.dir.path().join(format!("agent-{name}.log")))
        .unwrap()
}

pub fn read_agent_log(c: &Cluster, name: &str) -> String {
    std::fs::read_to_string(c.dir.path().join(format!("agent-{name}.log"))).unwrap_or_default()
}

const SMALL: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: small}
spec:
  module: {source: "file:MODULES/sleeper.wasm"}
  replicas: 4
  args: ["200"]
  resources: {requests: {memory: 100Mi, cpu: 100m}}
"#;

#[test]
fn a_server_and_two_agents_bin_pack_and_explain_what_does_not_fit() {
    let c = Cluster::start_server();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let _a = agent(&c, "edge-a", join.trim(), "256Mi");
    let _b = agent(&c, "edge-b", join.trim(), "256Mi");
    c.wait_until("two nodes are Ready", Duration::from_secs(15), || {
        ready_nodes(&c) == 2
    });

    let manifest = c.manifest("small.yaml", SMALL);
    c.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    c.wait_until("4 instances run", Duration::from_secs(15), || {
        in_phase(&c.items("instances"), "Running").len() == 4
    });
    let mut per_node: Vec<String> = c
        .items("instances")
        .iter()
        .map(|i| i["spec"]["nodeName"].as_str().unwrap().to_string())
        .collect();
    per_node.sort();
    assert_eq!(
        per_node,
        ["edge-a", "edge-a", "edge-b", "edge-b"],
        "2 × 100Mi per 256Mi node"
    );
    // Logs stay on the nodes; the API reads them from the agents.
    for instance in names(&c.items("instances")) {
        c.wait_until("its log reaches the CLI", Duration::from_secs(10), || {
            c.cli(&["logs", "small", "--instance", &instance])
                .stdout
                .windows(4)
                .any(|w| w == b"tick")
        });
    }

    // A fifth does not fit anywhere: Pending, with the reason.
    let five = c.manifest("five.yaml", &SMALL.replace("replicas: 4", "replicas: 5"));
    c.ok(&["apply", "-f", five.to_str().unwrap()]);
    c.wait_until("the fifth is explained", Duration::from_secs(10), || {
        c.items("instances")
            .iter()
            .any(|i| i["status"]["message"] == "0/2 nodes available: 2 insufficient memory")
    });
    c.wait_for_event("FailedScheduling");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        c.items("instances").len(),
        5,
        "a Pending instance is not replaced again and again"
    );
}

const COLLECTOR: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: collector}
spec:
  module: {source: "file:MODULES/sleeper.wasm"}
  args: ["100000"]
  placement: {everyNode: true}
  nodeSelector: {role: sensor}
  resources: {requests: {memory: 64Mi, cpu: 100m}}
"#;

/// Nodes running a Running instance of `collector`, sorted.
fn collector_nodes(c: &Cluster) -> Vec<String> {
    let mut nodes: Vec<String> = in_phase(&c.items("instances"), "Running")
        .iter()
        .filter(|i| i["spec"]["workload"] == "collector")
        .filter_map(|i| i["spec"]["nodeName"].as_str().map(str::to_string))
        .collect();
    nodes.sort();
    nodes
}

fn collector_status(c: &Cluster) -> Value {
    let w: Value =
        serde_json::from_str(&c.ok(&["get", "workload", "collector", "-o", "json"])).unwrap();
    w["status"].clone()
}

#[test]
fn an_every_node_workload_follows_nodes_joining_leaving_and_relabelled() {
    let c = Cluster::start_server_with(&["--node-grace", "2s"]);
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let sensor = ["--labels", "role=sensor"];
    let _a = agent_with(&c, "edge-a", join.trim(), "256Mi", &sensor);
    let mut b = agent_with(&c, "edge-b", join.trim(), "256Mi", &sensor);
    let _c = agent(&c, "edge-c", join.trim(), "256Mi");
    c.wait_until("three nodes are Ready", Duration::from_secs(30), || {
        ready_nodes(&c) == 3
    });
    c.apply("collector.yaml", COLLECTOR);
    c.wait_until(
        "one instance on each sensor node",
        Duration::from_secs(30),
        || collector_nodes(&c) == ["edge-a", "edge-b"],
    );
    c.wait_until("the status counts 2 of 2", Duration::from_secs(10), || {
        let s = collector_status(&c);
        s["desiredReplicas"] == 2 && s["readyReplicas"] == 2 && s["scheduledReplicas"] == 2
    });
    let table = c.ok(&["get", "workloads"]);
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("collector "))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row.get(1..6),
        Some(&["2", "2", "2", "2", "2"][..]),
        "{table}"
    );

    // A node that joins with the label gets one as soon as it is Ready.
    let _d = agent_with(&c, "edge-d", join.trim(), "256Mi", &sensor);
    c.wait_until("edge-d is Ready", Duration::from_secs(30), || {
        ready_nodes(&c) == 4
    });
    let ready_at = std::time::Instant::now();
    c.wait_until("edge-d runs one", Duration::from_secs(20), || {
        collector_nodes(&c).contains(&"edge-d".to_string())
    });
    eprintln!(
        "edge-d Ready → its instance Running: {:?}",
        ready_at.elapsed()
    );
    // One that gains the label gets one; losing it takes it away.
    c.ok(&[
        "patch",
        "node",
        "edge-c",
        "-p",
        r#"{"metadata": {"labels": {"role": "sensor"}}}"#,
    ]);
    c.wait_until(
        "edge-c runs one once labelled",
        Duration::from_secs(20),
        || collector_nodes(&c) == ["edge-a", "edge-b", "edge-c", "edge-d"],
    );
    c.ok(&[
        "patch",
        "node",
        "edge-c",
        "-p",
        r#"{"metadata": {"labels": {"role": null}}}"#,
    ]);
    c.wait_until(
        "edge-c's goes once unlabelled",
        Duration::from_secs(20),
        || {
            let on_c = c
                .items("instances")
                .iter()
                .any(|i| i["spec"]["workload"] == "collector" && i["spec"]["nodeName"] == "edge-c");
            !on_c && collector_nodes(&c) == ["edge-a", "edge-b", "edge-d"]
        },
    );

    // A node that cannot fit it: counted, not scheduled, and named.
    let _small = agent_with(&c, "edge-small", join.trim(), "32Mi", &sensor);
    c.wait_until(
        "edge-small's instance is explained",
        Duration::from_secs(30),
        || {
            let s = collector_status(&c);
            let scheduled = s["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Scheduled"))
                .cloned()
                .unwrap_or_default();
            s["desiredReplicas"] == 4
                && s["scheduledReplicas"] == 3
                && scheduled["status"] == "False"
                && scheduled["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("node edge-small: ") && m.contains("memory"))
        },
    );
    c.wait_for_event("FailedScheduling");
    assert_eq!(collector_nodes(&c), ["edge-a", "edge-b", "edge-d"]);

    // A node that dies: its instance goes with it, nothing moves elsewhere.
    let _ = b.0.kill();
    let _ = b.0.wait();
    c.wait_until("edge-b's instance is gone", Duration::from_secs(30), || {
        let s = collector_status(&c);
        s["desiredReplicas"] == 3
            && !c
                .items("instances")
                .iter()
                .any(|i| i["spec"]["workload"] == "collector" && i["spec"]["nodeName"] == "edge-b")
    });
    assert_eq!(collector_nodes(&c), ["edge-a", "edge-d"]);

    // Replicas are not an every-node workload's to set.
    let err = c.fails(&["scale", "workload", "collector", "--replicas", "3"]);
    assert!(
        err.contains("every-node workload") && err.contains("labelling nodes"),
        "{err}"
    );
}

/// An agent's stderr after it tried to join as `name` with `token` and
/// was refused (it exits).
fn refused_join(c: &Cluster, token: &str, name: &str) -> String {
    let file = c.dir.path().join(format!("token-{name}"));
    std::fs::write(&file, token).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["agent", "--server", &c.base(), "--token-file"])
        .arg(&file)
        .args(["--name", name, "--ingress", "off", "--data-dir"])
        .arg(c.dir.path().join(format!("agent-{name}")))
        .output()
        .unwrap();
    assert!(!out.status.success(), "{name} joined");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_join_token_joins_as_many_nodes_as_its_uses_and_rotating_it_retires_its_secret() {
    let c = Cluster::start_server();
    let join = c
        .ok(&[
            "token",
            "create",
            "--uses",
            "2",
            "--ttl",
            "1h",
            "--description",
            "shop floor",
        ])
        .trim()
        .to_string();
    let id = join
        .rsplit_once("::")
        .unwrap()
        .1
        .split('.')
        .next()
        .unwrap()
        .to_string();
    let row = |c: &Cluster| {
        c.ok(&["token", "list"])
            .lines()
            .find(|l| l.starts_with(&id))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row(&c).contains("0/2"), "{}", row(&c));
    let _a = agent(&c, "edge-a", &join, "256Mi");
    let _b = agent(&c, "edge-b", &join, "256Mi");
    c.wait_until("two nodes joined", Duration::from_secs(30), || {
        ready_nodes(&c) == 2
    });
    assert!(row(&c).contains("2/2"), "{}", row(&c));
    // Used up: the third is refused, saying why and what to do.
    let stderr = refused_join(&c, &join, "edge-c");
    assert!(
        stderr.contains(&format!(
            "join token {id} has been used for all of its 2 joins"
        )) && stderr.contains(&format!("flotilla token rotate {id}")),
        "{stderr}"
    );
    assert!(
        !c.log().contains("issued a certificate to node edge-c"),
        "{}",
        c.log()
    );
    // Bad values are refused before anything is stored.
    let err = c.fails(&["token", "create", "--role", "view", "--uses", "3"]);
    assert!(err.contains("only join tokens are counted"), "{err}");
    let err = c.fails(&["token", "create", "--uses", "0"]);
    assert!(err.contains("--uses"), "{err}");

    // Rotated: the old secret is dead at once, the new one has a fresh count.
    let rotated = c.ok(&["token", "rotate", &id]).trim().to_string();
    assert!(rotated.starts_with("FL10") && rotated != join, "{rotated}");
    assert!(
        rotated.contains(&format!("::{id}.")),
        "the id stays: {rotated}"
    );
    let stderr = refused_join(&c, &join, "edge-c");
    assert!(stderr.contains("not valid"), "{stderr}");
    assert!(
        row(&c).contains("0/2") && row(&c).contains("shop floor"),
        "{}",
        row(&c)
    );
    let _c = agent(&c, "edge-c", &rotated, "256Mi");
    c.wait_until(
        "edge-c joined with the new secret",
        Duration::from_secs(30),
        || ready_nodes(&c) == 3,
    );
    assert!(row(&c).contains("1/2"), "{}", row(&c));
    // The nodes it joined before keep their own certificates.
    assert_eq!(ready_nodes(&c), 3);
    let err = c.fails(&["token", "rotate", "nosuch"]);
    assert!(
        err.contains("not found") || err.contains("NotFound"),
        "{err}"
    );
}

#[test]
fn wrong_tokens_are_refused_clearly() {
    let c = Cluster::start_server();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let (pinned, _) = join.trim().split_once("::").unwrap();
    let try_join = |token: &str, name: &str| refused_join(&c, token, name);
    // The right CA, a wrong secret: refused by the server.
    let stderr = try_join(&format!("{pinned}::wrong"), "intruder");
    assert!(
        stderr.contains("cannot join") && stderr.contains("not valid"),
        "{stderr}"
    );
    assert!(
        c.log().contains("unknown token"),
        "the server logs it too: {}",
        c.log()
    );
    // Not a token at all.
    let stderr = try_join("wrong", "garbled");
    assert!(stderr.contains("FL10<CA sha256>::<secret>"), "{stderr}");
    // A token pinning another CA: the agent refuses before sending the secret.
    let (_, secret) = join.trim().split_once("::").unwrap();
    let other = format!("FL10{}::{secret}", "ab".repeat(32));
    let stderr = try_join(&other, "mitm");
    assert!(
        stderr.contains("the server's identity could not be verified")
            && stderr.contains(&"ab".repeat(32)),
        "{stderr}"
    );
    assert!(
        !c.log().contains("issued a certificate to node mitm"),
        "{}",
        c.log()
    );
    // No token at all, no credentials yet: says how to join.
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args([
            "agent",
            "--server",
            &c.base(),
            "--name",
            "bare",
            "--ingress",
            "off",
            "--data-dir",
        ])
        .arg(c.dir.path().join("agent-bare"))
        .env_remove("FLOTILLA_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--token-file"),
        "{stderr}"
    );

    // The join token cannot manage workloads.
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let client = c.client(join.trim());
        let w: Value = serde_json::json!({"apiVersion": "flotilla.dev/v1", "kind": "Workload", "metadata": {"name": "x"}, "spec": {"module": {"sha256": "0".repeat(64)}}});
        let e = client.create("/apis/flotilla.dev/v1/namespaces/default/workloads", &w).await.unwrap_err();
        assert_eq!(e.code(), Some(403), "{e}");
        assert!(e.to_string().contains("good for joining only"), "{e}");
    });
}

#[test]
fn instances_of_a_killed_agent_run_elsewhere_within_10_s() {
    let c = Cluster::start_server();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let mut agents = [
        agent(&c, "edge-a", join.trim(), "1Gi"),
        agent(&c, "edge-b", join.trim(), "1Gi"),
    ];
    c.wait_until("two nodes are Ready", Duration::from_secs(15), || {
        ready_nodes(&c) == 2
    });
    // Binpack puts both on one node (equal nodes: the first by name, then the fuller).
    let manifest = c.manifest("two.yaml", &SMALL.replace("replicas: 4", "replicas: 2"));
    c.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    c.wait_until("2 instances run", Duration::from_secs(15), || {
        in_phase(&c.items("instances"), "Running").len() == 2
    });
    let nodes: Vec<String> = c
        .items("instances")
        .iter()
        .map(|i| i["spec"]["nodeName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(nodes[0], nodes[1], "binpack keeps them together");
    let (victim, survivor) = if nodes[0] == "edge-a" {
        (0, "edge-b")
    } else {
        (1, "edge-a")
    };

    let killed_at = std::time::Instant::now();
    let _ = agents[victim].0.kill();
    let _ = agents[victim].0.wait();
    c.wait_until(
        "both run on the surviving node",
        Duration::from_secs(10),
        || {
            let items = c.items("instances");
            items.len() == 2
                && items
                    .iter()
                    .all(|i| i["spec"]["nodeName"] == survivor && i["status"]["phase"] == "Running")
        },
    );
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    c.wait_for_event("NodeNotReady");
    assert!(c.ok(&["get", "nodes"]).contains("NotReady"));
    eprintln!("rescheduled after the agent was killed in {took:?}");
}

#[test]
fn a_second_agent_claiming_a_live_name_is_refused() {
    let c = Cluster::start_server();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let _first = agent(&c, "edge-a", join.trim(), "1Gi");
    c.wait_until("edge-a is Ready", Duration::from_secs(15), || {
        ready_nodes(&c) == 1
    });
    let token_file = c.dir.path().join("token-impostor");
    std::fs::write(&token_file, join.trim()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["agent", "--server", &c.base(), "--token-file"])
        .arg(&token_file)
        .args(["--name", "edge-a", "--data-dir"])
        .arg(c.dir.path().join("impostor"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("node name \"edge-a\" is registered already"),
        "{stderr}"
    );
    assert!(c.log().contains("refused node name edge-a"), "{}", c.log());
}

const CRASHER: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: crasher}
spec:
  module: {source: "file:MODULES/exit-code.wasm"}
  args: ["3"]
  restartPolicy: {backoff: {initial: 100ms, max: 200ms}}
"#;

#[test]
fn with_the_server_down_agents_keep_running_and_restarting() {
    let mut c = Cluster::start_server();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let a = agent(&c, "edge-a", join.trim(), "1Gi");
    c.wait_until("edge-a is Ready", Duration::from_secs(15), || {
        ready_nodes(&c) == 1
    });
    let ticker = c.manifest("two.yaml", &SMALL.replace("replicas: 4", "replicas: 2"));
    let crasher = c.manifest("crasher.yaml", CRASHER);
    c.ok(&["apply", "-f", ticker.to_str().unwrap()]);
    c.ok(&["apply", "-f", crasher.to_str().unwrap()]);
    c.wait_until("3 instances run", Duration::from_secs(15), || {
        c.items("instances").len() == 3
    });
    let logs = c.dir.path().join("agent-edge-a/logs/default");
    let log_of = |prefix: &str| -> std::path::PathBuf {
        std::fs::read_dir(&logs)
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .map(|e| e.path().join("current.log"))
            .unwrap_or_default()
    };
    c.wait_until("both workloads write logs", Duration::from_secs(15), || {
        log_of("small-").exists() && log_of("crasher-").exists()
    });
    let ticks = |prefix: &str| {
        std::fs::read_to_string(log_of(prefix))
            .unwrap_or_default()
            .matches("tick")
            .count()
    };

    let names_before = names(&c.items("instances"));
    c.kill();
    let small_before = ticks("small-");
    let restarts_marker = std::fs::metadata(log_of("crasher-"))
        .map(|m| m.modified().unwrap())
        .unwrap();
    std::thread::sleep(Duration::from_secs(30));
    // Daemons kept ticking (200 ms per tick: ~150 in 30 s) and the crasher kept being restarted.
    let small_after = ticks("small-");
    assert!(
        small_after > small_before + 100,
        "ticks {small_before} -> {small_after}"
    );
    let crasher_log = std::fs::metadata(log_of("crasher-"))
        .unwrap()
        .modified()
        .unwrap();
    assert!(
        crasher_log > restarts_marker,
        "the crasher was not restarted while the server was down"
    );

    // Back: the agent reconnects and reports; nothing is duplicated.
    c.launch();
    c.wait_until("status flows again", Duration::from_secs(15), || {
        c.items("instances").iter().any(|i| {
            i["spec"]["workload"] == "crasher" && i["status"]["restarts"].as_u64() > Some(20)
        })
    });
    // Past the node grace (5 s) on the restarted server's clock: the node's
    // lease was judged afresh, so nothing was evicted for the server's absence.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        names(&c.items("instances")),
        names_before,
        "instances were replaced"
    );
    assert!(!c.ok(&["get", "events"]).contains("Evicted"));
    drop(a);
}

#[test]
fn a_restarted_agent_with_a_stale_journal_is_fenced() {
    let mut c = Cluster::start_server();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let mut a = agent(&c, "edge-a", join.trim(), "1Gi");
    c.wait_until("edge-a is Ready", Duration::from_secs(15), || {
        ready_nodes(&c) == 1
    });
    let manifest = c.manifest("two.yaml", &SMALL.replace("replicas: 4", "replicas: 2"));
    c.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    c.wait_until("2 instances run on edge-a", Duration::from_secs(15), || {
        in_phase(&c.items("instances"), "Running").len() == 2
    });
    let journal = c.dir.path().join("agent-edge-a/journal.json");
    let logs = c.dir.path().join("agent-edge-a/logs");
    c.wait_until("the journal holds both", Duration::from_secs(5), || {
        std::fs::read_to_string(&journal).is_ok_and(|j| j.matches("\"nodeName\"").count() == 2)
    });
    let stale = std::fs::read(&journal).unwrap();

    // edge-a dies; its instances move to edge-b and edge-a's epoch is raised.
    let _ = a.0.kill();
    let _ = a.0.wait();
    let _b = agent(&c, "edge-b", join.trim(), "1Gi");
    c.wait_until("both run on edge-b", Duration::from_secs(20), || {
        let items = c.items("instances");
        items.len() == 2
            && items
                .iter()
                .all(|i| i["spec"]["nodeName"] == "edge-b" && i["status"]["phase"] == "Running")
    });
    let node: Value =
        serde_json::from_str(&c.ok(&["get", "nodes", "edge-a", "-o", "json"])).unwrap();
    assert!(node["spec"]["epoch"].as_u64() >= Some(1), "{node}");
    c.wait_for_event("NodeNotReady");

    // 1. edge-a comes back while the server is up: its heartbeat at join
    // tells it the epoch before the journal is restored; nothing stale starts.
    a = agent(&c, "edge-a", join.trim(), "1Gi");
    c.wait_until(
        "edge-a says it skipped the stale bindings",
        Duration::from_secs(15),
        || read_agent_log(&c, "edge-a").contains("older epoch"),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(files_under(&logs), 0, "a fenced instance wrote logs");
    let _ = a.0.kill();
    let _ = a.0.wait();

    // 2. edge-a comes back with the stale journal while the server is down:
    // offline-first, it runs them; when the server returns they are fenced
    // within a heartbeat or two.
    std::fs::write(&journal, &stale).unwrap();
    c.kill();
    a = agent(&c, "edge-a", join.trim(), "1Gi");
    let ticks = || -> usize {
        files(&logs)
            .iter()
            .map(|p| {
                std::fs::read_to_string(p)
                    .unwrap_or_default()
                    .matches("tick")
                    .count()
            })
            .sum()
    };
    c.wait_until(
        "edge-a runs its journal offline",
        Duration::from_secs(15),
        || ticks() > 2,
    );
    c.launch();
    let back = std::time::Instant::now();
    c.wait_until(
        "the stale instances are fenced",
        Duration::from_secs(10),
        || files_under(&logs) == 0,
    );
    eprintln!("fenced {:?} after the server returned", back.elapsed());
    // Whichever comes first stops them: the heartbeat's epoch (fenced) or
    // the list that no longer holds them.
    let log = read_agent_log(&c, "edge-a");
    assert!(
        log.contains("fenced instance") || log.contains("stopped instance"),
        "{log}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(files_under(&logs), 0, "a fenced instance came back");
    let items = c.items("instances");
    assert_eq!(items.len(), 2, "no instance was duplicated");
    assert!(items.iter().all(|i| i["spec"]["nodeName"] == "edge-b"));
    drop(a);
}

#[test]
fn a_workload_can_ask_to_be_spread() {
    let c = Cluster::start_server();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let _a = agent(&c, "edge-a", join.trim(), "1Gi");
    let _b = agent(&c, "edge-b", join.trim(), "1Gi");
    c.wait_until("two nodes are Ready", Duration::from_secs(15), || {
        ready_nodes(&c) == 2
    });
    let spread = SMALL
        .replace(
            "replicas: 4",
            "replicas: 4\n  placement: {strategy: spread}",
        )
        .replace("name: small", "name: spread");
    let packed = SMALL.replace("replicas: 4", "replicas: 2");
    c.apply("spread.yaml", &spread);
    c.apply("packed.yaml", &packed);
    c.wait_until("6 instances are bound", Duration::from_secs(15), || {
        c.items("instances")
            .iter()
            .filter(|i| i["spec"]["nodeName"].is_string())
            .count()
            == 6
    });
    let on = |workload: &str, node: &str| {
        c.items("instances")
            .iter()
            .filter(|i| i["spec"]["workload"] == workload && i["spec"]["nodeName"] == node)
            .count()
    };
    assert_eq!((on("spread", "edge-a"), on("spread", "edge-b")), (2, 2));
    // The server default (binpack) keeps the other workload's pair together.
    assert!(on("small", "edge-a") == 2 || on("small", "edge-b") == 2);
    // get nodes shows what is allocated: 3 x 100Mi on each, or 4 and 2.
    let nodes = c.ok(&["get", "nodes"]);
    assert!(nodes.contains("CPU (ALLOC/CAP)"), "{nodes}");
    assert!(nodes.contains("/1000m"), "{nodes}");
    let total: usize = nodes
        .lines()
        .skip(1)
        .filter_map(|l| {
            // INSTANCES is "placed/capacity".
            let (placed, capacity) = l.split_whitespace().nth(4)?.split_once('/')?;
            assert_eq!(capacity, "1000", "{l}");
            placed.parse::<usize>().ok()
        })
        .sum();
    assert_eq!(total, 6, "{nodes}");
}

#[test]
fn an_instance_the_agent_cannot_read_is_reported_and_what_runs_keeps_running() {
    let mut c = Cluster::start_server();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let _a = agent(&c, "edge-a", join.trim(), "1Gi");
    c.wait_until("edge-a is Ready", Duration::from_secs(15), || {
        ready_nodes(&c) == 1
    });
    c.apply("one.yaml", &SMALL.replace("replicas: 4", "replicas: 1"));
    c.wait_until("it runs", Duration::from_secs(15), || {
        in_phase(&c.items("instances"), "Running").len() == 1
    });
    let name = names(&c.items("instances")).remove(0);
    let log = c
        .dir
        .path()
        .join(format!("agent-edge-a/logs/default/{name}/current.log"));

    // A newer control plane's field in the stored instance (written while
    // the server is down, as an upgrade would).
    c.kill();
    let db = c.data_dir().join("store.db");
    let edit = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; d=sqlite3.connect(sys.argv[1]); \
             d.execute(\"UPDATE objects SET body = json_set(body, '$.spec.template.futureField', 1) WHERE kind = 'Instance'\"); \
             d.commit()",
        ])
        .arg(&db)
        .status()
        .unwrap();
    assert!(edit.success());
    c.launch();
    c.wait_until(
        "the agent says it cannot read it",
        Duration::from_secs(20),
        || read_agent_log(&c, "edge-a").contains(&format!("cannot read instance default/{name}")),
    );
    let said = read_agent_log(&c, "edge-a");
    assert!(said.contains("futureField"), "{said}");
    assert!(said.contains("keeps running"), "{said}");
    c.wait_until("an event says so", Duration::from_secs(10), || {
        c.ok(&["get", "events"]).contains("UnreadableInstance")
    });
    // Still running: its log keeps growing, and it was never stopped.
    let size = || std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let before = size();
    c.wait_until("it keeps ticking", Duration::from_secs(10), || {
        size() > before
    });
    assert!(!read_agent_log(&c, "edge-a").contains(&format!("stopped instance default/{name}")));
}

#[test]
fn modules_kept_in_an_older_store_move_to_the_module_folder() {
    let mut c = Cluster::start_server();
    c.kill();
    // An older server kept modules as rows of the SQLite store.
    let insert = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys,hashlib; d=sqlite3.connect(sys.argv[1]); b=b'\\x00asm\\x01\\x00\\x00\\x00'; \
             d.execute('INSERT INTO blobs (digest, bytes) VALUES (?, ?)', (hashlib.sha256(b).hexdigest(), b)); d.commit(); \
             print(hashlib.sha256(b).hexdigest())",
        ])
        .arg(c.data_dir().join("store.db"))
        .output()
        .unwrap();
    assert!(
        insert.status.success(),
        "{}",
        String::from_utf8_lossy(&insert.stderr)
    );
    let digest = String::from_utf8_lossy(&insert.stdout).trim().to_string();
    assert_eq!(digest.len(), 64, "{digest}");
    c.launch();
    assert_eq!(
        std::fs::read(c.data_dir().join("blobs").join(&digest)).unwrap(),
        b"\0asm\x01\0\0\0"
    );
    let admin = c.token();
    let (code, _) = c.raw(
        "GET",
        &format!("/blobs/sha256/{digest}"),
        &Who::Token(&admin),
        "",
    );
    assert_eq!(code, 200);
    let rows = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM blobs').fetchone()[0])",
        ])
        .arg(c.data_dir().join("store.db"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&rows.stdout).trim(), "0");
    assert!(c.log().contains("moved 1 modules"), "{}", c.log());
}

#[test]
fn a_node_short_of_disk_reports_disk_pressure_and_takes_nothing_new() {
    let c = Cluster::start_server();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let _a = agent(&c, "edge-a", join.trim(), "256Mi");
    // Any disk with a used block is under 100% free.
    let _b = agent_with(
        &c,
        "edge-b",
        join.trim(),
        "256Mi",
        &["--disk-pressure-below", "100%"],
    );
    c.wait_until("two nodes are Ready", Duration::from_secs(15), || {
        ready_nodes(&c) == 2
    });
    let table = c.ok(&["get", "nodes"]);
    let row = |node: &str| {
        table
            .lines()
            .find(|l| l.starts_with(node))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row("edge-b").contains("Ready,DiskPressure"), "{table}");
    assert!(!row("edge-a").contains("DiskPressure"), "{table}");
    c.wait_until("an Event says why", Duration::from_secs(15), || {
        c.items("events").iter().any(|e| {
            e["spec"]["reason"] == "NodeHasDiskPressure"
                && e["spec"]["involvedObject"]["name"] == "edge-b"
                && e["spec"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("--disk-pressure-below"))
        })
    });

    // Spread would use both nodes: everything goes to edge-a.
    let manifest = c.manifest(
        "small.yaml",
        &SMALL
            .replace("replicas: 4", "replicas: 2")
            .replace("resources:", "placement: {strategy: spread}\n  resources:"),
    );
    c.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    c.wait_until("2 instances run", Duration::from_secs(15), || {
        in_phase(&c.items("instances"), "Running").len() == 2
    });
    for i in c.items("instances") {
        assert_eq!(i["spec"]["nodeName"], "edge-a", "{i:#}");
    }
    // Pinned to edge-b, an instance waits, saying why.
    let pinned = c.manifest(
        "pinned.yaml",
        &SMALL
            .replace("name: small", "name: pinned")
            .replace("replicas: 4", "replicas: 1")
            .replace(
                "resources:",
                "nodeSelector: {flotilla.dev/hostname: edge-b}\n  resources:",
            ),
    );
    c.ok(&["apply", "-f", pinned.to_str().unwrap()]);
    c.wait_until(
        "the pinned instance says why it waits",
        Duration::from_secs(15),
        || {
            c.items("instances").iter().any(|i| {
                i["spec"]["workload"] == "pinned"
                    && i["status"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("1 node has disk pressure"))
            })
        },
    );
}
