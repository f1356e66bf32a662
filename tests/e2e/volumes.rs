//! Volumes on real processes. `emptyDir`: kept across a crash-restart of
//! their instance and gone with it; confined (no `..` or symlink out); a
//! volume written past its `sizeLimit` stops the instance with
//! `VolumeQuotaExceeded`; a `hostPath` only under an allowed prefix.
//! `persistent`: stable replicas (`db-0`…) that return to the node holding
//! their volume across a rollout and an agent restart, a link out of the
//! volume denied, a replica made again elsewhere (an Event says the data is
//! lost) once its node is gone past `persistentVolumeReclaimAfter`, and the
//! volumes deleted with the workload.

use std::time::Duration;

use serde_json::Value;

use crate::cluster::Cluster;

/// The first instance of `workload` (waiting for one).
fn instance_of(c: &Cluster, workload: &str) -> Value {
    let mut found = Value::Null;
    c.wait_until(
        &format!("{workload} has an instance"),
        Duration::from_secs(30),
        || {
            found = c
                .items("instances")
                .into_iter()
                .find(|i| i["spec"]["workload"] == workload)
                .unwrap_or(Value::Null);
            !found.is_null()
        },
    );
    found
}

#[test]
fn an_empty_dir_outlives_restarts_of_its_instance_and_goes_with_it() {
    let c = Cluster::start();
    // fs writes written-by-guest.txt and exits; restarted, it reads it back.
    c.apply(
        "scratch.yaml",
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: scratch}
spec:
  module: {source: "file:MODULES/fs.wasm"}
  args: ["/scratch"]
  restartPolicy: {backoff: {initial: 100ms}}
  volumes: [{name: work, emptyDir: {}}, {name: fast, emptyDir: {medium: Memory, sizeLimit: 1Mi}}]
  volumeMounts: [{name: work, mountPath: /scratch}, {name: fast, mountPath: /fast, readOnly: true}]
"#,
    );
    let instance = instance_of(&c, "scratch");
    let name = instance["metadata"]["name"].as_str().unwrap().to_string();
    let mut said = String::new();
    c.wait_until(
        "a restarted run reads what the first wrote",
        Duration::from_secs(30),
        || {
            said =
                String::from_utf8_lossy(&c.cli(&["logs", "scratch", "--instance", &name]).stdout)
                    .to_string();
            said.contains(r#"read /scratch/written-by-guest.txt: "hello from the guest""#)
        },
    );
    assert!(!said.contains("ALLOWED"), "{said}");
    let folder = format!("{name}-{}", instance["metadata"]["uid"].as_str().unwrap());
    let dirs = flotilla_agent::volumes::VolumeDirs::of(&c.data_dir().join("agent"));
    let work = dirs.disk.join("default").join(&folder).join("work");
    let fast = dirs.memory.join("default").join(&folder).join("fast");
    assert!(work.join("written-by-guest.txt").exists(), "{work:?}");
    assert!(fast.is_dir() && fast.starts_with("/dev/shm"), "{fast:?}");
    // A mount marked readOnly cannot be written.
    c.apply(
        "reader.yaml",
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: reader}
spec:
  module: {source: "file:MODULES/fs.wasm"}
  args: ["/fast"]
  restartPolicy: {policy: Never}
  volumes: [{name: fast, emptyDir: {medium: Memory, sizeLimit: 1Mi}}]
  volumeMounts: [{name: fast, mountPath: /fast, readOnly: true}]
"#,
    );
    c.wait_until("reader tried to write", Duration::from_secs(30), || {
        let said = String::from_utf8_lossy(&c.cli(&["logs", "reader"]).stdout).to_string();
        said.contains("write /fast/written-by-guest.txt: failed")
    });
    c.ok(&["delete", "workload", "scratch"]);
    c.wait_until(
        "the volumes go with the instance",
        Duration::from_secs(20),
        || !work.exists() && !fast.exists(),
    );
}

