//! `execution: http` workloads behind the node's ingress, over real TCP.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::*;

/// One HTTP/1.1 request with `Connection: close`: (status, body).
pub fn request(address: &str, method: &str, host: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // A server that answers early and closes (503 over its connection cap)
    // may make the write fail: what it answered is still read, and a
    // caller that waits for another answer asks again.
    let _ = write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let (status, body) = split_answer(&raw);
    (status, dechunk(&body))
}

/// The body of a chunked response, or `body` as is.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string();
        };
        if size == 0 || after.len() < size {
            return out;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
}

/// Where the node of a `flotilla up` cluster serves its ingress.
pub fn ingress_of(c: &Cluster, node: &str) -> String {
    let mut address = String::new();
    c.wait_until(
        "the node publishes its ingress",
        Duration::from_secs(15),
        || {
            let node: Value = serde_json::from_str(&c.ok(&["get", "nodes", node, "-o", "json"]))
                .unwrap_or_default();
            address = node["status"]["ingressAddress"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            !address.is_empty()
        },
    );
    address
}

pub fn ready(c: &Cluster, workload: &str, n: usize) {
    c.wait_until(
        &format!("{n} ready replicas of {workload}"),
        Duration::from_secs(20),
        || {
            c.items("instances")
                .iter()
                .filter(|i| i["spec"]["workload"] == workload && i["status"]["ready"] == true)
                .count()
                == n
        },
    );
}

const HELLO: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: hello}
spec:
  module: {source: "file:MODULES/http-hello.component.wasm"}
  execution: http
  replicas: 3
  routes: [{host: hello.local, pathPrefix: /}]
"#;

#[test]
fn a_component_serves_through_the_ingress_balanced_over_its_replicas() {
    let c = Cluster::start();
    let ingress = ingress_of(&c, "node-1");
    c.apply("hello.yaml", HELLO);
    ready(&c, "hello", 3);
    let (status, body) = request(&ingress, "GET", "hello.local", "/", "");
    assert_eq!((status, body.as_str()), (200, "hello from flotilla\n"));
    // Port in the Host header, and upper case: the same route.
    assert_eq!(
        request(&ingress, "GET", "HELLO.local:8080", "/x", "").0,
        200
    );
    let (status, body) = request(&ingress, "GET", "nobody.local", "/", "");
    assert_eq!(status, 404);
    assert!(
        body.contains("nobody.local") && body.contains("routes"),
        "{body}"
    );

    // 1,000 requests: each replica serves a third, ±20%.
    for _ in 0..1000 {
        assert_eq!(request(&ingress, "GET", "hello.local", "/", "").0, 200);
    }
    let served = served_at_least(&c, 1002);
    assert_eq!(served.len(), 3, "{served:?}");
    for n in &served {
        assert!((267..=400).contains(n), "uneven: {served:?}");
    }
}

/// Requests served per replica, once they report `total` in all.
fn served_at_least(c: &Cluster, total: u64) -> Vec<u64> {
    let mut served = Vec::new();
    c.wait_until(
        "the replicas report their counts",
        Duration::from_secs(10),
        || {
            served = served_per_replica(c);
            served.iter().sum::<u64>() >= total
        },
    );
    served
}

/// Requests served per replica, as each reports in `status.requests`.
fn served_per_replica(c: &Cluster) -> Vec<u64> {
    c.items("instances")
        .iter()
        .filter(|i| i["spec"]["workload"] == "hello")
        .map(|i| i["status"]["requests"].as_u64().unwrap_or(0))
        .collect()
}

pub const WAGI: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: wagi}
spec:
  module: {source: "file:MODULES/wagi-hello.wasm"}
  execution: http
  routes: [{host: wagi.local}]
"#;

#[test]
fn a_wagi_module_serves_through_cgi() {
    let c = Cluster::start();
    let ingress = ingress_of(&c, "node-1");
    c.apply("wagi.yaml", WAGI);
    ready(&c, "wagi", 1);
    assert_eq!(
        request(&ingress, "GET", "wagi.local", "/", ""),
        (200, "hello from flotilla\n".to_string())
    );
    let (status, body) = request(&ingress, "POST", "wagi.local", "/echo", "payload");
    assert_eq!(status, 200);
    assert_eq!(body, "POST /echo\npayload");
}

