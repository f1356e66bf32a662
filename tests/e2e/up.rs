//! `flotilla up` end to end: the declarative API, the controller and the
//! agent on one node, through guest crashes and `kill -9` of flotilla itself.

use std::time::Duration;

use serde_json::Value;

use crate::cluster::*;

const TICKER: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: ticker, labels: {app: ticker}}
spec:
  module: {source: "file:MODULES/sleeper.wasm"}
  replicas: 3
  args: ["200"]
  resources: {requests: {memory: 16Mi, cpu: 50m}, limits: {memory: 32Mi, cpu: 100m}}
"#;

const CRASHER: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: crasher}
spec:
  module: {source: "file:MODULES/exit-code.wasm"}
  args: ["3"]
  restartPolicy: {policy: Always, backoff: {initial: 200ms, max: 800ms, resetAfter: 10m}}
"#;

fn running(c: &Cluster, n: usize) -> bool {
    in_phase(&c.items("instances"), "Running").len() == n
}

#[test]
fn three_replicas_run_and_come_back_after_kill_9() {
    let mut c = Cluster::start();
    let manifest = c.manifest("ticker.yaml", TICKER);
    assert!(c
        .ok(&["apply", "-f", manifest.to_str().unwrap()])
        .contains("workload.flotilla.dev/ticker created"));
    c.wait_until("3 instances run", Duration::from_secs(15), || {
        running(&c, 3)
    });
    assert!(c
        .ok(&["apply", "-f", manifest.to_str().unwrap()])
        .contains("unchanged"));
    // kubectl's DaemonSet columns (they fit every workload): DESIRED,
    // CURRENT, READY, UP-TO-DATE, AVAILABLE.
    c.wait_until(
        "the workload reports 3 of 3",
        Duration::from_secs(20),
        || {
            let table = c.ok(&["get", "workloads"]);
            let row: Vec<&str> = table
                .lines()
                .find(|l| l.starts_with("ticker "))
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            row.get(1..6) == Some(&["3", "3", "3", "3", "3"][..])
        },
    );
    let table = c.ok(&["get", "workloads"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE"
        ],
        "{table}"
    );
    // Memory in one unit per column, humanised (not `80Mi/24683784Ki`).
    let nodes = c.ok(&["get", "nodes"]);
    let memory = nodes
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().find(|f| f.contains("i/")))
        .unwrap_or_default()
        .to_string();
    let units: Vec<String> = memory
        .split('/')
        .map(|q| {
            q.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
                .to_string()
        })
        .collect();
    assert!(
        units.len() == 2 && units[0] == units[1] && ["Mi", "Gi", "Ti"].contains(&units[0].as_str()),
        "{nodes}"
    );
    let before = names(&c.items("instances"));
    let logs = c.ok(&["logs", "ticker", "--instance", &before[0]]);
    assert!(logs.contains("tick 1"), "{logs}");
    let started = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .map(|i| {
                i["status"]["startedAt"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    let started_before = started(&c.items("instances"));

    c.kill();
    c.launch();
    // The phase stored before the kill says Running too: wait for runs that
    // started after the restart.
    c.wait_until(
        "the same 3 instances run again, restarted",
        Duration::from_secs(15),
        || {
            let items = c.items("instances");
            in_phase(&items, "Running").len() == 3
                && started(&items)
                    .iter()
                    .zip(&started_before)
                    .all(|(now, then)| now != then)
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let after = c.items("instances");
    assert_eq!(names(&after), before, "same instances, no duplicates");
    assert_eq!(c.items("workloads").len(), 1);
}

#[test]
fn a_node_never_gets_more_instances_than_it_can_hold() {
    let c = Cluster::start_up_with(&["--max-instances", "5"]);
    c.apply("seven.yaml", &TICKER.replace("replicas: 3", "replicas: 7"));
    c.wait_until(
        "5 run and 2 wait, saying why",
        Duration::from_secs(20),
        || {
            let items = c.items("instances");
            running(&c, 5)
                && items
                    .iter()
                    .filter(|i| {
                        i["status"]["message"] == "0/1 nodes available: 1 too many instances"
                            && i["spec"]["nodeName"]
                                .as_str()
                                .unwrap_or_default()
                                .is_empty()
                    })
                    .count()
                    == 2
        },
    );
    let nodes = c.ok(&["get", "nodes"]);
    assert!(nodes.contains(" 5/5 "), "{nodes}");
    // Nothing crash-loops for want of a slot.
    std::thread::sleep(Duration::from_millis(500));
    let items = c.items("instances");
    assert!(
        items
            .iter()
            .all(|i| i["status"]["restarts"].as_u64().unwrap_or(0) == 0),
        "{items:?}"
    );
    // Room again: the waiting ones are placed.
    c.ok(&["scale", "workload", "ticker", "--replicas", "5"]);
    c.wait_until("5 run", Duration::from_secs(15), || {
        let items = c.items("instances");
        items.len() == 5 && running(&c, 5)
    });
}

#[test]
fn describe_shows_the_events_of_its_own_instances_only() {
    let c = Cluster::start();
    c.apply(
        "web.yaml",
        &TICKER
            .replace("name: ticker", "name: web")
            .replace("replicas: 3", "replicas: 1"),
    );
    c.apply(
        "web-api.yaml",
        &TICKER
            .replace("name: ticker", "name: web-api")
            .replace("replicas: 3", "replicas: 1"),
    );
    c.wait_until("both run", Duration::from_secs(15), || running(&c, 2));
    let instance_of = |workload: &str| {
        c.items("instances")
            .iter()
            .find(|i| i["spec"]["workload"] == workload)
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .unwrap()
    };
    let (web, api) = (instance_of("web"), instance_of("web-api"));
    c.wait_until("web's events are recorded", Duration::from_secs(10), || {
        c.ok(&["describe", "workload", "web"]).contains(&web)
    });
    let described = c.ok(&["describe", "workload", "web"]);
    assert!(!described.contains(&api), "{described}");
    assert!(c.ok(&["describe", "workload", "web-api"]).contains(&api));
}

#[test]
fn host_paths_are_granted_only_under_allowed_prefixes_and_never_the_data_folder() {
    let shared = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(shared.path().join("data")).unwrap();
    let c = Cluster::start_up_with(&["--allow-host-path", shared.path().to_str().unwrap()]);
    let with_dir = |name: &str, host: &std::path::Path| {
        c.apply(
            &format!("{name}.yaml"),
            &TICKER
                .replace("name: ticker", &format!("name: {name}"))
                .replace("replicas: 3", "replicas: 1")
                .replace(
                    "  args:",
                    &format!(
                        "  dirs: [{{hostPath: {}, guestPath: /data}}]\n  args:",
                        host.display()
                    ),
                ),
        );
    };
    with_dir("allowed", &shared.path().join("data"));
    with_dir("store", &c.data_dir());
    let elsewhere = tempfile::tempdir().unwrap();
    with_dir("elsewhere", elsewhere.path());
    let status_of = |workload: &str| {
        c.items("instances")
            .into_iter()
            .find(|i| i["spec"]["workload"] == workload)
            .map(|i| i["status"].clone())
            .unwrap_or_default()
    };
    c.wait_until(
        "the allowed one runs, the others fail",
        Duration::from_secs(15),
        || {
            status_of("allowed")["phase"] == "Running"
                && status_of("store")["phase"] == "Failed"
                && status_of("elsewhere")["phase"] == "Failed"
        },
    );
    let store = status_of("store")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(store.contains("overlaps the data folder"), "{store}");
    let elsewhere = status_of("elsewhere")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        elsewhere.contains("spec.dirs[0].hostPath") && elsewhere.contains("--allow-host-path"),
        "{elsewhere}"
    );
    c.wait_for_event("HostPathNotAllowed");
}

#[test]
fn a_crashing_module_is_restarted_with_backoff() {
    let c = Cluster::start();
    let manifest = c.manifest("crasher.yaml", CRASHER);
    c.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    // Backoff 200, 400, 800, 800… ms: about 4 restarts in the first 3 s.
    c.wait_until("2 restarts", Duration::from_secs(10), || {
        c.items("instances")
            .first()
            .is_some_and(|i| i["status"]["restarts"].as_u64() >= Some(2))
    });
    std::thread::sleep(Duration::from_secs(2));
    let instance = c.items("instances").remove(0);
    let restarts = instance["status"]["restarts"].as_u64().unwrap();
    assert!(
        (3..=8).contains(&restarts),
        "{restarts} restarts: the backoff is not applied"
    );
    assert_eq!(instance["status"]["lastTermination"]["reason"], "Error");
    assert_eq!(instance["status"]["lastTermination"]["exitCode"], 3);
    let table = c.ok(&["get", "instances"]);
    assert!(
        table.contains("CrashLoopBackOff") || table.contains("Running"),
        "{table}"
    );
    let described = c.ok(&["describe", "workload", "crasher"]);
    assert!(described.contains("BackOff"), "{described}");
    // Repeats fold into one Event with a count (as kubectl shows them):
    // one "Started" and one "Error" line for the whole crash loop.
    for reason in ["Started", "Error"] {
        let lines: Vec<&str> = described
            .lines()
            .filter(|l| l.split_whitespace().any(|w| w == reason))
            .collect();
        assert_eq!(lines.len(), 1, "{reason}: {lines:?}\n{described}");
        assert!(lines[0].contains("(x"), "{reason} not counted: {described}");
    }
    let previous = c.ok(&["logs", "crasher", "--previous"]);
    assert!(previous.contains("exiting with 3"), "{previous}");
}

const LOOPERS: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: loopers}
spec:
  module: {source: "file:MODULES/exit-code.wasm"}
  args: ["3"]
  replicas: 10
  restartPolicy: {policy: Always, backoff: {initial: 10ms, max: 10ms}}
"#;

fn total_restarts(c: &Cluster) -> u64 {
    c.items("instances")
        .iter()
        .filter_map(|i| i["status"]["restarts"].as_u64())
        .sum()
}

#[test]
fn crash_loops_share_the_nodes_restart_budget() {
    let c = Cluster::start_up_with(&["--max-restarts-per-second", "5"]);
    let manifest = c.manifest("loopers.yaml", LOOPERS);
    c.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    // Past the first burst (5), restarts queue for the node's budget.
    c.wait_until("20 restarts", Duration::from_secs(30), || {
        total_restarts(&c) >= 20
    });
    let (started, before) = (std::time::Instant::now(), total_restarts(&c));
    // A rate needs a window: 4 s is 20 restarts at the budget, and would be
    // about 2,000 at the loopers' own 10 ms backoff.
    std::thread::sleep(Duration::from_secs(4));
    let rate = (total_restarts(&c) - before) as f64 / started.elapsed().as_secs_f64();
    assert!(
        (1.5..=8.0).contains(&rate),
        "{rate:.1} restarts/s with a budget of 5/s"
    );
    let told = c.items("instances").iter().any(|i| {
        i["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("--max-restarts-per-second"))
    });
    assert!(told, "{}", c.ok(&["get", "instances", "-o", "json"]));
}

const SPINNER: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: spinner}
spec:
  module: {source: "file:MODULES/spinner.wasm"}
  resources: {limits: {cpu: 500m}}
"#;

/// (name, nice, CPU clock ticks used) of every thread of process `pid`.
fn threads_of(pid: u32) -> Vec<(String, i64, u64)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| {
            let dir = t.ok()?.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            // Fields after the command's closing parenthesis, from state
            // (field 3): utime and stime are fields 14 and 15, nice 19.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks =
                fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            Some((
                name.trim().to_string(),
                fields.get(16)?.parse().ok()?,
                ticks,
            ))
        })
        .collect()
}

