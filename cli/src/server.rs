//! `flotilla server`: the control plane alone (API, store, controllers), for
//! agents on other machines to join with the join token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use flotilla_control_plane::api::{router, ApiState, Role};
use flotilla_control_plane::controllers;
use flotilla_control_plane::store::{BlobStore, SqliteStore, Store};
use flotilla_scheduler::Strategy;

use crate::config::{self, ClientConfig};

/// How long a node may miss heartbeats before it is not Ready, by default.
pub const NODE_GRACE: Duration = Duration::from_secs(5);

#[derive(Args)]
pub struct ServerArgs {
    /// Where the store and tokens live.
    #[arg(long, default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// API address (loopback by default: reachable from this machine only).
    #[arg(long, default_value = "127.0.0.1:7443")]
    pub listen: SocketAddr,
    /// How instances are placed unless a workload sets `spec.placement.strategy`:
    /// binpack fills the fullest node that fits first (keeps nodes free);
    /// spread prefers the least allocated.
    #[arg(long, value_enum, default_value_t = StrategyArg::Binpack)]
    pub strategy: StrategyArg,
    /// How long a node may go without renewing its lease (heartbeat, every
    /// 1 s) before it is NotReady and its instances are moved elsewhere.
    #[arg(long, default_value = "5s", value_parser = parse_grace)]
    pub node_grace: Duration,
}

fn parse_grace(text: &str) -> Result<Duration, String> {
    let grace = flotilla_spec::parse_duration(text).map_err(|e| e.to_string())?;
    if grace < 2 * flotilla_agent::node::HEARTBEAT_EVERY {
        return Err(format!(
            "{text} is shorter than two heartbeats ({:?}): nodes would flap",
            2 * flotilla_agent::node::HEARTBEAT_EVERY
        ));
    }
    Ok(grace)
}

/// `--strategy`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum StrategyArg {
    /// Most allocated node first.
    Binpack,
    /// Least allocated node first.
    Spread,
}

impl From<StrategyArg> for Strategy {
    fn from(s: StrategyArg) -> Self {
        match s {
            StrategyArg::Binpack => Strategy::Binpack,
            StrategyArg::Spread => Strategy::Spread,
        }
    }
}

pub fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("flotilla")
}

/// A token stored in `<data-dir>/<name>`: read, or created on first start.
fn token_file(data_dir: &Path, name: &str) -> Result<String> {
    let path = data_dir.join(name);
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

/// Modules used to be rows of the SQLite store: moves them to the module
/// folder (each written and synced before its row goes), once.
fn move_blobs_out_of_the_store(store: &SqliteStore, blobs: &BlobStore) -> Result<()> {
    let digests = store.blob_digests()?;
    for digest in &digests {
        if let Some(bytes) = store.get_blob(digest)? {
            blobs
                .put_bytes(digest, &bytes)
                .with_context(|| format!("moving module {digest} to the module folder"))?;
        }
        store.delete_blob(digest)?;
    }
    if !digests.is_empty() {
        eprintln!(
            "moved {} modules from the store to the module folder",
            digests.len()
        );
    }
    Ok(())
}

/// A bound, not yet serving, control plane.
pub struct ControlPlane {
    listener: tokio::net::TcpListener,
    store: Arc<SqliteStore>,
    blobs: Arc<BlobStore>,
    /// `http://addr` of the API.
    pub url: String,
    /// The admin token.
    pub admin_token: String,
    /// The join token (for agents).
    pub join_token: String,
}

impl ControlPlane {
    /// Opens the store, creates the tokens, binds the API address and
    /// writes the admin client config.
    pub async fn bind(data_dir: &Path, listen: SocketAddr) -> Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let store = Arc::new(SqliteStore::open(&data_dir.join("store.db"))?);
        let blob_dir = data_dir.join("blobs");
        let blobs = Arc::new(
            BlobStore::open(&blob_dir)
                .with_context(|| format!("opening the module folder {}", blob_dir.display()))?,
        );
        move_blobs_out_of_the_store(store.as_ref(), &blobs)?;
        let admin_token = token_file(data_dir, "admin-token")?;
        let join_token = token_file(data_dir, "join-token")?;
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
            format!("cannot listen on {listen}: is another flotilla running? (choose another address with --listen)")
        })?;
        let url = format!("http://{}", listener.local_addr()?);
        let path = config::save(&ClientConfig {
            server: url.clone(),
            token: admin_token.clone(),
        })?;
        eprintln!("client config written to {}", path.display());
        Ok(Self {
            listener,
            store,
            blobs,
            url,
            admin_token,
            join_token,
        })
    }

    /// Runs the controllers and serves the API until Ctrl-C.
    pub async fn serve(self, strategy: Strategy, node_grace: Duration) -> Result<()> {
        let state = Arc::new(ApiState {
            store: self.store.clone(),
            tokens: vec![
                (self.admin_token, Role::Admin),
                (self.join_token, Role::Node),
            ],
            streams: Default::default(),
            blobs: self.blobs.clone(),
        });
        tokio::spawn(controllers::run(
            self.store, self.blobs, node_grace, strategy,
        ));
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        // The peer address identifies a client for the per-client stream cap.
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

pub async fn main(args: ServerArgs) -> Result<()> {
    let cp = ControlPlane::bind(&args.data_dir, args.listen).await?;
    eprintln!(
        "flotilla server is up: API {}; agents join with: flotilla agent --server {} --token $(cat {})",
        cp.url,
        cp.url,
        args.data_dir.join("join-token").display()
    );
    cp.serve(args.strategy.into(), args.node_grace).await
}
