//! A [`Store`] on etcd (3.4 or newer), for control planes of several
//! servers: every server reads and writes the same keys, and any of them
//! can be lost.
//!
//! Layout under the prefix (`/flotilla/` unless the URL names another):
//! `o/KIND/NAMESPACE/NAME` holds an object's JSON (without its
//! `resourceVersion`, which is the key's etcd mod revision), `b/…` chunked
//! modules ([`blobs`]), `leader` the controllers' leader ([`crate::leader`]).
//!
//! Writes are single-key transactions: a create is "only if the key has no
//! create revision", a conditional update "only if its mod revision is the
//! expected one". A write returns once this server's watch cache
//! ([`watch_cache`]) has seen it, so whoever wrote reads it back (the
//! controllers rely on that within a pass).
//!
//! The store is synchronous (the SQLite store is, and its callers are
//! written for it): each call runs on a small runtime of the store's own
//! and the caller's thread waits, as it would for SQLite's disk.

mod advice;
pub mod blobs;
pub mod kv;
mod watch_cache;

pub use blobs::EtcdBlobs;
pub use kv::EtcdKv;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse,
};
use serde_json::Value;

use super::{Change, Listing, Store, StoreError};
use advice::{advice, ClientTls};
use watch_cache::WatchCache;

/// How long one etcd request may take before the store is called
/// unavailable (a lost quorum makes requests hang, not fail).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a write waits for this server's watch cache to see it.
const READ_YOUR_WRITE: Duration = Duration::from_secs(5);

/// Largest object accepted (etcd refuses requests past 1.5 MiB by default).
pub const MAX_OBJECT_BYTES: usize = 1024 * 1024;

/// Where the store is: `etcd://HOST:PORT[,HOST:PORT…][/PREFIX]`, with TLS
/// files for etcd's client port when it wants them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTarget {
    /// `host:port` of each member.
    pub endpoints: Vec<String>,
    /// Key prefix (ends with `/`).
    pub prefix: String,
    /// TLS: CA, client certificate and key (PEM files).
    pub tls: Option<EtcdTls>,
}

/// TLS material for etcd (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// The CA that signed etcd's serving certificates.
    pub ca: Vec<u8>,
    /// This server's client certificate and key, when etcd wants one.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl EtcdTarget {
    /// Parses `etcd://host:port[,host:port…][/prefix]`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("etcd://").ok_or_else(|| {
            format!("{url:?} is not an etcd URL: write etcd://HOST:2379[,HOST:2379…]")
        })?;
        let (hosts, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let endpoints: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        if endpoints.is_empty() {
            return Err(format!(
                "{url:?} names no etcd member: write etcd://HOST:2379"
            ));
        }
        for endpoint in &endpoints {
            let port = endpoint.rsplit_once(':').map(|(_, p)| p);
            if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
                return Err(format!(
                    "{endpoint:?} in {url:?} needs a port: HOST:2379 (etcd's client port)"
                ));
            }
        }
        let prefix = prefix.trim_matches('/');
        if prefix.contains("//") {
            return Err(format!("the key prefix in {url:?} has an empty segment"));
        }
        let prefix = if prefix.is_empty() {
            "/flotilla/".to_string()
        } else {
            format!("/{prefix}/")
        };
        Ok(Self {
            endpoints,
            prefix,
            tls: None,
        })
    }

    /// The members as this server shows them (with the scheme used).
    pub fn describe(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let members: Vec<String> = self
            .endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect();
        format!("etcd at {} (prefix {})", members.join(","), self.prefix)
    }
}

/// What every handle on one etcd store shares.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) prefix: String,
    pub(crate) describe: String,
    tls: ClientTls,
    cache: Arc<WatchCache>,
}