#[test]
fn daemon_guests_run_on_niced_threads() {
    let c = Cluster::start();
    let manifest = c.manifest("spinner.yaml", SPINNER);
    c.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    c.wait_until("the spinner runs", Duration::from_secs(20), || {
        running(&c, 1)
    });
    // The spinner burns half a core: its CPU time shows on the guest
    // threads (1 s at 500m is about 50 ticks; wait for a tenth of it).
    let guest_ticks = |threads: &[(String, i64, u64)]| -> u64 {
        threads
            .iter()
            .filter(|(n, _, _)| n == "flotilla-guest")
            .map(|t| t.2)
            .sum()
    };
    c.wait_until("guest threads use CPU", Duration::from_secs(20), || {
        guest_ticks(&threads_of(c.pid())) >= 5
    });
    let threads = threads_of(c.pid());
    let guests: Vec<_> = threads
        .iter()
        .filter(|(n, _, _)| n == "flotilla-guest")
        .collect();
    assert!(guests.iter().all(|(_, nice, _)| *nice == 10), "{threads:?}");
    // The agent's own threads (heartbeats, ingress, API) are not niced.
    assert!(
        threads
            .iter()
            .any(|(n, nice, _)| n.starts_with("tokio") && *nice == 0),
        "{threads:?}"
    );
}