#[test]
fn writing_past_a_size_limit_stops_the_instance_and_host_paths_need_an_allowed_prefix() {
    let c = Cluster::start();
    c.apply(
        "filler.yaml",
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: filler}
spec:
  module: {source: "file:MODULES/fs.wasm"}
  args: ["/scratch", "300000", "600000"]
  volumes: [{name: work, emptyDir: {sizeLimit: 100Ki}}]
  volumeMounts: [{name: work, mountPath: /scratch}]
"#,
    );
    let first = instance_of(&c, "filler");
    let name = first["metadata"]["name"].as_str().unwrap().to_string();
    let mut stopped = Value::Null;
    c.wait_until(
        "the instance is stopped over its quota",
        Duration::from_secs(30),
        || {
            stopped = c
                .items("instances")
                .into_iter()
                .find(|i| i["metadata"]["name"] == name.as_str())
                .unwrap_or(Value::Null);
            stopped["status"]["phase"] == "Failed"
        },
    );
    let message = stopped["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("volume work") && message.contains("102400"),
        "{stopped}"
    );
    assert_eq!(
        stopped["status"]["lastTermination"]["reason"], "VolumeQuotaExceeded",
        "{stopped}"
    );
    c.wait_for_event("VolumeQuotaExceeded");

    // A hostPath volume outside the node's allowed prefixes: refused.
    c.apply(
        "host.yaml",
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: host}
spec:
  module: {source: "file:MODULES/fs.wasm"}
  args: ["/etc-copy"]
  volumes: [{name: etc, hostPath: {path: /etc, readOnly: true}}]
  volumeMounts: [{name: etc, mountPath: /etc-copy}]
"#,
    );
    let mut failed = Value::Null;
    c.wait_until("the hostPath is refused", Duration::from_secs(30), || {
        failed = instance_of(&c, "host");
        failed["status"]["phase"] == "Failed"
    });
    let message = failed["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("--allow-host-path"), "{failed}");
    // A persistent volume of no size is refused at admission, saying so.
    let refused = c.cli(&[
        "apply",
        "-f",
        c.manifest(
            "p.yaml",
            r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: keeper}
spec:
  module: {source: "file:MODULES/fs.wasm"}
  volumes: [{name: data, persistent: {size: lots}}]
  volumeMounts: [{name: data, mountPath: /data}]
"#,
        )
        .to_str()
        .unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("spec.volumes[0].persistent.size"));
}

pub(crate) const STATEFUL: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: db}
spec:
  module: {source: "file:MODULES/fs.wasm"}
  args: ["/data", "10", "600000"]
  replicas: 2
  placement: {strategy: spread}
  resources: {requests: {memory: 100Mi, cpu: 100m}}
  persistentVolumeReclaimAfter: 3s
  volumes: [{name: data, persistent: {size: 1Mi}}]
  volumeMounts: [{name: data, mountPath: /data}]
"#;

