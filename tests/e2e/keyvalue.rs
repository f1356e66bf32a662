//! `wasi:keyvalue` on real processes: a visit counter's count (bucket
//! `counter`, backend `node`) is shared by its replicas and survives a
//! restart of everything; an ungranted bucket is denied with an Event
//! naming the grant; a value past the bucket's quota is refused, not a
//! crash; a guest importing wasi:keyvalue with no bucket granted does not
//! start.

use std::time::Duration;

use crate::cluster::Cluster;

const COUNTER: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: counter}
spec:
  module: {source: "file:MODULES/kv-counter.component.wasm"}
  execution: http
  replicas: 2
  routes: [{host: counter.local, pathPrefix: /}]
  GRANTS
"#;

#[test]
fn a_visit_counter_keeps_its_count_in_a_granted_bucket_across_restarts_within_its_quota() {
    let mut c = Cluster::start();
    c.apply(
        "counter.yaml",
        &COUNTER.replace(
            "GRANTS",
            "grants: {keyValue: [{bucket: counter, backend: node, quota: 4Ki}]}",
        ),
    );
    crate::http::ready(&c, "counter", 2);
    let ingress = crate::http::ingress_of(&c, "node-1");
    let get =
        |ingress: &str, path: &str| crate::http::request(ingress, "GET", "counter.local", path, "");
    // Both replicas count in the one bucket: 1..=10 with no gap or repeat.
    for n in 1..=10 {
        assert_eq!(get(&ingress, "/"), (200, format!("visits: {n}\n")));
    }

    // An ungranted bucket: access-denied in the guest, an Event naming the grant.
    assert_eq!(
        get(&ingress, "/open/secrets"),
        (500, "access-denied\n".into())
    );
    c.wait_until("an Event names the grant", Duration::from_secs(20), || {
        c.items("events").iter().any(|e| {
            let message = e["spec"]["message"].as_str().unwrap_or_default();
            e["spec"]["reason"] == "KeyValueDenied"
                && message.contains("\"secrets\"")
                && message.contains("spec.grants.keyValue")
        })
    });

    // Past the quota (4 KiB): refused, and the replica goes on serving.
    let (status, body) = get(&ingress, "/big/5000");
    assert_eq!(status, 500);
    assert!(body.starts_with("quota-exceeded"), "{body}");
    assert_eq!(get(&ingress, "/big/100"), (200, "stored\n".into()));
    // A value past 1 MiB, whatever the quota.
    let (status, body) = get(&ingress, "/big/1100000");
    assert_eq!(status, 500);
    assert!(body.contains("at most 1048576"), "{body}");
    assert_eq!(get(&ingress, "/"), (200, "visits: 11\n".into()));

    // Another namespace's bucket of the same name is its own.
    c.apply(
        "other.yaml",
        &COUNTER
            .replace(
                "metadata: {name: counter}",
                "metadata: {name: counter, namespace: other}",
            )
            .replace("replicas: 2", "replicas: 1")
            .replace("counter.local", "other.local")
            .replace("GRANTS", "grants: {keyValue: [{bucket: counter}]}"),
    );
    c.wait_until("the other counter answers", Duration::from_secs(30), || {
        crate::http::request(&ingress, "GET", "other.local", "/", "").0 == 200
    });
    assert_eq!(
        crate::http::request(&ingress, "GET", "other.local", "/", ""),
        (200, "visits: 2\n".into())
    );

    // The bucket is the node's: it survives a restart of the whole node.
    c.kill();
    c.launch();
    crate::http::ready(&c, "counter", 2);
    let ingress = crate::http::ingress_of(&c, "node-1");
    c.wait_until("the counter answers again", Duration::from_secs(30), || {
        get(&ingress, "/").0 == 200
    });
    assert_eq!(get(&ingress, "/"), (200, "visits: 13\n".into()));
}

#[test]
fn a_guest_importing_wasi_keyvalue_without_a_granted_bucket_does_not_start() {
    let c = Cluster::start();
    c.apply("counter.yaml", &COUNTER.replace("GRANTS", ""));
    let mut message = String::new();
    c.wait_until("the replica fails", Duration::from_secs(30), || {
        c.items("instances").iter().any(|i| {
            message = i["status"]["message"].as_str().unwrap_or_default().into();
            i["status"]["phase"] == "Failed"
        })
    });
    assert!(
        message.contains("wasi:keyvalue") && message.contains("spec.grants.keyValue"),
        "{message}"
    );
}

const INCREMENTER: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: incrementer}
spec:
  module: {source: "file:MODULES/kv-bench.component.wasm"}
  args: ["increment", "1000"]
  replicas: 3
  restartPolicy: {policy: Never}
  resources: {requests: {memory: 100Mi, cpu: 100m}}
  grants: {keyValue: [{bucket: counters, backend: cluster, quota: 1Ki}]}
