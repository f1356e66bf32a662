//! Real etcd members for a test (Debian's `etcd-server`): on loopback ports,
//! in a temporary folder, killed when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::free_port;

/// One etcd cluster of `n` members.
pub struct Etcd {
    pub dir: tempfile::TempDir,
    members: Vec<Member>,
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

const ETCD: &str = "/usr/bin/etcd";

impl Etcd {
    /// Starts `n` members; `None` (with a message) where etcd is not
    /// installed, outside CI (CI installs it: there, its absence fails).
    pub fn start(n: usize) -> Option<Self> {
        if !Path::new(ETCD).exists() {
            crate::support::cannot_run(&format!("no {ETCD} (Debian's etcd-server)"));
            return None;
        }
        let mut etcd = Self {
            dir: tempfile::tempdir().unwrap(),
            members: (0..n)
                .map(|i| Member {
                    name: format!("m{i}"),
                    client: free_port(),
                    peer: free_port(),
                    child: None,
                })
                .collect(),
        };
        for i in 0..n {
            etcd.launch(i);
        }
        etcd.wait_healthy(Duration::from_secs(30));
        Some(etcd)
    }

    /// `etcd://…` of every member, with `prefix`.
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}/{prefix}", self.endpoints())
    }

    /// `host:port,…` of every member.
    pub fn endpoints(&self) -> String {
        let all: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect();
        all.join(",")
    }

    /// Starts (or restarts, on its data) member `i`.
    pub fn launch(&mut self, i: usize) {
        let cluster: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect();
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))
            .unwrap();
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let child = Command::new(ETCD)
            .args(["--name", &m.name, "--data-dir"])
            .arg(self.dir.path().join(&m.name))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &cluster.join(",")])
            .args(["--initial-cluster-token", "flotilla-test"])
            // Loopback: elections in well under a second.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.members[i].child = Some(child);
    }

    /// `kill -9` of member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `etcdctl` against every member.
    pub fn ctl(&self, args: &[&str]) -> std::process::Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoints(), "--command-timeout", "3s"])
            .args(args)
            .output()
            .unwrap()
    }

    /// Waits until the members that run agree on a leader.
    pub fn wait_healthy(&self, limit: Duration) {
        let started = Instant::now();
        loop {
            let out = self.ctl(&["endpoint", "health", "--cluster"]);
            if out.status.success() {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "etcd did not become healthy: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