#[test]
fn stale_update_is_409_and_no_token_is_401() {
    let c = Cluster::start();
    let manifest = c.manifest("ticker.yaml", &TICKER.replace("replicas: 3", "replicas: 1"));
    c.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let client = c.client(&c.token());
        let path = "/apis/flotilla.dev/v1/namespaces/default/workloads/ticker";
        // The controller writes status concurrently (which also moves the
        // resourceVersion): update the way clients must, get-modify-retry.
        let mut w: Value = Value::Null;
        for attempt in 0.. {
            w = client.get(path).await.unwrap();
            w["spec"]["replicas"] = 2.into();
            match client.replace(path, &w).await {
                Ok(_) => break,
                Err(e) if e.code() == Some(409) && attempt < 20 => continue,
                Err(e) => panic!("{e}"),
            }
        }
        // `w` now carries a resourceVersion that is stale.
        w["spec"]["replicas"] = 3.into();
        let stale = client.replace(path, &w).await.unwrap_err();
        assert_eq!(stale.code(), Some(409), "{stale}");
        assert!(stale.to_string().contains("was modified"), "{stale}");

        let wrong = c.client("not-the-token");
        let e = wrong.get(path).await.unwrap_err();
        assert_eq!(e.code(), Some(401));
        assert!(e.to_string().contains("not valid"), "{e}");
        // Oversize bodies are refused, and the server stays up.
        let mut huge = w.clone();
        huge["metadata"]["labels"]["padding"] = "x".repeat(2 << 20).into();
        let e = client.replace(path, &huge).await.unwrap_err();
        // The server answers 413 and closes as soon as the limit is passed;
        // a client still writing the rest may see the close first.
        let cut = e.to_string().contains("Broken pipe") || e.to_string().contains("reset");
        assert!(e.code() == Some(413) || cut, "{e}");
        // The client may first reuse the connection the server closed.
        let mut up = false;
        for _ in 0..20 {
            if client.get(path).await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(up, "the server went down");
        let none = c.client("");
        assert_eq!(
            none.list("/apis/flotilla.dev/v1/nodes", "")
                .await
                .unwrap_err()
                .code(),
            Some(401)
        );
    });
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(c.config()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn bad_manifests_are_refused_clearly_and_the_server_stays_up() {
    let mut c = Cluster::start();
    let cases = [
        (
            "syntax.yaml",
            "apiVersion: flotilla.dev/v1\nkind: [Workload",
            "not valid YAML",
        ),
        (
            "field.yaml",
            &TICKER.replace("replicas: 3", "replicas: 3\n  replica: 4"),
            "unknown field `replica`",
        ),
        (
            "quantity.yaml",
            &TICKER.replace("memory: 32Mi", "memory: 64Mb"),
            "spec.resources.limits.memory: \"64Mb\" is not a memory quantity",
        ),
        (
            "kind.yaml",
            &TICKER.replace("kind: Workload", "kind: Pod"),
            "unknown kind \"Pod\"",
        ),
        (
            "missing.yaml",
            &TICKER.replace("sleeper.wasm", "nope.wasm"),
            "cannot read module",
        ),
        (
            "notwasm.yaml",
            &TICKER.replace("MODULES/sleeper.wasm", "MODULES/loop.wat"),
            "is not a WebAssembly module",
        ),
    ];
    for (file, body, expected) in cases {
        let path = c.manifest(file, body);
        let out = c.cli(&["apply", "-f", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file} was accepted");
        assert!(stderr.contains(expected), "{file}: {stderr}");
    }
    assert!(c.alive());
    assert!(c.items("workloads").is_empty());
    // Unreachable server: the CLI says where it tried and how to start one.
    c.kill();
    let out = c.cli(&["get", "workloads"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("127.0.0.1:{}", c.port)) && stderr.contains("flotilla up"),
        "{stderr}"
    );
}

#[test]
fn churn_leaves_no_orphan_instances_or_logs() {
    let c = Cluster::start();
    let manifest = c.manifest("ticker.yaml", &TICKER.replace("replicas: 3", "replicas: 2"));
    c.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    c.wait_until("2 instances run", Duration::from_secs(15), || {
        running(&c, 2)
    });
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let client = c.client(&c.token());
        let path = "/apis/flotilla.dev/v1/namespaces/default/workloads";
        let mut w: Value = client.get(&format!("{path}/ticker")).await.unwrap();
        for field in ["resourceVersion", "uid", "creationTimestamp", "generation"] {
            w["metadata"].as_object_mut().unwrap().remove(field);
        }
        w.as_object_mut().unwrap().remove("status");
        for _ in 0..200 {
            client.delete(&format!("{path}/ticker")).await.unwrap();
            client.create(path, &w).await.unwrap();
        }
        client.delete(&format!("{path}/ticker")).await.unwrap();
    });
    c.wait_until("no instance is left", Duration::from_secs(20), || {
        c.items("instances").is_empty()
    });
    let logs = c.data_dir().join("agent/logs");
    c.wait_until("no log file is left", Duration::from_secs(10), || {
        files_under(&logs) == 0
    });
}

