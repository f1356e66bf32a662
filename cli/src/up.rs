//! `flotilla up`: control plane and agent in one process, on an embedded
//! SQLite store — one machine, one command.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use flotilla_agent::credentials::NodeCredentials;
use flotilla_agent::node::{machine_capacity, AgentConfig};

use crate::server::{default_data_dir, ControlPlane};

#[derive(Args)]
pub struct UpArgs {
    /// Where the store, tokens, logs and caches live.
    #[arg(long, default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// API address (loopback by default: the API is reachable from this machine only).
    #[arg(long, default_value = "127.0.0.1:7443")]
    listen: SocketAddr,
    /// This node's name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Instances this node can hold at once (slots reserved by the pooling allocator).
    #[arg(long, default_value_t = 1000)]
    max_instances: u32,
    /// Crash restarts this node makes a second, all instances together
    /// (each instance's own backoff comes first; past this rate restarts
    /// queue, so crash loops cannot take the node's CPU).
    #[arg(long, default_value_t = flotilla_agent::restart_budget::DEFAULT_RESTARTS_PER_SECOND)]
    max_restarts_per_second: u32,
    /// Where the node's HTTP ingress listens (`off`: none).
    #[arg(long, default_value = crate::agent::DEFAULT_INGRESS)]
    ingress: String,
    /// Where the node's HTTPS ingress listens (certificates from the
    /// workloads' spec.tls, chosen by SNI); none unless given.
    #[arg(long, value_name = "ADDRESS")]
    ingress_tls: Option<String>,
    #[command(flatten)]
    ingress_limits: crate::agent::IngressLimitArgs,
    /// A host directory (and what is below it) workloads may be granted
    /// with spec.dirs; repeatable. None by default; never the data folder.
    #[arg(long = "allow-host-path", value_name = "PREFIX")]
    allow_host_path: Vec<PathBuf>,
    /// Most disk that downloaded modules and their compiled code may take;
    /// least recently used ones not running are removed past it.
    #[arg(long, default_value = "1Gi", value_parser = crate::agent::parse_memory)]
    module_cache_size: u64,
    /// Free disk (under --data-dir) below which the node reports
    /// DiskPressure and takes no new instances: a size (1Gi) or a
    /// percentage of the disk (10%).
    #[arg(long, default_value = "1Gi", value_name = "SIZE|PERCENT")]
    disk_pressure_below: flotilla_agent::disk_pressure::Threshold,
    #[command(flatten)]
    tls: crate::server::TlsArgs,
    #[command(flatten)]
    dashboard: crate::server::DashboardArgs,
    #[command(flatten)]
    registries: crate::server::RegistryArgs,
    #[command(flatten)]
    audit: crate::server::AuditArgs,
    /// The store: SQLite in the data folder unless `--store etcd://…` (as
    /// for `flotilla server`).
    #[command(flatten)]
    store: crate::store_choice::StoreArgs,
}

pub async fn main(args: UpArgs) -> Result<()> {
    let cp = ControlPlane::bind(&args.data_dir, args.listen, &args.tls, &args.store).await?;
    let ingress = crate::agent::bind_ingress(&args.ingress).await?;
    let node_port = crate::agent::bind_node_port(None, &ingress).await?;
    let ingress_tls = crate::agent::bind_ingress_tls(args.ingress_tls.as_deref()).await?;
    let (memory, cpu) = machine_capacity();
    let node_name = args.name.clone().unwrap_or_else(crate::agent::host_name);
    let url = cp.url.clone();
    // The agent shares the control plane's process: its certificate comes
    // from the CA here, no join over the network (so a data folder from
    // before certificates keeps its node), recorded so it can be revoked.
    let agent_dir = args.data_dir.join("agent");
    let credentials =
        NodeCredentials::issue_locally(&node_name, &agent_dir, cp.trust.ca_pem(), |csr| {
            cp.issue_local_node_certificate(&node_name, csr)
        })
        .map_err(|e| anyhow::anyhow!("node {node_name}: {e}"))?;
    let control_plane = tokio::spawn(cp.serve(
        flotilla_scheduler::Strategy::Binpack,
        crate::server::NODE_GRACE,
        args.dashboard.clone(),
        args.registries.clone(),
        args.audit.clone(),
        crate::server::Leading {
            lease: args.store.leader_lease,
            compaction: args.store.etcd_compaction_interval,
        },
    ));
    let agent = crate::agent::build(AgentConfig {
        server: url.clone(),
        credentials,
        node_name: node_name.clone(),
        labels: BTreeMap::new(),
        data_dir: agent_dir,
        capacity_memory_bytes: memory,
        capacity_cpu_millis: cpu,
        ingress_address: crate::agent::address_of(&ingress),
        node_address: node_port.local_addr()?.to_string(),
        max_instances: args.max_instances,
        max_restarts_per_second: args.max_restarts_per_second,
        ingress_limits: args.ingress_limits.limits(),
        allowed_host_paths: args.allow_host_path.clone(),
        module_cache_bytes: args.module_cache_size,
        disk_pressure_below: args.disk_pressure_below,
        protected_paths: vec![args.data_dir.clone()],
    })?;
    agent.serve(ingress, ingress_tls, node_port);
    tokio::spawn(agent.run());
    crate::notice::say(format!(
        "flotilla is up: API {url}, HTTP ingress {}, node {node_name}, data in {}",
        args.ingress,
        args.data_dir.display()
    ));
    crate::notice::say("try: flotilla apply -f examples/ticker.yaml");
    control_plane.await?
}