impl Shared {
    /// Runs the request `work` makes on the store's runtime and waits for
    /// it. A request that failed for a passing reason (its member is down:
    /// the client spreads requests over the members, and notices a dead one
    /// only by trying; or etcd is electing a leader) is made again, to the
    /// same or another member, until [`REQUEST_TIMEOUT`]: losing a
    /// minority of members is not seen.
    pub(crate) fn block<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send,
    {
        let outcome = wait(&self.runtime, async move {
            let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
            let mut pause = Duration::from_millis(20);
            loop {
                match tokio::time::timeout_at(deadline, work()).await {
                    Err(_) => return Err(Failure::TimedOut),
                    Ok(Err(e)) if passing(&e) && tokio::time::Instant::now() + pause < deadline => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(500));
                    }
                    Ok(outcome) => return outcome.map_err(Failure::Etcd),
                }
            }
        });
        match outcome {
            Some(Ok(value)) => Ok(value),
            Some(Err(failure)) => Err(self.unavailable(failure)),
            None => Err(StoreError::Backend("the etcd request was dropped".into())),
        }
    }

    fn unavailable(&self, failure: Failure) -> StoreError {
        let why = match failure {
            Failure::TimedOut => format!("no answer within {REQUEST_TIMEOUT:?}"),
            Failure::Etcd(e) => e.to_string(),
        };
        if why.contains("database space exceeded") {
            return StoreError::Full(format!(
                "{} is out of space ({why}): compact and defragment it (etcdctl compact, etcdctl defrag) or raise its --quota-backend-bytes, then etcdctl alarm disarm",
                self.describe
            ));
        }
        StoreError::Unavailable(format!(
            "{} cannot be reached or has no quorum ({why}): {}",
            self.describe,
            advice(&why, self.tls)
        ))
    }

    fn object_key(&self, kind: &str, namespace: &str, name: &str) -> Vec<u8> {
        format!("{}o/{kind}/{namespace}/{name}", self.prefix).into_bytes()
    }

    pub(crate) fn key(&self, suffix: &str) -> Vec<u8> {
        format!("{}{suffix}", self.prefix).into_bytes()
    }

    /// One key's value and mod revision (`None` and 0 when absent).
    pub(crate) fn value(&self, key: Vec<u8>) -> Result<(Option<Vec<u8>>, i64), StoreError> {
        let kv = self.client.kv_client();
        let mut response = self.block(move || {
            let (mut kv, key) = (kv.clone(), key.clone());
            async move { kv.get(key, None).await }
        })?;
        Ok(match response.take_kvs().into_iter().next() {
            Some(found) => {
                let revision = found.mod_revision();
                (Some(found.into_key_value().1), revision)
            }
            None => (None, 0),
        })
    }
}

/// Runs `work` on `runtime` and blocks this thread until it is done (from
/// any thread, the server's async workers included: a runtime's own
/// `block_on` refuses to run inside another runtime).
fn wait<T: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    work: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(work.await);
    });
    // A lost quorum must not freeze the API's health checks and streams.
    super::off_worker(|| rx.recv().ok())
}

/// Whether a request failed for a reason that passes (a member down, an
/// election under way) and may be made again: reads are safe to repeat,
/// and every write is a compare-and-swap transaction, so a repeated write
/// that had in fact been applied is refused rather than applied twice (and
/// [`EtcdStore::create`] and [`EtcdStore::update`] recognise their own
/// bytes).
fn passing(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            status.code() == tonic::Code::Unavailable
                && ["connect", "leader changed", "no leader", "timed out"]
                    .iter()
                    .any(|m| status.message().contains(m))
        }
        _ => false,
    }
}

enum Failure {
    Etcd(etcd_client::Error),
    TimedOut,
}

