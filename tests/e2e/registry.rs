//! Modules from a real OCI registry (Debian's `docker-registry`, the CNCF
//! distribution server, started here on loopback with a temporary storage
//! folder): `flotilla push`, apply by tag with the digest stored, a moved
//! tag changing nothing until applied again, an artifact made by plain
//! registry API calls run as it is, a tampered layer refused, credentials
//! that stay on the control plane, a pull taken up again after its
//! connection drops, and nodes that keep working with the registry down.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::cluster::{free_port, Cluster, Who};

/// A `docker-registry` on loopback, killed when dropped.
pub(crate) struct Registry {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Registry {
    /// Started, with basic auth for `user` when given.
    pub(crate) fn start(user: Option<(&str, &str)>) -> Option<Self> {
        if !Path::new("/usr/bin/docker-registry").exists() {
            crate::support::cannot_run("no /usr/bin/docker-registry (Debian's docker-registry)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: flotilla-test\n",
            dir.path().join("storage").display()
        );
        if let Some((name, password)) = user {
            // bcrypt, as the registry's htpasswd wants it.
            let hash = Command::new("python3")
                .args([
                    "-W",
                    "ignore",
                    "-c",
                    "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
                    password,
                ])
                .output()
                .unwrap();
            assert!(
                hash.status.success(),
                "bcrypt via python3's crypt: {hash:?}"
            );
            let hash = String::from_utf8(hash.stdout).unwrap();
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{name}:{}\n", hash.trim())).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd: {{realm: flotilla-test, path: {}}}\n",
                htpasswd.display()
            ));
        }
        let path = dir.path().join("config.yml");
        std::fs::write(&path, config).unwrap();
        let mut registry = Self {
            child: None,
            port,
            dir,
            config: path,
        };
        registry.run();
        Some(registry)
    }

    pub(crate) fn run(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("registry.log")).unwrap();
        self.child = Some(
            Command::new("/usr/bin/docker-registry")
                .arg("serve")
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub(crate) fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// One plain registry API call: status, headers and body.
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String, Vec<u8>) {
        http_call(&self.address(), method, path, headers, body)
    }

    /// GET of a manifest (an OCI image manifest): status, head, body.
    pub(crate) fn manifest(&self, path: &str) -> (u16, String, Vec<u8>) {
        self.call("GET", path, &[("Accept", MANIFEST_TYPES)], b"")
    }

    /// Uploads a blob (monolithic: POST then PUT ?digest=), its digest.
    fn put_blob(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        let (status, head, _) = self.call(
            "POST",
            &format!("/v2/{repository}/blobs/uploads/"),
            &[],
            b"",
        );
        assert_eq!(status, 202, "{head}");
        let location = header(&head, "location").unwrap();
        let location = location
            .strip_prefix(&format!("http://{}", self.address()))
            .unwrap_or(&location)
            .to_string();
        let separator = if location.contains('?') { '&' } else { '?' };
        let (status, head, _) = self.call(
            "PUT",
            &format!("{location}{separator}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            bytes,
        );
        assert_eq!(status, 201, "{head}");
        digest
    }

    /// The file in the registry's storage that holds blob `digest`.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.path().join(format!(
            "storage/docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ))
    }
}

pub(crate) fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

/// A plain HTTP/1.1 request with `Connection: close`: status, head, body.
fn http_call(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw.get(split + 4..).unwrap_or_default().to_vec();
    (status, head, body)
}

pub(crate) const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json";

pub(crate) fn workload(name: &str, source: &str, extra: &str) -> String {
    format!(
        "apiVersion: flotilla.dev/v1\nkind: Workload\nmetadata: {{name: {name}}}\nspec:\n  module: {{source: \"{source}\"}}\n  args: [\"200\"]\n{extra}"
    )
}

pub(crate) fn stored_module(c: &Cluster, name: &str) -> Value {
    let w: Value = serde_json::from_str(&c.ok(&["get", "workload", name, "-o", "json"])).unwrap();
    w["spec"]["module"].clone()
}

