//! A `flotilla up` process for a test: its own data folder, port and client
//! config; killed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    command: &'static str,
    /// More arguments for the server process.
    extra: Vec<String>,
}

fn free_port() -> u16 {
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

    /// `flotilla up` with more arguments.
    pub fn start_up_with(extra: &[&str]) -> Self {
        Self::start_with_args("up", extra)
    }

    fn start_with(command: &'static str) -> Self {
        Self::start_with_args(command, &[])
    }

    fn start_with_args(command: &'static str, extra: &[&str]) -> Self {
        let mut cluster = Self {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            child: None,
            command,
            extra: extra.iter().map(|a| a.to_string()).collect(),
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
        self.wait_until("the API answers", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.config().exists()
        });
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process's peak resident set (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let pid = self.child.as_ref().map(|c| c.id()).unwrap_or_default();
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
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "flotilla {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
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
        format!("http://127.0.0.1:{}", self.port)
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

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill();
    }
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
