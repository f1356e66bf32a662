//! The audit log (`--audit-log PATH`): every write through the API and
//! every read of Secrets, as JSON lines shaped like Kubernetes' audit
//! events at the `Metadata` level — who (token id and role, or node), the
//! verb, the object, the answer's code, when; never a body.
//!
//! Lines go through a bounded queue to a writer thread, so a slow disk
//! slows the requests it records rather than growing memory — for at most
//! [`MOST_WAIT`] each: a disk that hangs does not hang the API, and what
//! it could not take is counted (`flotilla_apiserver_audit_dropped_total`)
//! and said in the server's log. The writer syncs the file whenever it
//! has caught up (one sync for a burst), and a line torn by a crash is
//! ended before the next is appended. The file is appended to across
//! restarts and rotated by size (`PATH.1` … `PATH.N`, the oldest dropped).
//! Node heartbeats (a node's successful write of its own Node's status,
//! every few seconds) are left out, as Kubernetes' recommended policies
//! leave out node leases. Refusals (401, 403) are recorded whatever was
//! asked; unauthenticated ones at most [`ANONYMOUS_PER_SECOND`] a second,
//! so a flood of bad tokens cannot push the real records out of the
//! rotation (the rest are counted as dropped).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use super::authz::{Caller, Target};
use super::{ApiState, Kind};

/// Lines waiting for the writer at most; past it, requests wait.
const QUEUE: usize = 4096;
/// The longest a request waits for room in the queue.
const MOST_WAIT: Duration = Duration::from_secs(5);
/// Unauthenticated refusals recorded in one second, at most.
const ANONYMOUS_PER_SECOND: u32 = 20;

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
    queue: mpsc::Sender<String>,
    written: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    dropped: AtomicU64,
    /// The second, and how many anonymous lines it has had.
    anonymous: Mutex<(u64, u32)>,
}

/// What was recorded, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditCounts {
    /// Lines written.
    pub written: u64,
    /// Lines the disk refused.
    pub failed: u64,
    /// Lines not queued: the writer was behind for too long, or past the
    /// rate of unauthenticated refusals.
    pub dropped: u64,
}

impl AuditLog {
    /// Opens `path` for appending (its folder is made if missing), rotated
    /// past `max_bytes` keeping `backups` older files.
    pub fn open(path: &Path, max_bytes: u64, backups: usize) -> std::io::Result<Self> {
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder)?;
        }
        let file = Rotating::open(path.to_path_buf(), max_bytes.max(4096), backups)?;
        let (queue, lines) = mpsc::channel(QUEUE);
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
            dropped: AtomicU64::new(0),
            anonymous: Mutex::new((0, 0)),
        })
    }

    /// How many lines were written and refused so far.
    pub fn counts(&self) -> AuditCounts {
        AuditCounts {
            written: self.written.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    async fn send(&self, line: String) {
        match tokio::time::timeout(MOST_WAIT, self.queue.send(line)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::error!(
                        "the audit log's disk has been behind for {MOST_WAIT:?}: lines are dropped and counted (flotilla_apiserver_audit_dropped_total) while it is"
                    );
                }
            }
        }
    }

    /// Whether one more unauthenticated line fits this second's share.
    fn anonymous_fits(&self) -> bool {
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut window = self.anonymous.lock().unwrap_or_else(|e| e.into_inner());
        if window.0 != second {
            *window = (second, 0);
        }
        window.1 += 1;
        if window.1 <= ANONYMOUS_PER_SECOND {
            true
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

fn write_forever(
    mut file: Rotating,
    mut lines: mpsc::Receiver<String>,
    written: &AtomicU64,
    failed: &AtomicU64,
) {
    let mut failing = false;
    while let Some(line) = lines.blocking_recv() {
        // Caught up: one sync for the burst just written.
        let written_now = file.write_line(&line).and_then(|()| {
            if lines.is_empty() {
                file.file.sync_data()
            } else {
                Ok(())
            }
        });
        match written_now {
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
        let mut size = file.metadata()?.len();
        if size > 0 && !ends_with_newline(&path)? {
            // A line cut short by a crash: ended, so the next one parses.
            (&file).write_all(b"\n")?;
            size += 1;
        }
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

/// Whether `path`'s last byte is a newline.
fn ends_with_newline(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path)?;
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// Whether a request is recorded whatever its answer: writes, and reads
/// of Secrets and tokens (refusals are recorded besides).
fn recorded(method: &Method, target: &Target) -> bool {
    let read = *method == Method::GET || *method == Method::HEAD;
    match target {
        Target::Public => false,
        Target::Object { plural, .. } if read => {
            plural == Kind::Secret.plural() || plural == Kind::Token.plural()
        }
        _ => !read,
    }
}

/// Whether an answer is a refusal of who asked (recorded whatever was asked).
fn refused(code: u16) -> bool {
    code == 401 || code == 403
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
    if target == Target::Public {
        return next.run(request).await;
    }
    let always = recorded(&method, &target);
    let watch = super::auth::is_watch(&request);
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let received = flotilla_spec::meta::now_rfc3339();
    let response = next.run(request).await;
    let who = response.extensions().get::<Who>();
    let code = response.status().as_u16();
    if !always && !refused(code)
        || is_heartbeat(who, &method, &target, response.status().is_success())
    {
        return response;
    }
    if who.is_none() && !log.anonymous_fits() {
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
        // A line torn by a crash is ended before the next.
        drop(again);
        std::fs::write(&path, "{\"whole\":1}\n{\"torn").unwrap();
        let mut after_crash = Rotating::open(path.clone(), 1000, 2).unwrap();
        after_crash.write_line("{\"next\":2}").unwrap();
        assert_eq!(read(&path), "{\"whole\":1}\n{\"torn\n{\"next\":2}\n");
    }

    #[tokio::test]
    async fn unauthenticated_lines_are_kept_to_a_rate_and_counted_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("audit.log"), 1 << 20, 1).unwrap();
        let fits = (0..ANONYMOUS_PER_SECOND * 3)
            .filter(|_| log.anonymous_fits())
            .count() as u32;
        // One second or two (the loop may cross a second's edge).
        assert!(
            (ANONYMOUS_PER_SECOND..=ANONYMOUS_PER_SECOND * 2).contains(&fits),
            "{fits}"
        );
        assert_eq!(
            log.counts().dropped,
            u64::from(ANONYMOUS_PER_SECOND * 3 - fits)
        );
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
        assert!(recorded(&Method::GET, &t("/apis/flotilla.dev/v1/tokens")));
        assert!(refused(401) && refused(403) && !refused(404) && !refused(200));
        let beat = t("/apis/flotilla.dev/v1/nodes/n1/status");
        let node = Who::of(&Caller::Node("n1".into()), None);
        let other = Who::of(&Caller::Node("n2".into()), None);
        assert!(is_heartbeat(Some(&node), &Method::PUT, &beat, true));
        assert!(!is_heartbeat(Some(&node), &Method::PUT, &beat, false));
        assert!(!is_heartbeat(Some(&other), &Method::PUT, &beat, true));
        assert!(!is_heartbeat(None, &Method::PUT, &beat, true));
    }
}
