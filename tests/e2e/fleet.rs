//! Many nodes: one `flotilla server` and agents as separate processes.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::*;

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent(c: &Cluster, name: &str, token: &str, memory: &str) -> Agent {
    let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args([
            "agent",
            "--server",
            &c.base(),
            "--token",
            token,
            "--name",
            name,
            "--capacity-memory",
            memory,
            "--capacity-cpu",
            "1000m",
            "--data-dir",
        ])
        .arg(c.dir.path().join(format!("agent-{name}")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Agent(child)
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
        c.ok(&["get", "nodes"]).matches("Ready").count() == 2
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

    // A fifth does not fit anywhere: Pending, with the reason.
    let five = c.manifest("five.yaml", &SMALL.replace("replicas: 4", "replicas: 5"));
    c.ok(&["apply", "-f", five.to_str().unwrap()]);
    c.wait_until("the fifth is explained", Duration::from_secs(10), || {
        c.items("instances")
            .iter()
            .any(|i| i["status"]["message"] == "0/2 nodes available: 2 insufficient memory")
    });
    assert!(c.ok(&["get", "events"]).contains("FailedScheduling"));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        c.items("instances").len(),
        5,
        "a Pending instance is not replaced again and again"
    );
}

#[test]
fn wrong_tokens_are_refused_clearly() {
    let c = Cluster::start_server();
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args([
            "agent",
            "--server",
            &c.base(),
            "--token",
            "wrong",
            "--name",
            "intruder",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot join") && stderr.contains("not valid"),
        "{stderr}"
    );
    assert!(
        c.log().contains("unknown token"),
        "the server logs it too: {}",
        c.log()
    );

    // The join token cannot manage workloads.
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let client = flotilla_client::Client::new(&c.base(), join.trim()).unwrap();
        let w: Value = serde_json::json!({"apiVersion": "flotilla.dev/v1", "kind": "Workload", "metadata": {"name": "x"}, "spec": {"module": {"sha256": "0".repeat(64)}}});
        let e = client.create("/apis/flotilla.dev/v1/namespaces/default/workloads", &w).await.unwrap_err();
        assert_eq!(e.code(), Some(403), "{e}");
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
        c.ok(&["get", "nodes"]).matches("Ready").count() == 2
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
    assert!(c.ok(&["get", "events"]).contains("NodeNotReady"));
    assert!(c.ok(&["get", "nodes"]).contains("NotReady"));
    eprintln!("rescheduled after the agent was killed in {took:?}");
}

#[test]
fn a_second_agent_claiming_a_live_name_is_refused() {
    let c = Cluster::start_server();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let _first = agent(&c, "edge-a", join.trim(), "1Gi");
    c.wait_until("edge-a is Ready", Duration::from_secs(15), || {
        c.ok(&["get", "nodes"]).contains("Ready")
    });
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args([
            "agent",
            "--server",
            &c.base(),
            "--token",
            join.trim(),
            "--name",
            "edge-a",
            "--data-dir",
        ])
        .arg(c.dir.path().join("impostor"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("node name \"edge-a\" is in use by another agent"),
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
        c.ok(&["get", "nodes"]).contains("Ready")
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
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.items("instances").len(), 3, "no instance was duplicated");
    drop(a);
}
