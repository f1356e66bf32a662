//! Many teams on one fleet: tokens that hold roles in one namespace, Roles
//! and RoleBindings, `auth can-i`, the refusal of a grant wider than its
//! writer's, and the audit log — against a real `flotilla up`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::*;

/// The CLI as `token` (a copy of the admin's client config with the token
/// replaced).
pub(crate) struct As {
    config: PathBuf,
}

impl As {
    pub(crate) fn new(c: &Cluster, token: &str, name: &str) -> Self {
        let text = std::fs::read_to_string(c.config()).unwrap();
        let replaced: String = text
            .lines()
            .map(|l| {
                if l.starts_with("token: ") {
                    format!("token: {token}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = c.config().with_file_name(format!("client-as-{name}.yaml"));
        std::fs::write(&config, replaced + "\n").unwrap();
        Self { config }
    }

    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(args)
            .env("FLOTILLA_CONFIG", &self.config)
            .output()
            .unwrap()
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        succeeded(self.cli(args), args)
    }

    /// Runs a command that must be refused with 403 naming `namespace`.
    fn refused(&self, args: &[&str], namespace: &str) -> String {
        let out = self.cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "flotilla {args:?} was allowed");
        assert!(stderr.contains("may not"), "flotilla {args:?}: {stderr}");
        assert!(
            stderr.contains(namespace),
            "flotilla {args:?} does not name {namespace}: {stderr}"
        );
        stderr
    }
}

/// `flotilla scale workload NAME --replicas N -n NS`'s arguments.
pub(crate) fn scale<'a>(workload: &'a str, replicas: &'a str, namespace: &'a str) -> [&'a str; 7] {
    [
        "scale",
        "workload",
        workload,
        "--replicas",
        replicas,
        "-n",
        namespace,
    ]
}

pub(crate) fn token(c: &Cluster, args: &[&str]) -> String {
    let mut all = vec!["token", "create"];
    all.extend_from_slice(args);
    c.ok(&all).trim().to_string()
}

fn id(token: &str) -> &str {
    token.split('.').next().unwrap()
}

/// A Role in team-a with `rules` (YAML flow style).
pub(crate) fn role(name: &str, rules: &str) -> String {
    format!(
        r#"
apiVersion: flotilla.dev/v1
kind: Role
metadata: {{name: {name}, namespace: team-a}}
spec:
  rules: {rules}
"#
    )
}

/// A RoleBinding in team-a of `role` (`Role/NAME` or `ClusterRole/NAME`)
/// to the token `token`.
pub(crate) fn binding(name: &str, role: &str, token: &str) -> String {
    let (kind, role) = role.split_once('/').unwrap();
    format!(
        r#"
apiVersion: flotilla.dev/v1
kind: RoleBinding
metadata: {{name: {name}, namespace: team-a}}
spec:
  roleRef: {{kind: {kind}, name: {role}}}
  subjects: [{{kind: Token, name: {}}}]
"#,
        id(token)
    )
}

/// A Workload in `namespace` with `spec` (lines indented by two).
pub(crate) fn workload(name: &str, namespace: &str, spec: &str) -> String {
    format!(
        "apiVersion: flotilla.dev/v1\nkind: Workload\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}\n"
    )
}

fn sleeper(name: &str, namespace: &str) -> String {
    workload(
        name,
        namespace,
        r#"  module: {source: "file:MODULES/sleeper.wasm"}
  args: ["100000"]
  resources: {limits: {memory: 16Mi}}"#,
    )
}

pub(crate) fn running(c: &Cluster, namespace: &str, workload: &str) -> Vec<Value> {
    let listing: Value =
        serde_json::from_str(&c.ok(&["get", "instances", "-n", namespace, "-o", "json"])).unwrap();
    listing["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| {
            i["spec"]["workload"] == workload && i["status"]["phase"].as_str() == Some("Running")
        })
        .collect()
}