/// The etcd store. Cloning gives another handle on the same store;
/// [`EtcdStore::fenced`] one whose writes hold only while a lease leads.
#[derive(Clone)]
pub struct EtcdStore {
    shared: Arc<Shared>,
    /// Writes carry "the leader key is held by this lease": a leader that
    /// lost its lease cannot write any more (see [`crate::leader`]).
    fence: Option<i64>,
    notify: tokio::sync::watch::Receiver<u64>,
    /// For a fenced handle (the controllers'): the newest revision it
    /// wrote. Its reads of changes wait until the watch cache has it, so
    /// the controllers never act on a view without their own last writes
    /// (they would create the instances they just created again).
    written: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl EtcdStore {
    /// Connects (the members need not be up yet: requests fail with
    /// [`StoreError::Unavailable`] until they are) and starts the watch
    /// cache.
    pub fn connect(target: &EtcdTarget) -> Result<Self, StoreError> {
        // The store's own runtime lives as long as the process: dropping it
        // inside the server's runtime would panic, and nothing closes it.
        let runtime: &'static tokio::runtime::Runtime = Box::leak(Box::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("etcd-store")
                .enable_all()
                .build()
                .map_err(|e| StoreError::Backend(format!("starting the etcd client: {e}")))?,
        ));
        let mut options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true)
            // A member cut off from the majority answers "no leader" (and
            // its watches end) rather than serving a stale, silent view.
            .with_require_leader(true);
        let scheme = match &target.tls {
            Some(tls) => {
                let mut config = etcd_client::TlsOptions::new()
                    .ca_certificate(etcd_client::Certificate::from_pem(&tls.ca));
                if let Some((cert, key)) = &tls.identity {
                    config = config.identity(etcd_client::Identity::from_pem(cert, key));
                }
                options = options.with_tls(config);
                "https"
            }
            None => "http",
        };
        let endpoints: Vec<String> = target
            .endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect();
        let describe = target.describe();
        let tls = match &target.tls {
            None => ClientTls::Off,
            Some(EtcdTls { identity: None, .. }) => ClientTls::Anonymous,
            Some(_) => ClientTls::WithCertificate,
        };
        let client = wait(runtime.handle(), Client::connect(endpoints, Some(options)))
            .ok_or_else(|| StoreError::Backend("the etcd client stopped".into()))?
            .map_err(|e| {
                let why = e.to_string();
                StoreError::Unavailable(format!(
                    "cannot connect to {describe} ({why}): {}",
                    advice(&why, tls)
                ))
            })?;
        let (cache, notify) = WatchCache::start(runtime.handle(), client.clone(), &target.prefix);
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                runtime: runtime.handle().clone(),
                prefix: target.prefix.clone(),
                describe,
                tls,
                cache,
            }),
            fence: None,
            notify,
            written: None,
        })
    }

    /// A handle whose writes succeed only while `lease` holds the leader
    /// key.
    pub fn fenced(&self, lease: i64) -> Self {
        Self {
            fence: Some(lease),
            written: Some(Default::default()),
            ..self.clone()
        }
    }

    /// The etcd client (the leader election and the blob mirror use it).
    pub fn client(&self) -> Client {
        self.shared.client.clone()
    }

    /// The key the controllers' leader holds.
    pub fn leader_key(&self) -> Vec<u8> {
        self.shared.key("leader")
    }

    /// What this store is, for messages.
    pub fn describe(&self) -> &str {
        &self.shared.describe
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Compacts etcd's history up to `revision` (watchers older than that
    /// get 410 Gone and list again).
    pub fn compact(&self, revision: u64) -> Result<(), StoreError> {
        let kv = self.shared.client.kv_client();
        self.shared.block(move || {
            let mut kv = kv.clone();
            async move {
                kv.compact(revision as i64, None).await?;
                Ok(())
            }
        })
    }

    /// Runs a one-key transaction: `compares` (plus the fence) then `op`;
    /// otherwise reads the key (and the leader key, to tell a lost fence).
    fn transact(
        &self,
        key: Vec<u8>,
        mut compares: Vec<Compare>,
        op: TxnOp,
    ) -> Result<Transacted, StoreError> {
        if let Some(lease) = self.fence {
            compares.push(Compare::lease(self.leader_key(), CompareOp::Equal, lease));
        }
        let txn = Txn::new().when(compares).and_then(vec![op]).or_else(vec![
            TxnOp::get(key, None),
            TxnOp::get(self.leader_key(), None),
        ]);
        let kv = self.shared.client.kv_client();
        let response = self.shared.block(move || {
            let (mut kv, txn) = (kv.clone(), txn.clone());
            async move { kv.txn(txn).await }
        })?;
        let revision = response.header().map(|h| h.revision() as u64).unwrap_or(0);
        let mut responses = response.op_responses().into_iter();
        if response.succeeded() {
            let previous = match responses.next() {
                Some(TxnOpResponse::Delete(mut d)) => d.take_prev_kvs().into_iter().next(),
                _ => None,
            };
            return Ok(Transacted::Done { revision, previous });
        }
        let current = match responses.next() {
            Some(TxnOpResponse::Get(mut g)) => g.take_kvs().into_iter().next(),
            _ => None,
        };
        let leader_lease = match responses.next() {
            Some(TxnOpResponse::Get(g)) => g.kvs().first().map(|kv| kv.lease()),
            _ => None,
        };
        if let Some(lease) = self.fence.filter(|l| leader_lease != Some(*l)) {
            return Err(StoreError::Fenced(format!(
                "this server's controllers no longer lead (lease {lease:x} does not hold {}): another server's do",
                String::from_utf8_lossy(&self.leader_key())
            )));
        }
        Ok(Transacted::Refused(current))
    }

    /// Waits until the watch cache has seen `revision` (bounded).
    fn settle(&self, revision: u64) {
        if let Some(written) = &self.written {
            written.fetch_max(revision, std::sync::atomic::Ordering::Relaxed);
        }
        let mut notify = self.notify.clone();
        let _ = wait(&self.shared.runtime, async move {
            let _ =
                tokio::time::timeout(READ_YOUR_WRITE, notify.wait_for(|seen| *seen >= revision))
                    .await;
        });
    }
}

