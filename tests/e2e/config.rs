//! Configs and Secrets on real processes: values reach a guest's
//! environment, a Secret never reaches the store file in plaintext (nor the
//! agent's files but the guest's own output), a missing key keeps the
//! instance Pending, a change of the values read rolls out, the sealing
//! key rotates, and only the nodes that use a Secret may read it.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{Cluster, Who};

const SECRET_VALUE: &str = "s3cret-4f9c2d71-horse";

/// Whether any file under `dir` (but those under `skip`) holds `needle`.
fn any_file_holds(dir: &Path, needle: &[u8], skip: &Path) -> Option<std::path::PathBuf> {
    crate::cluster::files(dir)
        .into_iter()
        .filter(|f| !f.starts_with(skip))
        .find(|f| {
            std::fs::read(f).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        })
}

fn greeter(name: &str, source: &str) -> String {
    format!(
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {{name: {name}}}
spec:
  module: {{source: "file:MODULES/hello.wasm"}}
  restartPolicy: {{policy: Never}}
  env: [{{name: GREETING, valueFrom: {source}}}]
"#
    )
}

/// The output of `workload`'s instance once it has Succeeded with a
/// greeting other than `not`.
fn greeting(c: &Cluster, workload: &str, not: &str) -> String {
    let mut said = String::new();
    c.wait_until(
        &format!("{workload} greets"),
        Duration::from_secs(30),
        || {
            let done: Vec<Value> = c
                .items("instances")
                .into_iter()
                .filter(|i| {
                    i["spec"]["workload"] == workload && i["status"]["phase"] == "Succeeded"
                })
                .collect();
            done.iter().any(|i| {
                let name = i["metadata"]["name"].as_str().unwrap_or_default();
                // It may be replaced (deleted) meanwhile: then the next one.
                said =
                    String::from_utf8_lossy(&c.cli(&["logs", workload, "--instance", name]).stdout)
                        .to_string();
                said.contains("GREETING=") && !said.contains(&format!("GREETING={not}\n"))
            })
        },
    );
    said
}

