//! `Workload`: a module, how many replicas of it to run, and under which limits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::meta::Resource;
pub use crate::strategy::Strategy;

/// Kubernetes' default progress deadline.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: u32 = 600;

fn default_progress_deadline() -> u32 {
    DEFAULT_PROGRESS_DEADLINE_SECONDS
}

fn is_default_progress_deadline(seconds: &u32) -> bool {
    *seconds == DEFAULT_PROGRESS_DEADLINE_SECONDS
}

/// A Workload resource.
pub type Workload = Resource<WorkloadSpec, WorkloadStatus>;

/// What the user wants running.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSpec {
    /// The Wasm module to run.
    pub module: ModuleSource,
    /// How many instances to keep running.
    #[serde(default = "one")]
    pub replicas: u32,
    /// How a new template replaces the instances (rolling by default).
    #[serde(default, skip_serializing_if = "Strategy::is_default")]
    pub strategy: Strategy,
    /// How long a rollout may go without progress before it is marked
    /// failed (`Progressing: False, ProgressDeadlineExceeded`); 600 s.
    #[serde(
        default = "default_progress_deadline",
        skip_serializing_if = "is_default_progress_deadline"
    )]
    pub progress_deadline_seconds: u32,
    /// How long a new instance must stay Ready before it counts as
    /// available (and the rollout moves on); 0 by default.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub min_ready_seconds: u32,
    /// A paused workload keeps the instances it has: a template change
    /// waits for `flotilla rollout resume` (scaling still applies).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// How many old Revisions to keep (10 when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<u32>,
    /// Secrets (type `kubernetes.io/dockerconfigjson`) holding credentials
    /// for the registry of an `oci://` module, as Kubernetes'
    /// `imagePullSecrets`: read by the control plane when it pulls, never
    /// part of what instances (and so nodes) see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<PullSecret>,
    /// When `flotilla rollout restart` last asked for every instance to be
    /// replaced (RFC 3339): part of the template, so a change is a rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
    /// Arguments after `argv[0]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables (the guest sees no others).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Every key of Configs or Secrets as environment variables (`env`
    /// wins over these; a later source over an earlier one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// What `wasi:config/store` answers; naming it grants the import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigStore>,
    /// Requests (what the scheduler reserves) and limits (what the runtime enforces).
    #[serde(default)]
    pub resources: Resources,
    /// Host directories granted to each instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<DirGrant>,
    /// Storage its instances may mount (`volumeMounts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Where the guest sees each volume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Configs' and Secrets' values as read-only files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileMount>,
    /// When and how fast to restart instances that end.
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Health checks.
    #[serde(default, skip_serializing_if = "Probes::is_empty")]
    pub probes: Probes,
    /// Only nodes with all these labels may run the instances.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// How the scheduler chooses among nodes that fit (the server's
    /// `--strategy` unless set here).
    #[serde(default, skip_serializing_if = "Placement::is_default")]
    pub placement: Placement,
    /// `daemon` (the default): run the module's entry point and keep it
    /// running; `http`: a handler, instantiated afresh for every request.
    #[serde(default, skip_serializing_if = "Execution::is_daemon")]
    pub execution: Execution,
    /// For `http` workloads: the requests the ingress sends to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// For `http` workloads: the HTTPS certificates of its routes' hosts
    /// (as a Kubernetes Ingress's `tls`), served by every node's
    /// `--ingress-tls` listener.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<IngressTls>,
    /// For `http` workloads: the most requests one replica serves at once
    /// (default 64); more wait for a free slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// For `http` workloads: `live` lets a change of the Config and Secret
    /// values it reads reach the next requests (within a second), with no
    /// rollout; `restart` (the default) rolls it out.
    #[serde(default, skip_serializing_if = "Reload::is_restart")]
    pub reload: Reload,
    /// For `http` workloads: what its outgoing requests may reach. Nothing
    /// else is reachable (default deny).
    #[serde(default, skip_serializing_if = "Grants::is_empty")]
    pub grants: Grants,
    /// With persistent volumes: how long a replica waits for the node
    /// holding its volume before it is made again elsewhere with an empty
    /// one (default 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_reclaim_after: Option<String>,
}

