//! A fleet across a real (virtual) network: the server, two agents and an
//! outsider each in a network namespace of their own, on a bridge, with
//! loopback-free addresses (10.77.0.0/24). Needs `ip netns` (root); skipped
//! with a message where the test cannot make namespaces.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The namespaces, bridged; removed (with their processes) when dropped.
pub struct Network {
    prefix: String,
    children: std::cell::RefCell<Vec<(String, Child)>>,
    /// What each process was started with, to start it again.
    started: std::cell::RefCell<std::collections::HashMap<String, (String, Vec<String>)>>,
    pub dir: tempfile::TempDir,
    /// Unmounted when dropped.
    mounts: std::cell::RefCell<Vec<crate::support::Tmpfs>>,
}

const SUBNET: &str = "10.77.0";
pub const HOSTS: [(&str, u8); 4] = [("server", 1), ("a", 2), ("b", 3), ("out", 4)];

pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Network {
    /// The namespaces; `tag` tells apart networks of one test run.
    pub fn create(tag: &str) -> Result<Self, String> {
        // Short: interface names are at most 15 characters.
        let prefix = format!("f{tag}{}", std::process::id() % 10_000);
        let network = Self {
            prefix: prefix.clone(),
            children: Default::default(),
            started: Default::default(),
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
            mounts: Default::default(),
        };
        let bridge = network.ns("br");
        ip(&["netns", "add", &bridge])?;
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &bridge, "link", "set", "br0", "up"])?;
        for (host, last) in HOSTS {
            let ns = network.ns(host);
            let outside = format!("{prefix}{host}");
            ip(&["netns", "add", &ns])?;
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &outside, "netns", &bridge])?;
            ip(&[
                "-n", &bridge, "link", "set", &outside, "master", "br0", "up",
            ])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{SUBNET}.{last}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(network)
    }

    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    pub fn address(host: &str) -> String {
        let last = HOSTS
            .iter()
            .find(|(h, _)| *h == host)
            .map(|(_, l)| *l)
            .unwrap_or(0);
        format!("{SUBNET}.{last}")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Starts `flotilla ARGS` in `host`'s namespace as `name`.
    pub fn spawn(&self, host: &str, name: &str, args: &[&str]) {
        self.started.borrow_mut().insert(
            name.to_string(),
            (
                host.to_string(),
                args.iter().map(|a| a.to_string()).collect(),
            ),
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(host),
                env!("CARGO_BIN_EXE_flotilla"),
            ])
            .args(args)
            .env("FLOTILLA_CONFIG", self.config())
            .env("FLOTILLA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.borrow_mut().push((name.to_string(), child));
    }

    /// `kill -9` of the process started as `name`.
    pub fn kill(&self, name: &str) {
        for (n, child) in self.children.borrow_mut().iter_mut() {
            if n == name {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Starts `name` again as it was first started.
    pub fn restart(&self, name: &str) {
        let (host, args) = self.started.borrow()[name].clone();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn(&host, name, &args);
    }

    /// Mounts a tmpfs of `size` (e.g. `32m`) at `path`, until dropped.
    pub fn tmpfs(&self, path: &Path, size: &str) -> Result<(), String> {
        let mounted = crate::support::Tmpfs::mount(path, size)?;
        self.mounts.borrow_mut().push(mounted);
        Ok(())
    }

    /// The CLI, from the server's namespace.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns("server"),
                env!("CARGO_BIN_EXE_flotilla"),
            ])
            .args(args)
            .env("FLOTILLA_CONFIG", self.config())
            .output()
            .unwrap()
    }

    pub fn items(&self, kind: &str) -> Vec<Value> {
        let out = self.cli(&["get", kind, "-o", "json"]);
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or_default()["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `curl ARGS` from `host`'s namespace: (exit code, output).
    pub fn curl(&self, host: &str, args: &[&str]) -> (i32, String) {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(host),
                "curl",
                "-s",
                "--max-time",
                "5",
            ])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    pub fn wait_until(&self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting until {what}\nserver:\n{}\na:\n{}\nb:\n{}",
                self.log("server"),
                self.log("a"),
                self.log("b")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    /// `flotilla server` in the server's namespace (data in `data`), and
    /// agents edge-a and edge-b in theirs, joined with its join token;
    /// returns once both nodes are Ready, with the API's `host:port`.
    pub fn start_fleet(&self, data: &Path) -> String {
        let listen = format!("{}:7443", Network::address("server"));
        self.spawn(
            "server",
            "server",
            &[
                "server",
                "--listen",
                &listen,
                "--data-dir",
                data.to_str().unwrap(),
            ],
        );
        self.wait_until(
            "the server wrote its config",
            Duration::from_secs(20),
            || {
                std::fs::read_to_string(self.config()).is_ok_and(|c| c.contains(&listen))
                    && data.join("join-token").exists()
            },
        );
        let token = data.join("join-token");
        let url = format!("https://{listen}");
        for host in ["a", "b"] {
            let ingress = format!("{}:8080", Network::address(host));
            let dir = self.dir.path().join(format!("agent-{host}"));
            let name = format!("edge-{host}");
            self.spawn(
                host,
                host,
                &[
                    "agent",
                    "--server",
                    &url,
                    "--token-file",
                    token.to_str().unwrap(),
                    "--name",
                    &name,
                    "--ingress",
                    &ingress,
                    "--data-dir",
                    dir.to_str().unwrap(),
                ],
            );
        }
        self.wait_until("two nodes are Ready", Duration::from_secs(30), || {
            ready_nodes(self) == 2
        });
        listen
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for (_, child) in self.children.get_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Unmounted after the processes using them are gone.
        self.mounts.get_mut().clear();
        for (host, _) in HOSTS {
            let _ = ip(&["netns", "del", &self.ns(host)]);
        }
        let _ = ip(&["netns", "del", &self.ns("br")]);
    }
}

pub fn ready_nodes(network: &Network) -> usize {
    network
        .items("nodes")
        .iter()
        .filter(|n| n["status"]["ready"] == true)
        .count()
}

const HELLO: &str = r#"
apiVersion: flotilla.dev/v1
kind: Workload
metadata: {name: hello}
spec:
  module: {source: "file:MODULES/http-hello.component.wasm"}
  execution: http
  replicas: 1
  routes: [{host: hello.local, pathPrefix: /}]
  nodeSelector: {flotilla.dev/hostname: edge-b}
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_fleet_across_network_namespaces_forwards_over_tls_and_keeps_outsiders_out() {
    let network = match Network::create("n") {
        Ok(network) => network,
        Err(e) => {
            crate::support::cannot_run(&format!(
                "cannot make network namespaces here ({e}); run as root with iproute2"
            ));
            return;
        }
    };
    let data = network.dir.path().join("server-data");
    let listen = network.start_fleet(&data);
    for node in network.items("nodes") {
        let port = node["status"]["nodeAddress"].as_str().unwrap_or_default();
        assert!(
            port.starts_with("10.77.0."),
            "node ports listen on the network: {node}"
        );
    }
    let modules = crate::support::root().join("target/sample-modules");
    let manifest = write(
        network.dir.path(),
        "hello.yaml",
        &HELLO.replace("MODULES", modules.to_str().unwrap()),
    );
    let out = network.cli(&["apply", "-f", manifest.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hello = |via: &str| {
        network.curl(
            "out",
            &[
                "-H",
                "Host: hello.local",
                &format!("http://{}:8080/", Network::address(via)),
            ],
        )
    };
    // Through edge-a's ingress, forwarded to edge-b's node port over TLS.
    network.wait_until(
        "edge-a forwards to hello on edge-b",
        Duration::from_secs(30),
        || hello("a").1.contains("hello from flotilla"),
    );
    assert!(hello("b").1.contains("hello from flotilla"));

    // The outsider reaches the ingress, but neither the API (no credential:
    // 401, no data) nor a node port (no certificate: no TLS session).
    let (_, api) = network.curl(
        "out",
        &[
            "-k",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("https://{listen}/apis/flotilla.dev/v1/nodes"),
        ],
    );
    assert_eq!(api, "401");
    let (_, plain) = network.curl(
        "out",
        &[&format!("http://{listen}/apis/flotilla.dev/v1/nodes")],
    );
    assert!(
        plain.contains("HTTPS only") && !plain.contains("items"),
        "{plain}"
    );
    for node in network.items("nodes") {
        let port = node["status"]["nodeAddress"].as_str().unwrap().to_string();
        let (code, body) = network.curl(
            "out",
            &["-k", &format!("https://{port}/.flotilla/logs/default/x")],
        );
        assert_ne!(code, 0, "a node port answered an outsider: {body}");
        assert!(body.is_empty(), "{body}");
    }

    // kill -9 of edge-b: hello runs on edge-a (its node selector allows only
    // edge-b, so drop it first), served through edge-a's ingress.
    let out = network.cli(&["patch", "workload", "hello", "-p", r#"{"spec":{"nodeSelector":null,"replicas":2,"placement":{"strategy":"spread"},"resources":{"requests":{"memory":"10Mi"}}}}"#]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    network.wait_until("a replica on each node", Duration::from_secs(30), || {
        let mut nodes: Vec<String> = network
            .items("instances")
            .iter()
            .filter(|i| i["status"]["ready"] == true)
            .map(|i| {
                i["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        nodes.sort();
        nodes == ["edge-a", "edge-b"]
    });
    network.kill("b");
    network.wait_until(
        "both replicas run on edge-a",
        Duration::from_secs(30),
        || {
            let items = network.items("instances");
            items.len() == 2
                && items
                    .iter()
                    .all(|i| i["spec"]["nodeName"] == "edge-a" && i["status"]["ready"] == true)
        },
    );
    for _ in 0..5 {
        assert!(hello("a").1.contains("hello from flotilla"));
    }
}