const WATCHDOG: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: hangs}
spec:
  module: {source: "file:MODULES/watchdog.wasm"}
  args: ["100", "KICKS"]
  restartPolicy: {backoff: {initial: 100ms}}
  probes:
    liveness: {watchdog: {}, period: 1s, timeout: 1s, failureThreshold: 2}
    readiness: {watchdog: {}, period: 1s, timeout: 1s, failureThreshold: 1}
"#;

#[test]
fn a_failing_liveness_probe_restarts_the_instance() {
    let c = Cluster::start();
    // Kicks 20 times (2 s), then hangs while still running.
    let manifest = c.manifest("hangs.yaml", &WATCHDOG.replace("KICKS", "20"));
    c.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    c.wait_until("the instance is ready", Duration::from_secs(10), || {
        c.items("instances")
            .first()
            .is_some_and(|i| i["status"]["ready"] == true)
    });
    c.wait_until(
        "liveness kills and restarts it",
        Duration::from_secs(20),
        || {
            c.items("instances")
                .first()
                .is_some_and(|i| i["status"]["restarts"].as_u64() >= Some(1))
        },
    );
    let instance = c.items("instances").remove(0);
    let last = &instance["status"]["lastTermination"];
    assert_eq!(last["reason"], "Unhealthy", "{instance}");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("no watchdog kick"),
        "{instance}"
    );
    assert!(c
        .ok(&["describe", "workload", "hangs"])
        .contains("Unhealthy"));

    // A guest that never kicks is never ready (and is killed by liveness).
    let never = c.manifest(
        "never.yaml",
        &WATCHDOG
            .replace("KICKS", "0")
            .replace("name: hangs", "name: never"),
    );
    c.ok(&["apply", "-f", never.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(600));
    let readies: Vec<Value> = c
        .items("instances")
        .into_iter()
        .filter(|i| i["spec"]["workload"] == "never")
        .map(|i| i["status"]["ready"].clone())
        .collect();
    assert_eq!(readies, [Value::Bool(false)]);
}