impl WorkloadSpec {
    /// Whether its replicas are stateful: any persistent volume gives each
    /// a stable identity and a volume of its own.
    pub fn is_stateful(&self) -> bool {
        self.volumes.iter().any(|v| v.persistent.is_some())
    }

    /// Its persistent volumes.
    pub fn persistent_volumes(&self) -> impl Iterator<Item = (&Volume, &PersistentVolume)> {
        self.volumes
            .iter()
            .filter_map(|v| v.persistent.as_ref().map(|p| (v, p)))
    }

    /// How long a replica waits for its volume's node.
    pub fn reclaim_after(&self) -> std::time::Duration {
        self.persistent_volume_reclaim_after
            .as_deref()
            .and_then(|d| crate::parse_duration(d).ok())
            .unwrap_or(std::time::Duration::from_secs(600))
    }

    /// Whether an instance made from `self` is what `other` asks for:
    /// every field an instance is made from is equal. The replica count and
    /// how a rollout proceeds are not among them — scaling keeps the
    /// instances there are.
    pub fn same_template(&self, other: &WorkloadSpec) -> bool {
        self.template_changes(other).is_empty()
    }

    /// The fields an instance is made from that differ between `self` and
    /// `other` (camelCase, as in manifests).
    pub fn template_changes(&self, other: &WorkloadSpec) -> Vec<&'static str> {
        // Destructured, so a field added later must be placed on one side.
        let WorkloadSpec {
            module,
            replicas: _,
            strategy: _,
            progress_deadline_seconds: _,
            min_ready_seconds: _,
            paused: _,
            revision_history_limit: _,
            image_pull_secrets: _,
            persistent_volume_reclaim_after: _,
            args,
            env,
            env_from,
            config,
            resources,
            dirs,
            volumes,
            volume_mounts,
            files,
            restart_policy,
            probes,
            node_selector,
            placement,
            execution,
            routes,
            tls,
            max_concurrency,
            reload,
            grants,
            restarted_at,
        } = self;
        let mut changed = Vec::new();
        let mut differ = |name, same: bool| {
            if !same {
                changed.push(name);
            }
        };
        differ("module", *module == other.module);
        differ("args", *args == other.args);
        differ("env", *env == other.env);
        differ("envFrom", *env_from == other.env_from);
        differ("config", *config == other.config);
        differ("resources", *resources == other.resources);
        differ("dirs", *dirs == other.dirs);
        differ("files", *files == other.files);
        differ("volumes", *volumes == other.volumes);
        differ("volumeMounts", *volume_mounts == other.volume_mounts);
        differ("restartPolicy", *restart_policy == other.restart_policy);
        differ("probes", *probes == other.probes);
        differ("nodeSelector", *node_selector == other.node_selector);
        differ("placement", *placement == other.placement);
        differ("execution", *execution == other.execution);
        differ("routes", *routes == other.routes);
        differ("tls", *tls == other.tls);
        differ("maxConcurrency", *max_concurrency == other.max_concurrency);
        differ("grants", *grants == other.grants);
        differ("reload", *reload == other.reload);
        differ("restartedAt", *restarted_at == other.restarted_at);
        changed
    }

    /// The names of the objects of `kind` (`Config` or `Secret`) this
    /// template reads.
    pub fn references(&self, kind: &str) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .value_reads()
            .into_iter()
            .filter(|read| read.kind == kind)
            .map(|read| read.name)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Every read of a Config's or Secret's values this template makes
    /// (`env[].valueFrom`, `envFrom`, `files`, `config.from`), in that order.
    pub fn value_reads(&self) -> Vec<ValueRead<'_>> {
        let mut reads = Vec::new();
        for var in &self.env {
            if let Some((kind, r)) = var.value_from.as_ref().and_then(EnvSource::reference) {
                reads.push(ValueRead {
                    kind,
                    name: &r.name,
                    keys: Some(vec![&r.key]),
                });
            }
        }
        let sources = self.env_from.iter().filter_map(EnvFromSource::source);
        let configs = self
            .config
            .iter()
            .flat_map(|c| &c.from)
            .filter_map(ConfigSource::source);
        for (kind, name) in sources.chain(configs) {
            reads.push(ValueRead {
                kind,
                name,
                keys: None,
            });
        }
        for mount in &self.files {
            if let Some((kind, name)) = mount.source() {
                let keys = (!mount.items.is_empty())
                    .then(|| mount.items.iter().map(|i| i.key.as_str()).collect());
                reads.push(ValueRead { kind, name, keys });
            }
        }
        reads
    }

    /// The host capabilities (named as `flotilla-host-api` names them) this
    /// template grants beyond those every workload has: a guest importing
    /// another one does not start.
    pub fn capabilities(&self) -> std::collections::BTreeSet<String> {
        let mut granted = std::collections::BTreeSet::new();
        if self.config.is_some() {
            granted.insert("wasi:config/store".to_string());
        }
        if !self.grants.key_value.is_empty() {
            granted.insert("wasi:keyvalue".to_string());
        }
        granted
    }

    /// Only the fields an instance is made from; the others at their
    /// defaults (what a Revision keeps, and what its hash is of).
    pub fn template(&self) -> WorkloadSpec {
        WorkloadSpec {
            replicas: one(),
            persistent_volume_reclaim_after: None,
            strategy: Strategy::default(),
            progress_deadline_seconds: DEFAULT_PROGRESS_DEADLINE_SECONDS,
            min_ready_seconds: 0,
            paused: false,
            revision_history_limit: None,
            image_pull_secrets: Vec::new(),
            ..self.clone()
        }
    }

    /// This spec with the template fields of `template` (a Revision's):
    /// what a rollback or an undo makes of it. How many replicas and how a
    /// rollout proceeds stay as they are.
    pub fn with_template(&self, template: &WorkloadSpec) -> WorkloadSpec {
        WorkloadSpec {
            replicas: self.replicas,
            strategy: self.strategy.clone(),
            progress_deadline_seconds: self.progress_deadline_seconds,
            min_ready_seconds: self.min_ready_seconds,
            paused: self.paused,
            revision_history_limit: self.revision_history_limit,
            persistent_volume_reclaim_after: self.persistent_volume_reclaim_after.clone(),
            image_pull_secrets: self.image_pull_secrets.clone(),
            ..template.clone()
        }
    }
}

