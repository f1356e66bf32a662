//! A `flotilla up` process for a test: its own data folder, port and client
//! config; killed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Cluster {
    pub dir: tempfile::TempDir,
    /// The API's port: the kernel's choice at the first launch (it listens
    /// on port 0 and says which in the client config it writes, so no
    /// other process can take a port picked before it was bound), the same
    /// one at every launch after.
    pub port: u16,
    child: Option<Child>,
    command: &'static str,
    /// More arguments for the server process.
    extra: Vec<String>,
}

/// A port free now, for servers not ours that cannot listen on port 0
/// and say where (etcd advertises its URLs, docker-registry and
/// Prometheus print nothing to read back): another process may take it
/// before they bind it, which their start-up waits then report.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    pub fn start() -> Self {
        Self::start_with("up")
    }

    /// `flotilla server`: a control plane without a local agent.
    pub fn start_server() -> Self {
        Self::start_with("server")
    }

    /// `flotilla server` with more arguments.
    pub fn start_server_with(extra: &[&str]) -> Self {
        Self::start_with_args("server", extra)
    }

    /// Another `flotilla server` of `first`'s control plane (one on etcd):
    /// its data folder starts with a copy of `first`'s CA, Secret keys and
    /// tokens, as an operator copies them.
    pub fn start_server_sharing(first: &Cluster, extra: &[&str]) -> Self {
        let mut cluster = Self {
            dir: tempfile::tempdir().unwrap(),
            port: 0,
            child: None,
            command: "server",
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        std::fs::create_dir_all(cluster.data_dir()).unwrap();
        for copied in ["pki", "admin-token", "join-token"] {
            let status = Command::new("cp")
                .arg("-a")
                .arg(first.data_dir().join(copied))
                .arg(cluster.data_dir())
                .status()
                .unwrap();
            assert!(status.success(), "copying {copied}");
        }
        cluster.launch();
        cluster
    }

    /// `flotilla up` with more arguments.
    pub fn start_up_with(extra: &[&str]) -> Self {
        Self::start_with_args("up", extra)
    }

    fn start_with(command: &'static str) -> Self {
        Self::start_with_args(command, &[])
    }

    fn start_with_args(command: &'static str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        // The suites run again on etcd (scripts/e2e-on-etcd.sh): each
        // cluster under a prefix of its own on the member that script runs.
        if let Ok(endpoint) = std::env::var("FLOTILLA_E2E_ETCD") {
            if !extra.iter().any(|a| a == "--store") {
                let prefix: String = dir
                    .path()
                    .file_name()
                    .map(|n| n.to_string_lossy().replace('.', ""))
                    .unwrap_or_default();
                extra.extend(["--store".into(), format!("etcd://{endpoint}/{prefix}")]);
            }
        }
        let mut cluster = Self {
            dir,
            port: 0,
            child: None,
            command,
            extra,
        };
        cluster.launch();
        cluster
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// Starts (or restarts) `flotilla up` on the same data and port.
    pub fn launch(&mut self) {
        // Waited for below as the sign this process is up: not the one the
        // last process wrote (another process may hold the port meanwhile).
        let _ = std::fs::remove_file(self.config());
        let log = std::fs::File::create(self.dir.path().join("up.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .arg(self.command)
            .args(if self.command == "up" {
                &["--name", "node-1", "--ingress", "127.0.0.1:0"][..]
            } else {
                &[][..]
            })
            .args([
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--data-dir",
            ])
            .arg(self.data_dir())
            .args(&self.extra)
            .env("FLOTILLA_CONFIG", self.config())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        if self.port == 0 {
            let mut port = None;
            self.wait_until("the server says its port", Duration::from_secs(20), || {
                port = std::fs::read_to_string(self.config())
                    .ok()
                    .and_then(|c| port_in(&c));
                port.is_some()
            });
            self.port = port.unwrap_or_default();
        }
        let started = Instant::now();
        loop {
            let up = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && std::fs::read_to_string(self.config())
                    .is_ok_and(|c| c.contains(&format!(":{}", self.port)));
            if up {
                break;
            }
            assert!(
                self.alive(),
                "the server exited while starting; its log:\n{}",
                self.log()
            );
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "timed out after 20s waiting until the API answers; server log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.command == "up" {
            // Its agent registers the node with its first heartbeat.
            self.wait_until("the node registers", Duration::from_secs(20), || {
                self.cli(&["get", "nodes", "node-1"]).status.success()
            });
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process id (0 when not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or_default()
    }

    /// The process's peak resident set (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let pid = self.pid();
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// Whether the process is still alive.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Runs the CLI against this cluster.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(args)
            .env("FLOTILLA_CONFIG", self.config())
            .output()
            .unwrap()
    }

    /// Runs the CLI, expecting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(self.cli(args), args)
    }

    /// Runs the CLI, expecting it to fail; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        failed(self.cli(args), args)
    }

    /// `get KIND -o json` items.
    pub fn items(&self, kind: &str) -> Vec<Value> {
        let json: Value = serde_json::from_str(&self.ok(&["get", kind, "-o", "json"])).unwrap();
        json["items"].as_array().cloned().unwrap_or_default()
    }

    /// The token from the client config.
    pub fn token(&self) -> String {
        let text = std::fs::read_to_string(self.config()).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("token: "))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The cluster CA, from the client config.
    pub fn ca_pem(&self) -> String {
        let text = std::fs::read_to_string(self.config()).unwrap();
        let config: Value = serde_yaml_ng::from_str(&text).unwrap();
        config["certificateAuthority"].as_str().unwrap().to_string()
    }

    /// An API client with `token`.
    pub fn client(&self, token: &str) -> flotilla_client::Client {
        flotilla_client::Client::new(
            &self.base(),
            flotilla_client::Credentials {
                ca_pem: self.ca_pem(),
                token: Some(token.to_string()),
                identity: None,
            },
        )
        .unwrap()
    }

    /// One raw request to the API over TLS, as `who`: the status code and
    /// the body.
    pub fn raw(&self, method: &str, path: &str, who: &Who, body: &str) -> (u16, String) {
        let auth = match who {
            Who::Token(t) => format!("Authorization: Bearer {t}\r\n"),
            _ => String::new(),
        };
        let identity = match who {
            Who::Node(identity) => Some(*identity),
            _ => None,
        };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = tls_exchange(
            &format!("127.0.0.1:{}", self.port),
            "localhost",
            &self.ca_pem(),
            identity,
            request.as_bytes(),
        );
        split_answer(&answer)
    }

    /// Waits for `get events` to say `text`: Events are written after the
    /// status change they tell of, so reading them once right after that
    /// change races the writer.
    pub fn wait_for_event(&self, text: &str) -> String {
        let mut events = String::new();
        self.wait_until(
            &format!("an event saying {text:?}"),
            Duration::from_secs(20),
            || {
                events = self.ok(&["get", "events"]);
                events.contains(text)
            },
        );
        events
    }

    pub fn wait_until(&self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting until {what}; server log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default()
    }

    /// `flotilla apply -f` of `body`, written as `file` by [`Cluster::manifest`].
    pub fn apply(&self, file: &str, body: &str) -> String {
        let path = self.manifest(file, body);
        self.ok(&["apply", "-f", path.to_str().unwrap()])
    }

    /// Writes a manifest into the cluster's folder with a module path that resolves.
    pub fn manifest(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let modules = crate::support::root().join("target/sample-modules");
        std::fs::write(&path, body.replace("MODULES", modules.to_str().unwrap())).unwrap();
        path
    }
}

/// The stdout of `flotilla args` that must have succeeded.
pub fn succeeded(out: Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "flotilla {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stderr of a command that must fail.
pub fn failed(out: Output, args: &[&str]) -> String {
    assert!(!out.status.success(), "flotilla {args:?} was allowed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The port of the `server:` URL of a client config.
fn port_in(config: &str) -> Option<u16> {
    let config: Value = serde_yaml_ng::from_str(config).ok()?;
    let url = config["server"].as_str()?;
    let port = url.rsplit(':').next()?.trim_end_matches('/');
    port.parse().ok().filter(|p| *p != 0)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Who makes a raw request.
pub enum Who<'a> {
    /// No credential.
    Nobody,
    /// A bearer token.
    Token(&'a str),
    /// A client certificate (a node's).
    Node(&'a flotilla_trust::Identity),
}

/// Writes `request` to `address` over TLS (verifying `server_name` against
/// `ca_pem`, presenting `identity`), and reads until the server closes.
/// A failed handshake reads as empty.
pub fn tls_exchange(
    address: &str,
    server_name: &str,
    ca_pem: &str,
    identity: Option<&flotilla_trust::Identity>,
    request: &[u8],
) -> Vec<u8> {
    use std::io::{Read, Write};
    let config = flotilla_trust::tls::client_config(ca_pem, identity, &[b"http/1.1"]).unwrap();
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(address).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let mut answer = Vec::new();
    if tls.write_all(request).is_ok() {
        let _ = tls.read_to_end(&mut answer);
    }
    answer
}

/// A node's port (`status.nodeAddress`), as another node dials it.
pub struct NodePortOf {
    address: String,
    node: String,
    ca: String,
}

impl NodePortOf {
    /// `node`'s port, as its Node's status publishes it.
    pub fn of(c: &Cluster, node: &str) -> Self {
        let value: Value =
            serde_json::from_str(&c.ok(&["get", "node", node, "-o", "json"])).unwrap();
        Self {
            address: value["status"]["nodeAddress"].as_str().unwrap().to_string(),
            node: node.to_string(),
            ca: c.ca_pem(),
        }
    }

    /// What `identity` (another node's certificate) gets for a request for
    /// `workload`, with these extra header lines (each ending in CRLF).
    pub fn forward(
        &self,
        identity: &flotilla_trust::Identity,
        workload: &str,
        headers: &str,
    ) -> (u16, String) {
        let request = format!("GET / HTTP/1.1\r\nHost: x\r\nx-flotilla-workload: {workload}\r\n{headers}Connection: close\r\n\r\n");
        split_answer(&tls_exchange(
            &self.address,
            &format!("{}.node.flotilla", self.node),
            &self.ca,
            Some(identity),
            request.as_bytes(),
        ))
    }
}

/// An open TLS connection to a cluster's API.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

impl Cluster {
    /// Writes `request` to the API over TLS and reads the first bytes of
    /// the answer, leaving the connection open (for watches).
    pub fn open_stream(
        &self,
        request: &str,
        identity: Option<&flotilla_trust::Identity>,
    ) -> (TlsStream, String) {
        use std::io::{Read, Write};
        let config =
            flotilla_trust::tls::client_config(&self.ca_pem(), identity, &[b"http/1.1"]).unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let tcp = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = rustls::StreamOwned::new(connection, tcp);
        tls.write_all(request.as_bytes()).unwrap();
        let mut head = [0u8; 256];
        let n = tls.read(&mut head).unwrap_or(0);
        (tls, String::from_utf8_lossy(&head[..n]).into_owned())
    }
}

/// The status code and body of a raw HTTP/1.1 answer (0 if none).
pub fn split_answer(answer: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(answer);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (code, body)
}

/// Instances whose phase is `phase`.
pub fn in_phase<'a>(items: &'a [Value], phase: &str) -> Vec<&'a Value> {
    items
        .iter()
        .filter(|i| i["status"]["phase"] == phase)
        .collect()
}

/// How many nodes `flotilla get nodes` shows Ready (`NotReady` does not count).
pub fn ready_nodes(c: &Cluster) -> usize {
    c.ok(&["get", "nodes"])
        .lines()
        .skip(1)
        .filter(|line| {
            line.split_whitespace()
                .nth(1)
                .is_some_and(|status| status.split(',').any(|s| s == "Ready"))
        })
        .count()
}

pub fn names(items: &[Value]) -> Vec<String> {
    let mut n: Vec<String> = items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

pub fn files_under(dir: &Path) -> usize {
    files(dir).len()
}

/// Every file under `dir`, recursively.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}