#[test]
fn scale_and_patch_change_a_workload_in_place() {
    let c = Cluster::start();
    c.apply("ticker.yaml", TICKER);
    c.wait_until("3 running", Duration::from_secs(15), || running(&c, 3));
    assert!(c
        .ok(&["scale", "workload", "ticker", "--replicas", "1"])
        .contains("patched"));
    c.wait_until("1 left", Duration::from_secs(15), || {
        c.items("instances").len() == 1
    });
    c.ok(&[
        "patch",
        "workload",
        "ticker",
        "-p",
        r#"{"spec": {"replicas": 2, "args": ["300"]}}"#,
    ]);
    c.wait_until(
        "2 running with the new args",
        Duration::from_secs(15),
        || {
            let items = c.items("instances");
            items.len() == 2
                && items.iter().all(|i| {
                    i["spec"]["template"]["args"][0] == "300" && i["status"]["phase"] == "Running"
                })
        },
    );
    let workload: Value =
        serde_json::from_str(&c.ok(&["get", "workloads", "ticker", "-o", "json"])).unwrap();
    assert_eq!(workload["metadata"]["generation"], 3, "{workload}");
    assert_eq!(
        workload["spec"]["module"]["sha256"].as_str().map(str::len),
        Some(64),
        "untouched fields stay"
    );

    // A patch is validated like any write.
    let bad = c.cli(&[
        "patch",
        "workload",
        "ticker",
        "-p",
        r#"{"spec": {"replicas": "many"}}"#,
    ]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("spec.replicas"), "{err}");
    let bad = c.cli(&[
        "patch",
        "workload",
        "ticker",
        "-p",
        r#"{"spec": {"replicaz": 1}}"#,
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("replicaz"));
    assert!(!c
        .cli(&["scale", "workload", "nope", "--replicas", "1"])
        .status
        .success());
}

#[test]
fn a_startup_probe_lets_a_slow_starter_live() {
    let c = Cluster::start();
    // Silent for 3 s (30 ticks of 100 ms), then kicks forever.
    let slow = |name: &str, startup: &str| {
        let body = WATCHDOG
            .replace("name: hangs", &format!("name: {name}"))
            .replace(
                r#"args: ["100", "KICKS"]"#,
                r#"args: ["100", "1000000", "30"]"#,
            )
            .replace(
                "    readiness: {watchdog: {}, period: 1s, timeout: 1s, failureThreshold: 1}",
                startup,
            );
        c.manifest(&format!("{name}.yaml"), &body)
    };
    let with = slow(
        "patient",
        "    startup: {watchdog: {}, period: 1s, failureThreshold: 15}",
    );
    let without = slow("impatient", "");
    c.ok(&["apply", "-f", with.to_str().unwrap()]);
    c.ok(&["apply", "-f", without.to_str().unwrap()]);
    let restarts = |workload: &str| {
        c.items("instances")
            .iter()
            .find(|i| i["spec"]["workload"] == workload)
            .and_then(|i| i["status"]["restarts"].as_u64())
            .unwrap_or(0)
    };
    c.wait_until(
        "liveness kills the impatient one",
        Duration::from_secs(20),
        || restarts("impatient") >= 1,
    );
    c.wait_until("the patient one is ready", Duration::from_secs(20), || {
        c.items("instances")
            .iter()
            .any(|i| i["spec"]["workload"] == "patient" && i["status"]["ready"] == true)
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        restarts("patient"),
        0,
        "the startup probe held liveness back"
    );

    // A startup probe that never passes restarts the instance.
    let never = WATCHDOG
        .replace("name: hangs", "name: stuck")
        .replace("KICKS", "0")
        .replace(
            "    readiness: {watchdog: {}, period: 1s, timeout: 1s, failureThreshold: 1}",
            "    startup: {watchdog: {}, period: 1s, failureThreshold: 3}",
        );
    c.apply("stuck.yaml", &never);
    c.wait_until(
        "startup failure restarts it",
        Duration::from_secs(20),
        || restarts("stuck") >= 1,
    );
    assert!(c
        .ok(&["describe", "workload", "stuck"])
        .contains("startup probe failed"));
}

/// Busy loops that keep `n` cores busy until dropped.
struct Spinners(Vec<std::process::Child>);

impl Spinners {
    fn start(n: usize) -> Self {
        Self(
            (0..n)
                .map(|_| {
                    std::process::Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .unwrap()
                })
                .collect(),
        )
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A module of about 16.5 MB, as large as a real-world component: 14 MiB of
/// data and 3,000 functions (1.8 MB of code, seconds of Cranelift work on
/// busy cores). `seed` makes each one distinct.
fn large_module(seed: u32) -> Vec<u8> {
    use std::fmt::Write;
    let body =
        format!("local.get 0 i32.const {seed} i32.mul i32.const 3 i32.xor local.set 0 ").repeat(60);
    let data = "d".repeat(14 << 20);
    let mut wat = format!(r#"(module (memory 232) (data (i32.const 0) "{data}") "#);
    for i in 0..3_000 {
        let _ = write!(
            wat,
            "(func $f{i} (param i32) (result i32) {body} local.get 0)"
        );
    }
    wat.push_str(r#"(func (export "_start")))"#);
    wat::parse_str(&wat).unwrap()
}

#[test]
fn large_modules_compiling_on_a_busy_node_do_not_stall_it() {
    let _serial = crate::support::timing_lock();
    let c = Cluster::start();
    for seed in [7, 9] {
        let binary = large_module(seed);
        assert!(binary.len() >= 15 << 20, "{} bytes", binary.len());
        std::fs::write(c.dir.path().join(format!("large-{seed}.wasm")), binary).unwrap();
    }
    let token = c.token();
    let get_node = || {
        c.raw(
            "GET",
            "/apis/flotilla.dev/v1/nodes/node-1",
            &Who::Token(&token),
            "",
        )
        .1
    };
    c.wait_until("the node is Ready", Duration::from_secs(15), || {
        get_node().contains("\"ready\":true")
    });

    // Both cores busy, then two real-world-sized modules to compile at once.
    let _spinners = Spinners::start(2);
    for seed in [7, 9] {
        c.apply(
            &format!("large-{seed}.yaml"),
            &format!(
                "apiVersion: flotilla.dev/v1\nkind: Workload\nmetadata: {{name: large-{seed}}}\nspec:\n  module: {{source: \"file:large-{seed}.wasm\"}}\n  restartPolicy: {{policy: OnFailure}}\n"
            ),
        );
    }
    let started = std::time::Instant::now();
    let mut latencies = Vec::new();
    let mut not_ready = 0;
    loop {
        let t = std::time::Instant::now();
        let node = get_node();
        latencies.push(t.elapsed());
        if !node.contains("\"ready\":true") {
            not_ready += 1;
        }
        let done = c
            .items("instances")
            .iter()
            .filter(|i| i["status"]["phase"] == "Succeeded")
            .count();
        if done == 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the modules did not run within 240 s: {}",
            c.ok(&["get", "instances"])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = started.elapsed();
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    eprintln!(
        "compiled and ran 2 × 16.5 MB in {took:?} on busy cores; API p99 {p99:?} over {} requests",
        latencies.len()
    );
    // The proof needs the compilation to outlast the node grace (5 s).
    assert!(
        took > Duration::from_secs(5),
        "compiled too fast to prove anything: {took:?}"
    );
    assert_eq!(not_ready, 0, "the node went NotReady while compiling");
    assert!(!c.ok(&["get", "events"]).contains("NodeNotReady"));
    assert!(
        p99 < Duration::from_millis(100),
        "API p99 {p99:?} while compiling"
    );
}

#[test]
fn one_client_cannot_hold_more_than_its_share_of_watches() {
    let c = Cluster::start();
    let token = c.token();
    let open_as = |query: &str, bearer: &str| {
        c.open_stream(&format!(
            "GET /apis/flotilla.dev/v1/namespaces/default/workloads?{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\n\r\n"
        ), None)
    };
    let open = || open_as("watch=true", &token);
    let mut held = Vec::new();
    for _ in 0..flotilla_control_plane::api::MAX_STREAMS_PER_CLIENT {
        let (stream, head) = open();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        held.push(stream);
    }
    let (_, refused) = open();
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    // Neither an encoded query nor a differently spaced token escapes the count.
    let (_, encoded) = open_as("%77atch=tru%65", &token);
    assert!(encoded.starts_with("HTTP/1.1 429"), "{encoded}");
    let (_, spaced) = open_as("watch=true", &format!("  {token}"));
    assert!(spaced.starts_with("HTTP/1.1 429"), "{spaced}");
    // The API still answers this client's other requests.
    assert!(c.cli(&["get", "workloads"]).status.success());
    // A closed watch frees its place.
    drop(held.pop());
    c.wait_until(
        "a watch can be opened again",
        Duration::from_secs(10),
        || open().1.starts_with("HTTP/1.1 200"),
    );
}

#[test]
fn module_files_stay_within_the_nodes_disk_budget() {
    // A budget smaller than any module: only what runs keeps its files.
    let c = Cluster::start_up_with(&["--module-cache-size", "1"]);
    let files = |dir: &str| files_under(&c.data_dir().join("agent").join(dir));
    c.apply("ticker.yaml", &TICKER.replace("replicas: 3", "replicas: 1"));
    c.wait_until("ticker runs", Duration::from_secs(15), || running(&c, 1));
    // Its files are kept while it runs (a module, its compiled code and mac).
    c.wait_until(
        "ticker's files are written",
        Duration::from_secs(10),
        || files("modules") == 1 && files("compiled") >= 2,
    );
    c.ok(&["delete", "workload", "ticker"]);
    c.wait_until("ticker is gone", Duration::from_secs(15), || {
        c.items("instances").is_empty()
    });
    c.apply(
        "other.yaml",
        &TICKER
            .replace("name: ticker", "name: other")
            .replace("replicas: 3", "replicas: 1")
            .replace("sleeper.wasm", "hello.wasm"),
    );
    let other = c.items("workloads")[0]["spec"]["module"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let kept = || -> Vec<String> {
        std::fs::read_dir(c.data_dir().join("agent/modules"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    // Once the other module is loaded, ticker's files (no longer running)
    // are past the budget and go; the running one's stay.
    c.wait_until(
        "only the running module's file is kept",
        Duration::from_secs(15),
        || kept() == [format!("{other}.wasm")],
    );
    let compiled = files("compiled");
    assert!(
        compiled <= 3,
        "{compiled} files in compiled/: ticker's code was not removed"
    );
}

#[test]
fn a_limit_without_a_request_is_what_the_node_reserves() {
    let c = Cluster::start();
    c.apply(
        "limited.yaml",
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: limited}
spec:
  module: {source: "file:MODULES/sleeper.wasm"}
  args: ["1000"]
  resources: {limits: {memory: 64Mi, cpu: 300m}}
"#,
    );
    let workload: Value =
        serde_json::from_str(&c.ok(&["get", "workload", "limited", "-o", "json"])).unwrap();
    assert_eq!(
        workload["spec"]["resources"]["requests"]["cpu"], "300m",
        "{workload}"
    );
    assert_eq!(workload["spec"]["resources"]["requests"]["memory"], "64Mi");
    c.wait_until("it runs", Duration::from_secs(20), || {
        in_phase(&c.items("instances"), "Running").len() == 1
    });
    let nodes = c.ok(&["get", "nodes"]);
    assert!(
        nodes.contains("300m/"),
        "the node reserves the limit: {nodes}"
    );
}

/// The template's `args` of every instance of `workload`, and whether all of
/// them are Running.
fn args_running(c: &Cluster, workload: &str) -> (Vec<String>, bool) {
    let items: Vec<Value> = c
        .items("instances")
        .into_iter()
        .filter(|i| i["spec"]["workload"] == workload)
        .collect();
    let args = items
        .iter()
        .map(|i| {
            i["spec"]["template"]["args"][0]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    (
        args,
        items.iter().all(|i| i["status"]["phase"] == "Running"),
    )
}

#[test]
fn rollout_status_pause_resume_restart_and_a_deadline() {
    let c = Cluster::start();
    c.apply("ticker.yaml", TICKER);
    c.wait_until("3 running", Duration::from_secs(20), || running(&c, 3));
    assert!(c
        .ok(&["rollout", "status", "workload/ticker"])
        .contains("successfully rolled out"));

    // Paused: a template change waits; status says why and fails.
    assert!(c
        .ok(&["rollout", "pause", "workload/ticker"])
        .contains("paused"));
    c.ok(&[
        "patch",
        "workload",
        "ticker",
        "-p",
        r#"{"spec": {"args": ["300"]}}"#,
    ]);
    let paused = c.cli(&["rollout", "status", "workload/ticker"]);
    assert!(!paused.status.success());
    assert!(String::from_utf8_lossy(&paused.stderr).contains("rollout resume"));
    assert_eq!(args_running(&c, "ticker").0, ["200", "200", "200"]);

    // Resumed: it rolls, and status follows it to the end.
    c.ok(&["rollout", "resume", "workload/ticker"]);
    let done = c.ok(&["rollout", "status", "workload/ticker", "--timeout", "60s"]);
    assert!(done.contains("successfully rolled out"), "{done}");
    assert_eq!(
        args_running(&c, "ticker"),
        (vec!["300".to_string(); 3], true)
    );

    // Restart: every instance replaced, the template otherwise unchanged.
    let before: Vec<String> = names(&c.items("instances"));
    c.ok(&["rollout", "restart", "workload/ticker"]);
    c.ok(&["rollout", "status", "workload/ticker", "--timeout", "60s"]);
    let after: Vec<String> = names(&c.items("instances"));
    assert_eq!(after.len(), 3);
    assert!(
        after.iter().all(|n| !before.contains(n)),
        "{before:?} → {after:?}"
    );

    // A new version that never gets ready, without automatic rollback (as
    // Kubernetes): the deadline passes, status fails naming it, and the old
    // instances keep running meanwhile.
    c.ok(&[
        "patch",
        "workload",
        "ticker",
        "-p",
        r#"{"spec": {"progressDeadlineSeconds": 3, "strategy": {"autoRollback": false}, "probes": {"readiness": {"watchdog": {}, "period": 1s}}}}"#,
    ]);
    let failed = c.cli(&["rollout", "status", "workload/ticker", "--timeout", "60s"]);
    let said = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{said}");
    assert!(said.contains("progressDeadlineSeconds"), "{said}");
    eprintln!("deadline: {said}");
    let ready = c
        .items("instances")
        .iter()
        .filter(|i| i["status"]["ready"] == true)
        .count();
    assert!(ready >= 2, "the old version keeps serving: {ready} ready");

    // Every template is a numbered revision, with what it changed.
    let history = c.ok(&["rollout", "history", "workload/ticker"]);
    for (number, change) in [
        ("1", "(first)"),
        ("2", "args"),
        ("3", "restartedAt"),
        ("4", "probes"),
    ] {
        assert!(
            history
                .lines()
                .any(|l| l.split_whitespace().next() == Some(number) && l.contains(change)),
            "revision {number} ({change}):\n{history}"
        );
    }
    // Revisions are the controller's: nobody writes them, admins included.
    let revisions = c.items("revisions");
    assert_eq!(revisions.len(), 4, "{revisions:?}");
    let one = revisions[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/apis/flotilla.dev/v1/namespaces/default/revisions/{one}");
    let token = c.token();
    let (code, body) = c.raw("DELETE", &path, &Who::Token(&token), "");
    assert_eq!(code, 405, "{body}");
    assert!(body.contains("workload controller"), "{body}");
    // Undo: back to the revision before (3, the restart), which rolls out
    // and becomes revision 5; the never-ready instance goes.
    let undone = c.ok(&["rollout", "undo", "workload/ticker"]);
    assert!(undone.contains("rolled back to revision 3"), "{undone}");
    let done = c.ok(&["rollout", "status", "workload/ticker", "--timeout", "60s"]);
    assert!(done.contains("successfully rolled out"), "{done}");
    c.wait_until("3 ready, no probes", Duration::from_secs(20), || {
        let items = c.items("instances");
        items.len() == 3
            && items
                .iter()
                .all(|i| i["status"]["ready"] == true && i["spec"]["template"]["probes"].is_null())
    });
    let history = c.ok(&["rollout", "history", "workload/ticker"]);
    let numbers: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(numbers, ["1", "2", "4", "5"], "{history}");
    let missing = c.cli(&["rollout", "undo", "workload/ticker", "--to-revision", "9"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no revision 9"));
    // They go with their workload.
    c.ok(&["delete", "workload", "ticker"]);
    c.wait_until("revisions collected", Duration::from_secs(20), || {
        c.items("revisions").is_empty()
    });
}
