//! `emptyDir` volumes on real processes: kept across a crash-restart of
//! their instance and gone with it; confined (no `..` or symlink out); a
//! volume written past its `sizeLimit` stops the instance with
//! `VolumeQuotaExceeded`; a `hostPath` only under an allowed prefix.

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
    assert!(c.ok(&["get", "events"]).contains("VolumeQuotaExceeded"));

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
    // Persistent volumes are refused at admission, saying so.
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
  volumes: [{name: data, persistent: {size: 1Gi}}]
  volumeMounts: [{name: data, mountPath: /data}]
"#,
        )
        .to_str()
        .unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("spec.volumes[0].persistent"));
}
