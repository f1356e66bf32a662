//! The audit log (`--audit-log PATH`): every write through the API and
//! every read of Secrets, as JSON lines shaped like Kubernetes' audit
//! events at the `Metadata` level — who (token id and role, or node), the
//! verb, the object, the answer's code, when; never a body.
//!
//! Lines go through a bounded queue to a writer thread, so a slow disk
//! slows the requests it records rather than losing them or growing
//! memory. The file is appended to across restarts and rotated by size
//! (`PATH.1` … `PATH.N`, the oldest dropped). Node heartbeats (a node's
//! successful write of its own Node's status, every few seconds) are left
//! out, as Kubernetes' recommended policies leave out node leases.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use super::authz::{Caller, Target};
use super::{ApiState, Kind};

/// Lines waiting for the writer at most; past it, requests wait.
const QUEUE: usize = 4096;

/// Who made a request, as the audit log names them.
#[derive(Debug, Clone)]
pub struct Who {
    /// `token:ID`, `admin`/`view` (the server's own tokens),
    /// `system:node:NAME`.
    pub user: String,
    /// The roles: `system:admin`, `system:view`, `system:nodes`,
    /// `edit:team-a`, `rolebindings` (also bound), `system:join`.
    pub groups: Vec<String>,
}

impl Who {
    /// From the authenticated caller and its token id.
    pub fn of(caller: &Caller, token: Option<&str>) -> Self {
        let user = match token {
            Some(id) => format!("token:{id}"),
            None => caller.name(),
        };
        let groups = match caller {
            Caller::Admin => vec!["system:admin".into()],
            Caller::View => vec!["system:view".into()],
            Caller::Joiner => vec!["system:join".into()],
            Caller::Node(_) => vec!["system:nodes".into()],
            Caller::Member(member) => member
                .own
                .iter()
                .map(|(role, ns)| format!("{}:{ns}", role.name()))
                .chain(["rolebindings".to_string()])
                .collect(),
        };
        Self { user, groups }
    }
}

/// Where audit lines go, and how many went.
pub struct AuditLog {
    queue: mpsc::SyncSender<String>,
    written: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

/// What was recorded, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditCounts {
    /// Lines written.
    pub written: u64,
    /// Lines the disk refused.
    pub failed: u64,
}

