//! Who may do what: every API route × every kind of caller, against a real
//! server with two real agents (each holding the certificate the CA issued
//! it), and the tokens `flotilla token` makes.

use std::time::Duration;

use serde_json::{json, Value};

use crate::cluster::*;
use crate::fleet::agent;

/// What a route must answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// 200.
    Ok,
    /// 201.
    Created,
    /// Past authorization, and this answer from the handler (409, 400…).
    Code(u16),
    /// 403.
    Forbidden,
    /// Not tried (it would change what the other rows need).
    Skip,
}
use Want::*;

/// One node's objects.
struct Own {
    node: String,
    instance: String,
    workload: String,
    digest: String,
}

/// A route: method, path and body for the objects of `o`.
type Route<'a> = (&'static str, Box<dyn Fn(&Own) -> (String, String) + 'a>);

const NS: &str = "/apis/flotilla.dev/v1/namespaces/default";
const NODES: &str = "/apis/flotilla.dev/v1/nodes";

fn pinned(name: &str, node: &str, module: &str) -> String {
    format!(
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {{name: {name}}}
spec:
  module: {{source: "file:MODULES/{module}"}}
  args: ["100000"]
  nodeSelector: {{flotilla.dev/hostname: {node}}}
"#
    )
}

/// An object as stored, without its resourceVersion (so a write of it is
/// not refused as stale).
fn current(c: &Cluster, admin: &str, path: &str) -> Value {
    let (code, body) = c.raw("GET", path, &Who::Token(admin), "");
    assert_eq!(code, 200, "GET {path}: {body}");
    let mut value: Value = serde_json::from_str(&body).unwrap();
    value["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    value
}

fn unique() -> String {
    format!("{:08x}", rand::random::<u32>())
}

fn event_about(kind: &str, name: &str) -> String {
    json!({"apiVersion": "flotilla.dev/v1", "kind": "Event", "metadata": {"name": format!("e.{}", unique())},
        "spec": {"involvedObject": {"kind": kind, "namespace": if kind == "Node" { "" } else { "default" }, "name": name},
                 "type": "Normal", "reason": "Test", "message": "m", "source": "test",
                 "timestamp": "2026-01-01T00:00:00Z"}})
    .to_string()
}

#[test]
fn every_route_answers_each_caller_as_its_role_allows() {
    let c = Cluster::start_server();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let join = join.trim().to_string();
    let admin = c.token();
    let _a = agent(&c, "edge-a", &join, "1Gi");
    let _b = agent(&c, "edge-b", &join, "1Gi");
    c.wait_until("two nodes are Ready", Duration::from_secs(20), || {
        ready_nodes(&c) == 2
    });
    c.apply("wa.yaml", &pinned("wa", "edge-a", "sleeper.wasm"));
    c.apply("wb.yaml", &pinned("wb", "edge-b", "sleeper.component.wasm"));
    c.wait_until("both run", Duration::from_secs(30), || {
        in_phase(&c.items("instances"), "Running").len() == 2
    });
    let own = |node: &str, workload: &str| {
        let instances = c.items("instances");
        let instance = instances
            .iter()
            .find(|i| i["spec"]["workload"] == workload)
            .unwrap();
        assert_eq!(instance["spec"]["nodeName"], node);
        let workloads = c.items("workloads");
        let w = workloads
            .iter()
            .find(|w| w["metadata"]["name"] == workload)
            .unwrap();
        Own {
            node: node.into(),
            instance: instance["metadata"]["name"].as_str().unwrap().into(),
            workload: workload.into(),
            digest: w["spec"]["module"]["sha256"].as_str().unwrap().into(),
        }
    };
    let (a, b) = (own("edge-a", "wa"), own("edge-b", "wb"));
    assert_ne!(a.digest, b.digest);
    let identity = |node: &str| {
        flotilla_trust::Identity::load(&c.dir.path().join(format!("agent-{node}/pki")), "node")
            .unwrap()
            .unwrap()
    };
    let (id_a, id_b) = (identity("edge-a"), identity("edge-b"));
    let view = c
        .ok(&["token", "create", "--role", "view"])
        .trim()
        .to_string();

    let node_body = |o: &Own| current(&c, &admin, &format!("{NODES}/{}", o.node)).to_string();
    let instance_body =
        |o: &Own| current(&c, &admin, &format!("{NS}/instances/{}", o.instance)).to_string();
    let workload_body =
        |o: &Own| current(&c, &admin, &format!("{NS}/workloads/{}", o.workload)).to_string();
    let routes: Vec<(Route, [Want; 5])> = vec![
        // [admin, view, node on its own objects, node on another's, join token]
        (
            (("GET"), Box::new(|_| (NODES.into(), String::new()))),
            [Ok, Ok, Ok, Ok, Forbidden],
        ),
        (
            (
                "GET",
                Box::new(|o| (format!("{NODES}/{}", o.node), String::new())),
            ),
            [Ok, Ok, Ok, Ok, Forbidden],
        ),
        (
            (
                "PUT",
                Box::new(move |o| (format!("{NODES}/{}", o.node), node_body(o))),
            ),
            [Ok, Forbidden, Forbidden, Forbidden, Forbidden],
        ),
        (
            (
                "PATCH",
                Box::new(|o| {
                    (
                        format!("{NODES}/{}", o.node),
                        r#"{"metadata":{"labels":{"x":"y"}}}"#.into(),
                    )
                }),
            ),
            [Ok, Forbidden, Forbidden, Forbidden, Forbidden],
        ),
        (
            (
                "PATCH",
                Box::new(|o| {
                    (
                        format!("{NODES}/{}", o.node),
                        r#"{"spec":{"unschedulable":true}}"#.into(),
                    )
                }),
            ),
            [Skip, Forbidden, Forbidden, Forbidden, Forbidden],
        ),
        (
            (
                "DELETE",
                Box::new(|o| (format!("{NODES}/{}", o.node), String::new())),
            ),
            [Skip, Forbidden, Forbidden, Forbidden, Forbidden],
        ),
        (
            (
                "PUT",
                Box::new(move |o| (format!("{NODES}/{}/status", o.node), node_body(o))),
            ),
            [Ok, Forbidden, Ok, Forbidden, Forbidden],
        ),
        (
            (
                "POST",
                Box::new(|o| {
                    (NODES.into(), json!({"apiVersion": "flotilla.dev/v1", "kind": "Node", "metadata": {"name": o.node}, "spec": {}}).to_string())
                }),
            ),
            [Code(409), Forbidden, Code(409), Forbidden, Forbidden],
        ),
        (
            (
                "POST",
                Box::new(|o| {
                    (NODES.into(), json!({"apiVersion": "flotilla.dev/v1", "kind": "Node", "metadata": {"name": o.node}, "spec": {"unschedulable": true}}).to_string())
                }),
            ),
            [Code(409), Forbidden, Forbidden, Forbidden, Forbidden],
        ),
        (
            (
                "GET",
                Box::new(|_| ("/apis/flotilla.dev/v1/instances".into(), String::new())),
            ),
            [Ok, Ok, Ok, Ok, Forbidden],
        ),
        (
            (
                "GET",
                Box::new(|o| (format!("{NS}/instances/{}", o.instance), String::new())),
            ),
            [Ok, Ok, Ok, Forbidden, Forbidden],
        ),
        (
            (
                "PUT",
                Box::new(move |o| {
                    (
                        format!("{NS}/instances/{}/status", o.instance),
                        instance_body(o),
                    )
                }),
            ),
            [Ok, Forbidden, Ok, Forbidden, Forbidden],
        ),
        (
            (
                "GET",
                Box::new(|o| (format!("{NS}/instances/{}/log", o.instance), String::new())),
            ),
            [Ok, Ok, Ok, Forbidden, Forbidden],
        ),
        (
            (
                "PUT",
                Box::new(move |o| (format!("{NS}/instances/{}", o.instance), instance_body(o))),
            ),
            [Ok, Forbidden, Forbidden, Forbidden, Forbidden],
        ),
        (
            (
                "DELETE",
                Box::new(|o| (format!("{NS}/instances/{}", o.instance), String::new())),
            ),
            [Skip, Forbidden, Forbidden, Forbidden, Forbidden],
        ),
        (
            (
                "POST",
                Box::new(|_| (format!("{NS}/instances"), "{}".into())),
            ),
            [Code(400), Forbidden, Forbidden, Forbidden, Forbidden],
        ),
        (
            (
                "GET",
                Box::new(|_| (format!("{NS}/workloads"), String::new())),
            ),
            [Ok, Ok, Ok, Ok, Forbidden],
        ),
        (
            (
                "GET",
                Box::new(|o| (format!("{NS}/workloads/{}", o.workload), String::new())),
            ),
            [Ok, Ok, Ok, Forbidden, Forbidden],
        ),
        (
            (
                "PUT",
                Box::new(move |o| (format!("{NS}/workloads/{}", o.workload), workload_body(o))),
            ),
            [Ok, Forbidden, Forbidden, Forbidden, Forbidden],
        ),
        (
            (
                "DELETE",
                Box::new(|o| (format!("{NS}/workloads/{}", o.workload), String::new())),
            ),
            [Skip, Forbidden, Forbidden, Forbidden, Forbidden],
        ),
        (
            (
                "POST",
                Box::new(|_| (format!("{NS}/workloads"), "{}".into())),
            ),
            [Code(400), Forbidden, Forbidden, Forbidden, Forbidden],
        ),
        (
            ("GET", Box::new(|_| (format!("{NS}/events"), String::new()))),
            [Ok, Ok, Forbidden, Forbidden, Forbidden],
        ),
        (
            (
                "POST",
                Box::new(|o| (format!("{NS}/events"), event_about("Node", &o.node))),
            ),
            [Created, Forbidden, Created, Forbidden, Forbidden],
        ),
        (
            (
                "POST",
                Box::new(|o| (format!("{NS}/events"), event_about("Instance", &o.instance))),
            ),
            [Created, Forbidden, Created, Forbidden, Forbidden],
        ),
        (
            (
                "GET",
                Box::new(|o| (format!("/blobs/sha256/{}", o.digest), String::new())),
            ),
            [Ok, Ok, Ok, Forbidden, Forbidden],
        ),
        (
            (
                "HEAD",
                Box::new(|o| (format!("/blobs/sha256/{}", o.digest), String::new())),
            ),
            [Ok, Ok, Ok, Forbidden, Forbidden],
        ),
        (
            (
                "PUT",
                Box::new(|_| (format!("/blobs/sha256/{}", "0".repeat(64)), "x".into())),
            ),
            [Code(400), Forbidden, Forbidden, Forbidden, Forbidden],
        ),
        (
            (
                "GET",
                Box::new(|_| ("/apis/flotilla.dev/v1/tokens".into(), String::new())),
            ),
            [Ok, Forbidden, Forbidden, Forbidden, Forbidden],
        ),
        (
            (
                "GET",
                Box::new(|_| ("/apis/flotilla.dev/v1/%74okens".into(), String::new())),
            ),
            [Ok, Forbidden, Forbidden, Forbidden, Forbidden],
        ),
        (
            (
                "POST",
                Box::new(|_| {
                    ("/apis/flotilla.dev/v1/tokens".into(), json!({"apiVersion": "flotilla.dev/v1", "kind": "Token", "metadata": {"name": unique()[..6]}, "spec": {"role": "view", "secretSha256": "0".repeat(64)}}).to_string())
                }),
            ),
            [Created, Forbidden, Forbidden, Forbidden, Forbidden],
        ),
        (
            (
                "POST",
                Box::new(|o| {
                    ("/certificates/node".into(), json!({"node": o.node, "csr": flotilla_trust::NodeKey::generate().unwrap().request(&o.node).unwrap()}).to_string())
                }),
            ),
            [Created, Forbidden, Created, Forbidden, Code(409)],
        ),
        (
            ("GET", Box::new(|_| ("/healthz".into(), String::new()))),
            [Ok, Ok, Ok, Ok, Ok],
        ),
        (
            ("GET", Box::new(|_| ("/cacerts".into(), String::new()))),
            [Ok, Ok, Ok, Ok, Ok],
        ),
    ];
    let check = |who: &str, caller: &Who, (method, route): &Route, o: &Own, want: Want| {
        if want == Skip {
            return;
        }
        let (path, body) = route(o);
        let (code, answer) = c.raw(method, &path, caller, &body);
        let ok = match want {
            Ok => code == 200,
            Created => code == 201,
            Code(wanted) => code == wanted,
            Forbidden => code == 403,
            Skip => true,
        };
        assert!(
            ok,
            "{method} {path} as {who}: {code}, wanted {want:?}: {answer}"
        );
    };
    for (route, [as_admin, as_view, as_own, as_other, as_join]) in &routes {
        check("admin", &Who::Token(&admin), route, &a, *as_admin);
        check("view", &Who::Token(&view), route, &a, *as_view);
        check(
            "node edge-a on its own",
            &Who::Node(&id_a),
            route,
            &a,
            *as_own,
        );
        check(
            "node edge-a on edge-b's",
            &Who::Node(&id_a),
            route,
            &b,
            *as_other,
        );
        check(
            "node edge-b on its own",
            &Who::Node(&id_b),
            route,
            &b,
            *as_own,
        );
        check("the join token", &Who::Token(&join), route, &a, *as_join);
    }

    // No credential, an unknown, an expired or a revoked token: 401 on
    // every route but the public ones.
    let expiring = c
        .ok(&["token", "create", "--role", "admin", "--ttl", "1s"])
        .trim()
        .to_string();
    let revoked = c
        .ok(&["token", "create", "--role", "admin"])
        .trim()
        .to_string();
    assert_eq!(c.raw("GET", NODES, &Who::Token(&revoked), "").0, 200);
    c.ok(&["token", "delete", revoked.split('.').next().unwrap()]);
    std::thread::sleep(Duration::from_millis(2100));
    for (who, caller) in [
        ("nobody", Who::Nobody),
        ("an unknown token", Who::Token("abcdef.0123456789abcdef")),
        ("an expired token", Who::Token(&expiring)),
        ("a revoked token", Who::Token(&revoked)),
    ] {
        for ((method, route), _) in &routes {
            let (path, body) = route(&a);
            let (code, answer) = c.raw(method, &path, &caller, &body);
            let public = path == "/healthz" || path == "/cacerts";
            let want = if public { 200 } else { 401 };
            assert_eq!(code, want, "{method} {path} as {who}: {answer}");
        }
    }
    let listed = c.ok(&["token", "list"]);
    assert!(
        listed.contains("view") && !listed.contains(revoked.split('.').next().unwrap()),
        "{listed}"
    );
}

#[test]
fn a_node_sees_others_objects_only_as_routing_needs_and_cannot_move_itself() {
    let c = Cluster::start_server();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let admin = c.token();
    let _a = agent(&c, "edge-a", join.trim(), "1Gi");
    let _b = agent(&c, "edge-b", join.trim(), "1Gi");
    c.wait_until("two nodes are Ready", Duration::from_secs(20), || {
        ready_nodes(&c) == 2
    });
    c.apply(
        "wb.yaml",
        &pinned("wb", "edge-b", "sleeper.wasm").replace(
            "args:",
            "env: [{name: SECRET_ISH, value: hunter2}]\n  args:",
        ),
    );
    c.wait_until("it runs", Duration::from_secs(30), || {
        in_phase(&c.items("instances"), "Running").len() == 1
    });
    let id_a = flotilla_trust::Identity::load(&c.dir.path().join("agent-edge-a/pki"), "node")
        .unwrap()
        .unwrap();
    let as_a = Who::Node(&id_a);
    for path in [
        "/apis/flotilla.dev/v1/instances",
        &format!("{NS}/workloads"),
    ] {
        let (code, body) = c.raw("GET", path, &as_a, "");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("edge-b") || body.contains("\"wb\""), "{body}");
        assert!(
            !body.contains("hunter2") && !body.contains("sha256"),
            "{path}: {body}"
        );
    }
    // Watches show the same reduced view.
    let (mut watch, head) = c.open_stream(
        "GET /apis/flotilla.dev/v1/instances?watch=true HTTP/1.1\r\nHost: x\r\n\r\n",
        Some(&id_a),
    );
    let mut seen = head;
    c.wait_until(
        "the watch shows edge-b's instance",
        Duration::from_secs(10),
        || {
            let mut chunk = [0u8; 4096];
            let n = std::io::Read::read(&mut watch, &mut chunk).unwrap_or(0);
            seen.push_str(&String::from_utf8_lossy(&chunk[..n]));
            seen.contains("\"ADDED\"")
        },
    );
    assert!(
        seen.contains("edge-b") && !seen.contains("hunter2") && !seen.contains("sha256"),
        "{seen}"
    );

    // Its own instances it sees whole.
    let id_b = flotilla_trust::Identity::load(&c.dir.path().join("agent-edge-b/pki"), "node")
        .unwrap()
        .unwrap();
    let (code, body) = c.raw(
        "GET",
        "/apis/flotilla.dev/v1/instances",
        &Who::Node(&id_b),
        "",
    );
    assert!(code == 200 && body.contains("hunter2"), "{body}");
    // A body authorization must read (a node's own Event) past the object
    // limit: 413, as anywhere else, not a 400.
    let oversized = format!("{{\"pad\": \"{}\"}}", "x".repeat(2 << 20));
    let (code, body) = c.raw(
        "POST",
        &format!("{NS}/events"),
        &Who::Node(&id_b),
        &oversized,
    );
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("larger than"), "{body}");
    // Selectors are judged on what the node sees: no yes/no oracle on hidden fields.
    let digest = c.items("workloads")[0]["spec"]["module"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    for path in [
        format!(
            "/apis/flotilla.dev/v1/instances?fieldSelector=spec.template.module.sha256={digest}"
        ),
        format!("{NS}/workloads?fieldSelector=spec.module.sha256={digest}"),
    ] {
        let (code, body) = c.raw("GET", &path, &as_a, "");
        let items: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(code, 200);
        assert_eq!(items["items"], json!([]), "{path}: {body}");
        let (_, whole) = c.raw("GET", &path, &Who::Token(&admin), "");
        assert!(
            whole.contains(&digest),
            "the selector itself works: {whole}"
        );
    }

    // A new node registers only itself, with an empty spec and none of the
    // control plane's labels.
    let key = flotilla_trust::NodeKey::generate().unwrap();
    let csr = json!({"node": "edge-c", "csr": key.request("edge-c").unwrap()}).to_string();
    let (code, body) = c.raw("POST", "/certificates/node", &Who::Token(join.trim()), &csr);
    assert_eq!(code, 201, "{body}");
    let certificate: Value = serde_json::from_str(&body).unwrap();
    let id_c = key.with_certificate(certificate["certificate"].as_str().unwrap().into());
    let as_c = Who::Node(&id_c);
    let node = |name: &str, labels: Value, spec: Value| {
        json!({"apiVersion": "flotilla.dev/v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
               "spec": spec, "status": {"ready": true}}).to_string()
    };
    for (body, why) in [
        (node("edge-d", json!({}), json!({})), "another name"),
        (
            node(
                "edge-c",
                json!({"flotilla.dev/hostname": "edge-b"}),
                json!({}),
            ),
            "another's hostname label",
        ),
        (
            node(
                "edge-c",
                json!({"tier.flotilla.dev/secure": "yes"}),
                json!({}),
            ),
            "a reserved label",
        ),
        (
            node("edge-c", json!({}), json!({"unschedulable": true})),
            "a spec",
        ),
        (node("edge-c", json!({}), json!({"epoch": 7})), "an epoch"),
    ] {
        let (code, answer) = c.raw("POST", NODES, &as_c, &body);
        assert_eq!(code, 403, "{why}: {answer}");
    }
    let (code, answer) = c.raw(
        "POST",
        NODES,
        &as_c,
        &node(
            "edge-c",
            json!({"zone": "a", "flotilla.dev/hostname": "edge-c"}),
            json!({}),
        ),
    );
    assert_eq!(code, 201, "{answer}");
    // Registered: the join token cannot get edge-c's name again.
    let (code, answer) = c.raw("POST", "/certificates/node", &Who::Token(join.trim()), &csr);
    assert!(
        code == 409 && answer.contains("flotilla delete node edge-c"),
        "{answer}"
    );

    // Its own status write cannot re-epoch or cordon it, nor point it elsewhere.
    let mut node = current(&c, &admin, &format!("{NODES}/edge-a"));
    node["spec"] = json!({"unschedulable": true, "epoch": 99});
    let (code, body) = c.raw(
        "PUT",
        &format!("{NODES}/edge-a/status"),
        &as_a,
        &node.to_string(),
    );
    assert_eq!(code, 200, "{body}");
    let stored = current(&c, &admin, &format!("{NODES}/edge-a"));
    assert_eq!(stored["spec"]["unschedulable"], false, "{stored}");
    assert_ne!(stored["spec"]["epoch"], 99, "{stored}");
    for bad in [
        "169.254.169.254/latest/meta-data/#",
        "169.254.169.254/x#",
        "10.0.0.1",
        "x:0",
    ] {
        for field in ["ingressAddress", "nodeAddress"] {
            let mut node = current(&c, &admin, &format!("{NODES}/edge-a"));
            node["status"][field] = bad.into();
            let (code, body) = c.raw(
                "PUT",
                &format!("{NODES}/edge-a/status"),
                &as_a,
                &node.to_string(),
            );
            assert_eq!(code, 422, "{field} {bad}: {body}");
            assert!(
                body.contains(&format!("status.{field}")) && body.contains("is not host:port"),
                "{body}"
            );
        }
    }
}