#[test]
fn configs_and_secrets_reach_the_guest_sealed_at_rest_and_roll_out_when_changed() {
    let c = Cluster::start();
    c.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal",
        &format!("greeting={SECRET_VALUE}"),
    ]);
    c.ok(&[
        "create",
        "config",
        "app",
        "--from-literal",
        "greeting=from-config",
    ]);

    // A secret's value reaches the environment.
    c.apply(
        "secret.yaml",
        &greeter("secretive", "{secretKeyRef: {name: db, key: greeting}}"),
    );
    let said = greeting(&c, "secretive", "");
    assert!(said.contains(&format!("GREETING={SECRET_VALUE}")), "{said}");

    // Never in plaintext (nor base64) in the store, nor in the agent's
    // files but the guest's own output (its log).
    let encoded = flotilla_spec::config::base64_encode(SECRET_VALUE.as_bytes());
    let data = c.data_dir();
    for needle in [SECRET_VALUE.as_bytes(), encoded.as_bytes()] {
        let found = any_file_holds(&data, needle, &data.join("agent/logs"));
        assert!(found.is_none(), "{found:?} holds the secret");
    }
    // `get` shows sizes unless asked, `describe` never shows values.
    let yaml = c.ok(&["get", "secret", "db", "-o", "yaml"]);
    assert!(
        !yaml.contains(&encoded) && yaml.contains("bytes>"),
        "{yaml}"
    );
    let shown = c.ok(&["get", "secret", "db", "-o", "json", "--show-values"]);
    assert!(shown.contains(&encoded), "{shown}");
    assert!(!c.ok(&["describe", "secret", "db"]).contains(&encoded));
    let table = c.ok(&["get", "secrets"]);
    assert!(table.contains("db") && table.contains("Opaque"), "{table}");

    // The view role cannot read secrets; a node only those its instances use.
    let view = c
        .ok(&["token", "create", "--role", "view"])
        .trim()
        .to_string();
    let path = "/apis/flotilla.dev/v1/namespaces/default/secrets/db";
    let (code, body) = c.raw("GET", path, &Who::Token(&view), "");
    assert_eq!(code, 403, "{body}");
    let node = flotilla_trust::Identity::load(&c.data_dir().join("agent/pki"), "node")
        .unwrap()
        .unwrap();
    let (code, _) = c.raw("GET", path, &Who::Node(&node), "");
    assert_eq!(code, 200, "node-1 runs an instance that uses db");
    c.ok(&[
        "create",
        "secret",
        "generic",
        "unused",
        "--from-literal",
        "k=v",
    ]);
    let (code, body) = c.raw(
        "GET",
        "/apis/flotilla.dev/v1/namespaces/default/secrets/unused",
        &Who::Node(&node),
        "",
    );
    assert_eq!(code, 403, "{body}");

    // Rotating the key seals everything again; the values still read back.
    let rotated = c.ok(&["secrets", "rotate-key"]);
    assert!(rotated.contains("2 secrets"), "{rotated}");
    let shown = c.ok(&["get", "secret", "db", "-o", "json", "--show-values"]);
    assert!(shown.contains(&encoded), "{shown}");
    let keys: Vec<String> = std::fs::read_dir(data.join("pki/secret-keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".key") && n != "digest.key")
        .collect();
    assert_eq!(keys.len(), 1, "only the new sealing key is left: {keys:?}");

    // A key that is not there: Pending, ConfigMissing, naming it.
    c.apply(
        "missing.yaml",
        &greeter("waiting", "{configKeyRef: {name: app, key: nope}}"),
    );
    c.wait_until("ConfigMissing", Duration::from_secs(20), || {
        c.items("instances").iter().any(|i| {
            i["spec"]["workload"] == "waiting"
                && i["status"]["phase"] == "Pending"
                && i["status"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("ConfigMissing") && m.contains("\"nope\""))
        })
    });
    // Optional: skipped, and it runs.
    c.apply(
        "missing.yaml",
        &greeter(
            "waiting",
            "{configKeyRef: {name: app, key: nope, optional: true}}",
        ),
    );
    let said = greeting(&c, "waiting", "-");
    assert!(said.contains("GREETING=<unset>"), "{said}");

    // A change of a value read rolls out: a new revision, a new instance
    // that sees it.
    c.apply(
        "configured.yaml",
        &greeter("configured", "{configKeyRef: {name: app, key: greeting}}"),
    );
    let said = greeting(&c, "configured", "");
    assert!(said.contains("GREETING=from-config"), "{said}");
    c.ok(&[
        "patch",
        "config",
        "app",
        "-p",
        r#"{"data": {"greeting": "changed"}}"#,
    ]);
    let said = greeting(&c, "configured", "from-config");
    assert!(said.contains("GREETING=changed"), "{said}");
    let history = c.ok(&["rollout", "history", "workload/configured"]);
    assert!(history.contains("config values"), "{history}");

    // An immutable config keeps its values.
    c.ok(&[
        "create",
        "config",
        "frozen",
        "--from-literal",
        "k=v",
        "--immutable",
    ]);
    let refused = c.cli(&["patch", "config", "frozen", "-p", r#"{"data": {"k": "w"}}"#]);
    let err = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(
        !refused.status.success() && err.contains("immutable"),
        "{err}"
    );
}

#[test]
fn files_from_configs_and_secrets_are_read_only_and_secret_ones_live_in_memory_with_their_instance()
{
    let c = Cluster::start();
    c.ok(&["create", "config", "app", "--from-literal", "mode=fast"]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "tls",
        "--from-literal",
        &format!("key={SECRET_VALUE}"),
    ]);
    // A Config's values as files the guest reads and cannot change.
    c.apply(
        "reader.yaml",
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: reader}
spec:
  module: {source: "file:MODULES/fs.wasm"}
  args: ["/etc/app"]
  restartPolicy: {policy: Never}
  files: [{guestPath: /etc/app, config: app}]
"#,
    );
    let mut said = String::new();
    c.wait_until("reader read its files", Duration::from_secs(30), || {
        said = String::from_utf8_lossy(&c.cli(&["logs", "reader"]).stdout).to_string();
        said.contains("write ")
    });
    assert!(said.contains(r#"read /etc/app/mode: "fast""#), "{said}");
    assert!(
        said.contains("write /etc/app/written-by-guest.txt: failed"),
        "{said}"
    );
    assert!(!said.contains("ALLOWED"), "{said}");

    // A Secret's, at a chosen path: in /dev/shm (0600) while it runs, gone
    // with it, never under the agent's data folder.
    c.apply(
        "holder.yaml",
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: holder}
spec:
  module: {source: "file:MODULES/sleeper.wasm"}
  args: ["600000"]
  files: [{guestPath: /run/secrets, secret: tls, items: [{key: key, path: private/key.pem}]}]
"#,
    );
    let mut instance = String::new();
    c.wait_until("holder runs", Duration::from_secs(30), || {
        c.items("instances").iter().any(|i| {
            // Its folder: name and uid.
            instance = format!(
                "{}-{}",
                i["metadata"]["name"].as_str().unwrap_or_default(),
                i["metadata"]["uid"].as_str().unwrap_or_default()
            );
            i["spec"]["workload"] == "holder" && i["status"]["phase"] == "Running"
        })
    });
    let dirs = flotilla_agent::config_files::FileDirs::of(&c.data_dir().join("agent"));
    let file = dirs
        .secrets
        .join(format!("default/{instance}/0/private/key.pem"));
    assert!(file.starts_with("/dev/shm"), "{file:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), SECRET_VALUE);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let data = c.data_dir();
    let found = any_file_holds(&data, SECRET_VALUE.as_bytes(), &data.join("agent/logs"));
    assert!(found.is_none(), "{found:?} holds the secret");
    c.ok(&["delete", "workload", "holder"]);
    c.wait_until(
        "the secret's file goes with its instance",
        Duration::from_secs(20),
        || !file.exists(),
    );
}

#[test]
fn an_http_workload_reloading_live_sees_new_values_soon_with_no_restart_and_no_failed_request() {
    let c = Cluster::start();
    c.ok(&["create", "config", "app", "--from-literal", "greeting=one"]);
    c.apply(
        "live.yaml",
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: live}
spec:
  module: {source: "file:MODULES/wagi-hello.wasm"}
  execution: http
  replicas: 2
  routes: [{host: live.local, pathPrefix: /}]
  reload: live
  env: [{name: GREETING, valueFrom: {configKeyRef: {name: app, key: greeting}}}]
  files: [{guestPath: /etc/app, config: app}]
"#,
    );
    crate::http::ready(&c, "live", 2);
    let ingress = crate::http::ingress_of(&c, "node-1");
    let get = |path: &str| crate::http::request(&ingress, "GET", "live.local", path, "");
    assert_eq!(get("/env/GREETING"), (200, "GREETING=one\n".into()));
    assert_eq!(get("/file/etc/app/greeting").1.trim(), "one");
    let instances = crate::cluster::names(&c.items("instances"));

    // Load throughout the change.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (ingress, stop) = (ingress.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut total, mut failed) = (0u64, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                total += 1;
                let (status, body) =
                    crate::http::request(&ingress, "GET", "live.local", "/env/GREETING", "");
                if status != 200 {
                    failed.push((status, body));
                }
            }
            (total, failed)
        })
    };
    let changed = std::time::Instant::now();
    c.ok(&[
        "patch",
        "config",
        "app",
        "-p",
        r#"{"data": {"greeting": "two"}}"#,
    ]);
    c.wait_until("the new value is served", Duration::from_secs(10), || {
        get("/env/GREETING").1 == "GREETING=two\n"
            && get("/file/etc/app/greeting").1.trim() == "two"
    });
    let took = changed.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (total, failed) = load.join().unwrap();
    eprintln!(
        "live reload: {took:?}; {total} requests meanwhile, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:?}");
    // Read every 500 ms: well within 1 s, with room for a loaded machine.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // No restart and no rollout: the same instances, one revision.
    assert_eq!(crate::cluster::names(&c.items("instances")), instances);
    assert_eq!(c.items("revisions").len(), 1);
}