/// What a workload may reach beyond its sandbox: other workloads and
/// hosts (`http` workloads' outgoing requests), key-value buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Grants {
    /// Workloads it may call as `http://<name>.<namespace>.flotilla/`:
    /// `name` (same namespace) or `namespace/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<String>,
    /// Other hosts it may call, as `host:port` (plain HTTP).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Key-value buckets it may open through `wasi:keyvalue`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_value: Vec<KeyValueGrant>,
}

impl Grants {
    fn is_empty(&self) -> bool {
        self.workloads.is_empty() && self.hosts.is_empty() && self.key_value.is_empty()
    }

    /// Whether it grants outgoing requests (`http` workloads only).
    pub fn outgoing(&self) -> bool {
        !self.workloads.is_empty() || !self.hosts.is_empty()
    }
}

/// An entry of `grants.workloads` of a workload in `namespace` — `name`
/// (same namespace) or `namespace/name` — as `namespace/name`.
pub fn granted_workload(namespace: &str, grant: &str) -> String {
    if grant.contains('/') {
        grant.to_string()
    } else {
        format!("{namespace}/{grant}")
    }
}

/// `grants.keyValue[]`: one bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyValueGrant {
    /// The bucket's name, as the guest opens it; buckets of one name are
    /// shared by the workloads of a namespace (on one node, for `node`).
    pub bucket: String,
    /// Where it is kept.
    #[serde(default)]
    pub backend: KeyValueBackend,
    /// Most bytes of keys and values it holds (default 64Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
}