#[test]
fn a_wagi_body_is_streamed_and_capped_at_the_memory_limit() {
    let c = Cluster::start();
    let ingress = ingress_of(&c, "node-1");
    c.apply(
        "wagi.yaml",
        &WAGI.replace(
            "execution: http",
            "execution: http\n  resources: {limits: {memory: 32Mi}}",
        ),
    );
    ready(&c, "wagi", 1);
    assert_eq!(request(&ingress, "GET", "wagi.local", "/", "").0, 200);

    // Declared too large: refused before a byte of it is read.
    let mut stream = TcpStream::connect(&ingress).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /echo HTTP/1.1\r\nHost: wagi.local\r\nContent-Length: 314572800\r\n\r\nabc"
    )
    .unwrap();
    let mut head = [0u8; 512];
    let n = stream.read(&mut head).unwrap();
    let answer = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("spec.resources.limits.memory"), "{answer}");
    drop(stream);

    // Chunked, 200 MB: streamed to the guest as it arrives (wagi-hello reads
    // it into a String until its own 32Mi limit refuses a growth, and answers
    // with what it got); the agent's memory does not grow by the body (it
    // grew by 313 MB for 300 MB before).
    let before = c.peak_rss();
    let mut stream = TcpStream::connect(&ingress).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        let _ = write!(
            writer,
            "POST /echo HTTP/1.1\r\nHost: wagi.local\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        for _ in 0..200 {
            if write!(writer, "{:x}\r\n", chunk.len()).is_err()
                || writer.write_all(&chunk).is_err()
                || writer.write_all(b"\r\n").is_err()
            {
                return;
            }
        }
        let _ = writer.write_all(b"0\r\n\r\n");
    });
    let mut head = [0u8; 512];
    // The connection may be reset once the answer is out: a read error is
    // not a failure, a wrong answer is.
    if let Ok(n) = stream.read(&mut head) {
        let answer = String::from_utf8_lossy(&head[..n]).into_owned();
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 413"),
            "{answer}"
        );
    }
    // Unblocks the sender if the server stopped reading.
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    let grew = c.peak_rss().saturating_sub(before);
    assert!(
        grew < 100 << 20,
        "the agent's peak RSS grew by {} MiB for a 200 MB body",
        grew >> 20
    );
    // And the node serves on.
    assert_eq!(request(&ingress, "GET", "wagi.local", "/", "").0, 200);
    let (status, body) = request(&ingress, "POST", "wagi.local", "/echo", "payload");
    assert_eq!((status, body.as_str()), (200, "POST /echo\npayload"));
}

const TRAP: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: trap}
spec:
  module: {source: "file:MODULES/http-trap.component.wasm"}
  execution: http
  routes: [{host: trap.local}]
  resources: {limits: {memory: 16Mi, timeout: 500ms}}
"#;

#[test]
fn the_ingress_bounds_slow_clients_connections_and_waits_for_a_slot() {
    let c = Cluster::start_up_with(&[
        "--ingress-header-timeout",
        "1s",
        "--ingress-max-connections",
        "3",
        "--ingress-slot-wait",
        "500ms",
    ]);
    let ingress = ingress_of(&c, "node-1");
    c.apply(
        "trap.yaml",
        &TRAP
            .replace("timeout: 500ms", "timeout: 3s")
            .replace("execution: http", "execution: http\n  maxConcurrency: 1"),
    );
    ready(&c, "trap", 1);
    assert_eq!(request(&ingress, "GET", "trap.local", "/", "").0, 200);

    // A connection over the cap is answered 503 and closed.
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&ingress).unwrap())
        .collect();
    let mut fourth = TcpStream::connect(&ingress).unwrap();
    fourth
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    let _ = fourth.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Retry-After: 1"), "{answer}");
    drop(held);
    c.wait_until(
        "connections are free again",
        Duration::from_secs(10),
        || request(&ingress, "GET", "trap.local", "/", "").0 == 200,
    );

    // A client that never finishes its headers is cut off.
    let mut slow = TcpStream::connect(&ingress).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(slow, "GET / HTTP/1.1\r\nHost: trap.local\r\n").unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let held_for = started.elapsed();
    assert!(
        held_for < Duration::from_secs(10),
        "a slow client held its connection for {held_for:?}"
    );

    // The only slot busy (/loop runs to its 3 s deadline): the next request
    // waits 500 ms for it, then gets 503 with Retry-After.
    let address = ingress.clone();
    let looping = std::thread::spawn(move || request(&address, "GET", "trap.local", "/loop", "").0);
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let (status, body) = request(&ingress, "GET", "trap.local", "/", "");
    let waited = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("maxConcurrency"), "{body}");
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "waited {waited:?}"
    );
    assert_eq!(looping.join().unwrap(), 504);
    assert_eq!(request(&ingress, "GET", "trap.local", "/", "").0, 200);
}

