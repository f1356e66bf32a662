//! Real etcd members for a test (Debian's `etcd-server`): on loopback ports,
//! in a temporary folder, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::free_port;

/// One etcd cluster of `n` members.
pub struct Etcd {
    pub dir: tempfile::TempDir,
    members: Vec<Member>,
    tls: Option<Tls>,
}

/// The files of an etcd whose client port speaks TLS and asks for a client
/// certificate (`--client-cert-auth`), all from a CA of the test's own.
pub struct Tls {
    /// The CA that signed etcd's certificate and the client's.
    pub ca: PathBuf,
    /// A client certificate etcd takes, and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl Tls {
    fn write(dir: &Path) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let leaf = |names: Vec<String>, file: &str| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            (
                write(&format!("{file}.crt"), &cert.pem()),
                write(&format!("{file}.key"), &key.serialize_pem()),
            )
        };
        let (server_cert, server_key) =
            leaf(vec!["127.0.0.1".into(), "localhost".into()], "etcd-server");
        let (cert, key) = leaf(vec!["flotilla".into()], "etcd-client");
        Self {
            ca: write("etcd-ca.crt", &ca_pem),
            cert,
            key,
            server_cert,
            server_key,
        }
    }
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
        Self::start_with(n, false)
    }

    /// Starts one member whose client port speaks TLS only and takes only
    /// clients with a certificate from its CA ([`Etcd::tls`]).
    pub fn start_tls() -> Option<Self> {
        Self::start_with(1, true)
    }

    /// The CA and client certificate of an etcd started with TLS.
    pub fn tls(&self) -> &Tls {
        self.tls.as_ref().expect("an etcd started with TLS")
    }

    fn start_with(n: usize, tls: bool) -> Option<Self> {
        if !Path::new(ETCD).exists() {
            crate::support::cannot_run(&format!("no {ETCD} (Debian's etcd-server)"));
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let tls = tls.then(|| Tls::write(dir.path()));
        let mut etcd = Self {
            dir,
            tls,
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
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let mut command = Command::new(ETCD);
        if let Some(tls) = &self.tls {
            command
                .arg("--cert-file")
                .arg(&tls.server_cert)
                .arg("--key-file")
                .arg(&tls.server_key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = command
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
        let mut command = Command::new("etcdctl");
        if let Some(tls) = &self.tls {
            command
                .arg("--cacert")
                .arg(&tls.ca)
                .arg("--cert")
                .arg(&tls.cert)
                .arg("--key")
                .arg(&tls.key);
        }
        command
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