/// Where a bucket is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyValueBackend {
    /// SQLite on the node: fastest; the data stays with the node.
    #[default]
    Node,
    /// The control plane's store, reachable from every node.
    Cluster,
}

/// How a change of the Config and Secret values a workload reads reaches
/// its instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reload {
    /// As a new revision, rolled out.
    #[default]
    Restart,
    /// Read again while it serves (http workloads).
    Live,
}

impl Reload {
    fn is_restart(&self) -> bool {
        *self == Reload::Restart
    }
}

/// How a workload's module is run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Execution {
    /// A long-running program (`_start` / `wasi:cli/run`).
    #[default]
    Daemon,
    /// An HTTP handler (`wasi:http/incoming-handler`, or WAGI for core modules).
    Http,
}

impl Execution {
    fn is_daemon(&self) -> bool {
        *self == Execution::Daemon
    }
}

/// Which requests reach an `http` workload: a host (the `Host` header, port
/// ignored) and a path prefix; the longest matching prefix wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    /// Host name, e.g. `hello.local`.
    pub host: String,
    /// Path prefix (default `/`).
    #[serde(default = "root_path")]
    pub path_prefix: String,
}

fn root_path() -> String {
    "/".into()
}

impl Route {
    /// Whether this route serves `host` and `path`: the host in any case,
    /// the prefix by whole path segments, as a Kubernetes Ingress's
    /// `pathType: Prefix` (`/api` serves `/api` and `/api/v1`, never
    /// `/apiary`; a trailing slash changes nothing).
    pub fn serves(&self, host: &str, path: &str) -> bool {
        if !self.host.eq_ignore_ascii_case(host) {
            return false;
        }
        let prefix = self.path_prefix.trim_end_matches('/');
        match path.strip_prefix(prefix) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }

    /// How specific the prefix is: the longest matching one wins.
    pub fn specificity(&self) -> usize {
        self.path_prefix.trim_end_matches('/').len()
    }
}

/// `spec.tls[]`: a certificate for some of the routes' hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressTls {
    /// Hosts of `routes` it serves.
    pub hosts: Vec<String>,
    /// A Secret of type `flotilla.dev/tls` (`tls.crt`, `tls.key`) in the
    /// workload's namespace.
    pub secret_name: String,
}

/// Requests one replica of an `http` workload serves at once, by default.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 64;

/// Placement preferences of a workload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Placement {
    /// `binpack` or `spread`; the server default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<PlacementStrategy>,
    /// One instance on every Ready node that matches `nodeSelector` (as a
    /// Kubernetes DaemonSet), instead of `replicas` placed by fit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub every_node: bool,
}

impl Placement {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// How to choose among the nodes an instance fits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlacementStrategy {
    /// Fill the most allocated node first: keeps whole nodes free (the edge default).
    Binpack,
    /// Prefer the least allocated node: spreads load and failure.
    Spread,
}

/// Liveness (restart when it fails) and readiness (ready only while it passes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probes {
    /// Restart the instance when this fails `failureThreshold` times in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Probe>,
    /// The instance is ready only after this first passes, and while it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Probe>,
    /// Until this passes once, liveness and readiness wait (a slow start is
    /// not a hang); failing `failureThreshold` times restarts the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<Probe>,
}

impl Probes {
    /// Whether no probe is set.
    pub fn is_empty(&self) -> bool {
        self.liveness.is_none() && self.readiness.is_none() && self.startup.is_none()
    }
}