pub(crate) fn running(c: &Cluster, workload: &str) -> Vec<Value> {
    c.items("instances")
        .into_iter()
        .filter(|i| i["spec"]["workload"] == workload && i["status"]["phase"] == "Running")
        .collect()
}

#[test]
fn modules_from_a_registry_are_pinned_pulled_by_the_control_plane_and_checked() {
    let Some(mut registry) = Registry::start(None) else {
        return;
    };
    let c = Cluster::start();
    let at = |repo: &str| format!("oci://{}/{repo}", registry.address());
    let sleeper = crate::support::sample("sleeper.wasm");
    let sleeper_bytes = std::fs::read(&sleeper).unwrap();

    // Push, and what the registry holds: the Wasm artifact layout.
    let pushed = c.ok(&[
        "push",
        sleeper.to_str().unwrap(),
        &at("apps/ticker:v1"),
        "--source",
        "https://example.invalid/ticker",
    ]);
    assert!(pushed.contains("@sha256:"), "{pushed}");
    let (status, head, manifest) = registry.manifest("/v2/apps/ticker/manifests/v1");
    assert_eq!(status, 200, "{head}");
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    let manifest_digest = header(&head, "docker-content-digest").unwrap();
    assert!(
        pushed.trim().ends_with(&manifest_digest),
        "{pushed} vs {manifest_digest}"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    let layer_digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let sha256 = hex::encode(Sha256::digest(&sleeper_bytes));
    assert_eq!(layer_digest, format!("sha256:{sha256}"));
    let annotations = &manifest["annotations"];
    assert_eq!(annotations["org.opencontainers.image.version"], "v1");
    assert_eq!(
        annotations["org.opencontainers.image.source"],
        "https://example.invalid/ticker"
    );
    assert!(annotations["org.opencontainers.image.created"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let (_, _, config) = registry.call(
        "GET",
        &format!("/v2/apps/ticker/blobs/{config_digest}"),
        &[],
        b"",
    );
    let config: Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip1");
    let (_, _, layer) = registry.call(
        "GET",
        &format!("/v2/apps/ticker/blobs/{layer_digest}"),
        &[],
        b"",
    );
    assert_eq!(layer, sleeper_bytes);
    // `flotilla pull` brings the same bytes back.
    let out = c.dir.path().join("pulled.wasm");
    c.ok(&["pull", &at("apps/ticker:v1"), "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), sleeper_bytes);

    // Applied by tag: the digest is stored, the module runs.
    let manifest_file = c.manifest(
        "ticker.yaml",
        &workload("ticker", &at("apps/ticker:v1"), ""),
    );
    c.ok(&["apply", "-f", manifest_file.to_str().unwrap()]);
    let module = stored_module(&c, "ticker");
    assert_eq!(module["sha256"], sha256.as_str());
    assert_eq!(
        module["resolved"],
        format!("{}@{manifest_digest}", at("apps/ticker:v1")).as_str()
    );
    c.wait_until("the ticker runs", Duration::from_secs(30), || {
        running(&c, "ticker").len() == 1
    });
    let first = running(&c, "ticker")[0]["metadata"]["uid"].clone();

    // The tag moves to another module: nothing running changes...
    let hello = crate::support::sample("hello.wasm");
    c.ok(&["push", hello.to_str().unwrap(), &at("apps/ticker:v1")]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(stored_module(&c, "ticker")["sha256"], sha256.as_str());
    let now = running(&c, "ticker");
    assert_eq!(now.len(), 1);
    assert_eq!(now[0]["metadata"]["uid"], first);
    // ...until the manifest is applied again: a new revision.
    c.ok(&["apply", "-f", manifest_file.to_str().unwrap()]);
    let hello_sha = hex::encode(Sha256::digest(std::fs::read(&hello).unwrap()));
    assert_eq!(stored_module(&c, "ticker")["sha256"], hello_sha.as_str());
    let history = c.ok(&["rollout", "history", "workload/ticker"]);
    assert!(
        history
            .lines()
            .filter(|l| l.trim_start().starts_with('2'))
            .count()
            == 1,
        "{history}"
    );
    // Applied once more, the tag where it was: nothing changes; the same
    // bytes pushed again (a new manifest) roll nothing out either.
    let resolved = stored_module(&c, "ticker")["resolved"].clone();
    c.ok(&["apply", "-f", manifest_file.to_str().unwrap()]);
    c.ok(&["push", hello.to_str().unwrap(), &at("apps/ticker:v1")]);
    c.ok(&["apply", "-f", manifest_file.to_str().unwrap()]);
    assert_eq!(stored_module(&c, "ticker")["resolved"], resolved);
    let revisions = c.ok(&["rollout", "history", "workload/ticker"]);
    assert!(
        !revisions.lines().any(|l| l.trim_start().starts_with('3')),
        "{revisions}"
    );
    // A patch of the source resolves the new one (a digest here).
    let back = format!("{}@{manifest_digest}", at("apps/ticker"));
    c.ok(&[
        "patch",
        "workload",
        "ticker",
        "-p",
        &json!({"spec": {"module": {"source": back}}}).to_string(),
    ]);
    assert_eq!(stored_module(&c, "ticker")["sha256"], sha256.as_str());
    // A caller cannot name a digest and have it believed: the registry is
    // asked, and what it holds is what is stored.
    let forged = c.manifest(
        "forged.yaml",
        &format!(
            "{}  # forged\n",
            workload("forged", &at("apps/ticker:v1"), "").replace(
                &format!("source: \"{}\"", at("apps/ticker:v1")),
                &format!(
                    "source: \"{}\", sha256: {sha256}, resolved: \"{}@{manifest_digest}\"",
                    at("apps/ticker:v1"),
                    at("apps/ticker:v1")
                )
            )
        ),
    );
    c.ok(&["apply", "-f", forged.to_str().unwrap()]);
    assert_eq!(stored_module(&c, "forged")["sha256"], hello_sha.as_str());

    // An artifact in the standard layout made without Flotilla (plain
    // registry API calls), applied by digest, runs as it is.
    let layer = registry.put_blob("handmade/ticker", &sleeper_bytes);
    let config = br#"{"architecture":"wasm","os":"wasip1","layerDigests":[]}"#;
    let config_digest = registry.put_blob("handmade/ticker", config);
    let handmade = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPES,
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/wasm", "digest": layer, "size": sleeper_bytes.len()}],
    })
    .to_string();
    let (status, head, _) = registry.call(
        "PUT",
        "/v2/handmade/ticker/manifests/1.0",
        &[("Content-Type", MANIFEST_TYPES)],
        handmade.as_bytes(),
    );
    assert_eq!(status, 201, "{head}");
    let handmade_digest = header(&head, "docker-content-digest").unwrap();
    c.apply(
        "handmade.yaml",
        &workload(
            "handmade",
            &format!("{}@{handmade_digest}", at("handmade/ticker")),
            "",
        ),
    );
    c.wait_until("the handmade module runs", Duration::from_secs(30), || {
        running(&c, "handmade").len() == 1
    });

    // A layer changed in the registry's storage: refused, never stored.
    let other = crate::support::sample("exit-code.wasm");
    let pushed = c.ok(&["push", other.to_str().unwrap(), &at("apps/tampered:v1")]);
    assert!(pushed.contains("@sha256:"));
    let other_digest = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(std::fs::read(&other).unwrap()))
    );
    let file = registry.blob_file(&other_digest);
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let tampered = c.manifest(
        "tampered.yaml",
        &workload("tampered", &at("apps/tampered:v1"), ""),
    );
    let out = c.cli(&["apply", "-f", tampered.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains("tampered with") && said.contains(&other_digest),
        "{said}"
    );
    assert!(!c.cli(&["get", "workload", "tampered"]).status.success());
    // Not a Wasm artifact: named as such.
    let config_digest = registry.put_blob("apps/image", config);
    let (status, _, _) = registry.call(
        "PUT",
        "/v2/apps/image/manifests/v1",
        &[("Content-Type", MANIFEST_TYPES)],
        json!({"schemaVersion": 2, "mediaType": MANIFEST_TYPES,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": []}).to_string().as_bytes(),
    );
    assert_eq!(status, 201);
    let image = c.manifest("image.yaml", &workload("image", &at("apps/image:v1"), ""));
    let out = c.cli(&["apply", "-f", image.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a Wasm module artifact"),
        "{out:?}"
    );

    // The registry goes away: the fleet does not notice (nodes never
    // needed it); only a new resolution says where the trouble is.
    registry.stop();
    c.ok(&["scale", "workload", "handmade", "--replicas", "2"]);
    c.wait_until(
        "a new replica starts without the registry",
        Duration::from_secs(30),
        || running(&c, "handmade").len() == 2,
    );
    let again = c.cli(&["apply", "-f", manifest_file.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(
        said.contains("registry must be reachable from the control plane"),
        "{said}"
    );
    assert_eq!(
        stored_module(&c, "ticker")["sha256"],
        sha256.as_str(),
        "unchanged"
    );
}

#[test]
fn registry_credentials_stay_on_the_control_plane() {
    const PASSWORD: &str = "reg-pass-7f3c1e";
    let Some(registry) = Registry::start(Some(("ci", PASSWORD))) else {
        return;
    };
    let c = Cluster::start_server();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    let _agent = crate::fleet::agent(&c, "edge", join.trim(), "256Mi");
    let source = format!("oci://{}/private/ticker:v1", registry.address());
    let sleeper = crate::support::sample("sleeper.wasm");

    // Without credentials the registry refuses the push, and says so.
    let out = c.cli(&["push", sleeper.to_str().unwrap(), &source]);
    assert!(!out.status.success());
    let pushed = cli_with_stdin(
        &c,
        &[
            "push",
            sleeper.to_str().unwrap(),
            &source,
            "--username",
            "ci",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );

    // A workload without a pull secret: refused, with the fix named.
    let plain = c.manifest("plain.yaml", &workload("ticker", &source, ""));
    let out = c.cli(&["apply", "-f", plain.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("refused access") && said.contains("imagePullSecret"),
        "{said}"
    );

    // With one: pulled by the control plane, run by the node.
    let created = cli_with_stdin(
        &c,
        &[
            "create",
            "secret",
            "docker-registry",
            "regcred",
            "--docker-server",
            &registry.address(),
            "--docker-username",
            "ci",
        ],
        PASSWORD,
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    c.apply(
        "ticker.yaml",
        &workload("ticker", &source, "  imagePullSecrets: [{name: regcred}]\n"),
    );
    c.wait_until(
        "the private module runs on the node",
        Duration::from_secs(30),
        || running(&c, "ticker").len() == 1,
    );

    // A namespace's pull secret serves its workloads that name none, and
    // no other namespace's.
    let namespace_secret = |name: &str, namespace: &str| {
        let created = cli_with_stdin(
            &c,
            &[
                "create",
                "secret",
                "docker-registry",
                name,
                "-n",
                namespace,
                "--docker-server",
                &registry.address(),
                "--docker-username",
                "ci",
                "--for-namespace",
            ],
            PASSWORD,
        );
        assert!(created.status.success(), "{created:?}");
    };
    namespace_secret("elsewhere", "other");
    let bare = c.manifest("bare.yaml", &workload("bare", &source, ""));
    let out = c.cli(&["apply", "-f", bare.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("refused access"),
        "{said}"
    );
    namespace_secret("nscred", "default");
    c.ok(&["apply", "-f", bare.to_str().unwrap()]);
    c.wait_until(
        "the workload without a pull secret runs",
        Duration::from_secs(30),
        || running(&c, "bare").len() == 1,
    );
    let instance = running(&c, "bare")[0].to_string();
    assert!(!instance.contains("nscred"), "{instance}");

    // The node can read neither the secret nor its name in what it runs.
    let node = flotilla_trust::Identity::load(&c.dir.path().join("agent-edge/pki"), "node")
        .unwrap()
        .unwrap();
    let (status, _) = c.raw(
        "GET",
        "/apis/flotilla.dev/v1/namespaces/default/secrets/regcred",
        &Who::Node(&node),
        "",
    );
    assert_eq!(status, 403);
    let instance = running(&c, "ticker")[0].to_string();
    assert!(
        !instance.contains("regcred") && !instance.contains("imagePullSecrets"),
        "{instance}"
    );
    // Nowhere in the logs, the agent's files or the store's plaintext.
    let agent_log = crate::fleet::read_agent_log(&c, "edge");
    assert!(!agent_log.contains(PASSWORD), "{agent_log}");
    assert!(!c.log().contains(PASSWORD));
    for dir in [c.dir.path().join("agent-edge"), c.data_dir()] {
        let found = crate::cluster::files(&dir).into_iter().find(|f| {
            std::fs::read(f)
                .is_ok_and(|b| b.windows(PASSWORD.len()).any(|w| w == PASSWORD.as_bytes()))
        });
        assert_eq!(found, None, "the password is in a file");
    }
}

/// The CLI with `input` on its standard input.
pub(crate) fn cli_with_stdin(c: &Cluster, args: &[&str], input: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .env("FLOTILLA_CONFIG", c.config())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A TCP proxy to `upstream` that cuts the response to the first request
/// naming `cut_path`, after `after` bytes of it.
struct CuttingProxy {
    port: u16,
    cuts: Arc<AtomicU32>,
    /// Requests for the path after the cut that asked for a range from a
    /// byte past 0 (a resumed transfer, not a new one).
    resumed: Arc<AtomicU32>,
}

impl CuttingProxy {
    fn start(upstream: String, cut_path: String, after: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cuts = Arc::new(AtomicU32::new(0));
        let resumed = Arc::new(AtomicU32::new(0));
        let armed = Arc::new(AtomicBool::new(true));
        let counted = cuts.clone();
        let resumes = resumed.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (cut_path, armed, cuts) = (cut_path.clone(), armed.clone(), counted.clone());
                let resumes = resumes.clone();
                let cutting = Arc::new(AtomicBool::new(false));
                let (mut from_client, mut to_server) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let flag = cutting.clone();
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 16 * 1024];
                    while let Ok(n) = from_client.read(&mut buffer) {
                        if n == 0 {
                            break;
                        }
                        let text = String::from_utf8_lossy(&buffer[..n]).to_lowercase();
                        let from_byte = text
                            .split("range: bytes=")
                            .nth(1)
                            .and_then(|r| r.split('-').next())
                            .and_then(|n| n.trim().parse::<u64>().ok());
                        if text.starts_with("get ")
                            && text.contains(&cut_path)
                            && !armed.load(Ordering::SeqCst)
                            && from_byte.is_some_and(|b| b > 0)
                        {
                            resumes.fetch_add(1, Ordering::SeqCst);
                        }
                        if text.starts_with("get ")
                            && text.contains(&cut_path)
                            && armed.swap(false, Ordering::SeqCst)
                        {
                            flag.store(true, Ordering::SeqCst);
                        }
                        if to_server.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                });
                let (mut from_server, mut to_client) = (server, client);
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 16 * 1024];
                    let mut sent_while_cutting = 0;
                    while let Ok(n) = from_server.read(&mut buffer) {
                        if n == 0 {
                            break;
                        }
                        if cutting.load(Ordering::SeqCst) {
                            sent_while_cutting += n;
                            if sent_while_cutting > after {
                                cuts.fetch_add(1, Ordering::SeqCst);
                                let _ = to_client.shutdown(std::net::Shutdown::Both);
                                let _ = from_server.shutdown(std::net::Shutdown::Both);
                                break;
                            }
                        }
                        if to_client.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self {
            port,
            cuts,
            resumed,
        }
    }
}

/// A valid module of about `size` bytes: `base` and a custom section.
fn padded(base: &[u8], size: usize) -> Vec<u8> {
    let name = b"flotilla-padding";
    let payload = size.saturating_sub(base.len());
    let mut section = Vec::new();
    let mut content = vec![name.len() as u8];
    content.extend_from_slice(name);
    content.extend(std::iter::repeat_n(0x5a, payload));
    section.push(0);
    let mut length = content.len();
    loop {
        let byte = (length & 0x7f) as u8;
        length >>= 7;
        section.push(if length == 0 { byte } else { byte | 0x80 });
        if length == 0 {
            break;
        }
    }
    section.extend(content);
    let mut module = base.to_vec();
    module.extend(section);
    module
}

#[test]
fn a_pull_whose_connection_drops_is_taken_up_where_it_stopped() {
    let Some(registry) = Registry::start(None) else {
        return;
    };
    let big = padded(
        &std::fs::read(crate::support::sample("sleeper.wasm")).unwrap(),
        8 << 20,
    );
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&big)));
    let proxy = CuttingProxy::start(registry.address(), digest.clone(), 1 << 20);
    // The proxy's port is loopback too: plain HTTP.
    let c = Cluster::start();
    let file = c.dir.path().join("big.wasm");
    std::fs::write(&file, &big).unwrap();
    let source = format!("oci://127.0.0.1:{}/apps/big:v1", proxy.port);
    c.ok(&[
        "push",
        file.to_str().unwrap(),
        &format!("oci://{}/apps/big:v1", registry.address()),
    ]);
    c.apply("big.yaml", &workload("big", &source, ""));
    assert_eq!(
        proxy.cuts.load(Ordering::SeqCst),
        1,
        "the transfer was cut once"
    );
    assert_eq!(
        proxy.resumed.load(Ordering::SeqCst),
        1,
        "taken up with a Range request from where it stopped"
    );
    assert_eq!(
        stored_module(&c, "big")["sha256"],
        digest.trim_start_matches("sha256:")
    );
    assert!(c.log().contains("taken up again"), "{}", c.log());
    c.wait_until("the big module runs", Duration::from_secs(60), || {
        running(&c, "big").len() == 1
    });
}

/// A P-256 key pair as PEM: (PKCS#8 private key, public key).
pub(crate) fn key_pair() -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    (key.serialize_pem(), key.public_key_pem())
}

#[test]
fn a_module_policy_admits_signed_modules_from_its_registries_only() {
    let Some(registry) = Registry::start(None) else {
        return;
    };
    let c = Cluster::start();
    let at = |repo: &str| format!("oci://{}/{repo}", registry.address());
    let sleeper = crate::support::sample("sleeper.wasm");
    for repo in ["signed/app:v1", "unsigned/app:v1", "forged/app:v1"] {
        c.ok(&["push", sleeper.to_str().unwrap(), &at(repo)]);
    }
    let (private, public) = key_pair();
    let (other_private, _) = key_pair();
    let key = c.dir.path().join("key.pem");
    let other = c.dir.path().join("other.pem");
    std::fs::write(&key, &private).unwrap();
    std::fs::write(&other, &other_private).unwrap();
    let signed = c.ok(&["sign", &at("signed/app:v1"), "--key", key.to_str().unwrap()]);
    assert!(signed.contains("signature at tag sha256-"), "{signed}");
    c.ok(&[
        "sign",
        &at("forged/app:v1"),
        "--key",
        other.to_str().unwrap(),
    ]);

    // What the registry holds is cosign's layout.
    let (_, head, _) = registry.manifest("/v2/signed/app/manifests/v1");
    let digest = header(&head, "docker-content-digest").unwrap();
    let (status, _, body) = registry.manifest(&format!(
        "/v2/signed/app/manifests/{}.sig",
        digest.replacen(':', "-", 1)
    ));
    assert_eq!(status, 200);
    let signature: Value = serde_json::from_slice(&body).unwrap();
    let layer = &signature["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    assert!(layer["annotations"]["dev.cosignproject.cosign/signature"].is_string());

    // Admitted before any policy, from an unsigned module.
    c.apply("early.yaml", &workload("early", &at("unsigned/app:v1"), ""));

    let policy = format!(
        "apiVersion: flotilla.dev/v1\nkind: ModulePolicy\nmetadata: {{name: signed-only}}\nspec:\n  require: signed\n  registries: [\"{}\"]\n  keys:\n  - |\n{}",
        registry.address(),
        public
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    );
    let applied = c.apply("policy.yaml", &policy);
    assert!(
        applied.contains("modulepolicy.flotilla.dev/signed-only created"),
        "{applied}"
    );
    assert!(c.ok(&["get", "modulepolicies"]).contains("signed-only"));

    let refused = |name: &str, source: &str| -> String {
        let file = c.manifest(&format!("{name}.yaml"), &workload(name, source, ""));
        let out = c.cli(&["apply", "-f", file.to_str().unwrap()]);
        assert!(!out.status.success(), "{name} was admitted");
        assert!(!c.cli(&["get", "workload", name]).status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let said = refused("unsigned", &at("unsigned/app:v1"));
    assert!(
        said.contains("ModulePolicy signed-only") && said.contains("not signed"),
        "{said}"
    );
    let said = refused("forged", &at("forged/app:v1"));
    assert!(said.contains("none of the 1 signatures"), "{said}");
    let said = refused("uploaded", "file:MODULES/sleeper.wasm");
    assert!(
        said.contains("come from a registry and be signed"),
        "{said}"
    );
    let said = refused("elsewhere", "oci://localhost:1/other/app:v1");
    assert!(said.contains("allows modules from"), "{said}");
    // The workload admitted before the policy: its next write is checked.
    let out = c.cli(&["scale", "workload", "early", "--replicas", "2"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("not signed"),
        "{said}"
    );
    // A signature copied to another module's tag names the first module:
    // worth nothing there.
    let hello = crate::support::sample("hello.wasm");
    c.ok(&["push", hello.to_str().unwrap(), &at("signed/app:v2")]);
    let (_, head, _) = registry.manifest("/v2/signed/app/manifests/v2");
    let v2 = header(&head, "docker-content-digest").unwrap();
    let (status, head, _) = registry.call(
        "PUT",
        &format!("/v2/signed/app/manifests/{}.sig", v2.replacen(':', "-", 1)),
        &[("Content-Type", MANIFEST_TYPES)],
        &body,
    );
    assert_eq!(status, 201, "{head}");
    let said = refused("replayed", &at("signed/app:v2"));
    assert!(said.contains("none of the 1 signatures"), "{said}");
    // A second signer adds to the signatures; the first still holds.
    c.ok(&[
        "sign",
        &at("signed/app:v1"),
        "--key",
        other.to_str().unwrap(),
    ]);
    let (_, _, both) = registry.manifest(&format!(
        "/v2/signed/app/manifests/{}.sig",
        digest.replacen(':', "-", 1)
    ));
    let both: Value = serde_json::from_slice(&both).unwrap();
    assert_eq!(both["layers"].as_array().map(Vec::len), Some(2), "{both}");

    c.apply("signed.yaml", &workload("signed", &at("signed/app:v1"), ""));
    c.wait_until("the signed module runs", Duration::from_secs(30), || {
        running(&c, "signed").len() == 1
    });
}
