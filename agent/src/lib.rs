//! The Flotilla node agent.
//!
//! - [`runtime`]: a wasmtime engine configured once (pooling allocator, epoch
//!   interruption, async) that runs WASI preview-1 core modules and preview-2
//!   command components under Wasm-native limits enforced in-process — memory
//!   through a `ResourceLimiter`, CPU through per-instance CPU-time accounting
//!   and throttling at epoch yields, a wall-clock deadline — and classifies
//!   how each run ended. It knows nothing about the API.
//! - [`node`]: the agent loop — registers the node, heartbeats, and keeps one
//!   [`supervisor`] per Instance bound to the node (list + watch, with a local
//!   [`journal`] to restart them without the control plane);
//! - [`supervisor`]: fetch, run, restart with backoff, report; daemon runs
//!   execute on the niced [`guest_threads`], and their restarts draw on the
//!   node's [`restart_budget`];
//! - [`report`]: status and events back to the API; [`logs`]: logs on disk;
//! - [`serving`], [`endpoints`], [`ingress`], [`cluster_view`]: `http`
//!   workloads — replicas registered per workload, and the listener that
//!   routes requests to them cluster-wide, a fresh instance per request;
//! - [`credentials`]: joining (a CA-pinning join token), the node's own
//!   certificate and its renewal; [`node_port`]: the node's own endpoints
//!   (logs, requests forwarded by other nodes) over mutual TLS;
//!   [`peers`]: dialling other nodes' ports.

pub mod cluster_view;
pub mod config_files;
pub mod config_refs;
pub mod credentials;
pub mod disk_budget;
pub mod disk_pressure;
pub mod endpoints;
pub mod guest_threads;
pub mod host_paths;
pub mod ingress;
pub mod ingress_tls;
pub mod instance;
pub mod journal;
pub mod kv_cluster;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod node_port;
pub mod outbound;
pub mod peers;
pub mod persistent;
pub mod report;
pub mod restart_budget;
pub mod runtime;
pub mod volumes;