/// One probe, with one handler:
/// - `watchdog: {}` (daemons): a daemon busy in its `_start` cannot be
///   re-entered to call a health export, so it proves it is alive by calling
///   the host import `flotilla::watchdog_kick` at least once per `timeout`;
/// - `httpGet: {path}` (http workloads): a request to the handler's own
///   export on a fresh instance, healthy on a 2xx/3xx answer within `timeout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    /// The watchdog handler (`watchdog: {}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog: Option<WatchdogProbe>,
    /// The HTTP handler (`httpGet: {path: /healthz}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetProbe>,
    /// How often the probe is evaluated (default 1s).
    #[serde(default = "default_probe_period")]
    pub period: String,
    /// Longest silence that still passes (default 3s).
    #[serde(default = "default_probe_timeout")]
    pub timeout: String,
    /// Consecutive failures that fail the probe (default 3).
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
}

/// An HTTP probe: `GET path` on a fresh instance of the workload's handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGetProbe {
    /// The path requested (default `/`).
    #[serde(default = "root_path")]
    pub path: String,
}

/// The watchdog handler has no settings yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogProbe {}

fn default_probe_period() -> String {
    "1s".into()
}
fn default_probe_timeout() -> String {
    "3s".into()
}
fn default_failure_threshold() -> u32 {
    3
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn one() -> u32 {
    1
}

/// Where the module comes from. After `apply` the CLI has uploaded a `file:`
/// source to the control plane and `sha256` names the blob.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModuleSource {
    /// `file:PATH` (relative to the manifest's folder), or
    /// `oci://REGISTRY/REPOSITORY:TAG` / `…@sha256:DIGEST` (pulled by the
    /// control plane at admission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Hex sha256 of the module's bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// For an `oci://` source, set by the server: the source as it was
    /// resolved, pinned to its manifest's digest
    /// (`oci://REGISTRY/REPOSITORY:TAG@sha256:…`). A tag that moves later
    /// changes nothing until the workload is applied again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<String>,
}

/// `spec.files[]`: the values of a Config or a Secret as files in a
/// read-only directory the guest sees at `guestPath` (a Secret's only in
/// memory on the node).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileMount {
    /// Where the guest sees the directory (absolute).
    pub guest_path: String,
    /// A Config's name (or give `secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// A Secret's name (or give `config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Which keys, as which files; every key, as a file named after it,
    /// when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    /// Whether a missing object or key is skipped (else the instance
    /// waits, `ConfigMissing`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

impl FileMount {
    /// `("Config" | "Secret", name)`, when exactly one is given.
    pub fn source(&self) -> Option<(&'static str, &str)> {
        match (&self.config, &self.secret) {
            (Some(name), None) => Some(("Config", name)),
            (None, Some(name)) => Some(("Secret", name)),
            _ => None,
        }
    }
}

/// `spec.volumes[]`: one volume, of exactly one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    /// Its name, for `volumeMounts`.
    pub name: String,
    /// A folder of the instance's own, empty at its start, kept across its
    /// restarts, removed with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolume>,
    /// A folder of the node (only under the node's `--allow-host-path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathVolume>,
    /// A volume per replica that outlives it: the replicas get stable
    /// identities (`NAME-0`…), each bound to the node holding its volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<PersistentVolume>,
}

/// `emptyDir`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmptyDirVolume {
    /// Most bytes it may hold; past it the instance is stopped
    /// (`VolumeQuotaExceeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<String>,
    /// `Memory`: in memory-backed storage (tmpfs); else on the node's disk.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub medium: String,
}

/// `hostPath`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostPathVolume {
    /// The folder on the node (absolute).
    pub path: String,
    /// Whether every mount of it is read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// `persistent`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PersistentVolume {
    /// Its size: most bytes it may hold (past it the replica is stopped,
    /// `VolumeQuotaExceeded`).
    pub size: String,
    /// What deleting the workload does to it.
    #[serde(default, skip_serializing_if = "ReclaimPolicy::is_delete")]
    pub reclaim_policy: ReclaimPolicy,
}

