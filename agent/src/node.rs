//! The node agent's main loop: register the node and heartbeat; keep the set
//! of supervisors equal to the set of Instances bound to this node, learnt by
//! list + watch (and from the local journal before the control plane answers).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flotilla_client::{collection_path, Client};
use flotilla_spec::instance::Instance;
use flotilla_spec::meta::{now_rfc3339, ObjectMeta, API_VERSION};
use flotilla_spec::node::{Node, NodeSpec, NodeStatus, HOSTNAME_LABEL};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use crate::credentials::NodeCredentials;
use crate::instance::{supervise, NodeContext};
use crate::journal::Journal;
use crate::logs::LogDir;
use crate::report::Reporter;
use crate::runtime::Runtime;

/// Longest delay before a change of assignments reaches the journal.
const JOURNAL_FLUSH_EVERY: Duration = Duration::from_millis(250);

/// How long one heartbeat may take before the next goes to another server.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);

/// How often the node heartbeats.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// How an agent joins and what it offers.
#[derive(Clone)]
pub struct AgentConfig {
    /// API server URL.
    pub server: String,
    /// The node's certificate and the cluster CA.
    pub credentials: Arc<NodeCredentials>,
    /// This node's name.
    pub node_name: String,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// Where the journal, logs and modules live.
    pub data_dir: PathBuf,
    /// Memory offered, in bytes.
    pub capacity_memory_bytes: u64,
    /// CPU offered, in millicores.
    pub capacity_cpu_millis: u64,
    /// Instances the node can hold at once (its runtime's instance slots):
    /// advertised so the scheduler never places more.
    pub max_instances: u32,
    /// Crash restarts this node makes a second, all instances together.
    pub max_restarts_per_second: u32,
    /// What the ingress allows a client.
    pub ingress_limits: crate::ingress::IngressLimits,
    /// Most bytes of downloaded modules and compiled code kept on disk.
    pub module_cache_bytes: u64,
    /// Host directories workloads may be granted (`--allow-host-path`).
    pub allowed_host_paths: Vec<PathBuf>,
    /// Folders never granted besides `data_dir` (under `up`: the control
    /// plane's data folder, with the store and tokens).
    pub protected_paths: Vec<PathBuf>,
    /// Where this node's ingress listens (`host:port`), published in the
    /// node's status; empty: no ingress.
    pub ingress_address: String,
    /// Where this node's port listens (`host:port`), published in the
    /// node's status for the control plane and other nodes to dial.
    pub node_address: String,
    /// Free disk below which the node reports `DiskPressure`.
    pub disk_pressure_below: crate::disk_pressure::Threshold,
}

/// Memory and CPU of this machine.
pub fn machine_capacity() -> (u64, u64) {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    (system.total_memory(), cpus * 1000)
}

struct Running {
    uid: String,
    task: JoinHandle<()>,
}

/// The agent: owns the supervisors of this node.
pub struct Agent {
    config: AgentConfig,
    ctx: Arc<NodeContext>,
    journal: Journal,
    running: HashMap<String, Running>,
    assigned: BTreeMap<String, Instance>,
    /// The assignments changed since the journal was last written.
    journal_dirty: bool,
    /// Persists the journal off the loop (from [`Agent::run`] on).
    journal_writer: Option<crate::journal::JournalWriter>,
    /// The node's fencing epoch, as the last heartbeat answered it.
    epoch: tokio::sync::watch::Receiver<u64>,
    epoch_tx: tokio::sync::watch::Sender<u64>,
    /// Instances this agent could not read, with the resourceVersion it last
    /// reported (so each version is reported once).
    undecodable: HashMap<String, String>,
    /// Kept for as long as the agent: daemon runs execute on them.
    _guest_threads: Option<crate::guest_threads::GuestThreads>,
}

fn key(i: &Instance) -> String {
    format!("{}/{}", i.metadata.namespace, i.metadata.name)
}

/// `namespace/name` of an object that may not decode.
fn raw_key(value: &serde_json::Value) -> Option<String> {
    let meta = &value["metadata"];
    Some(format!(
        "{}/{}",
        meta["namespace"].as_str()?,
        meta["name"].as_str()?
    ))
}