/// The name of a running instance of `workload`, once there is one.
fn a_running(c: &Cluster, namespace: &str, workload: &str) -> String {
    c.wait_until(
        &format!("a replica of {namespace}/{workload} runs"),
        Duration::from_secs(30),
        || !running(c, namespace, workload).is_empty(),
    );
    running(c, namespace, workload)[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_namespaced_token_works_in_its_namespace_and_is_refused_in_every_other() {
    let c = Cluster::start();
    // team-b's things, made by the admin.
    c.apply("b.yaml", &sleeper("other", "team-b"));
    c.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "-n",
        "team-b",
        "--from-literal",
        "password=hunter2",
    ]);
    c.ok(&["kv", "put", "shared", "k", "v", "-n", "team-b"]);
    let b_instance = a_running(&c, "team-b", "other");

    let edit_token = token(&c, &["--role", "edit", "--namespace", "team-a"]);
    let tokens = c.ok(&["token", "list"]);
    assert!(
        tokens
            .lines()
            .any(|l| l.contains(id(&edit_token)) && l.contains("edit") && l.contains("team-a")),
        "{tokens}"
    );
    let edit = As::new(&c, &edit_token, "edit");

    // In team-a: apply, scale, logs, secrets, buckets.
    let manifest = c.manifest("a.yaml", &sleeper("app", "team-a"));
    edit.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    edit.ok(&scale("app", "2", "team-a"));
    c.wait_until("team-a's 2 replicas run", Duration::from_secs(30), || {
        running(&c, "team-a", "app").len() == 2
    });
    let a_instance = running(&c, "team-a", "app")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    edit.ok(&["logs", &a_instance, "-n", "team-a"]);
    edit.ok(&["get", "workload", "app", "-n", "team-a"]);
    edit.ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        "team-a",
        "--from-literal",
        "k=v",
    ]);
    edit.ok(&["get", "secret", "s", "-n", "team-a"]);
    edit.ok(&["kv", "put", "mine", "k", "v", "-n", "team-a"]);
    assert_eq!(edit.ok(&["kv", "get", "mine", "k", "-n", "team-a"]), "v");
    // Every namespace: team-a's only.
    let all = edit.ok(&["get", "workloads", "-A"]);
    assert!(all.contains("app") && !all.contains("other"), "{all}");
    let events = edit.ok(&["get", "events", "-A"]);
    assert!(
        !events.contains("team-b") && !events.contains("other-"),
        "{events}"
    );

    // In team-b: every verb refused, naming the namespace.
    edit.refused(&["get", "workloads", "-n", "team-b"], "team-b");
    edit.refused(&["get", "workload", "other", "-n", "team-b"], "team-b");
    edit.refused(&["logs", &b_instance, "-n", "team-b"], "team-b");
    edit.refused(&["get", "secret", "db", "-n", "team-b"], "team-b");
    edit.refused(&scale("other", "0", "team-b"), "team-b");
    edit.refused(&["delete", "workload", "other", "-n", "team-b"], "team-b");
    edit.refused(&["kv", "get", "shared", "k", "-n", "team-b"], "team-b");
    edit.refused(&["kv", "put", "shared", "k", "x", "-n", "team-b"], "team-b");
    let manifest_b = c.manifest("b2.yaml", &sleeper("intruder", "team-b"));
    edit.refused(&["apply", "-f", manifest_b.to_str().unwrap()], "team-b");
    let base = "/apis/flotilla.dev/v1/namespaces/team-b";
    for path in [
        format!("{base}/workloads?watch=true"),
        format!("{base}/workloads/other/usage"),
        format!("{base}/events"),
    ] {
        let (code, body) = c.raw("GET", &path, &Who::Token(&edit_token), "");
        assert_eq!(code, 403, "GET {path}: {body}");
        assert!(
            body.contains("team-b") && body.contains("edit in team-a"),
            "{body}"
        );
    }
    // Nothing cluster-scoped.
    for path in [
        "/metrics",
        "/apis/flotilla.dev/v1/nodes",
        "/apis/flotilla.dev/v1/tokens",
    ] {
        let (code, body) = c.raw("GET", path, &Who::Token(&edit_token), "");
        assert_eq!(code, 403, "GET {path}: {body}");
    }
    // The admin sees that nothing changed in team-b.
    let other: Value =
        serde_json::from_str(&c.ok(&["get", "workload", "other", "-n", "team-b", "-o", "json"]))
            .unwrap();
    assert_eq!(other["spec"]["replicas"], 1, "{other}");
    assert_eq!(running(&c, "team-b", "other").len(), 1);
    assert_eq!(c.ok(&["kv", "get", "shared", "k", "-n", "team-b"]), "v");
    assert!(
        c.cli(&["get", "workload", "intruder", "-n", "team-b"])
            .status
            .code()
            != Some(0)
    );

    // A watch of every namespace shows team-a's objects only.
    let request = format!(
        "GET /apis/flotilla.dev/v1/workloads?watch=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {edit_token}\r\n\r\n"
    );
    let (mut stream, head) = c.open_stream(&request, None);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut seen = head;
    let mut buffer = [0u8; 4096];
    let started = std::time::Instant::now();
    while !seen.contains("initial-events-end") && started.elapsed() < Duration::from_secs(10) {
        use std::io::Read;
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buffer[..n])),
        }
    }
    assert!(seen.contains("initial-events-end"), "{seen}");
    assert!(
        seen.contains("\"app\"") && !seen.contains("\"other\""),
        "{seen}"
    );

    // can-i answers for the caller's own token.
    assert_eq!(
        edit.ok(&["auth", "can-i", "create", "workloads", "-n", "team-a"])
            .trim(),
        "yes"
    );
    let no = edit.cli(&["auth", "can-i", "list", "workloads", "-n", "team-b"]);
    assert_eq!(no.status.code(), Some(1));
    let said = String::from_utf8_lossy(&no.stdout);
    assert!(said.starts_with("no") && said.contains("team-b"), "{said}");
    assert_eq!(c.ok(&["auth", "can-i", "delete", "nodes"]).trim(), "yes");

    // view in team-a reads no Secret values until a Role grants them.
    let view_token = token(&c, &["--role", "view", "--namespace", "team-a"]);
    let view = As::new(&c, &view_token, "view");
    view.ok(&["get", "workloads", "-n", "team-a"]);
    view.refused(&["get", "secret", "s", "-n", "team-a"], "team-a");
    view.refused(&["get", "secrets", "-n", "team-a"], "team-a");
    view.refused(&scale("app", "1", "team-a"), "team-a");
    let no = view.cli(&["auth", "can-i", "get", "secrets", "-n", "team-a"]);
    assert_eq!(no.status.code(), Some(1));
    c.apply(
        "reader.yaml",
        &(role("secret-reader", "[{verbs: [get], resources: [secrets]}]")
            + "---"
            + &binding("view-reads-secrets", "Role/secret-reader", &view_token)),
    );
    view.ok(&[
        "get",
        "secret",
        "s",
        "-n",
        "team-a",
        "-o",
        "json",
        "--show-values",
    ]);
    assert_eq!(
        view.ok(&["auth", "can-i", "get", "secrets", "-n", "team-a"])
            .trim(),
        "yes"
    );
    // get, not list: the rule says so.
    view.refused(&["get", "secrets", "-n", "team-a"], "team-a");
    // A batch is judged by what it does: reads with get, deletes with delete.
    c.apply(
        "bucket-reader.yaml",
        &(role("bucket-reader", "[{verbs: [get], resources: [buckets]}]")
            + "---"
            + &binding("view-reads-buckets", "Role/bucket-reader", &view_token)),
    );
    let batch = "/kv/v1/namespaces/team-a/buckets/mine/batch";
    let (code, body) = c.raw("POST", batch, &Who::Token(&view_token), r#"{"get": ["k"]}"#);
    assert_eq!(code, 200, "{body}");
    let (code, body) = c.raw(
        "POST",
        batch,
        &Who::Token(&view_token),
        r#"{"delete": ["k"]}"#,
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("may not delete bucket mine"), "{body}");
    assert_eq!(c.ok(&["kv", "get", "mine", "k", "-n", "team-a"]), "v");
    let roles = c.ok(&["get", "rolebindings", "-n", "team-a"]);
    assert!(
        roles.contains("Role/secret-reader") && roles.contains(id(&view_token)),
        "{roles}"
    );

    // No grant wider than its writer's: a token that may write bindings
    // (but not Secrets) cannot bind itself admin, nor write a wider Role.
    let binder_token = token(&c, &["--role", "none"]);
    let binder = As::new(&c, &binder_token, "binder");
    c.apply(
        "binder.yaml",
        &(role(
            "binder",
            r#"[{verbs: ["*"], resources: [rolebindings, roles]}, {verbs: [get, list], resources: [workloads]}]"#,
        ) + "---"
            + &binding("binder", "Role/binder", &binder_token)),
    );
    binder.ok(&["get", "workloads", "-n", "team-a"]);
    let escalate = c.manifest(
        "escalate.yaml",
        &binding("me-admin", "ClusterRole/admin", &binder_token),
    );
    let refusal = binder.refused(&["apply", "-f", escalate.to_str().unwrap()], "team-a");
    assert!(refusal.contains("may not grant"), "{refusal}");
    let wider = c.manifest(
        "wider.yaml",
        &role("wider", "[{verbs: [get], resources: [secrets]}]"),
    );
    let refusal = binder.refused(&["apply", "-f", wider.to_str().unwrap()], "team-a");
    assert!(refusal.contains("get secrets"), "{refusal}");
    binder.refused(&["get", "secret", "s", "-n", "team-a"], "team-a");
    // What it holds it may grant.
    let narrow = c.manifest(
        "narrow.yaml",
        &role("lister", "[{verbs: [list], resources: [workloads]}]"),
    );
    binder.ok(&["apply", "-f", narrow.to_str().unwrap()]);
    // Nor bind a Role nobody has written yet (an admin might widen it later).
    let early = c.manifest("early.yaml", &binding("early", "Role/ops", &binder_token));
    let refusal = binder.refused(&["apply", "-f", early.to_str().unwrap()], "team-a");
    assert!(refusal.contains("does not exist"), "{refusal}");

    // A namespaced admin manages its own namespace's bindings; an edit
    // token does not.
    let a_admin = As::new(
        &c,
        &token(&c, &["--role", "admin", "--namespace", "team-a"]),
        "a-admin",
    );
    let bind_edit = c.manifest(
        "bind-edit.yaml",
        &binding("viewer-edits", "ClusterRole/edit", &view_token),
    );
    edit.refused(&["apply", "-f", bind_edit.to_str().unwrap()], "team-a");
    a_admin.ok(&["apply", "-f", bind_edit.to_str().unwrap()]);
    view.ok(&scale("app", "1", "team-a"));
    // Deleting the binding takes the grant away at once.
    a_admin.ok(&["delete", "rolebinding", "viewer-edits", "-n", "team-a"]);
    view.refused(&scale("app", "2", "team-a"), "team-a");
}

