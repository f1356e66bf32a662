//! `flotilla agent`: join a node to a control plane.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use flotilla_agent::credentials::NodeCredentials;
use flotilla_agent::ingress::IngressLimits;
use flotilla_agent::node::{machine_capacity, send_heartbeat, Agent, AgentConfig};
use flotilla_agent::runtime::{Runtime, RuntimeConfig};

#[derive(Args)]
pub struct AgentArgs {
    /// The control plane's URL (https://host:port), or several servers of
    /// one control plane, comma-separated: the agent moves to the next when
    /// one cannot be reached.
    #[arg(long)]
    server: String,
    /// A file holding the join token (the server's <data-dir>/join-token,
    /// or one from `flotilla token create`); needed to join once, until the
    /// node holds its own certificate. Kept out of argv, where `ps` shows it.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// This node's name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Node labels, k=v,k2=v2.
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// Memory offered (default: the machine's).
    #[arg(long, value_parser = parse_memory)]
    capacity_memory: Option<u64>,
    /// CPU offered (default: the machine's cores).
    #[arg(long, value_parser = parse_cpu)]
    capacity_cpu: Option<u64>,
    /// Where the journal, logs and modules live.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Instances this node can hold at once.
    #[arg(long, default_value_t = 1000)]
    max_instances: u32,
    /// Crash restarts this node makes a second, all instances together
    /// (each instance's own backoff comes first; past this rate restarts
    /// queue, so crash loops cannot take the node's CPU).
    #[arg(long, default_value_t = flotilla_agent::restart_budget::DEFAULT_RESTARTS_PER_SECOND)]
    max_restarts_per_second: u32,
    /// Where the node's HTTP ingress listens (`off`: none).
    #[arg(long, default_value = DEFAULT_INGRESS)]
    ingress: String,
    /// Where the node's HTTPS ingress listens (certificates from the
    /// workloads' spec.tls, chosen by SNI); none unless given.
    #[arg(long, value_name = "ADDRESS")]
    ingress_tls: Option<String>,
    /// Where the node port listens (TLS, node and control-plane
    /// certificates only: logs, requests forwarded by other nodes).
    /// Default: the ingress's address with a port of the system's choice.
    #[arg(long, value_name = "ADDRESS")]
    node_listen: Option<String>,
    #[command(flatten)]
    ingress_limits: IngressLimitArgs,
    /// A host directory (and what is below it) workloads on this node may
    /// be granted with spec.dirs; repeatable. None by default; never the
    /// agent's data folder.
    #[arg(long = "allow-host-path", value_name = "PREFIX")]
    allow_host_path: Vec<PathBuf>,
    /// Most disk that downloaded modules and their compiled code may take;
    /// least recently used ones not running are removed past it.
    #[arg(long, default_value = "1Gi", value_parser = parse_memory)]
    module_cache_size: u64,
    /// A folder never granted to a workload, whatever --allow-host-path
    /// allows (the agent's data folder and the default control-plane data
    /// folder always are); repeatable.
    #[arg(long = "protect-path", value_name = "DIR")]
    protect_path: Vec<PathBuf>,
    /// Free disk (under --data-dir) below which the node reports
    /// DiskPressure and takes no new instances: a size (1Gi) or a
    /// percentage of the disk (10%, the kubelet's default).
    #[arg(long, default_value = "1Gi", value_name = "SIZE|PERCENT")]
    disk_pressure_below: flotilla_agent::disk_pressure::Threshold,
}

/// What the node's ingress allows a client.
#[derive(Args)]
pub struct IngressLimitArgs {
    /// Longest wait for a request's headers, and for the next request on an
    /// idle kept-alive connection.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    ingress_header_timeout: std::time::Duration,
    /// Connections the ingress keeps open at once (more get 503).
    #[arg(long, default_value_t = 10_000)]
    ingress_max_connections: usize,
    /// Longest wait for a free slot of a replica (its maxConcurrency)
    /// before answering 503 with Retry-After.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    ingress_slot_wait: std::time::Duration,
}

impl IngressLimitArgs {
    /// The limits these flags set.
    pub fn limits(&self) -> IngressLimits {
        IngressLimits {
            header_timeout: self.ingress_header_timeout,
            max_connections: self.ingress_max_connections,
            slot_wait: self.ingress_slot_wait,
        }
    }
}

fn parse_duration(t: &str) -> Result<std::time::Duration, String> {
    flotilla_spec::parse_duration(t).map_err(|e| e.to_string())
}

/// The ingress address unless `--ingress` says otherwise.
pub const DEFAULT_INGRESS: &str = "127.0.0.1:8080";

/// Binds `--ingress` (`off`: `None`), with a message that names the fix.
pub async fn bind_ingress(address: &str) -> Result<Option<tokio::net::TcpListener>> {
    if address == "off" {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen for HTTP ingress on {address}: {e} (choose another address with --ingress, or --ingress off)"
        )
    })?;
    Ok(Some(listener))
}

/// Binds `--ingress-tls`, if given, with a message that names the fix.
pub async fn bind_ingress_tls(address: Option<&str>) -> Result<Option<tokio::net::TcpListener>> {
    let Some(address) = address else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen for HTTPS ingress on {address}: {e} (choose another address with --ingress-tls)"
        )
    })?;
    Ok(Some(listener))
}