/// What becomes of a persistent volume when its workload is deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReclaimPolicy {
    /// Deleted with it (the default).
    #[default]
    Delete,
    /// Kept (and its data, on its node) until deleted by hand.
    Retain,
}

impl ReclaimPolicy {
    fn is_delete(&self) -> bool {
        *self == ReclaimPolicy::Delete
    }
}

/// The label carrying a stateful replica's ordinal (`NAME-<ordinal>`).
pub const ORDINAL_LABEL: &str = "flotilla.dev/ordinal";

/// Label naming the node an every-node workload's instance is for (the
/// binder places it there and nowhere else).
pub const EVERY_NODE_LABEL: &str = "flotilla.dev/every-node";

/// How long a persistent volume's node may be gone before its replica is
/// made again elsewhere, empty, unless `persistentVolumeReclaimAfter` says.
pub const DEFAULT_RECLAIM_AFTER: &str = "10m";

/// `spec.volumeMounts[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    /// A volume of `spec.volumes`.
    pub name: String,
    /// Where the guest sees it (absolute).
    pub mount_path: String,
    /// Whether the guest may only read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// One read of a Config's or Secret's values by a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueRead<'a> {
    /// `Config` or `Secret`.
    pub kind: &'static str,
    /// The object's name.
    pub name: &'a str,
    /// The keys read; `None`: every key.
    pub keys: Option<Vec<&'a str>>,
}

/// `envFrom[]`: every key of a Config or Secret as a variable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvFromSource {
    /// A Config in the workload's namespace (or give `secretRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_ref: Option<ObjectName>,
    /// A Secret in the workload's namespace (or give `configRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<ObjectName>,
    /// Put before every variable's name (`APP_`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

impl EnvFromSource {
    /// `("Config" | "Secret", name)`, when exactly one is given.
    pub fn source(&self) -> Option<(&'static str, &str)> {
        match (&self.config_ref, &self.secret_ref) {
            (Some(r), None) => Some(("Config", &r.name)),
            (None, Some(r)) => Some(("Secret", &r.name)),
            _ => None,
        }
    }

    /// Whether a missing object is skipped (else the instance waits).
    pub fn optional(&self) -> bool {
        self.config_ref
            .as_ref()
            .or(self.secret_ref.as_ref())
            .is_some_and(|r| r.optional)
    }
}

/// A Secret with registry credentials, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PullSecret {
    /// The Secret's name, in the workload's namespace.
    pub name: String,
}

/// A whole Config or Secret, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectName {
    /// The object's name.
    pub name: String,
    /// Whether a missing object is skipped (else the instance waits,
    /// `ConfigMissing`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// `spec.config`: what the guest reads through `wasi:config/store`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigStore {
    /// Where the values come from; a later source's key wins.
    #[serde(default)]
    pub from: Vec<ConfigSource>,
}

/// One source of `spec.config.from`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigSource {
    /// A Config's name (or give `secretRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_ref: Option<String>,
    /// A Secret's name (or give `configRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
    /// Whether a missing object is skipped (else the instance waits).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

impl ConfigSource {
    /// `("Config" | "Secret", name)`, when exactly one is given.
    pub fn source(&self) -> Option<(&'static str, &str)> {
        match (&self.config_ref, &self.secret_ref) {
            (Some(name), None) => Some(("Config", name)),
            (None, Some(name)) => Some(("Secret", name)),
            _ => None,
        }
    }
}

/// One key of a [`FileMount`], as a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyToPath {
    /// The key.
    pub key: String,
    /// The file, relative to the mount (`conf/app.toml`).
    pub path: String,
}

/// One environment variable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Its value.
    #[serde(default)]
    pub value: String,
    /// Or: where the agent reads it when the instance starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvSource>,
}

/// `env[].valueFrom`: exactly one of its fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvSource {
    /// A key of a Config in the workload's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_key_ref: Option<KeyRef>,
    /// A key of a Secret in the workload's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,
}