#[test]
fn a_failing_request_fails_alone() {
    let c = Cluster::start();
    let ingress = ingress_of(&c, "node-1");
    c.apply("trap.yaml", TRAP);
    c.ok(&[
        "apply",
        "-f",
        c.manifest("hello.yaml", &HELLO.replace("replicas: 3", "replicas: 1"))
            .to_str()
            .unwrap(),
    ]);
    ready(&c, "trap", 1);
    ready(&c, "hello", 1);
    let (status, body) = request(&ingress, "GET", "trap.local", "/trap", "");
    assert_eq!(status, 500);
    assert!(body.contains("Trap"), "{body}");
    assert_eq!(
        request(&ingress, "GET", "trap.local", "/", "").0,
        200,
        "the next request is fine"
    );

    // A memory hog gets a 500 while a neighbour's requests keep succeeding.
    let hog = {
        let ingress = ingress.clone();
        std::thread::spawn(move || request(&ingress, "GET", "trap.local", "/hog", ""))
    };
    for _ in 0..20 {
        assert_eq!(request(&ingress, "GET", "hello.local", "/", "").0, 200);
    }
    let (status, body) = hog.join().unwrap();
    assert_eq!(status, 500);
    assert!(body.contains("OOMKilled"), "{body}");

    // A handler that never answers: 504 at its deadline.
    let started = std::time::Instant::now();
    let (status, body) = request(&ingress, "GET", "trap.local", "/loop", "");
    assert_eq!(status, 504, "{body}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(request(&ingress, "GET", "trap.local", "/", "").0, 200);

    // Failures are in the instance's log and its events.
    c.wait_until(
        "an event telling of the trap",
        Duration::from_secs(20),
        || {
            let events = c.ok(&["get", "events"]);
            events.contains("Trap") || events.contains("OOMKilled")
        },
    );
}

#[test]
fn a_workload_with_no_ready_replica_gets_a_503_that_names_it() {
    let c = Cluster::start();
    let ingress = ingress_of(&c, "node-1");
    let idle = HELLO
        .replace("replicas: 3", "replicas: 0")
        .replace("name: hello", "name: idle");
    c.apply("idle.yaml", &idle);
    let mut answer = (0, String::new());
    c.wait_until(
        "the ingress knows the route",
        Duration::from_secs(10),
        || {
            answer = request(&ingress, "GET", "hello.local", "/", "");
            answer.0 == 503
        },
    );
    assert!(answer.1.contains("default/idle"), "{}", answer.1);
}

#[test]
fn requests_are_balanced_across_nodes_and_survive_a_node_death() {
    let (c, a, mut b) = two_agents();
    let hello = HELLO.replace(
        "execution: http",
        "execution: http\n  placement: {strategy: spread}\n  resources: {requests: {memory: 10Mi}}",
    );
    c.apply("hello.yaml", &hello);
    ready(&c, "hello", 3);
    let on = |node: &str| {
        c.items("instances")
            .iter()
            .filter(|i| i["spec"]["nodeName"] == node)
            .count()
    };
    assert_eq!(on("edge-a") + on("edge-b"), 3);
    assert!(
        on("edge-a") >= 1 && on("edge-b") >= 1,
        "spread over both nodes"
    );
    let ingress = ingress_of(&c, "edge-a");
    // Every replica, the two remote ones included, gets requests from edge-a
    // (a 200 alone would be satisfied by the local replica).
    let baseline = served_per_replica(&c);
    c.wait_until(
        "edge-a's ingress sends to all 3 replicas",
        Duration::from_secs(20),
        || {
            for _ in 0..6 {
                assert_eq!(request(&ingress, "GET", "hello.local", "/", "").0, 200);
            }
            let now = served_per_replica(&c);
            now.len() == 3 && now.iter().zip(&baseline).all(|(n, b)| n > b)
        },
    );
    let before: u64 = served_per_replica(&c).iter().sum();
    for _ in 0..999 {
        assert_eq!(request(&ingress, "GET", "hello.local", "/", "").0, 200);
    }
    let served = served_at_least(&c, before + 999);
    for n in &served {
        assert!((267..=410).contains(n), "uneven across nodes: {served:?}");
    }

    // edge-b dies: requests through edge-a keep succeeding (a refused
    // connection is retried on another replica) before and after detection.
    // Under concurrent load (4 clients), through detection and eviction;
    // half the clients POST: a request that never reached edge-b is safe to
    // send elsewhere whatever its method.
    let _ = b.0.kill();
    let _ = b.0.wait();
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|k| {
            let ingress = ingress.clone();
            std::thread::spawn(move || {
                let (mut failed, mut total) = (Vec::new(), 0);
                let (method, body) = if k % 2 == 0 {
                    ("GET", "")
                } else {
                    ("POST", "x=1")
                };
                while started.elapsed() < Duration::from_secs(8) {
                    total += 1;
                    let (status, body) = request(&ingress, method, "hello.local", "/", body);
                    if status != 200 {
                        failed.push(format!("{status} {body}"));
                    }
                }
                (failed, total)
            })
        })
        .collect();
    let (mut failed, mut total) = (Vec::new(), 0);
    for client in clients {
        let (f, t) = client.join().unwrap();
        failed.extend(f);
        total += t;
    }
    assert!(total > 100, "only {total} requests in 8 s");
    assert!(
        failed.is_empty(),
        "{} of {total} requests failed after edge-b died: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    drop(a);
}

const CALLER: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: caller}
spec:
  module: {source: "file:MODULES/caller.component.wasm"}
  execution: http
  routes: [{host: caller.local}]
  grants: {workloads: [hello]}