/// Binds the node port: `--node-listen`, else the ingress's host (loopback
/// without an ingress) on a port of the system's choice.
pub async fn bind_node_port(
    address: Option<&str>,
    ingress: &Option<tokio::net::TcpListener>,
) -> Result<tokio::net::TcpListener> {
    let address = match address {
        Some(address) => address.to_string(),
        None => {
            let host = ingress
                .as_ref()
                .and_then(|l| l.local_addr().ok())
                .map(|a| a.ip())
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
            std::net::SocketAddr::new(host, 0).to_string()
        }
    };
    tokio::net::TcpListener::bind(&address).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen for the node port on {address}: {e} (choose another address with --node-listen)"
        )
    })
}

/// The join token: from `--token-file`, else `$FLOTILLA_TOKEN`.
fn read_token(file: Option<&std::path::Path>) -> Result<Option<String>> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("--token-file {}: {e}", file.display()))?;
        return Ok(Some(text.trim().to_string()));
    }
    Ok(std::env::var("FLOTILLA_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty()))
}

/// The node's credentials: kept ones, else a join — retried while the
/// server cannot be reached, refused at once on anything else.
pub async fn credentials(
    server: &str,
    token: Option<&str>,
    node: &str,
    data_dir: &std::path::Path,
) -> Result<std::sync::Arc<NodeCredentials>> {
    let mut wait = std::time::Duration::from_millis(200);
    loop {
        match NodeCredentials::obtain(server, token, node, data_dir).await {
            Ok(credentials) => return Ok(credentials),
            Err(e) if e.is_transient() => {
                crate::notice::say(format!(
                    "agent {node}: cannot join yet: {e}; retrying in {wait:?}"
                ));
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
            Err(e) => bail!("node {node} cannot join {server}: {e}"),
        }
    }
}

/// `host:port` a listener is bound to, or empty.
pub fn address_of(listener: &Option<tokio::net::TcpListener>) -> String {
    listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .unwrap_or_default()
}

pub fn parse_memory(t: &str) -> Result<u64, String> {
    flotilla_spec::parse_memory_bytes(t).map_err(|e| e.to_string())
}

fn parse_cpu(t: &str) -> Result<u64, String> {
    flotilla_spec::parse_cpu_millis(t).map_err(|e| e.to_string())
}

/// The host name, made a valid node name.
pub fn host_name() -> String {
    let raw =
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "node".into());
    let name: String = raw
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        "node".into()
    } else {
        name.chars().take(63).collect()
    }
}

/// Builds an agent with its own runtime.
pub fn build(config: AgentConfig) -> Result<Agent> {
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: config.max_instances,
        max_memory_bytes: 1 << 30,
        cache_dir: Some(config.data_dir.join("compiled")),
        ..RuntimeConfig::default()
    })?;
    Ok(Agent::new(config, runtime)?)
}

pub async fn main(args: AgentArgs) -> Result<()> {
    let name = args.name.unwrap_or_else(host_name);
    flotilla_spec::validate::check_name(&name).map_err(|m| anyhow::anyhow!("--name: {m}"))?;
    let mut labels = BTreeMap::new();
    for pair in args.labels.iter().filter(|l| !l.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("--labels: {pair:?} is not k=v")
        };
        labels.insert(k.to_string(), v.to_string());
    }
    let (memory, cpu) = machine_capacity();
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| crate::server::default_data_dir().join("agent").join(&name));
    let ingress = bind_ingress(&args.ingress).await?;
    let node_port = bind_node_port(args.node_listen.as_deref(), &ingress).await?;
    let ingress_tls = bind_ingress_tls(args.ingress_tls.as_deref()).await?;
    let token = read_token(args.token_file.as_deref())?;
    let credentials = credentials(&args.server, token.as_deref(), &name, &data_dir).await?;
    let config = AgentConfig {
        ingress_address: address_of(&ingress),
        node_address: node_port.local_addr()?.to_string(),
        server: args.server.clone(),
        credentials,
        node_name: name.clone(),
        labels,
        data_dir,
        capacity_memory_bytes: args.capacity_memory.unwrap_or(memory),
        capacity_cpu_millis: args.capacity_cpu.unwrap_or(cpu),
        max_instances: args.max_instances,
        max_restarts_per_second: args.max_restarts_per_second,
        ingress_limits: args.ingress_limits.limits(),
        allowed_host_paths: args.allow_host_path,
        module_cache_bytes: args.module_cache_size,
        disk_pressure_below: args.disk_pressure_below,
        // A control plane on the same host keeps its store and tokens here.
        protected_paths: std::iter::once(crate::server::default_data_dir())
            .chain(args.protect_path)
            .collect(),
    };
    // Fail fast, and clearly, on a wrong token or a name another agent
    // holds. An unreachable server is not fatal: the agent is offline-first
    // and brings back its journaled instances while it retries.
    let client =
        flotilla_client::Client::new(&config.server, config.credentials.client_credentials())?
            .with_timeout(flotilla_client::AGENT_REQUEST_TIMEOUT);
    let joined = send_heartbeat(&client, &config).await;
    let mut agent = build(config)?;
    match joined {
        Ok(beat) => {
            // Known before the journal is restored: stale bindings never start.
            agent.hold_epoch(beat.epoch);
            crate::notice::say(format!("agent {name} joined {}", args.server));
        }
        Err(e @ flotilla_client::ClientError::Unreachable { .. }) => {
            crate::notice::say(format!(
                "agent {name}: {e}; running the journaled instances and retrying"
            ));
        }
        Err(e) => bail!("cannot join {}: {e}", args.server),
    }
    agent.serve(ingress, ingress_tls, node_port);
    agent.run().await;
    Ok(())
}