impl EnvSource {
    /// `("Config" | "Secret", reference)`, when exactly one is given.
    pub fn reference(&self) -> Option<(&'static str, &KeyRef)> {
        match (&self.config_key_ref, &self.secret_key_ref) {
            (Some(r), None) => Some(("Config", r)),
            (None, Some(r)) => Some(("Secret", r)),
            _ => None,
        }
    }
}

/// One key of a Config or Secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyRef {
    /// The object's name.
    pub name: String,
    /// The key.
    pub key: String,
    /// Whether a missing object or key is skipped (else the instance
    /// waits, `ConfigMissing`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// Requests and limits, as quantities (`64Mi`, `250m`, `5s`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// What the scheduler reserves on a node.
    #[serde(default)]
    pub requests: ResourceList,
    /// What the runtime enforces.
    #[serde(default)]
    pub limits: ResourceList,
}

impl Resources {
    /// Kubernetes' defaulting: a resource with a limit and no request
    /// requests its limit, so a node is never promised more than it can
    /// run (the scheduler packs on requests).
    pub fn default_requests_to_limits(&mut self) {
        if self.requests.memory.is_none() {
            self.requests.memory = self.limits.memory.clone();
        }
        if self.requests.cpu.is_none() {
            self.requests.cpu = self.limits.cpu.clone();
        }
    }
}

/// Memory, CPU and (for limits) wall-clock time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceList {
    /// Memory quantity: `64Mi`, `1Gi`, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// CPU quantity: `250m`, `0.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Wall-clock limit per run: `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

impl ResourceList {
    /// Memory in bytes and CPU in millicores; absent (or invalid, which
    /// validation refuses before anything is stored) counts as zero.
    pub fn memory_and_cpu(&self) -> (u64, u64) {
        let memory = self
            .memory
            .as_deref()
            .and_then(|m| crate::parse_memory_bytes(m).ok())
            .unwrap_or(0);
        let cpu = self
            .cpu
            .as_deref()
            .and_then(|c| crate::parse_cpu_millis(c).ok())
            .unwrap_or(0);
        (memory, cpu)
    }
}

/// A host directory granted to instances.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DirGrant {
    /// Directory on the node.
    pub host_path: String,
    /// Where the guest sees it.
    pub guest_path: String,
    /// Whether the guest may only read.
    #[serde(default)]
    pub read_only: bool,
}

/// When to restart an instance that ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicyKind {
    /// Whatever the reason.
    #[default]
    Always,
    /// Only when it did not complete successfully.
    OnFailure,
    /// Never.
    Never,
}

/// The restart policy with its exponential backoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestartPolicy {
    /// Always, OnFailure or Never.
    #[serde(default)]
    pub policy: RestartPolicyKind,
    /// Delays between restarts.
    #[serde(default)]
    pub backoff: Backoff,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            policy: RestartPolicyKind::Always,
            backoff: Backoff::default(),
        }
    }
}

/// Exponential backoff: `initial`, doubling up to `max`; the count resets
/// after an instance has run `resetAfter` without ending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backoff {
    /// First delay (default 1s).
    #[serde(default = "default_initial")]
    pub initial: String,
    /// Largest delay (default 60s).
    #[serde(default = "default_max")]
    pub max: String,
    /// Run time after which the backoff starts over (default 10m).
    #[serde(default = "default_reset_after")]
    pub reset_after: String,
}

fn default_initial() -> String {
    "1s".into()
}
fn default_max() -> String {
    "60s".into()
}
fn default_reset_after() -> String {
    "10m".into()
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: default_initial(),
            max: default_max(),
            reset_after: default_reset_after(),
        }
    }
}