impl AuditLog {
    /// Opens `path` for appending (its folder is made if missing), rotated
    /// past `max_bytes` keeping `backups` older files.
    pub fn open(path: &Path, max_bytes: u64, backups: usize) -> std::io::Result<Self> {
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder)?;
        }
        let file = Rotating::open(path.to_path_buf(), max_bytes.max(4096), backups)?;
        let (queue, lines) = mpsc::sync_channel(QUEUE);
        let written = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (w, f) = (written.clone(), failed.clone());
        std::thread::Builder::new()
            .name("flotilla-audit".into())
            .spawn(move || write_forever(file, lines, &w, &f))?;
        Ok(Self {
            queue,
            written,
            failed,
        })
    }

    /// How many lines were written and refused so far.
    pub fn counts(&self) -> AuditCounts {
        AuditCounts {
            written: self.written.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    async fn send(&self, line: String) {
        match self.queue.try_send(line) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(line)) => {
                // The disk is behind: this request waits for room.
                let queue = self.queue.clone();
                let _ = tokio::task::spawn_blocking(move || queue.send(line)).await;
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn write_forever(
    mut file: Rotating,
    lines: mpsc::Receiver<String>,
    written: &AtomicU64,
    failed: &AtomicU64,
) {
    let mut failing = false;
    while let Ok(line) = lines.recv() {
        match file.write_line(&line) {
            Ok(()) => {
                written.fetch_add(1, Ordering::Relaxed);
                if failing {
                    tracing::info!("the audit log is written again");
                }
                failing = false;
            }
            Err(e) => {
                failed.fetch_add(1, Ordering::Relaxed);
                if !failing {
                    tracing::error!(
                        "cannot write the audit log {}: {e}; its lines are counted as failed (flotilla_apiserver_audit_failed_total) until the disk takes them again",
                        file.path.display()
                    );
                }
                failing = true;
            }
        }
    }
}

/// A file rotated by size.
struct Rotating {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    backups: usize,
}

impl Rotating {
    fn open(path: PathBuf, max_bytes: u64, backups: usize) -> std::io::Result<Self> {
        // Token ids, Secret names and addresses: the server's own reading.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path,
            file,
            size,
            max_bytes,
            backups,
        })
    }

    fn backup(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        let bytes = line.len() as u64 + 1;
        if self.size > 0 && self.size + bytes > self.max_bytes {
            self.rotate()?;
        }
        let mut buffer = Vec::with_capacity(line.len() + 1);
        buffer.extend_from_slice(line.as_bytes());
        buffer.push(b'\n');
        self.file.write_all(&buffer)?;
        self.size += bytes;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.sync_data()?;
        if self.backups == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.backups).rev() {
                let from = self.backup(n);
                if from.exists() {
                    std::fs::rename(&from, self.backup(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.backup(1))?;
        }
        *self = Self::open(self.path.clone(), self.max_bytes, self.backups)?;
        Ok(())
    }
}

/// Whether a request is recorded: writes, and reads of Secrets.
fn recorded(method: &Method, target: &Target) -> bool {
    let read = *method == Method::GET || *method == Method::HEAD;
    match target {
        Target::Public => false,
        Target::Object { plural, .. } if read => plural == Kind::Secret.plural(),
        _ => !read,
    }
}

/// A node's heartbeat: its successful write of its own Node's status.
fn is_heartbeat(who: Option<&Who>, method: &Method, target: &Target, ok: bool) -> bool {
    let Target::Object {
        plural,
        name: Some(name),
        subresource: Some(sub),
        ..
    } = target
    else {
        return false;
    };
    ok && *method == Method::PUT
        && plural == "nodes"
        && sub == "status"
        && who.is_some_and(|w| w.user == format!("system:node:{name}"))
}

/// What the request addressed, as Kubernetes' `objectRef`.
fn object_ref(target: &Target) -> serde_json::Value {
    match target {
        Target::Object {
            plural,
            namespace,
            name,
            subresource,
        } => json!({"resource": plural, "namespace": namespace, "name": name,
                    "subresource": subresource}),
        Target::Bucket {
            namespace, bucket, ..
        } => {
            json!({"resource": "buckets", "namespace": namespace, "name": bucket})
        }
        Target::Blob(digest) => json!({"resource": "blobs", "name": digest}),
        Target::NodeCertificate => json!({"resource": "certificates", "name": "node"}),
        Target::AccessReview => json!({"resource": "selfsubjectaccessreviews"}),
        Target::Public | Target::Unknown => json!({"resource": "other"}),
    }
}

/// Records what [`recorded`] says (a middleware, outside authentication:
/// refusals are recorded too, with their code).
pub async fn record(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let Some(log) = state.audit.as_ref() else {
        return next.run(request).await;
    };
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let target = Target::parse(&path);
    if !recorded(&method, &target) {
        return next.run(request).await;
    }
    let watch = super::auth::is_watch(&request);
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let received = flotilla_spec::meta::now_rfc3339();
    let response = next.run(request).await;
    let who = response.extensions().get::<Who>();
    let code = response.status().as_u16();
    if is_heartbeat(who, &method, &target, response.status().is_success()) {
        return response;
    }
    let named = matches!(
        &target,
        Target::Object { name: Some(_), .. } | Target::Bucket { .. }
    );
    let verb = super::rbac::verb(&method, named, watch);
    let (user, groups) = match who {
        Some(w) => (w.user.clone(), w.groups.clone()),
        None => ("system:anonymous".to_string(), Vec::new()),
    };
    let line = json!({
        "kind": "Event", "apiVersion": "audit.flotilla.dev/v1", "level": "Metadata",
        "stage": "ResponseStarted",
        "requestReceivedTimestamp": received,
        "stageTimestamp": flotilla_spec::meta::now_rfc3339(),
        "verb": verb, "requestURI": path,
        "user": {"username": user, "groups": groups},
        "sourceIPs": source.into_iter().collect::<Vec<_>>(),
        "objectRef": object_ref(&target),
        "responseStatus": {"code": code},
    });
    log.send(line.to_string()).await;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_rotates_past_its_size_keeping_its_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut file = Rotating::open(path.clone(), 100, 2).unwrap();
        for n in 0..20 {
            file.write_line(&format!("{{\"line\":{n:04}}}")).unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        let current = read(&path);
        assert!(current.len() <= 100, "{current}");
        assert!(current.ends_with("{\"line\":0019}\n"), "{current}");
        assert!(!read(&file.backup(1)).is_empty());
        assert!(!read(&file.backup(2)).is_empty());
        assert!(!file.backup(3).exists(), "only 2 backups are kept");
        // Reopened (a restart), it appends.
        let mut again = Rotating::open(path.clone(), 1000, 2).unwrap();
        again.write_line("x").unwrap();
        assert_eq!(read(&path), format!("{current}x\n"));
    }

    #[test]
    fn writes_and_secret_reads_are_recorded_not_other_reads() {
        let t = |p: &str| Target::parse(p);
        let secrets = t("/apis/flotilla.dev/v1/namespaces/a/secrets/s");
        let workloads = t("/apis/flotilla.dev/v1/namespaces/a/workloads/w");
        assert!(recorded(&Method::GET, &secrets));
        assert!(recorded(&Method::GET, &t("/apis/flotilla.dev/v1/secrets")));
        assert!(!recorded(&Method::GET, &workloads));
        assert!(recorded(&Method::DELETE, &workloads));
        assert!(recorded(
            &Method::PUT,
            &t("/kv/v1/namespaces/a/buckets/b/keys/k")
        ));
        assert!(!recorded(&Method::GET, &t("/healthz")));
        let beat = t("/apis/flotilla.dev/v1/nodes/n1/status");
        let node = Who::of(&Caller::Node("n1".into()), None);
        let other = Who::of(&Caller::Node("n2".into()), None);
        assert!(is_heartbeat(Some(&node), &Method::PUT, &beat, true));
        assert!(!is_heartbeat(Some(&node), &Method::PUT, &beat, false));
        assert!(!is_heartbeat(Some(&other), &Method::PUT, &beat, true));
        assert!(!is_heartbeat(None, &Method::PUT, &beat, true));
    }
}
