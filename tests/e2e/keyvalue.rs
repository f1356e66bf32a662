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