/// What the workload controller observed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkloadStatus {
    /// The generation this status describes.
    pub observed_generation: u64,
    /// Instances wanted: `spec.replicas`, or for an every-node workload
    /// the Ready nodes that match its selector.
    #[serde(default)]
    pub desired_replicas: u32,
    /// Instances that exist, old and new.
    pub replicas: u32,
    /// Of those, the ones bound to a node.
    #[serde(default)]
    pub scheduled_replicas: u32,
    /// Instances of an every-node workload on a node it no longer wants
    /// (gone, NotReady, or no longer matching), being removed.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub misscheduled_replicas: u32,
    /// Instances made from the current template.
    #[serde(default)]
    pub updated_replicas: u32,
    /// Instances that are Ready, old and new.
    pub ready_replicas: u32,
    /// Instances that count as available (Ready), old and new.
    #[serde(default)]
    pub available_replicas: u32,
    /// The number of the Revision of the template the workload asks for
    /// (the one being rolled out, or rolled out).
    #[serde(default, alias = "revision", skip_serializing_if = "is_zero_u64")]
    pub update_revision: u64,
    /// The hash of that template (the instances' label).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub template_hash: String,
    /// The number of the last Revision that completed a rollout (every
    /// replica updated and available): what a failed rollout reverts to.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub current_revision: u64,
    /// The hash of that revision's template.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub current_template_hash: String,
    /// Set by an automatic rollback to the hash it reverted to; cleared
    /// when another template is applied. While the workload's template is
    /// that one, `Progressing` stays `False, RolledBack`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rolled_back_to: String,
    /// Where a canary stands, while one is under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,
    /// Conditions, Kubernetes style.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// `status.canary`: the canary of one template.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// The canary's template hash (the update's).
    pub hash: String,
    /// The index of the step under way; the number of steps once all are
    /// done (the new template then takes every replica).
    pub step: u32,
    /// The share of requests (http) or replicas (daemons) the canary has,
    /// in percent. The ingress of every node splits by it.
    pub weight: u32,
    /// When the current pause began (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_start_time: Option<String>,
}

/// A condition: a named boolean with a reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// E.g. `Available`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_transition_time: String,
    /// When the condition was last brought up to date (for `Progressing`:
    /// the rollout's last move).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
}

#[cfg(test)]
mod defaulting {
    use super::*;

    #[test]
    fn a_limit_without_a_request_is_requested() {
        let mut resources = Resources {
            requests: ResourceList {
                memory: Some("16Mi".into()),
                ..ResourceList::default()
            },
            limits: ResourceList {
                memory: Some("32Mi".into()),
                cpu: Some("300m".into()),
                timeout: Some("5s".into()),
            },
        };
        resources.default_requests_to_limits();
        assert_eq!(
            resources.requests.memory.as_deref(),
            Some("16Mi"),
            "a request is kept"
        );
        assert_eq!(resources.requests.cpu.as_deref(), Some("300m"));
        assert_eq!(
            resources.requests.timeout, None,
            "a timeout is not a request"
        );
    }
}

#[cfg(test)]
mod routes {
    use super::*;

    #[test]
    fn route_prefixes_match_whole_segments() {
        let route = |prefix: &str| Route {
            host: "Shop.Local".into(),
            path_prefix: prefix.into(),
        };
        for (prefix, path, serves) in [
            ("/", "/", true),
            ("/", "/anything/at/all", true),
            ("/api", "/api", true),
            ("/api", "/api/", true),
            ("/api", "/api/v1/items", true),
            ("/api", "/apiary", false),
            ("/api", "/ap", false),
            ("/api/", "/api", true),
            ("/api/", "/api/v1", true),
            ("/api/", "/apiary", false),
            ("/api/v1", "/api/v10", false),
        ] {
            assert_eq!(
                route(prefix).serves("shop.local", path),
                serves,
                "{prefix} {path}"
            );
        }
        assert!(!route("/").serves("other.local", "/"));
        assert_eq!(route("/api/").specificity(), route("/api").specificity());
        assert!(route("/api/v1").specificity() > route("/api").specificity());
    }
}
