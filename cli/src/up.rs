//! `flotilla up`: control plane and agent in one process, on an embedded
//! SQLite store — one machine, one command.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use flotilla_agent::logs::LogDir;
use flotilla_agent::node::{machine_capacity, Agent, AgentConfig};
use flotilla_agent::runtime::{Runtime, RuntimeConfig};
use flotilla_control_plane::api::{router, ApiState, LogSource};
use flotilla_control_plane::controllers;
use flotilla_control_plane::store::SqliteStore;

use crate::config::{self, ClientConfig};

/// How long a node may miss heartbeats before it is not Ready.
const NODE_GRACE: Duration = Duration::from_secs(5);

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
}

fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("flotilla")
}

/// The admin token: read, or created on first start.
fn admin_token(data_dir: &std::path::Path) -> Result<String> {
    let path = data_dir.join("admin-token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        let token = token.trim().to_string();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    config::write_private(&path, token.as_bytes())?;
    Ok(token)
}

struct AgentLogs(LogDir);

impl LogSource for AgentLogs {
    fn log_path(&self, namespace: &str, instance: &str, previous: bool) -> PathBuf {
        self.0.path(namespace, instance, previous)
    }
}

fn host_name() -> String {
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

pub async fn main(args: UpArgs) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let store = Arc::new(SqliteStore::open(&args.data_dir.join("store.db"))?);
    let token = admin_token(&args.data_dir)?;
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| {
        format!("cannot listen on {}: is another flotilla running? (choose another address with --listen)", args.listen)
    })?;
    let server = format!("http://{}", listener.local_addr()?);
    let config_path = config::save(&ClientConfig {
        server: server.clone(),
        token: token.clone(),
    })?;

    let runtime = Runtime::new(RuntimeConfig {
        max_instances: args.max_instances,
        max_memory_bytes: 1 << 30,
        cache_dir: Some(args.data_dir.join("compiled")),
        ..RuntimeConfig::default()
    })?;
    let (memory, cpu) = machine_capacity();
    let node_name = args.name.clone().unwrap_or_else(host_name);
    let agent = Agent::new(
        AgentConfig {
            server: server.clone(),
            token: token.clone(),
            node_name: node_name.clone(),
            labels: BTreeMap::new(),
            data_dir: args.data_dir.join("agent"),
            capacity_memory_bytes: memory,
            capacity_cpu_millis: cpu,
        },
        runtime,
    )?;
    let state = Arc::new(ApiState {
        store: store.clone(),
        tokens: vec![token],
        logs: Some(Arc::new(AgentLogs(agent.logs()))),
    });
    tokio::spawn(controllers::run(store, NODE_GRACE));
    tokio::spawn(agent.run());
    eprintln!(
        "flotilla is up: API {server}, node {node_name}, data in {}",
        args.data_dir.display()
    );
    eprintln!(
        "client config written to {} — try: flotilla apply -f examples/ticker.yaml",
        config_path.display()
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