/// Compacts etcd's history every `every`, up to the revision of one
/// period before (as the Kubernetes API server does): watches that far
/// behind get 410 Gone and list again. Run by the leader only.
pub async fn compact_forever(store: EtcdStore, every: Duration) {
    let mut previous: Option<u64> = None;
    loop {
        tokio::time::sleep(every).await;
        let handle = store.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let now = handle.revision()?;
            if let Some(revision) = previous.filter(|r| *r > 1) {
                handle.compact(revision)?;
            }
            Ok::<_, StoreError>(now)
        })
        .await;
        match outcome {
            Ok(Ok(now)) => previous = Some(now),
            Ok(Err(e)) => tracing::warn!("compacting etcd: {e}"),
            Err(e) => tracing::warn!("compacting etcd: {e}"),
        }
    }
}

enum Transacted {
    Done {
        revision: u64,
        previous: Option<etcd_client::KeyValue>,
    },
    Refused(Option<etcd_client::KeyValue>),
}

/// The JSON as stored: without the resourceVersion (the mod revision is).
fn body(mut object: Value) -> Result<Vec<u8>, StoreError> {
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
    let bytes = serde_json::to_vec(&object).map_err(|e| StoreError::Backend(e.to_string()))?;
    if bytes.len() > MAX_OBJECT_BYTES {
        return Err(StoreError::Backend(format!(
            "the object is {} bytes, past the {MAX_OBJECT_BYTES} an etcd store keeps: make it smaller",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// An object read back, stamped with `revision`.
pub(crate) fn stamped(value: &[u8], revision: u64) -> Result<Value, StoreError> {
    let mut object: Value = serde_json::from_slice(value)
        .map_err(|e| StoreError::Backend(format!("an object in etcd does not decode: {e}")))?;
    let meta = object
        .as_object_mut()
        .and_then(|o| o.get_mut("metadata"))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| StoreError::Backend("an object in etcd has no metadata".into()))?;
    meta.insert("resourceVersion".into(), revision.to_string().into());
    Ok(object)
}

impl Store for EtcdStore {
    fn get(&self, kind: &str, namespace: &str, name: &str) -> Result<Option<Value>, StoreError> {
        let _timer = crate::telemetry::time_store("get");
        let key = self.shared.object_key(kind, namespace, name);
        let kv = self.shared.client.kv_client();
        let mut response = self.shared.block(move || {
            let (mut kv, key) = (kv.clone(), key.clone());
            async move { kv.get(key, None).await }
        })?;
        match response.take_kvs().into_iter().next() {
            Some(found) => Ok(Some(stamped(found.value(), found.mod_revision() as u64)?)),
            None => Ok(None),
        }
    }

    fn list(&self, kind: &str, namespace: Option<&str>) -> Result<Listing, StoreError> {
        let _timer = crate::telemetry::time_store("list");
        let prefix = match namespace {
            Some(ns) => format!("{}o/{kind}/{ns}/", self.shared.prefix),
            None => format!("{}o/{kind}/", self.shared.prefix),
        };
        let kv = self.shared.client.kv_client();
        let mut response = self.shared.block(move || {
            let (kv, prefix) = (kv.clone(), prefix.clone());
            async move {
                kv.max_decoding_message_size(usize::MAX)
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            }
        })?;
        let revision = response.header().map(|h| h.revision() as u64).unwrap_or(0);
        let mut items = response
            .take_kvs()
            .iter()
            .map(|kv| stamped(kv.value(), kv.mod_revision() as u64))
            .collect::<Result<Vec<_>, _>>()?;
        // By namespace, then name (key order would put `team-a` before
        // `team`, as `-` sorts before `/`).
        items.sort_by(|a, b| {
            let key = |o: &Value| {
                let meta = &o["metadata"];
                (
                    meta["namespace"].as_str().unwrap_or_default().to_string(),
                    meta["name"].as_str().unwrap_or_default().to_string(),
                )
            };
            key(a).cmp(&key(b))
        });
        Ok(Listing { items, revision })
    }

    fn create(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        object: Value,
    ) -> Result<Value, StoreError> {
        let _timer = crate::telemetry::time_store("create");
        let key = self.shared.object_key(kind, namespace, name);
        let bytes = body(object)?;
        let compare = Compare::create_revision(key.clone(), CompareOp::Equal, 0);
        let op = TxnOp::put(key.clone(), bytes.clone(), None);
        match self.transact(key, vec![compare], op)? {
            Transacted::Done { revision, .. } => {
                self.settle(revision);
                stamped(&bytes, revision)
            }
            // Our own write, made again after an answer was lost.
            Transacted::Refused(Some(current)) if current.value() == bytes.as_slice() => {
                let revision = current.mod_revision() as u64;
                self.settle(revision);
                stamped(&bytes, revision)
            }
            Transacted::Refused(_) => Err(StoreError::already_exists(kind, namespace, name)),
        }
    }

    fn update(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        object: Value,
        expected: Option<u64>,
    ) -> Result<Value, StoreError> {
        let _timer = crate::telemetry::time_store("update");
        let key = self.shared.object_key(kind, namespace, name);
        let bytes = body(object)?;
        let compare = match expected {
            Some(revision) => Compare::mod_revision(key.clone(), CompareOp::Equal, revision as i64),
            None => Compare::create_revision(key.clone(), CompareOp::Greater, 0),
        };
        let op = TxnOp::put(key.clone(), bytes.clone(), Some(PutOptions::new()));
        match self.transact(key, vec![compare], op)? {
            Transacted::Done { revision, .. } => {
                self.settle(revision);
                stamped(&bytes, revision)
            }
            Transacted::Refused(None) => Err(StoreError::not_found(kind, namespace, name)),
            // Our own write, made again after an answer was lost.
            Transacted::Refused(Some(current))
                if current.value() == bytes.as_slice()
                    && expected.is_some_and(|e| current.mod_revision() as u64 > e) =>
            {
                let revision = current.mod_revision() as u64;
                self.settle(revision);
                stamped(&bytes, revision)
            }
            Transacted::Refused(Some(current)) => Err(StoreError::Conflict {
                kind: kind.into(),
                namespace: namespace.into(),
                name: name.into(),
                current: current.mod_revision() as u64,
                given: expected.unwrap_or_default(),
            }),
        }
    }

    fn delete(&self, kind: &str, namespace: &str, name: &str) -> Result<Value, StoreError> {
        let _timer = crate::telemetry::time_store("delete");
        let key = self.shared.object_key(kind, namespace, name);
        let compare = Compare::create_revision(key.clone(), CompareOp::Greater, 0);
        let op = TxnOp::delete(key.clone(), Some(DeleteOptions::new().with_prev_key()));
        match self.transact(key, vec![compare], op)? {
            Transacted::Done {
                revision,
                previous: Some(previous),
            } => {
                self.settle(revision);
                stamped(previous.value(), revision)
            }
            Transacted::Done { previous: None, .. } | Transacted::Refused(_) => {
                Err(StoreError::not_found(kind, namespace, name))
            }
        }
    }

    fn changes_since(&self, revision: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let _timer = crate::telemetry::time_store("changes");
        let written = self
            .written
            .as_ref()
            .map_or(0, |w| w.load(std::sync::atomic::Ordering::Relaxed));
        if *self.notify.borrow() < written {
            self.settle(written);
            if *self.notify.borrow() < written {
                return Err(StoreError::Unavailable(format!(
                    "this server's watch of {} is behind its own writes (revision {written}): waiting for it",
                    self.shared.describe
                )));
            }
        }
        self.shared.cache.since(revision, limit)
    }

    fn revision(&self) -> Result<u64, StoreError> {
        let key = self.shared.key("o/");
        let kv = self.shared.client.kv_client();
        let response = self.shared.block(move || {
            let (mut kv, key) = (kv.clone(), key.clone());
            async move {
                kv.get(key, Some(GetOptions::new().with_prefix().with_count_only()))
                    .await
            }
        })?;
        Ok(response.header().map(|h| h.revision() as u64).unwrap_or(0))
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.notify.clone()
    }

    // Modules live in the blob folder, mirrored into etcd by
    // [`blobs::EtcdBlobs`]; the store itself keeps none (these exist for the
    // SQLite store's old layout).
    fn put_blob(&self, _digest: &str, _bytes: &[u8]) -> Result<(), StoreError> {
        Err(StoreError::Backend(
            "an etcd store keeps modules through the blob mirror, not in the store".into(),
        ))
    }

    fn get_blob(&self, _digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }

    fn has_blob(&self, _digest: &str) -> Result<bool, StoreError> {
        Ok(false)
    }

    fn blob_digests(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    fn delete_blob(&self, _digest: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_members_ports_and_a_prefix() {
        let t = EtcdTarget::parse("etcd://127.0.0.1:2379,10.0.0.2:2379").unwrap();
        assert_eq!(t.endpoints, ["127.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(t.prefix, "/flotilla/");
        let t = EtcdTarget::parse("etcd://e:2379/teams/edge/").unwrap();
        assert_eq!(t.prefix, "/teams/edge/");
        for bad in [
            "http://e:2379",
            "etcd://",
            "etcd://e",
            "etcd://e:x",
            "etcd://e:1/a//b",
        ] {
            assert!(EtcdTarget::parse(bad).is_err(), "{bad}");
        }
        assert!(t.describe().contains("http://e:2379"));
    }
}