impl Agent {
    /// An agent for `config`, running guests on `runtime`.
    pub fn new(
        config: AgentConfig,
        runtime: Arc<Runtime>,
    ) -> Result<Self, flotilla_client::ClientError> {
        // The journal, logs, modules and key are this node's: owner only.
        if let Err(e) = std::fs::create_dir_all(&config.data_dir).and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700))
        }) {
            tracing::warn!("cannot make {} private: {e}", config.data_dir.display());
        }
        let client = Client::new(&config.server, config.credentials.client_credentials())?
            .with_timeout(flotilla_client::AGENT_REQUEST_TIMEOUT);
        let guest_threads = match crate::guest_threads::GuestThreads::start() {
            Ok(threads) => Some(threads),
            Err(e) => {
                tracing::warn!("cannot start the daemon guests' threads ({e}); daemons share the agent's threads");
                None
            }
        };
        let endpoints = Arc::new(crate::endpoints::LocalEndpoints::default());
        let ctx = Arc::new(NodeContext {
            guests: guest_threads.as_ref().and_then(|t| t.handle()),
            restarts: crate::restart_budget::RestartBudget::new(config.max_restarts_per_second),
            files: {
                // What a crashed run of this agent left is removed; the
                // instances write theirs again.
                let files = crate::config_files::FileDirs::of(&config.data_dir);
                if let Err(e) = files.clear() {
                    // Instances with files then fail to start, saying why.
                    tracing::error!("{e}");
                }
                files
            },
            volumes: {
                // Instances started again begin with empty volumes.
                let volumes = crate::volumes::VolumeDirs::of(&config.data_dir);
                if let Err(e) = volumes.clear() {
                    // Instances with emptyDir volumes then fail, saying why.
                    tracing::error!("{e}");
                }
                volumes
            },
            // Not fatal: instances granted buckets then fail, saying why.
            kv: flotilla_kv::SqliteKv::open(
                &config.data_dir.join("keyvalue.db"),
                "the node's key-value store",
            )
            .map(Arc::new)
            .inspect_err(|e| tracing::error!("{e}")),
            cluster_kv: Arc::new(crate::kv_cluster::ClusterKv::new(client.clone())),
            metrics: Arc::new(crate::metrics::NodeMetrics::new(
                &config.node_name,
                config.capacity_memory_bytes,
                config.capacity_cpu_millis,
                endpoints.clone(),
            )),
            runtime,
            reporter: Reporter::new(client.clone(), &config.node_name),
            client,
            node_name: config.node_name.clone(),
            logs: LogDir::new(&config.data_dir.join("logs")),
            modules_dir: config.data_dir.join("modules"),
            compiled_dir: config.data_dir.join("compiled"),
            module_cache_bytes: config.module_cache_bytes,
            endpoints,
            ingress: std::sync::OnceLock::new(),
            host_paths: crate::host_paths::HostPathPolicy {
                allowed: config.allowed_host_paths.clone(),
                protected: std::iter::once(config.data_dir.clone())
                    // Other instances' secret files and memory volumes:
                    // never grantable.
                    .chain(std::iter::once(
                        crate::config_files::FileDirs::of(&config.data_dir).secrets,
                    ))
                    .chain(std::iter::once(
                        crate::volumes::VolumeDirs::of(&config.data_dir).memory,
                    ))
                    .chain(config.protected_paths.iter().cloned())
                    .collect(),
            },
        });
        let (epoch_tx, epoch) = tokio::sync::watch::channel(0);
        Ok(Self {
            epoch,
            epoch_tx,
            journal: Journal::new(&config.data_dir.join("journal.json")),
            config,
            ctx,
            running: HashMap::new(),
            assigned: BTreeMap::new(),
            journal_dirty: false,
            journal_writer: None,
            undecodable: HashMap::new(),
            _guest_threads: guest_threads,
        })
    }

    /// Holds `epoch` as the node's fencing epoch (learnt from a heartbeat
    /// before [`Agent::run`]), so journaled bindings of older epochs never start.
    pub fn hold_epoch(&mut self, epoch: u64) {
        raise(&self.epoch_tx, epoch);
    }

    /// Serves this node's port on `node_port` and, if given, its public
    /// ingress on `ingress` (HTTP) and `ingress_tls` (HTTPS, certificates
    /// from the workloads' `spec.tls`), routing over the whole cluster as
    /// the API shows it.
    pub fn serve(
        &self,
        ingress: Option<tokio::net::TcpListener>,
        ingress_tls: Option<tokio::net::TcpListener>,
        node_port: tokio::net::TcpListener,
    ) {
        let cluster = crate::cluster_view::ClusterView::default();
        cluster.follow(self.ctx.client.clone());
        let certificates = ingress_tls.as_ref().map(|_| {
            let certificates = Arc::new(crate::ingress_tls::Certificates::default());
            certificates
                .clone()
                .follow(self.ctx.client.clone(), cluster.clone());
            certificates
        });
        let router = crate::ingress::Ingress::new(
            self.config.node_name.clone(),
            self.ctx.endpoints.clone(),
            cluster.clone(),
            self.config.ingress_limits,
            crate::peers::Peers::new(self.config.credentials.clone()),
        );
        let _ = self.ctx.ingress.set(router.clone());
        let port = Arc::new(crate::node_port::NodePort {
            node: self.config.node_name.clone(),
            credentials: self.config.credentials.clone(),
            logs: self.ctx.logs.clone(),
            ingress: router.clone(),
            metrics: self.ctx.metrics.clone(),
            cluster,
        });
        tokio::spawn(port.serve(node_port));
        if let Some(listener) = ingress {
            tokio::spawn(router.clone().serve(listener));
        }
        if let (Some(listener), Some(certificates)) = (ingress_tls, certificates) {
            tokio::spawn(router.serve_tls(listener, certificates));
        }
    }

    /// The node's log folders (the API server of `flotilla up` reads them).
    pub fn logs(&self) -> LogDir {
        self.ctx.logs.clone()
    }

    /// Runs until the process ends: restores the journal, then follows the API.
    pub async fn run(mut self) {
        tokio::spawn(self.ctx.reporter.clone().run());
        tokio::spawn(
            self.config
                .credentials
                .clone()
                .renew_forever(self.ctx.client.clone()),
        );
        tokio::spawn(crate::persistent::keep(
            self.ctx.client.clone(),
            self.config.node_name.clone(),
            self.ctx.volumes.clone(),
        ));
        tokio::spawn(heartbeat(
            self.ctx.client.clone(),
            self.config.clone(),
            self.epoch_tx.clone(),
            self.ctx.reporter.clone(),
        ));
        let restored = self.journal.load();
        let journal = self.journal.writer();
        self.journal_writer = Some(journal);
        if !restored.is_empty() {
            tracing::info!("restoring {} instances from the journal", restored.len());
        }
        let epoch = *self.epoch.borrow();
        let stale = restored.iter().filter(|i| i.spec.epoch < epoch).count();
        if stale > 0 {
            tracing::warn!(
                "{stale} journaled instances were bound in an older epoch than node {}'s {epoch} (they were evicted while this agent was away): not starting them",
                self.config.node_name
            );
        }
        self.assigned = restored.into_iter().map(|i| (key(&i), i)).collect();
        self.converge();
        let mut wait = Duration::from_millis(200);
        loop {
            match self.follow().await {
                Ok(()) => wait = Duration::from_millis(200),
                Err(e) => {
                    tracing::warn!(
                        "agent {}: {e}; retrying in {wait:?}, instances keep running",
                        self.config.node_name
                    );
                    let retry = tokio::time::sleep(wait);
                    tokio::pin!(retry);
                    // A heartbeat may get through before the list does: fence at once.
                    loop {
                        tokio::select! {
                            () = &mut retry => break,
                            Ok(()) = self.epoch.changed() => self.converge(),
                        }
                    }
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// One list + watch session; returns when the watch ends.
    async fn follow(&mut self) -> Result<(), flotilla_client::ClientError> {
        let client = self.ctx.client.clone();
        let path = collection_path("instances", None);
        let selector = format!("fieldSelector=spec.nodeName={}", self.config.node_name);
        let list = client.list(&path, &selector).await?;
        let mut assigned = BTreeMap::new();
        let listed: std::collections::HashSet<String> =
            list.items.iter().filter_map(raw_key).collect();
        self.undecodable.retain(|k, _| listed.contains(k));
        for value in list.items {
            match self.decode(value) {
                Ok(instance) => drop(assigned.insert(key(&instance), instance)),
                // Keep running what runs: the last version this agent could
                // read — of the same object (a recreated one is another).
                Err((k, uid)) => {
                    if let Some(known) = self.assigned.remove(&k) {
                        if known.metadata.uid == uid {
                            assigned.insert(k, known);
                        }
                    }
                }
            }
        }
        self.assigned = assigned;
        self.converge();
        self.remove_orphan_logs();
        let mut events = Box::pin(client.watch(&path, &selector, &list.revision).await?);
        let mut flush = tokio::time::interval(JOURNAL_FLUSH_EVERY);
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                _ = flush.tick() => {
                    self.write_journal();
                    continue;
                }
                Ok(()) = self.epoch.changed() => {
                    self.converge();
                    continue;
                }
            };
            let Some(event) = event else { break };
            let event = event?;
            match event.kind.as_str() {
                "DELETED" => {
                    // Only the name matters: a deletion is applied even when
                    // the object's body cannot be read.
                    let Some(k) = raw_key(&event.object) else {
                        continue;
                    };
                    self.undecodable.remove(&k);
                    self.assigned.remove(&k);
                    self.converge_key(&k);
                }
                "ADDED" | "MODIFIED" => {
                    if let Ok(instance) = self.decode(event.object) {
                        let k = key(&instance);
                        self.assigned.insert(k.clone(), instance);
                        self.converge_key(&k);
                    }
                }
                "ERROR" => {
                    return Err(flotilla_client::ClientError::Decode(format!(
                        "watch ended: {}",
                        event.object["message"]
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Decodes an Instance from the API. One this agent cannot read (a newer
    /// control plane's fields, say) is logged and reported as a Warning event
    /// on it, once per version; `Err` carries its key and uid.
    fn decode(&mut self, value: serde_json::Value) -> Result<Instance, (String, String)> {
        let k = raw_key(&value).unwrap_or_default();
        let uid = value["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let version = value["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match serde_path_to_error::deserialize::<_, Instance>(value) {
            Ok(instance) => {
                self.undecodable.remove(&k);
                Ok(instance)
            }
            Err(e) => {
                if self.undecodable.get(&k) != Some(&version) {
                    let running = if self.running.contains_key(&k) {
                        "it keeps running as last read"
                    } else {
                        "it is not started"
                    };
                    let message = format!(
                        "agent {} (version {}) cannot read instance {k}: {} at {}; {running} — upgrade the agent to the control plane's version",
                        self.config.node_name,
                        env!("CARGO_PKG_VERSION"),
                        e.inner(),
                        e.path()
                    );
                    tracing::warn!("{message}");
                    if let Some((ns, name)) = k.split_once('/') {
                        let about = flotilla_spec::event::ObjectRef {
                            kind: "Instance".into(),
                            namespace: ns.into(),
                            name: name.into(),
                        };
                        self.ctx.reporter.event(
                            &about,
                            crate::report::Severity::Warning,
                            "UnreadableInstance",
                            message,
                        );
                    }
                    self.undecodable.insert(k.clone(), version);
                }
                Err((k, uid))
            }
        }
    }

    /// Starts what is assigned and not running; stops what runs and is not
    /// assigned (or was replaced by a new object of the same name, or was
    /// bound in an epoch older than the node's: fenced).
    fn converge(&mut self) {
        let keys: std::collections::BTreeSet<String> = self
            .running
            .keys()
            .chain(self.assigned.keys())
            .cloned()
            .collect();
        self.epoch.borrow_and_update();
        let mut changed = false;
        for k in keys {
            changed |= self.converge_one(&k);
        }
        self.changed(changed);
    }

    /// [`Agent::converge`] for one instance: what a watch event needs (a
    /// full pass per event would be quadratic at thousands of instances).
    fn converge_key(&mut self, k: &str) {
        let changed = self.converge_one(k);
        self.changed(changed);
    }

    /// Makes instance `k` run or not; returns whether anything changed.
    fn converge_one(&mut self, k: &str) -> bool {
        // Only a full pass marks the epoch seen, so an event's pass cannot
        // swallow the wake-up that fences everything else.
        let epoch = *self.epoch.borrow();
        let assigned = self.assigned.get(k);
        let fenced = assigned.is_some_and(|i| i.spec.epoch < epoch);
        let wanted = assigned.filter(|_| !fenced);
        let running_uid = self.running.get(k).map(|r| r.uid.as_str());
        if running_uid == wanted.map(|i| i.metadata.uid.as_str()) {
            return false;
        }
        if let Some(i) = assigned.filter(|_| fenced && running_uid.is_some()) {
            tracing::warn!(
                "fenced instance {k}: bound in epoch {} but node {} is at epoch {epoch} (it was evicted while this agent was away); stopping it",
                i.spec.epoch,
                self.config.node_name
            );
        }
        let wanted = wanted.cloned();
        let (ns, name) = k.split_once('/').unwrap_or(("", k));
        let (logs, ns, name) = (self.ctx.logs.clone(), ns.to_string(), name.to_string());
        // Stopped, then (a stateful replica made again under its name: the
        // same name, another uid) the new one starts only once the old one
        // is gone, so the two never share its volume or its log.
        let mut stopping = None;
        if let Some(r) = self.running.remove(k) {
            r.task.abort();
            self.ctx.reporter.forget(&ns, &name);
            tracing::info!("stopped instance {k}");
            stopping = Some(r.task);
        }
        match wanted {
            Some(instance) => {
                let uid = instance.metadata.uid.clone();
                let ctx = self.ctx.clone();
                let task = tokio::spawn(async move {
                    if let Some(old) = stopping {
                        let _ = old.await;
                        logs.remove(&ns, &name);
                    }
                    supervise(ctx, instance).await
                });
                self.running.insert(k.to_string(), Running { uid, task });
            }
            // Remove the logs once the task has really stopped, or a run
            // starting at this moment could recreate them.
            None => {
                if let Some(old) = stopping {
                    tokio::spawn(async move {
                        let _ = old.await;
                        logs.remove(&ns, &name);
                    });
                }
            }
        }
        true
    }

    /// Journals a change of what runs.
    fn changed(&mut self, changed: bool) {
        if changed {
            self.journal_dirty = true;
        }
        if self.journal_dirty && self.assigned.len() < 16 {
            // Small sets are journaled at once; bursts wait for the next flush
            // (rewriting the whole journal per event would be quadratic).
            self.write_journal();
        }
    }

    fn write_journal(&mut self) {
        if !self.journal_dirty {
            return;
        }
        let all: Vec<&Instance> = self.assigned.values().collect();
        let saved = match &self.journal_writer {
            Some(writer) => writer.save(&all),
            None => self.journal.save(&all),
        };
        match saved {
            Ok(()) => self.journal_dirty = false,
            Err(e) => tracing::warn!("cannot write the journal: {e}"),
        }
    }

    fn remove_orphan_logs(&self) {
        for (ns, name) in self.ctx.logs.present() {
            if !self.assigned.contains_key(&format!("{ns}/{name}")) {
                self.ctx.logs.remove(&ns, &name);
            }
        }
    }
}

/// This agent's identity, kept in its data folder so a restarted agent is
/// the same node and another machine claiming the name is not.
fn agent_id(data_dir: &std::path::Path) -> String {
    let path = data_dir.join("agent-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        if !id.trim().is_empty() {
            return id.trim().to_string();
        }
    }
    let id = format!("{:032x}", rand::random::<u128>());
    let _ = std::fs::create_dir_all(data_dir).and_then(|()| std::fs::write(&path, &id));
    id
}

/// Sends one heartbeat: creates the Node if it does not exist, else renews
/// its status (the node's lease). The server refuses (409) a name another
/// live agent holds. Returns the node's fencing epoch.
pub async fn send_heartbeat(
    client: &Client,
    config: &AgentConfig,
) -> Result<Heartbeat, flotilla_client::ClientError> {
    let path = format!("{}/{}", collection_path("nodes", None), config.node_name);
    let space = crate::disk_pressure::DiskSpace::of(&config.data_dir);
    if let Err(e) = &space {
        tracing::warn!(
            "cannot measure the free space of {}: {e}",
            config.data_dir.display()
        );
    }
    let space = space.ok();
    let disk_pressure = space.is_some_and(|s| s.under(config.disk_pressure_below));
    let status = NodeStatus {
        disk_pressure,
        disk_available_bytes: space.map_or(0, |s| s.available),
        capacity_memory_bytes: config.capacity_memory_bytes,
        capacity_cpu_millis: config.capacity_cpu_millis,
        capacity_instances: config.max_instances,
        ready: true,
        last_heartbeat: now_rfc3339(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        agent_id: agent_id(&config.data_dir),
        ingress_address: config.ingress_address.clone(),
        node_address: config.node_address.clone(),
    };
    let node = Node {
        api_version: API_VERSION.into(),
        kind: "Node".into(),
        metadata: ObjectMeta {
            name: config.node_name.clone(),
            labels: node_labels(config),
            ..ObjectMeta::default()
        },
        spec: NodeSpec::default(),
        status: Some(status),
    };
    let value = serde_json::to_value(&node).unwrap_or_default();
    let stored = match client.replace(&format!("{path}/status"), &value).await {
        Err(e) if e.code() == Some(404) => {
            client.create(&collection_path("nodes", None), &value).await
        }
        other => other,
    }?;
    Ok(Heartbeat {
        epoch: stored["spec"]["epoch"].as_u64().unwrap_or(0),
        disk_pressure,
        disk_available_bytes: space.map_or(0, |s| s.available),
    })
}

/// What a heartbeat learnt and reported.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    /// The node's fencing epoch, as stored.
    pub epoch: u64,
    /// Whether the node reported `DiskPressure`.
    pub disk_pressure: bool,
    /// Free bytes of the data folder's file system (0: unknown).
    pub disk_available_bytes: u64,
}

/// The node's labels: the operator's, and its name under [`HOSTNAME_LABEL`].
fn node_labels(config: &AgentConfig) -> BTreeMap<String, String> {
    let mut labels = config.labels.clone();
    labels
        .entry(HOSTNAME_LABEL.to_string())
        .or_insert_with(|| config.node_name.clone());
    labels
}

/// Renews the node's status every [`HEARTBEAT_EVERY`] and passes on its
/// fencing epoch; records an Event when disk pressure starts and ends (as
/// the kubelet's `NodeHasDiskPressure` / `NodeHasNoDiskPressure`).
async fn heartbeat(
    client: Client,
    config: AgentConfig,
    epoch: tokio::sync::watch::Sender<u64>,
    reporter: Reporter,
) {
    let mut pressure = false;
    loop {
        // A server that accepts and never answers (stopped, cut off) must
        // not hold the lease past the node grace: the next beat goes to the
        // next server.
        let beat =
            match tokio::time::timeout(HEARTBEAT_TIMEOUT, send_heartbeat(&client, &config)).await {
                Ok(beat) => beat,
                Err(_) => {
                    client.next_server();
                    Err(flotilla_client::ClientError::Unreachable {
                        url: client.base(),
                        message: format!("no answer within {HEARTBEAT_TIMEOUT:?}"),
                    })
                }
            };
        match beat {
            Ok(beat) => {
                raise(&epoch, beat.epoch);
                if beat.disk_pressure != pressure {
                    pressure = beat.disk_pressure;
                    disk_pressure_event(&reporter, &config, beat);
                }
            }
            // The server is there and says this node is out: fenced for
            // good, every instance stops (the controllers place them
            // elsewhere), as when an eviction raised the epoch.
            Err(e) if is_revocation(&e) => {
                if *epoch.borrow() != u64::MAX {
                    tracing::error!("node {}: {e}; stopping every instance", config.node_name);
                }
                raise(&epoch, u64::MAX);
            }
            Err(e) => tracing::warn!("heartbeat of {}: {e}", config.node_name),
        }
        tokio::time::sleep(HEARTBEAT_EVERY).await;
    }
}

/// Whether the API refused this node's certificate as revoked.
fn is_revocation(e: &flotilla_client::ClientError) -> bool {
    e.code() == Some(401) && e.to_string().contains("was revoked")
}

fn disk_pressure_event(reporter: &Reporter, config: &AgentConfig, beat: Heartbeat) {
    let free = format!(
        "{} MiB free in {}",
        beat.disk_available_bytes >> 20,
        config.data_dir.display()
    );
    let (severity, reason, message) = if beat.disk_pressure {
        (
            crate::report::Severity::Warning,
            "NodeHasDiskPressure",
            format!(
                "{free}, below --disk-pressure-below ({}): nothing new is placed here until space is freed (remove unused modules, logs or volumes)",
                config.disk_pressure_below
            ),
        )
    } else {
        (
            crate::report::Severity::Normal,
            "NodeHasNoDiskPressure",
            format!("{free}: the node takes new instances again"),
        )
    };
    tracing::warn!("{reason}: {message}");
    reporter.node_event(severity, reason, message);
}

/// Raises the held epoch to `epoch` (never lowers it); wakes the agent loop
/// only when it rose.
fn raise(held: &tokio::sync::watch::Sender<u64>, epoch: u64) {
    held.send_if_modified(|h| {
        let raised = epoch > *h;
        *h = (*h).max(epoch);
        raised
    });
}