/// `db-N`'s node, once it runs (with `args`).
fn running_on(c: &Cluster, ordinal: u32, args: &str) -> String {
    let name = format!("db-{ordinal}");
    let mut node = String::new();
    c.wait_until(
        &format!("{name} runs {args}"),
        Duration::from_secs(60),
        || {
            c.items("instances").iter().any(|i| {
                node = i["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                i["metadata"]["name"] == name.as_str()
                    && i["status"]["phase"] == "Running"
                    && i["spec"]["template"]["args"].to_string().contains(args)
            })
        },
    );
    node
}

fn log_of(c: &Cluster, instance: &str) -> String {
    String::from_utf8_lossy(&c.cli(&["logs", "db", "--instance", instance]).stdout).to_string()
}

#[test]
fn a_persistent_volume_stays_with_its_replica_across_rollouts_and_agent_restarts() {
    let c = Cluster::start_server();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let join = join.trim();
    let mut agents = std::collections::HashMap::new();
    for name in ["edge-a", "edge-b"] {
        agents.insert(name, crate::fleet::agent(&c, name, join, "256Mi"));
    }
    c.wait_until("two nodes are Ready", Duration::from_secs(15), || {
        crate::cluster::ready_nodes(&c) == 2
    });
    c.apply("db.yaml", STATEFUL);
    // Stable identities, one volume each, bound where each first ran.
    let node0 = running_on(&c, 0, "600000");
    let node1 = running_on(&c, 1, "600000");
    assert_ne!(node0, node1, "spread over both nodes");
    let volumes = c.ok(&["get", "volumes"]);
    assert!(
        volumes
            .lines()
            .any(|l| l.starts_with("data.db-0") && l.contains(&node0)),
        "{volumes}"
    );
    // Data put in db-0's volume, and a link that points out of it.
    let dir = |node: &str, volume: &str| {
        flotilla_agent::volumes::VolumeDirs::of(&c.dir.path().join(format!("agent-{node}")))
            .persistent_dir("default", volume)
    };
    let volume0 = dir(&node0, "data.db-0");
    std::fs::write(volume0.join("marker.txt"), "kept\n").unwrap();
    std::os::unix::fs::symlink("/etc", volume0.join("escape-link")).unwrap();

    // A rollout replaces db-0 in place, on its node, with its data.
    c.apply("db.yaml", &STATEFUL.replace("600000", "600001"));
    assert_eq!(
        running_on(&c, 0, "600001"),
        node0,
        "back to its volume's node"
    );
    assert_eq!(running_on(&c, 1, "600001"), node1);
    // The guest prints the read, then the escape attempt: wait for both
    // lines (the escape's outcome either way) before judging.
    c.wait_until(
        "the new db-0 read the old data and tried the link",
        Duration::from_secs(30),
        || {
            let said = log_of(&c, "db-0");
            said.contains(r#"read /data/marker.txt: "kept""#)
                && said.contains("escape /data/escape-link/passwd: ")
        },
    );
    let said = log_of(&c, "db-0");
    assert!(
        said.contains("escape /data/escape-link/passwd: denied"),
        "{said}"
    );
    assert!(!said.contains("ALLOWED"), "{said}");

    // Its agent restarted: the data is still there for db-0.
    std::fs::write(volume0.join("marker.txt"), "still kept\n").unwrap();
    drop(agents.remove(node0.as_str()));
    let node0_name: &'static str = if node0 == "edge-a" {
        "edge-a"
    } else {
        "edge-b"
    };
    agents.insert(
        node0_name,
        crate::fleet::agent(&c, node0_name, join, "256Mi"),
    );
    c.wait_until("db-0 read its data again", Duration::from_secs(60), || {
        log_of(&c, "db-0").contains(r#"read /data/marker.txt: "still kept""#)
    });
    assert_eq!(running_on(&c, 0, "600001"), node0);
    c.wait_until("usage is reported", Duration::from_secs(40), || {
        c.ok(&["get", "volumes"])
            .lines()
            .any(|l| l.starts_with("data.db-0") && !l.contains("<unknown>"))
    });

    // db-1's node gone for longer than persistentVolumeReclaimAfter: made
    // again on the other node, with an empty volume, and an Event says so.
    let node1_name: &'static str = if node1 == "edge-a" {
        "edge-a"
    } else {
        "edge-b"
    };
    drop(agents.remove(node1_name));
    c.wait_until(
        "an Event says db-1's data is lost",
        Duration::from_secs(60),
        || {
            c.items("events").iter().any(|e| {
                e["spec"]["reason"] == "VolumeLost"
                    && e["spec"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("db-1") && m.contains(&node1))
            })
        },
    );
    assert_eq!(
        running_on(&c, 1, "600001"),
        node0,
        "made again on the node left"
    );
    let volumes = c.ok(&["get", "volumes"]);
    assert!(
        volumes
            .lines()
            .any(|l| l.starts_with("data.db-1") && l.contains(&node0)),
        "{volumes}"
    );

    // Deleting the workload deletes its volumes.
    c.ok(&["delete", "workload", "db"]);
    c.wait_until("the volumes are deleted", Duration::from_secs(20), || {
        c.items("volumes").is_empty()
    });
}