#[test]
fn components_read_wasi_config_secret_files_and_env_kick_their_watchdog_and_need_their_grants() {
    let c = Cluster::start();
    c.ok(&[
        "create",
        "config",
        "app",
        "--from-literal",
        "mode=fast",
        "--from-literal",
        "level=3",
    ]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal",
        &format!("password={SECRET_VALUE}"),
    ]);
    // A command component (config-reader): wasi:config/store from a
    // Config, a Secret as a file and as env, a Config as envFrom, and its
    // readiness judged by its watchdog kicks (flotilla:host/watchdog).
    let reader = |name: &str, config: &str| {
        format!(
            r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {{name: {name}}}
spec:
  module: {{source: "file:MODULES/config-reader.component.wasm"}}
  args: ["file:/run/creds/password", "env:DB_PASSWORD", "env:APP_mode"]
  {config}
  envFrom: [{{configRef: {{name: app}}, prefix: APP_}}]
  env: [{{name: DB_PASSWORD, valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}}}]
  files: [{{guestPath: /run/creds, secret: creds}}]
  probes:
    readiness: {{watchdog: {{}}, period: 1s, timeout: 1s, failureThreshold: 1}}
"#
        )
    };
    c.apply(
        "reader.yaml",
        &reader("reader", "config: {from: [{configRef: app}]}"),
    );
    let ready_instance = |workload: &str, not: &str| {
        let mut name = String::new();
        c.wait_until(
            &format!("{workload} is ready"),
            Duration::from_secs(30),
            || {
                c.items("instances").iter().any(|i| {
                    name = i["metadata"]["name"].as_str().unwrap_or_default().into();
                    i["spec"]["workload"] == workload && i["status"]["ready"] == true && name != not
                })
            },
        );
        name
    };
    let logs = |instance: &str, wanted: &str| {
        let mut said = String::new();
        c.wait_until(
            &format!("{instance} says {wanted}"),
            Duration::from_secs(20),
            || {
                said = String::from_utf8_lossy(
                    &c.cli(&["logs", "reader", "--instance", instance]).stdout,
                )
                .to_string();
                said.contains(wanted)
            },
        );
        said
    };
    let first = ready_instance("reader", "");
    let said = logs(&first, "env APP_mode=");
    for line in [
        "config level=3\n".to_string(),
        "config mode=fast\n".to_string(),
        format!("file /run/creds/password={SECRET_VALUE}\n"),
        format!("env DB_PASSWORD={SECRET_VALUE}\n"),
        "env APP_mode=fast\n".to_string(),
    ] {
        assert!(said.contains(&line), "no {line:?} in {said}");
    }

    // A change of a value it reads through wasi:config/store rolls out.
    c.ok(&[
        "patch",
        "config",
        "app",
        "-p",
        r#"{"data": {"level": "4"}}"#,
    ]);
    let second = ready_instance("reader", &first);
    logs(&second, "config level=4\n");

    // Without `config`, the import is not granted: it fails once, naming
    // the grant, and is not restarted.
    c.apply("ungranted.yaml", &reader("ungranted", ""));
    let mut failed = Value::Null;
    c.wait_until("ungranted fails", Duration::from_secs(30), || {
        c.items("instances").into_iter().any(|i| {
            let found = i["spec"]["workload"] == "ungranted" && i["status"]["phase"] == "Failed";
            if found {
                failed = i;
            }
            found
        })
    });
    let message = failed["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("wasi:config/store") && message.contains("spec.config.from"),
        "{failed}"
    );
    assert_eq!(
        failed["status"]["restarts"].as_u64().unwrap_or(0),
        0,
        "{failed}"
    );
    c.wait_for_event("CapabilityNotGranted");

    // An http component reads its environment (a Secret's value) through
    // wasi:cli/environment.
    c.apply(
        "hello.yaml",
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: hello}
spec:
  module: {source: "file:MODULES/http-hello.component.wasm"}
  execution: http
  routes: [{host: hello.local, pathPrefix: /}]
  env: [{name: TOKEN, valueFrom: {secretKeyRef: {name: creds, key: password}}}]