#[test]
fn the_api_speaks_tls_only() {
    let c = Cluster::start_server();
    use std::io::{Read, Write};
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // One write: the server answers the first bytes it sees and closes, so
    // a request written piecemeal may meet a closed socket (EPIPE).
    let request = format!(
        "GET /apis/flotilla.dev/v1/nodes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        c.token()
    );
    let _ = plain.write_all(request.as_bytes());
    let mut answer = String::new();
    let _ = plain.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("use https://") && !answer.contains("items"),
        "{answer}"
    );
    // A client that trusts another CA refuses the server.
    let other = tempfile::tempdir().unwrap();
    let stranger = flotilla_trust::Authority::load_or_create(other.path()).unwrap();
    let answer = tls_exchange(
        &format!("127.0.0.1:{}", c.port),
        "localhost",
        stranger.certificate_pem(),
        None,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.is_empty());
    // …where the cluster's own CA is trusted (the same exchange, a control).
    let answer = tls_exchange(
        &format!("127.0.0.1:{}", c.port),
        "localhost",
        &c.ca_pem(),
        None,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(split_answer(&answer), (200, "ok".to_string()));
    // Keys, tokens and the store are the owner's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&c.data_dir()), 0o700);
    for file in [
        "pki/ca.key",
        "pki/server.key",
        "admin-token",
        "join-token",
        "store.db",
    ] {
        assert_eq!(mode(&c.data_dir().join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&c.config()), 0o600);
}

#[test]
fn a_node_renews_its_certificate_before_it_expires_and_keeps_working() {
    let c = Cluster::start_server_with(&["--node-cert-validity", "30s"]);
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let _a = agent(&c, "edge-a", join.trim(), "1Gi");
    c.wait_until("edge-a is Ready", Duration::from_secs(20), || {
        ready_nodes(&c) == 1
    });
    let pki = c.dir.path().join("agent-edge-a/pki");
    let first = flotilla_trust::Identity::load(&pki, "node")
        .unwrap()
        .unwrap();
    let (_, expires) = first.validity().unwrap();
    c.apply("wa.yaml", &pinned("wa", "edge-a", "sleeper.wasm"));
    c.wait_until("a renewed certificate", Duration::from_secs(40), || {
        let now = flotilla_trust::Identity::load(&pki, "node")
            .unwrap()
            .unwrap();
        now.certificate_pem != first.certificate_pem
    });
    // Past the first certificate's end, the node still heartbeats and
    // serves its logs: it uses the new one everywhere.
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    c.wait_until(
        "the first certificate expired",
        Duration::from_secs(40),
        || unix_now() > expires + 6,
    );
    assert_eq!(
        ready_nodes(&c),
        1,
        "{}",
        crate::fleet::read_agent_log(&c, "edge-a")
    );
    let instance = names(&c.items("instances")).pop().unwrap();
    let log = c.ok(&["logs", "wa", "--instance", &instance]);
    assert!(log.contains("tick 1"), "{log}");
    assert!(crate::fleet::read_agent_log(&c, "edge-a").contains("certificate renewed"));
}

#[test]
fn a_revoked_nodes_certificate_is_refused_everywhere_and_its_instances_stop() {
    let c = Cluster::start_server();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let _a = agent(&c, "edge-a", join.trim(), "1Gi");
    let _b = agent(&c, "edge-b", join.trim(), "1Gi");
    c.wait_until("both nodes are Ready", Duration::from_secs(30), || {
        ready_nodes(&c) == 2
    });
    c.apply("wa.yaml", &pinned("wa", "edge-a", "sleeper.wasm"));
    c.wait_until("wa runs on edge-a", Duration::from_secs(30), || {
        !in_phase(&c.items("instances"), "Running").is_empty()
    });
    let a = flotilla_trust::Identity::load(&c.dir.path().join("agent-edge-a/pki"), "node")
        .unwrap()
        .unwrap();
    let serial = a.serial().unwrap();
    // What edge-a's certificate gets at edge-b's node port: a forwarded
    // request for a workload edge-b does not serve.
    let edge_b = NodePortOf::of(&c, "edge-b");
    let forward = || edge_b.forward(&a, "default/nothing", "");
    let (code, body) = c.raw("GET", NODES, &Who::Node(&a), "");
    assert_eq!(code, 200, "{body}");
    let (code, body) = forward();
    assert!(code != 0 && !body.contains("revoked"), "{code} {body}");

    let revoked = c.ok(&["node", "revoke", "edge-a"]);
    assert!(revoked.contains("certificates revoked"), "{revoked}");
    let since = std::time::Instant::now();
    // The API refuses it at once (the revocation was stored before the
    // answer), though the certificate is within its validity.
    let (code, body) = c.raw("GET", NODES, &Who::Node(&a), "");
    assert!(
        code == 401 && body.contains(&format!("serial {serial}) was revoked")),
        "{code} {body}"
    );
    // edge-b as soon as its watch of the revocation list brings it.
    c.wait_until("edge-b refuses edge-a", Duration::from_secs(10), || {
        let (code, body) = forward();
        code == 403 && body.contains("was revoked")
    });
    eprintln!(
        "edge-b refused the revoked certificate {:?} after the revocation",
        since.elapsed()
    );
    // edge-a hears it at its next heartbeat and stops what it runs.
    c.wait_until(
        "edge-a stops its instances",
        Duration::from_secs(20),
        || {
            let log = crate::fleet::read_agent_log(&c, "edge-a");
            log.contains("stopping every instance") && log.contains("stopped instance default/wa-")
        },
    );
    // It cannot register itself again; edge-b is untouched.
    let nodes = names(&c.items("nodes"));
    assert_eq!(nodes, vec!["edge-b".to_string()], "{nodes:?}");
    assert_eq!(ready_nodes(&c), 1);
    let records: Value =
        serde_json::from_str(&c.ok(&["get", "nodecertificates", "-o", "json"])).unwrap();
    let records = records["items"].as_array().unwrap().clone();
    let of = |node: &str| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| r["spec"]["node"] == node)
            .collect()
    };
    assert!(
        !of("edge-a").is_empty() && of("edge-a").iter().all(|r| r["spec"]["revoked"] == true),
        "{records:?}"
    );
    assert!(of("edge-a")
        .iter()
        .any(|r| r["metadata"]["name"] == serial.as_str()));
    assert!(
        !of("edge-b").is_empty() && of("edge-b").iter().all(|r| r["spec"]["revoked"].is_null()),
        "{records:?}"
    );
    // The records are the server's: an admin cannot forge or edit one.
    let (code, body) = c.raw(
        "POST",
        "/apis/flotilla.dev/v1/nodecertificates",
        &Who::Token(&c.token()),
        r#"{"apiVersion":"flotilla.dev/v1","kind":"NodeCertificate","metadata":{"name":"ab"},"spec":{"node":"x","notAfter":"2030-01-01T00:00:00Z"}}"#,
    );
    assert_eq!(code, 405, "{body}");
}

