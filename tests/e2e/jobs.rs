//! Jobs: work that runs to completion, on `flotilla up`.

use std::time::Duration;

use serde_json::Value;

use crate::cluster::*;

const INDEXED: &str = r#"
apiVersion: flotilla.dev/v1
kind: Job
metadata: {name: crunch}
spec:
  completions: 5
  parallelism: 2
  completionMode: Indexed
  template:
    module: {source: "file:MODULES/exit-code.wasm"}
    args: ["0"]
    resources: {requests: {memory: 16Mi}, limits: {memory: 32Mi}}
"#;

const TRAPPING: &str = r#"
apiVersion: flotilla.dev/v1
kind: Job
metadata: {name: doomed}
spec:
  backoffLimit: 2
  template:
    module: {source: "file:MODULES/trapper.wasm"}
    args: ["unreachable"]
"#;

fn attempts(c: &Cluster, job: &str) -> Vec<Value> {
    c.items("instances")
        .into_iter()
        .filter(|i| i["metadata"]["labels"]["flotilla.dev/job"] == job)
        .collect()
}

fn job(c: &Cluster, name: &str) -> Value {
    serde_json::from_str(&c.ok(&["get", "job", name, "-o", "json"])).unwrap()
}

#[test]
fn an_indexed_job_completes_every_index_once_and_a_trapping_one_fails_after_its_backoff_limit() {
    let c = Cluster::start();
    c.apply("crunch.yaml", INDEXED);
    let out = c.ok(&[
        "wait",
        "job/crunch",
        "--for",
        "condition=Complete",
        "--timeout",
        "60s",
    ]);
    assert_eq!(out.trim(), "job/crunch condition met");
    let status = job(&c, "crunch")["status"].clone();
    assert_eq!(status["succeeded"], 5, "{status}");
    assert_eq!(status["failed"], 0, "{status}");
    assert_eq!(status["active"], 0, "{status}");
    assert_eq!(status["completedIndexes"], "0-4", "{status}");
    assert!(status["completionTime"].is_string(), "{status}");
    let done = attempts(&c, "crunch");
    let mut indexes: Vec<String> = done
        .iter()
        .map(|i| {
            let index = i["metadata"]["labels"]["flotilla.dev/job-index"]
                .as_str()
                .unwrap()
                .to_string();
            // Each attempt's guest is told its index.
            let env = i["spec"]["template"]["env"].as_array().unwrap();
            assert!(
                env.iter()
                    .any(|e| e["name"] == "FLOTILLA_JOB_INDEX" && e["value"] == index.as_str()),
                "{i}"
            );
            assert_eq!(i["status"]["phase"], "Succeeded", "{i}");
            index
        })
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2", "3", "4"], "one attempt per index");
    let table = c.ok(&["get", "jobs"]);
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("crunch "))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.get(1..3), Some(&["Complete", "5/5"][..]), "{table}");
    let log = c.ok(&["logs", "job/crunch", "--index", "3"]);
    assert!(log.contains("exiting with 0"), "{log}");

    // Always trapping: backoffLimit 2 → exactly 3 attempts, then Failed.
    c.apply("doomed.yaml", TRAPPING);
    let err = c.fails(&[
        "wait",
        "job/doomed",
        "--for",
        "condition=Complete",
        "--timeout",
        "60s",
    ]);
    assert!(
        err.contains("finished Failed") && err.contains("BackoffLimitExceeded"),
        "{err}"
    );
    let status = job(&c, "doomed")["status"].clone();
    assert_eq!(status["failed"], 3, "{status}");
    assert_eq!(status["succeeded"], 0, "{status}");
    let failed = attempts(&c, "doomed");
    assert_eq!(failed.len(), 3, "backoffLimit + 1 attempts: {failed:?}");
    assert!(failed.iter().all(|i| i["status"]["phase"] == "Failed"));
    // Nothing more is tried once it failed.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(attempts(&c, "doomed").len(), 3);
    c.wait_for_event("BackoffLimitExceeded");

    // One Job, one kind of attempt.
    let err = c.fails(&[
        "patch",
        "job",
        "crunch",
        "-p",
        r#"{"spec": {"template": {"args": ["1"]}}}"#,
    ]);
    assert!(
        err.contains("spec.template.args") && err.contains("cannot change"),
        "{err}"
    );

    // Deleting a Job takes its attempts with it.
    c.ok(&["delete", "job", "crunch"]);
    c.wait_until(
        "crunch's attempts are gone",
        Duration::from_secs(10),
        || attempts(&c, "crunch").is_empty(),
    );
}

const SLOW: &str = r#"
apiVersion: flotilla.dev/v1
kind: Job
metadata: {name: slow}
spec:
  template:
    module: {source: "file:MODULES/sleeper.wasm"}
    args: ["500", "12"]
    resources: {requests: {memory: 16Mi}}
"#;

#[test]
fn an_attempt_whose_node_dies_runs_again_elsewhere_and_is_no_failure() {
    let c = Cluster::start_server_with(&["--node-grace", "2s"]);
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let mut a = crate::fleet::agent(&c, "edge-a", join.trim(), "256Mi");
    let mut b = crate::fleet::agent(&c, "edge-b", join.trim(), "256Mi");
    c.wait_until("two nodes are Ready", Duration::from_secs(30), || {
        ready_nodes(&c) == 2
    });
    c.apply("slow.yaml", SLOW);
    let mut first = Value::Null;
    c.wait_until("the attempt runs", Duration::from_secs(30), || {
        first = attempts(&c, "slow")
            .into_iter()
            .find(|i| i["status"]["phase"] == "Running")
            .unwrap_or_default();
        !first.is_null()
    });
    let node = first["spec"]["nodeName"].as_str().unwrap().to_string();
    let (dead, alive) = if node == "edge-a" {
        (&mut a, "edge-b")
    } else {
        (&mut b, "edge-a")
    };
    let _ = dead.0.kill();
    let _ = dead.0.wait();
    let out = c.ok(&[
        "wait",
        "job/slow",
        "--for",
        "condition=Complete",
        "--timeout",
        "60s",
    ]);
    assert_eq!(out.trim(), "job/slow condition met");
    let status = job(&c, "slow")["status"].clone();
    assert_eq!(
        (status["succeeded"].clone(), status["failed"].clone()),
        (1.into(), 0.into()),
        "{status}"
    );
    let done = attempts(&c, "slow");
    assert_eq!(
        done.len(),
        1,
        "the lost attempt is gone, not failed: {done:?}"
    );
    assert_eq!(done[0]["spec"]["nodeName"], alive, "{done:?}");
    assert_ne!(done[0]["metadata"]["name"], first["metadata"]["name"]);
}