"#,
    );
    crate::http::ready(&c, "hello", 1);
    let ingress = crate::http::ingress_of(&c, "node-1");
    let (status, body) = crate::http::request(&ingress, "GET", "hello.local", "/env/TOKEN", "");
    assert_eq!((status, body), (200, format!("TOKEN={SECRET_VALUE}\n")));
    let (status, _) = crate::http::request(&ingress, "GET", "hello.local", "/env/NOPE", "");
    assert_eq!(status, 404);
}

/// A CA of the test's own and a certificate from it for `host`: (CA PEM,
/// certificate PEM, key PEM).
fn certificate_for(host: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_pem, leaf.pem(), key.serialize_pem())
}

#[test]
fn https_at_the_ingress_serves_tls_secrets_by_sni_and_a_renewed_certificate_without_a_restart() {
    let tls = format!("127.0.0.1:{}", crate::cluster::free_port());
    let c = Cluster::start_up_with(&["--ingress-tls", &tls]);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (ca, cert, key) = certificate_for("secure.local");
    let (cert_file, key_file) = (write("tls.crt", &cert), write("tls.key", &key));
    // A key that is not the certificate's is refused before it is stored.
    let (_, _, other_key) = certificate_for("secure.local");
    let other_key_file = write("other.key", &other_key);
    let refused = c.cli(&[
        "create",
        "secret",
        "tls",
        "web-tls",
        "--cert",
        &cert_file,
        "--key",
        &other_key_file,
    ]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("does not go with"), "{said}");
    c.ok(&[
        "create", "secret", "tls", "web-tls", "--cert", &cert_file, "--key", &key_file,
    ]);
    c.apply(
        "secure.yaml",
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: secure}
spec:
  module: {source: "file:MODULES/http-hello.component.wasm"}
  execution: http
  routes: [{host: secure.local, pathPrefix: /}, {host: plain.local, pathPrefix: /}]
  tls: [{hosts: [secure.local], secretName: web-tls}]
"#,
    );
    crate::http::ready(&c, "secure", 1);
    let request = b"GET / HTTP/1.1\r\nhost: secure.local\r\nconnection: close\r\n\r\n";
    let get = |host: &str, ca: &str| {
        crate::cluster::split_answer(&crate::cluster::tls_exchange(&tls, host, ca, None, request))
    };
    c.wait_until(
        "HTTPS answers for secure.local",
        Duration::from_secs(20),
        || get("secure.local", &ca).0 == 200,
    );
    let (_, body) = get("secure.local", &ca);
    assert!(body.contains("hello from flotilla\n"), "{body}");
    // A host without a certificate gets no handshake.
    assert_eq!(get("plain.local", &ca).0, 0);
    // Plain HTTP on the TLS port is told to use https.
    let plain = {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&tls).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The server may answer (and close) before the request is all out.
        let _ = stream.write_all(request);
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        crate::cluster::split_answer(&raw)
    };
    assert_eq!(plain.0, 400, "{plain:?}");

    // A renewed certificate (from another CA) is served soon, with no
    // restart of anything.
    let pid = c.pid();
    let (new_ca, new_cert, new_key) = certificate_for("secure.local");
    let patch = serde_json::json!({"data": {
        "tls.crt": flotilla_spec::config::base64_encode(new_cert.as_bytes()),
        "tls.key": flotilla_spec::config::base64_encode(new_key.as_bytes()),
    }});
    c.ok(&["patch", "secret", "web-tls", "-p", &patch.to_string()]);
    c.wait_until(
        "the renewed certificate is served",
        Duration::from_secs(30),
        || get("secure.local", &new_ca).0 == 200,
    );
    assert_eq!(
        get("secure.local", &ca).0,
        0,
        "the old certificate is still served"
    );
    assert_eq!(c.pid(), pid);

    // Nodes read the TLS secrets workloads name, no other secret.
    let node = flotilla_trust::Identity::load(&c.data_dir().join("agent/pki"), "node")
        .unwrap()
        .unwrap();
    let path = "/apis/flotilla.dev/v1/namespaces/default/secrets/web-tls";
    assert_eq!(c.raw("GET", path, &Who::Node(&node), "").0, 200);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "opaque",
        "--from-literal",
        "k=v",
    ]);
    c.apply(
        "sneaky.yaml",
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: sneaky}
spec:
  module: {source: "file:MODULES/http-hello.component.wasm"}
  execution: http
  replicas: 0
  routes: [{host: sneaky.local, pathPrefix: /}]
  tls: [{hosts: [sneaky.local], secretName: opaque}]