#[test]
fn flotilla_ups_own_node_certificate_is_recorded_once_so_it_can_be_revoked() {
    let mut c = Cluster::start();
    let records_of_node_1 = |c: &Cluster| -> Vec<String> {
        c.items("nodecertificates")
            .iter()
            .filter(|r| r["spec"]["node"] == "node-1")
            .map(|r| {
                r["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    let own = flotilla_trust::Identity::load(&c.data_dir().join("agent/pki"), "node")
        .unwrap()
        .unwrap();
    let serial = own.serial().unwrap();
    assert_eq!(records_of_node_1(&c), vec![serial.clone()]);
    // A restart keeps the certificate it has: nothing new is issued.
    c.kill();
    c.launch();
    assert_eq!(records_of_node_1(&c), vec![serial]);
}

#[test]
fn events_are_rate_limited_per_source() {
    let c = Cluster::start_server();
    let admin = c.token();
    let burst = flotilla_control_plane::api::EVENT_BURST;
    let started = std::time::Instant::now();
    let mut created = 0u32;
    let mut refused = None;
    for _ in 0..burst + 60 {
        let (code, body) = c.raw(
            "POST",
            &format!("{NS}/events"),
            &Who::Token(&admin),
            &event_about("Node", "n1"),
        );
        match code {
            201 => created += 1,
            429 => refused = Some(body),
            other => panic!("{other}: {body}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let refill =
        (elapsed * f64::from(flotilla_control_plane::api::EVENTS_PER_SECOND)).ceil() as u32;
    assert!(
        created >= burst && created <= burst + refill + 1,
        "{created} created in {elapsed:.2} s"
    );
    let refused = refused.expect("past the burst, events are refused");
    assert!(
        refused.contains("records more than") && refused.contains("admin"),
        "{refused}"
    );
    // The API itself is not slowed: other requests go through.
    assert_eq!(c.raw("GET", NODES, &Who::Token(&admin), "").0, 200);
}
