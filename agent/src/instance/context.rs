//! [`NodeContext`]: what every instance on a node shares.

use std::path::PathBuf;
use std::sync::Arc;

use flotilla_client::Client;

use crate::logs::LogDir;
use crate::report::Reporter;
use crate::runtime::Runtime;

/// What every instance on a node shares.
pub struct NodeContext {
    /// The node's Wasm runtime.
    pub runtime: Arc<Runtime>,
    /// The API, for module downloads.
    pub client: Client,
    /// This node's name.
    pub node_name: String,
    /// Where instance logs go.
    pub logs: LogDir,
    /// Where downloaded modules are kept, by digest.
    pub modules_dir: PathBuf,
    /// Where compiled code is cached.
    pub compiled_dir: PathBuf,
    /// Most bytes those two folders may take (see `disk_budget`).
    pub module_cache_bytes: u64,
    /// Status and event reporting.
    pub reporter: Reporter,
    /// The node's HTTP replicas, for the ingress.
    pub endpoints: Arc<crate::endpoints::LocalEndpoints>,
    /// The node's ingress, once it serves: where guests' calls to other
    /// workloads go.
    pub ingress: std::sync::OnceLock<Arc<crate::ingress::Ingress>>,
    /// Which host directories may be granted here.
    pub host_paths: crate::host_paths::HostPathPolicy,
    /// Where daemon runs execute (`None`: on the caller's runtime).
    pub guests: Option<tokio::runtime::Handle>,
    /// How fast the node restarts crashed instances, all together.
    pub restarts: crate::restart_budget::RestartBudget,
    /// Where instances' `files` are written.
    pub files: crate::config_files::FileDirs,
    /// Where instances' `emptyDir` volumes are made.
    pub volumes: crate::volumes::VolumeDirs,
    /// The `node` backend of key-value buckets (or why it cannot open).
    pub kv: Result<Arc<flotilla_kv::SqliteKv>, String>,
    /// The node's metrics.
    pub metrics: Arc<crate::metrics::NodeMetrics>,
    /// The `cluster` backend: the control plane's buckets.
    pub cluster_kv: Arc<crate::kv_cluster::ClusterKv>,
}