"#,
    );
    let path = "/apis/flotilla.dev/v1/namespaces/default/secrets/opaque";
    assert_eq!(c.raw("GET", path, &Who::Node(&node), "").0, 403);

    // A TLS secret no workload names: not for nodes either.
    let (rogue_ca, rogue_cert, rogue_key) = certificate_for("secure.local");
    let (rogue_cert_file, rogue_key_file) = (
        write("rogue.crt", &rogue_cert),
        write("rogue.key", &rogue_key),
    );
    c.ok(&[
        "create",
        "secret",
        "tls",
        "rogue-tls",
        "--cert",
        &rogue_cert_file,
        "--key",
        &rogue_key_file,
    ]);
    let path = "/apis/flotilla.dev/v1/namespaces/default/secrets/rogue-tls";
    assert_eq!(c.raw("GET", path, &Who::Node(&node), "").0, 403);
    // Another workload naming its own certificate for secure.local does
    // not take the host over: the host gets none until one is named.
    c.apply(
        "rogue.yaml",
        r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: rogue}
spec:
  module: {source: "file:MODULES/http-hello.component.wasm"}
  execution: http
  replicas: 0
  routes: [{host: secure.local, pathPrefix: /}]
  tls: [{hosts: [secure.local], secretName: rogue-tls}]
"#,
    );
    c.wait_until(
        "secure.local has no certificate",
        Duration::from_secs(20),
        || get("secure.local", &new_ca).0 == 0,
    );
    assert_eq!(
        get("secure.local", &rogue_ca).0,
        0,
        "the rogue certificate is served"
    );
    c.ok(&["delete", "workload", "rogue"]);
    c.wait_until(
        "secure.local is served again",
        Duration::from_secs(20),
        || get("secure.local", &new_ca).0 == 200,
    );
}
