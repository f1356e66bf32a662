//! Node maintenance: cordon, drain and disruption budgets, on three agents.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::*;
use crate::fleet::agent;

const WEB: &str = r#"
apiVersion: flotilla.dev/v1
kind: DisruptionBudget
metadata: {name: web-budget}
spec:
  selector: {matchLabels: {app: web}}
  maxUnavailable: 1
---
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: web, labels: {app: web}}
spec:
  module: {source: "file:MODULES/sleeper.wasm"}
  args: ["100000"]
  replicas: 3
  resources: {requests: {memory: 64Mi, cpu: 100m}}
"#;

fn web_instances(c: &Cluster) -> Vec<Value> {
    c.items("instances")
        .into_iter()
        .filter(|i| i["spec"]["workload"] == "web")
        .collect()
}

fn ready(instances: &[Value]) -> usize {
    instances
        .iter()
        .filter(|i| i["status"]["ready"] == true)
        .count()
}

fn on(instances: &[Value], node: &str) -> usize {
    instances
        .iter()
        .filter(|i| i["spec"]["nodeName"] == node)
        .count()
}

fn budget_status(c: &Cluster) -> Value {
    let b: Value =
        serde_json::from_str(&c.ok(&["get", "disruptionbudget", "web-budget", "-o", "json"]))
            .unwrap();
    b["status"].clone()
}

#[test]
fn a_drain_moves_instances_one_by_one_within_their_disruption_budget() {
    let c = Cluster::start_server();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    // Two of 64 MiB fit on edge-a or edge-b: three replicas over the two
    // make one of them hold two.
    let _a = agent(&c, "edge-a", join.trim(), "160Mi");
    let _b = agent(&c, "edge-b", join.trim(), "160Mi");
    let _c = agent(&c, "edge-c", join.trim(), "256Mi");
    c.wait_until("three nodes are Ready", Duration::from_secs(30), || {
        ready_nodes(&c) == 3
    });
    assert_eq!(c.ok(&["cordon", "edge-c"]).trim(), "node/edge-c cordoned");
    let nodes = c.ok(&["get", "nodes"]);
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with("edge-c ") && l.contains("Ready,SchedulingDisabled")),
        "{nodes}"
    );
    c.apply("web.yaml", WEB);
    c.wait_until(
        "three ready on edge-a and edge-b",
        Duration::from_secs(30),
        || {
            let web = web_instances(&c);
            ready(&web) == 3 && on(&web, "edge-c") == 0
        },
    );
    let web = web_instances(&c);
    let full = if on(&web, "edge-a") == 2 {
        "edge-a"
    } else {
        "edge-b"
    };
    assert_eq!(on(&web, full), 2, "{web:?}");
    assert_eq!(
        c.ok(&["uncordon", "edge-c"]).trim(),
        "node/edge-c uncordoned"
    );
    c.wait_until(
        "the budget allows one disruption",
        Duration::from_secs(10),
        || {
            let s = budget_status(&c);
            s["expectedInstances"] == 3
                && s["currentHealthy"] == 3
                && s["desiredHealthy"] == 2
                && s["disruptionsAllowed"] == 1
        },
    );
    let table = c.ok(&["get", "pdb"]);
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("web-budget "))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.get(1..4), Some(&["N/A", "1", "1"][..]), "{table}");

    // Readiness sampled every 100 ms while the drain runs.
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (stop, samples) = (stop.clone(), samples.clone());
        let config = c.config();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_flotilla"))
                    .args(["get", "instances", "-o", "json"])
                    .env("FLOTILLA_CONFIG", &config)
                    .output()
                    .unwrap();
                if let Ok(list) = serde_json::from_slice::<Value>(&out.stdout) {
                    let web: Vec<Value> = list["items"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|i| i["spec"]["workload"] == "web")
                        .cloned()
                        .collect();
                    samples.lock().unwrap().push(ready(&web));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let out = c.ok(&["drain", full, "--timeout", "120s"]);
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    assert_eq!(out.matches(" evicted").count(), 2, "{out}");
    assert!(
        out.trim_end().ends_with(&format!("node/{full} drained")),
        "{out}"
    );
    let samples = samples.lock().unwrap().clone();
    assert!(samples.len() >= 5, "too few samples: {samples:?}");
    assert!(
        samples.iter().all(|ready| *ready >= 2),
        "more than one of three unavailable at once during the drain: {samples:?}"
    );
    let web = web_instances(&c);
    assert_eq!(on(&web, full), 0, "{web:?}");
    let node: Value = serde_json::from_str(&c.ok(&["get", "node", full, "-o", "json"])).unwrap();
    assert_eq!(
        node["spec"]["unschedulable"], true,
        "a drained node stays cordoned"
    );
    c.wait_until("three ready again", Duration::from_secs(30), || {
        ready(&web_instances(&c)) == 3
    });

    // A budget that allows nothing blocks an eviction (429 naming it) and
    // a drain (which times out saying so); --force deletes anyway.
    c.ok(&[
        "patch",
        "disruptionbudget",
        "web-budget",
        "-p",
        r#"{"spec": {"maxUnavailable": null, "minAvailable": "100%"}}"#,
    ]);
    c.wait_until("the budget allows none", Duration::from_secs(10), || {
        budget_status(&c)["disruptionsAllowed"] == 0
    });
    let web = web_instances(&c);
    let other = ["edge-a", "edge-b", "edge-c"]
        .into_iter()
        .find(|n| *n != full && on(&web, n) > 0)
        .unwrap();
    let victim = web.iter().find(|i| i["spec"]["nodeName"] == other).unwrap()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let token = c.token();
    let (code, body) = c.raw(
        "POST",
        &format!("/apis/flotilla.dev/v1/namespaces/default/instances/{victim}/eviction"),
        &Who::Token(&token),
        "{}",
    );
    assert_eq!(code, 429, "{body}");
    assert!(
        body.contains("disruption budget web-budget") && body.contains("3 of 3"),
        "{body}"
    );
    let err = c.fails(&["drain", other, "--timeout", "2s"]);
    assert!(
        err.contains("timed out") && err.contains("web-budget") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        on(&web_instances(&c), other),
        on(&web, other),
        "nothing evicted"
    );
    let out = c.ok(&["drain", other, "--timeout", "1s", "--force"]);
    assert!(out.contains("deleted (--force"), "{out}");
    c.wait_until(
        "nothing left on the forced node",
        Duration::from_secs(10),
        || on(&web_instances(&c), other) == 0,
    );
}