/// An http workload in `namespace` routing `host`, with `extra` spec lines.
fn web(name: &str, namespace: &str, host: &str, extra: &str) -> String {
    workload(
        name,
        namespace,
        &format!(
            "  module: {{source: \"file:MODULES/wagi-hello.wasm\"}}\n  execution: http\n  routes: [{{host: {host}, pathPrefix: /}}]\n{extra}"
        ),
    )
}

#[test]
fn a_namespaced_tokens_workloads_reach_nothing_outside_their_namespace() {
    let c = Cluster::start();
    c.apply("shop.yaml", &web("shop", "team-b", "shop.example", ""));
    let edit_token = token(&c, &["--role", "edit", "--namespace", "team-a"]);
    let edit = As::new(&c, &edit_token, "edit");
    let apply = |name: &str, body: &str| {
        let file = c.manifest(name, body);
        edit.cli(&["apply", "-f", file.to_str().unwrap()])
    };
    let refused = |name: &str, body: &str, says: &[&str]| {
        let out = apply(name, body);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{name} was applied");
        for text in says {
            assert!(stderr.contains(text), "{name}: no {text:?} in {stderr}");
        }
    };

    // team-b's module is team-b's code: not read back by team-a's token
    // (it may still ask whether it is there before uploading).
    let shop: Value =
        serde_json::from_str(&c.ok(&["get", "workload", "shop", "-n", "team-b", "-o", "json"]))
            .unwrap();
    let blob = format!(
        "/blobs/sha256/{}",
        shop["spec"]["module"]["sha256"].as_str().unwrap()
    );
    let (code, body) = c.raw("GET", &blob, &Who::Token(&edit_token), "");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("no workload it may read runs it"), "{body}");
    // Once its own workload runs the same module, it may.
    succeeded(
        apply("own.yaml", &web("own", "team-a", "own.example", "")),
        &["apply", "own.yaml"],
    );
    assert_eq!(c.raw("GET", &blob, &Who::Token(&edit_token), "").0, 200);

    // team-b's host, in any case and with a longer prefix, is team-b's.
    refused(
        "steal.yaml",
        &web("steal", "team-a", "Shop.Example", "").replace("pathPrefix: /", "pathPrefix: /admin"),
        &[
            "\"shop.example\" is routed by workload team-b/shop",
            "one namespace",
        ],
    );
    // The node's own files.
    refused(
        "host-path.yaml",
        &web(
            "files",
            "team-a",
            "a.example",
            "  volumes: [{name: etc, hostPath: {path: /etc}}]\n  volumeMounts: [{name: etc, mountPath: /etc}]",
        ),
        &["may not deploy a hostPath volume (spec.volumes[0])"],
    );
    refused(
        "dirs.yaml",
        &web(
            "dirs",
            "team-a",
            "a.example",
            "  dirs: [{hostPath: /etc, guestPath: /etc, readOnly: true}]",
        ),
        &["may not deploy spec.dirs"],
    );
    // Calls into a namespace it may not read.
    refused(
        "call.yaml",
        &web(
            "caller",
            "team-a",
            "a.example",
            "  grants: {workloads: [team-b/shop]}",
        ),
        &[
            "spec.grants.workloads[0] team-b/shop",
            "namespace team-b",
            "edit in team-a",
        ],
    );
    // Nor through a workload an admin deployed with such reach: a patch is
    // judged on the object it makes (the fields it leaves alone count), so
    // the member may scale it but not change what it runs.
    c.apply(
        "admin-files.yaml",
        &web(
            "admin-files",
            "team-a",
            "files.example",
            "  volumes: [{name: etc, hostPath: {path: /etc, readOnly: true}}]\n  volumeMounts: [{name: etc, mountPath: /etc, readOnly: true}]",
        ),
    );
    edit.ok(&scale("admin-files", "2", "team-a"));
    let (code, body) = c.raw(
        "PATCH",
        "/apis/flotilla.dev/v1/namespaces/team-a/workloads/admin-files",
        &Who::Token(&edit_token),
        r#"{"spec": {"args": ["mine"]}}"#,
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("hostPath volume (spec.volumes[0])"), "{body}");
    let stored: Value = serde_json::from_str(&c.ok(&[
        "get",
        "workload",
        "admin-files",
        "-n",
        "team-a",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(stored["spec"]["replicas"], 2, "{stored}");
    assert!(
        stored["spec"]["args"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{stored}"
    );
    for name in ["steal", "files", "dirs", "caller"] {
        assert_ne!(
            c.cli(&["get", "workload", name, "-n", "team-a"])
                .status
                .code(),
            Some(0),
            "{name} was stored"
        );
    }
    // The same workload without them is its own to write; calls inside its
    // namespace and to a namespace it may read are fine.
    c.apply(
        "b-view.yaml",
        &format!(
            r#"
apiVersion: flotilla.dev/v1
kind: RoleBinding
metadata: {{name: a-reads-b, namespace: team-b}}
spec:
  roleRef: {{kind: ClusterRole, name: view}}
  subjects: [{{kind: Token, name: {}}}]
"#,
            id(&edit_token)
        ),
    );
    let fine = apply(
        "fine.yaml",
        &web(
            "caller",
            "team-a",
            "a.example",
            "  grants: {workloads: [helper, team-a/other, team-b/shop]}",
        ),
    );
    succeeded(fine, &["apply", "fine.yaml"]);
    // The host rule binds everyone: not even an admin routes team-a's host
    // from team-b (a host has one owner).
    let out = c.cli(&[
        "apply",
        "-f",
        c.manifest(
            "admin-steal.yaml",
            &web("mirror", "team-b", "a.example", ""),
        )
        .to_str()
        .unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("team-a/caller"),
        "{stderr}"
    );

    // Whatever a Role says, instances, volumes and statuses are written by
    // the controllers and nodes.
    c.apply(
        "everything.yaml",
        &(role("everything", r#"[{verbs: ["*"], resources: ["*"]}]"#)
            + "---"
            + &binding("everything", "Role/everything", &edit_token)),
    );
    let base = "/apis/flotilla.dev/v1/namespaces/team-a";
    let instance = r#"{"apiVersion":"flotilla.dev/v1","kind":"Instance","metadata":{"name":"forged"},"spec":{"workload":"caller","node":"node-1"}}"#;
    for (method, path, body) in [
        ("POST", format!("{base}/instances"), instance),
        ("PUT", format!("{base}/workloads/caller/status"), "{}"),
        ("PATCH", format!("{base}/instances/forged"), "{}"),
    ] {
        let (code, answer) = c.raw(method, &path, &Who::Token(&edit_token), body);
        assert_eq!(code, 403, "{method} {path}: {answer}");
        assert!(answer.contains("written by the controllers"), "{answer}");
    }
}

/// Reads `stream` into `seen` until `done(seen)`, the stream ends, or
/// `within` passes; whether `done` held.
fn read_until(
    stream: &mut impl std::io::Read,
    seen: &mut String,
    within: Duration,
    done: impl Fn(&str) -> bool,
) -> bool {
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 4096];
    while !done(seen) && started.elapsed() < within {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buffer[..n])),
            // The read timeout: a quiet stream, still open.
            Err(_) => {}
        }
    }
    done(seen)
}

#[test]
fn a_watch_or_a_log_follow_ends_soon_after_its_grant_or_its_token_is_taken_away() {
    let c = Cluster::start();
    c.apply("a.yaml", &sleeper("app", "team-a"));
    let instance = a_running(&c, "team-a", "app");
    let open = |path: &str, token: &str| {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
        let (stream, head) = c.open_stream(&request, None);
        assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
        (stream, head)
    };

    // A watch allowed by a RoleBinding: the binding deleted, it ends 403.
    let bound = token(&c, &["--role", "none"]);
    c.apply(
        "bound.yaml",
        &binding("watcher", "ClusterRole/view", &bound),
    );
    let (mut watch, mut seen) = open(
        "/apis/flotilla.dev/v1/namespaces/team-a/workloads?watch=true",
        &bound,
    );
    assert!(
        read_until(&mut watch, &mut seen, Duration::from_secs(10), |s| s
            .contains("initial-events-end")),
        "{seen}"
    );
    // A follow allowed by the token's own role: the token deleted, it ends.
    let own = token(&c, &["--role", "view", "--namespace", "team-a"]);
    let (mut follow, mut followed) = open(
        &format!("/apis/flotilla.dev/v1/namespaces/team-a/instances/{instance}/log?follow=true"),
        &own,
    );
    // Both still stream past a recheck while allowed.
    assert!(!read_until(
        &mut watch,
        &mut seen,
        Duration::from_secs(7),
        |s| s.contains("\"ERROR\"")
    ));
    assert!(!read_until(
        &mut follow,
        &mut followed,
        Duration::from_secs(1),
        |s| s.contains("stream ended")
    ));

    let revoked = std::time::Instant::now();
    c.ok(&["delete", "rolebinding", "watcher", "-n", "team-a"]);
    c.ok(&["token", "delete", id(&own)]);
    assert!(
        read_until(&mut watch, &mut seen, Duration::from_secs(30), |s| s
            .contains("\"ERROR\"")),
        "{seen}"
    );
    let error = seen
        .lines()
        .rev()
        .find(|l| l.contains("\"ERROR\""))
        .unwrap();
    assert!(
        error.contains("\"code\":403")
            && error.contains("may not watch workloads in namespace team-a"),
        "{error}"
    );
    assert!(
        read_until(&mut follow, &mut followed, Duration::from_secs(30), |s| s
            .contains("the log stream ended")),
        "{followed}"
    );
    assert!(followed.contains("deleted or has expired"), "{followed}");
    // Soon: a recheck is due every 5 s (generous for a loaded machine).
    assert!(
        revoked.elapsed() < Duration::from_secs(25),
        "{:?}",
        revoked.elapsed()
    );
}

/// The audit log's whole lines (one being written may have no newline yet).
fn audit_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Whether a line records `verb` on `resource` (named `name`, or a
/// collection with `None`) answered `code`, by `user`.
fn has(
    lines: &[Value],
    verb: &str,
    resource: &str,
    name: Option<&str>,
    code: u16,
    user: &str,
) -> bool {
    lines.iter().any(|l| {
        l["verb"] == verb
            && l["objectRef"]["resource"] == resource
            && l["objectRef"]["name"].as_str() == name
            && l["responseStatus"]["code"] == code
            && l["user"]["username"].as_str() == Some(user)
    })
}

#[test]
fn the_audit_log_records_writes_and_secret_reads_and_survives_a_restart() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("audit/api.log");
    let mut c = Cluster::start_up_with(&["--audit-log", path.to_str().unwrap()]);
    c.apply("w.yaml", &sleeper("audited", "default"));
    c.ok(&[
        "create",
        "secret",
        "generic",
        "pw",
        "--from-literal",
        "k=audit-secret-value-42",
    ]);
    c.ok(&["get", "secret", "pw"]);
    c.ok(&["get", "workloads"]);
    let edit_token = token(&c, &["--role", "edit", "--namespace", "team-a"]);
    let edit = As::new(&c, &edit_token, "edit");
    edit.refused(&["delete", "workload", "audited"], "default");
    // Refused reads are recorded too, and unknown tokens as anonymous.
    edit.refused(&["get", "workloads", "-n", "default"], "default");
    let (code, _) = c.raw(
        "GET",
        "/apis/flotilla.dev/v1/namespaces/default/configs",
        &Who::Token("aaaaaa.not-a-token"),
        "",
    );
    assert_eq!(code, 401);
    let user = format!("token:{}", id(&edit_token));
    c.wait_until(
        "the audit log has the refusal",
        Duration::from_secs(10),
        || {
            has(
                &audit_lines(&path),
                "delete",
                "workloads",
                Some("audited"),
                403,
                &user,
            )
        },
    );
    c.wait_until(
        "the audit log has the anonymous refusal",
        Duration::from_secs(10),
        || {
            has(
                &audit_lines(&path),
                "list",
                "configs",
                None,
                401,
                "system:anonymous",
            )
        },
    );
    let lines = audit_lines(&path);
    assert!(
        has(&lines, "list", "workloads", None, 403, &user),
        "{lines:#?}"
    );
    assert!(
        has(&lines, "create", "workloads", None, 201, "admin"),
        "{lines:#?}"
    );
    assert!(
        has(&lines, "create", "secrets", None, 201, "admin"),
        "{lines:#?}"
    );
    assert!(
        has(&lines, "get", "secrets", Some("pw"), 200, "admin"),
        "{lines:#?}"
    );
    assert!(
        has(&lines, "create", "tokens", None, 201, "admin"),
        "{lines:#?}"
    );
    let refusal = lines
        .iter()
        .find(|l| l["user"]["username"].as_str() == Some(user.as_str()))
        .unwrap();
    assert_eq!(refusal["user"]["groups"][0], "edit:team-a", "{refusal}");
    assert_eq!(refusal["objectRef"]["namespace"], "default");
    assert!(refusal["requestReceivedTimestamp"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(refusal["sourceIPs"][0], "127.0.0.1");
    // Allowed reads of other kinds and the node's heartbeats are not
    // recorded, nor any value.
    assert!(!lines.iter().any(|l| l["verb"] == "list"
        && l["objectRef"]["resource"] == "workloads"
        && l["responseStatus"]["code"] == 200));
    assert!(!lines.iter().any(|l| l["objectRef"]["resource"] == "nodes"
        && l["objectRef"]["subresource"] == "status"
        && l["responseStatus"]["code"] == 200));
    let text = std::fs::read_to_string(&path).unwrap();
    // Neither the value nor its base64 (as the API carries it).
    assert!(has(&lines, "create", "secrets", None, 201, "admin"));
    assert!(
        !text.contains("audit-secret-value-42")
            && !text.contains("YXVkaXQtc2VjcmV0LXZhbHVlLTQy")
            && !text.contains(&edit_token),
        "{text}"
    );
    let (code, metrics) = c.raw("GET", "/metrics", &Who::Token(&c.token()), "");
    assert_eq!(code, 200, "{metrics}");
    let written: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("flotilla_apiserver_audit_events_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no audit counter in {metrics}"));
    assert!(written >= lines.len() as f64, "{written} < {}", lines.len());

    // Across a restart: kept, and appended to.
    let before = lines.len();
    c.kill();
    c.launch();
    c.ok(&["delete", "workload", "audited"]);
    c.wait_until(
        "the delete is recorded after the restart",
        Duration::from_secs(10),
        || {
            has(
                &audit_lines(&path),
                "delete",
                "workloads",
                Some("audited"),
                200,
                "admin",
            )
        },
    );
    let after = audit_lines(&path);
    assert!(after.len() > before);
    assert_eq!(
        after[..before],
        lines[..],
        "the lines from before the restart are kept as they were"
    );
}