"#;

#[test]
fn a_guest_calls_a_granted_workload_by_name_and_nothing_else() {
    let c = Cluster::start();
    let ingress = ingress_of(&c, "node-1");
    let hello = HELLO.replace("replicas: 3", "replicas: 1");
    c.apply("hello.yaml", &hello);
    c.apply("caller.yaml", CALLER);
    ready(&c, "hello", 1);
    ready(&c, "caller", 1);
    let call = |url: &str| request(&ingress, "GET", "caller.local", &format!("/?url={url}"), "");
    let (status, body) = call("http://hello.default.flotilla/");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("answered 200: hello from flotilla"), "{body}");

    // Not granted: the ingress itself by address, and a workload not in the
    // grants — refused where the guest sees it.
    let (status, body) = call(&format!("http://{ingress}/"));
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    let (status, body) = call("http://caller.default.flotilla/");
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    c.wait_until("the refusal is an event", Duration::from_secs(10), || {
        c.ok(&["get", "events"]).contains("OutboundDenied")
    });
    let events = c.ok(&["get", "events"]);
    assert!(events.contains("spec.grants.hosts"), "{events}");
}

#[test]
fn a_guest_calls_a_workload_by_name_on_another_node() {
    let (c, _a, _b) = two_agents();
    let on =
        |node: &str| format!("execution: http\n  nodeSelector: {{flotilla.dev/hostname: {node}}}");
    c.apply(
        "hello.yaml",
        &HELLO
            .replace("replicas: 3", "replicas: 1")
            .replace("execution: http", &on("edge-b")),
    );
    c.apply(
        "caller.yaml",
        &CALLER.replace("execution: http", &on("edge-a")),
    );
    ready(&c, "hello", 1);
    ready(&c, "caller", 1);
    let node_of = |workload: &str| {
        c.items("instances")
            .iter()
            .find(|i| i["spec"]["workload"] == workload)
            .map(|i| {
                i["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
    };
    assert_eq!(node_of("hello").as_deref(), Some("edge-b"));
    assert_eq!(node_of("caller").as_deref(), Some("edge-a"));
    let ingress = ingress_of(&c, "edge-a");
    let call = || {
        request(
            &ingress,
            "GET",
            "caller.local",
            "/?url=http://hello.default.flotilla/",
            "",
        )
    };
    let mut answer = (0, String::new());
    c.wait_until(
        "caller on edge-a reaches hello on edge-b by name",
        Duration::from_secs(10),
        || {
            answer = call();
            answer.0 == 200
        },
    );
    assert!(
        answer.1.contains("answered 200: hello from flotilla"),
        "{}",
        answer.1
    );

    // An outside client cannot use the internal forwarding header to reach
    // a workload by name on edge-b (it has no route for that host).
    let edge_b = ingress_of(&c, "edge-b");
    let mut stream = TcpStream::connect(&edge_b).unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: hello.default.flotilla\r\nx-flotilla-workload: default/hello\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    let _ = stream.read_to_string(&mut raw);
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
}

#[test]
fn a_node_forwards_only_routed_requests_and_calls_of_granted_workloads_it_runs() {
    let (c, _a, _b) = two_agents();
    let on =
        |node: &str| format!("execution: http\n  nodeSelector: {{flotilla.dev/hostname: {node}}}");
    let unrouted = |yaml: &str, route: &str| yaml.replace(&format!("  routes: [{route}]\n"), "");
    // internal: no routes, on edge-b only.
    c.apply(
        "internal.yaml",
        &unrouted(HELLO, "{host: hello.local, pathPrefix: /}")
            .replace("name: hello", "name: internal")
            .replace("replicas: 3", "replicas: 1")
            .replace("execution: http", &on("edge-b")),
    );
    let granted = CALLER.replace("workloads: [hello]", "workloads: [internal]");
    c.apply(
        "caller.yaml",
        &granted.replace("execution: http", &on("edge-a")),
    );
    // caller-b: granted the same, but runs on edge-b.
    c.apply(
        "caller-b.yaml",
        &unrouted(&granted, "{host: caller.local}")
            .replace("name: caller", "name: caller-b")
            .replace("execution: http", &on("edge-b")),
    );
    for workload in ["internal", "caller", "caller-b"] {
        ready(&c, workload, 1);
    }
    // The guest's call crosses nodes: edge-b lets it in, for edge-a runs
    // caller, which is granted internal.
    let ingress = ingress_of(&c, "edge-a");
    let mut answer = (0, String::new());
    c.wait_until(
        "caller on edge-a reaches the unrouted internal on edge-b",
        Duration::from_secs(10),
        || {
            answer = request(
                &ingress,
                "GET",
                "caller.local",
                "/?url=http://internal.default.flotilla/",
                "",
            );
            answer.0 == 200
        },
    );
    assert!(
        answer.1.contains("answered 200: hello from flotilla"),
        "{}",
        answer.1
    );

    // What edge-a's own certificate gets at edge-b's node port, for each
    // claim a node taken over could make.
    let a = flotilla_trust::Identity::load(&c.dir.path().join("agent-edge-a/pki"), "node")
        .unwrap()
        .unwrap();
    let edge_b = NodePortOf::of(&c, "edge-b");
    let forward = |workload: &str, caller: Option<&str>| {
        let caller = caller.map_or(String::new(), |w| format!("x-flotilla-caller: {w}\r\n"));
        edge_b.forward(&a, workload, &caller)
    };
    let (code, body) = forward("default/internal", Some("default/caller"));
    assert!(
        code == 200 && body.contains("hello from flotilla"),
        "{code} {body}"
    );
    for (workload, caller, refusal) in [
        (
            "default/internal",
            None,
            "node edge-a may not forward to workload default/internal: it has no routes",
        ),
        (
            "default/internal",
            Some("default/caller-b"),
            "node edge-a may not call on behalf of workload default/caller-b: it runs no instance of it",
        ),
        (
            "default/caller-b",
            Some("default/caller"),
            "workload default/caller may not call workload default/caller-b: add it to spec.grants.workloads of default/caller",
        ),
    ] {
        let (code, body) = forward(workload, caller);
        assert!(code == 403 && body.contains(refusal), "{workload} for {caller:?}: {code} {body}");
    }
    // A routed workload any node may forward to (caller has routes; it
    // runs on edge-a only, so edge-b, past the check, has none to serve it).
    let (code, body) = forward("default/caller", None);
    assert!(
        code == 503 && body.contains("no ready replica on node edge-b"),
        "{code} {body}"
    );
}

#[test]
fn readiness_gates_which_replicas_get_requests() {
    let c = Cluster::start();
    let ingress = ingress_of(&c, "node-1");
    // /trap always fails: never ready, never routed to.
    let failing = TRAP
        .replace("name: trap", "name: unready")
        .replace("trap.local", "unready.local")
        .replace(
            "execution: http",
            "execution: http\n  probes: {readiness: {httpGet: {path: /trap}, period: 1s, timeout: 1s, failureThreshold: 1}}",
        );
    let passing = TRAP.replace(
        "execution: http",
        "execution: http\n  probes: {startup: {httpGet: {path: /}, period: 1s}, readiness: {httpGet: {path: /}, period: 1s}}",
    );
    c.apply("unready.yaml", &failing);
    c.apply("trap.yaml", &passing);
    ready(&c, "trap", 1);
    assert_eq!(request(&ingress, "GET", "trap.local", "/", "").0, 200);
    std::thread::sleep(Duration::from_secs(1));
    let unready: Vec<Value> = c
        .items("instances")
        .into_iter()
        .filter(|i| i["spec"]["workload"] == "unready")
        .collect();
    assert_eq!(unready.len(), 1);
    assert_eq!(unready[0]["status"]["ready"], false, "{}", unready[0]);
    let (status, body) = request(&ingress, "GET", "unready.local", "/", "");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("default/unready"), "{body}");
}

#[test]
fn a_failing_http_liveness_probe_restarts_the_replica() {
    let c = Cluster::start();
    let ingress = ingress_of(&c, "node-1");
    // / answers, /trap traps: the replica serves but its liveness fails.
    let probed = TRAP.replace(
        "execution: http",
        "execution: http\n  probes: {liveness: {httpGet: {path: /trap}, period: 1s, timeout: 1s, failureThreshold: 2}}",
    );
    c.apply("trap.yaml", &probed);
    ready(&c, "trap", 1);
    assert_eq!(request(&ingress, "GET", "trap.local", "/", "").0, 200);
    let restarts = || {
        c.items("instances")
            .first()
            .and_then(|i| i["status"]["restarts"].as_u64())
            .unwrap_or(0)
    };
    c.wait_until("2 liveness restarts", Duration::from_secs(30), || {
        restarts() >= 2
    });
    let events = c.wait_for_event("liveness probe failed");
    assert!(
        events.contains("Unhealthy") && events.contains("liveness probe failed"),
        "{events}"
    );
    // Restarted, it is registered again and serves.
    c.wait_until("served again", Duration::from_secs(20), || {
        request(&ingress, "GET", "trap.local", "/", "").0 == 200
    });
}

#[test]
fn the_node_port_serves_logs_to_the_control_plane_only_and_real_names() {
    let c = Cluster::start();
    let node: Value =
        serde_json::from_str(&c.ok(&["get", "node", "node-1", "-o", "json"])).unwrap();
    let port = node["status"]["nodeAddress"].as_str().unwrap().to_string();
    let identity = |dir: &std::path::Path, stem: &str| {
        flotilla_trust::Identity::load(dir, stem).unwrap().unwrap()
    };
    let control_plane = identity(&c.data_dir().join("pki"), "control-plane");
    let the_node = identity(&c.data_dir().join("agent/pki"), "node");
    let ca = c.ca_pem();
    let get = |path: &str, who: Option<&flotilla_trust::Identity>| {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = tls_exchange(&port, "node-1.node.flotilla", &ca, who, request.as_bytes());
        split_answer(&answer)
    };
    // Without a certificate the handshake fails: no answer at all.
    assert_eq!(get("/.flotilla/logs/default/x", None).0, 0);
    // A node's certificate is not the control plane's.
    let (code, body) = get("/.flotilla/logs/default/x", Some(&the_node));
    assert_eq!(code, 403, "{body}");
    let (code, body) = get("/.flotilla/logs/../../etc", Some(&control_plane));
    assert_eq!(code, 404, "{body}");
    let (code, body) = get("/.flotilla/logs/default/nothing-here", Some(&control_plane));
    assert!(
        code == 404 && body.contains("no output yet"),
        "{code} {body}"
    );
    // The node port is not the node's name for any other address: a client
    // that expects another node's name refuses it.
    let root = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert!(tls_exchange(
        &port,
        "node-2.node.flotilla",
        &ca,
        Some(&control_plane),
        root
    )
    .is_empty());
    // The public ingress has no log endpoint any more.
    let ingress = ingress_of(&c, "node-1");
    let (code, _) = request(&ingress, "GET", "x", "/.flotilla/logs/default/x", "");
    assert_eq!(code, 404);
}

/// A server and two agents, edge-a and edge-b, both Ready.
pub fn two_agents() -> (Cluster, crate::fleet::Agent, crate::fleet::Agent) {
    let c = Cluster::start_server();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let a = crate::fleet::agent(&c, "edge-a", join.trim(), "1Gi");
    let b = crate::fleet::agent(&c, "edge-b", join.trim(), "1Gi");
    c.wait_until("two nodes are Ready", Duration::from_secs(30), || {
        ready_nodes(&c) == 2
    });
    (c, a, b)
}

/// Ready instances of `workload`, old and new.
pub fn ready_count(c: &Cluster, workload: &str) -> usize {
    c.items("instances")
        .iter()
        .filter(|i| i["spec"]["workload"] == workload && i["status"]["ready"] == true)
        .count()
}

#[test]
fn a_rolling_update_under_load_fails_no_request_and_keeps_its_bounds() {
    let (c, _a, _b) = two_agents();
    // A readiness probe makes each new replica wait for its first check
    // (up to a second), so the rollout takes steps the samples can see.
    let hello = HELLO.replace("replicas: 3", "replicas: 4").replace(
        "execution: http",
        "execution: http\n  placement: {strategy: spread}\n  resources: {requests: {memory: 10Mi}}\n  probes: {readiness: {httpGet: {path: /}, period: 1s}}",
    );
    c.apply("hello.yaml", &hello);
    ready(&c, "hello", 4);
    let ingress = ingress_of(&c, "edge-a");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // 8 clients, each one request after another, for the whole rollout.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (ingress, stop) = (ingress.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut failed, mut total) = (Vec::new(), 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    total += 1;
                    let (status, body) = request(&ingress, "GET", "hello.local", "/", "");
                    if status != 200 {
                        failed.push(format!("{status} {body}"));
                    }
                }
                (failed, total)
            })
        })
        .collect();
    let started = std::time::Instant::now();
    c.ok(&[
        "patch",
        "workload",
        "hello",
        "-p",
        r#"{"spec": {"env": [{"name": "VERSION", "value": "2"}]}}"#,
    ]);
    // Sampled every 50 ms until every instance is new and ready: never
    // fewer than replicas − maxUnavailable (25% of 4 = 1) Ready, nor more
    // than replicas + maxSurge (1) in all.
    let mut samples = 0;
    loop {
        let instances: Vec<Value> = c
            .items("instances")
            .into_iter()
            .filter(|i| i["spec"]["workload"] == "hello")
            .collect();
        let ready = instances
            .iter()
            .filter(|i| i["status"]["ready"] == true)
            .count();
        let new = |i: &&Value| i["spec"]["template"]["env"][0]["value"] == "2";
        assert!(
            ready >= 3,
            "only {ready} Ready during the rollout: {instances:?}"
        );
        assert!(
            instances.len() <= 5,
            "{} instances during the rollout",
            instances.len()
        );
        samples += 1;
        if instances.len() == 4
            && instances
                .iter()
                .filter(new)
                .filter(|i| i["status"]["ready"] == true)
                .count()
                == 4
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the rollout did not finish: {instances:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rolled = started.elapsed();
    // Keep the load on a little after: what was deleted is drained, not cut.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut failed, mut total) = (Vec::new(), 0);
    for client in clients {
        let (f, t) = client.join().unwrap();
        failed.extend(f);
        total += t;
    }
    let rate = total as f64 / (rolled.as_secs_f64() + 1.0);
    eprintln!(
        "rolling update: {rolled:?}, {samples} samples, {total} requests ({rate:.0}/s), {} failed",
        failed.len()
    );
    assert!(rate >= 200.0, "only {rate:.0} requests/s");
    assert!(
        samples >= 10,
        "the rollout took {rolled:?}: too fast to sample its steps"
    );
    assert!(
        failed.is_empty(),
        "{} of {total} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(ready_count(&c, "hello"), 4);
    let workload: Value =
        serde_json::from_str(&c.ok(&["get", "workloads", "hello", "-o", "json"])).unwrap();
    let progressing = workload["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .cloned()
        .unwrap_or_default();
    assert_eq!(progressing["reason"], "NewRevisionAvailable", "{workload}");
    assert_eq!(workload["status"]["updatedReplicas"], 4, "{workload}");
}