"#;

#[test]
fn a_cluster_bucket_counts_every_increment_of_three_replicas_on_two_nodes() {
    let c = Cluster::start_server();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    // 256Mi each: two 100Mi replicas fit on a node, so three take both.
    let _a = crate::fleet::agent(&c, "edge-a", join.trim(), "256Mi");
    let _b = crate::fleet::agent(&c, "edge-b", join.trim(), "256Mi");
    c.wait_until("two nodes are Ready", Duration::from_secs(15), || {
        crate::cluster::ready_nodes(&c) == 2
    });
    c.apply("incrementer.yaml", INCREMENTER);
    let mut instances = Vec::new();
    c.wait_until(
        "the three replicas finish",
        Duration::from_secs(120),
        || {
            instances = c.items("instances");
            assert!(
                !instances.iter().any(|i| i["status"]["phase"] == "Failed"),
                "a replica failed: {instances:#?}"
            );
            crate::cluster::in_phase(&instances, "Succeeded").len() == 3
        },
    );
    let nodes: std::collections::BTreeSet<_> = instances
        .iter()
        .map(|i| i["spec"]["nodeName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(nodes.len(), 2, "the replicas ran on both nodes: {nodes:?}");
    // 3 × 1000 increments from two nodes at once: none lost, none doubled.
    assert_eq!(c.ok(&["kv", "get", "counters", "count"]), "3000");

    // The operator's side: put, conditional put by ETag, list, delete.
    c.ok(&["kv", "put", "counters", "greeting", "hello"]);
    assert_eq!(c.ok(&["kv", "get", "counters", "greeting"]), "hello");
    let etag = c.ok(&["kv", "get", "counters", "greeting", "--etag"]);
    let etag = etag.trim();
    c.ok(&[
        "kv",
        "put",
        "counters",
        "greeting",
        "hi",
        "--if-match",
        etag,
    ]);
    let stale = c.cli(&[
        "kv",
        "put",
        "counters",
        "greeting",
        "hey",
        "--if-match",
        etag,
    ]);
    assert!(!stale.status.success());
    let said = String::from_utf8_lossy(&stale.stderr);
    assert!(said.contains("changed"), "{said}");
    let taken = c.cli(&["kv", "put", "counters", "greeting", "x", "--if-absent"]);
    assert!(!taken.status.success(), "the key exists");
    assert_eq!(c.ok(&["kv", "get", "counters", "greeting"]), "hi");
    assert_eq!(c.ok(&["kv", "list", "counters"]), "count\ngreeting\n");
    assert_eq!(
        c.ok(&["kv", "increment", "counters", "count", "--by", "5"]),
        "3005\n"
    );
    // The quota is the grant's (1Ki), whoever writes.
    let big = c.cli(&["kv", "put", "counters", "big", &"x".repeat(2000)]);
    let said = String::from_utf8_lossy(&big.stderr);
    assert!(
        !big.status.success() && said.contains("quota-exceeded"),
        "{said}"
    );
    c.ok(&["kv", "delete", "counters", "greeting"]);
    let gone = c.cli(&["kv", "get", "counters", "greeting"]);
    let said = String::from_utf8_lossy(&gone.stderr);
    assert!(
        !gone.status.success() && said.contains("not found"),
        "{said}"
    );
    // Another namespace's bucket of the same name is empty.
    assert_eq!(c.ok(&["kv", "list", "counters", "-n", "other"]), "");

    // Who may: not the view role; a node only for its own instances' grants.
    let view = c.ok(&["token", "create", "--role", "view"]);
    let path = "/kv/v1/namespaces/default/buckets/counters/keys/count";
    let (code, body) = c.raw("GET", path, &crate::cluster::Who::Token(view.trim()), "");
    assert_eq!(code, 403, "{body}");
    let node = |name: &str| {
        flotilla_trust::Identity::load(&c.dir.path().join(format!("agent-{name}/pki")), "node")
            .unwrap()
            .unwrap()
    };
    let edge_a = node("edge-a");
    let (code, body) = c.raw("GET", path, &crate::cluster::Who::Node(&edge_a), "");
    assert_eq!(
        code, 200,
        "edge-a runs a replica granted the bucket: {body}"
    );
    let (code, body) = c.raw(
        "GET",
        "/kv/v1/namespaces/default/buckets/other/keys/count",
        &crate::cluster::Who::Node(&edge_a),
        "",
    );
    assert_eq!(
        code, 403,
        "no instance of edge-a is granted bucket other: {body}"
    );
}
