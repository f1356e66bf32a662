//! `flotilla server`: the control plane alone (API, store, controllers), for
//! agents on other machines to join with the join token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use std::os::unix::fs::PermissionsExt;

use flotilla_control_plane::api::usage::{self, UsageHistory};
use flotilla_control_plane::api::{router, serve, ApiState, Role, Tokens};
use flotilla_control_plane::controllers;
use flotilla_control_plane::store::{BlobStore, Store};
use flotilla_control_plane::trust::{Brought, ClusterTrust};
use flotilla_scheduler::Strategy;
use flotilla_trust::JoinToken;

use crate::config;
use crate::store_choice::{Opened, StoreArgs};

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
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub dashboard: DashboardArgs,
    #[command(flatten)]
    pub registries: RegistryArgs,
    #[command(flatten)]
    pub audit: AuditArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// The audit log of writes and Secret reads.
#[derive(Args, Clone, Default)]
pub struct AuditArgs {
    /// Record every write and every Secret read through the API here, as
    /// JSON lines (Kubernetes' audit events at the Metadata level); off
    /// when not given.
    #[arg(long, value_name = "PATH")]
    pub audit_log: Option<PathBuf>,
    /// Rotate the audit log past this size.
    #[arg(long, default_value = "100Mi", value_parser = crate::agent::parse_memory)]
    pub audit_log_max_size: u64,
    /// How many rotated audit logs to keep (PATH.1 … PATH.N).
    #[arg(long, default_value_t = 5)]
    pub audit_log_max_backups: usize,
}

impl AuditArgs {
    fn open(&self) -> Result<Option<flotilla_control_plane::api::audit::AuditLog>> {
        let Some(path) = &self.audit_log else {
            return Ok(None);
        };
        let log = flotilla_control_plane::api::audit::AuditLog::open(
            path,
            self.audit_log_max_size,
            self.audit_log_max_backups,
        )
        .with_context(|| {
            format!(
                "cannot open the audit log {} (--audit-log): is its folder writable?",
                path.display()
            )
        })?;
        Ok(Some(log))
    }
}

/// How the control plane reaches registries for oci:// modules.
#[derive(Args, Clone, Default)]
pub struct RegistryArgs {
    /// A registry (host:port) to speak plain HTTP to; repeatable. Those on
    /// loopback always are; all others get HTTPS.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
}

/// The dashboard's graphs.
#[derive(Args, Clone)]
pub struct DashboardArgs {
    /// How often the server reads every node's metrics for the dashboard's
    /// graphs of the last 15 minutes (at least 1s).
    #[arg(long, default_value = "15s", value_parser = parse_usage_interval)]
    pub usage_interval: Duration,
}

fn parse_usage_interval(text: &str) -> Result<Duration, String> {
    let interval = flotilla_spec::parse_duration(text).map_err(|e| e.to_string())?;
    if interval < Duration::from_secs(1) || interval > Duration::from_secs(300) {
        return Err(format!("{text}: choose between 1s and 5m"));
    }
    Ok(interval)
}

/// The API's certificates.
#[derive(Args, Clone, Default)]
pub struct TlsArgs {
    /// Another name or address the API's certificate is for (it always
    /// covers localhost, the host name and the listen address); repeatable.
    #[arg(long = "tls-san", value_name = "NAME")]
    pub tls_san: Vec<String>,
    /// Bring the cluster CA (certificate; with --ca-key) instead of the one
    /// created in <data-dir>/pki.
    #[arg(long, requires = "ca_key")]
    pub ca: Option<PathBuf>,
    /// The key of --ca.
    #[arg(long, requires = "ca")]
    pub ca_key: Option<PathBuf>,
    /// Serve the API with this certificate (signed by the cluster CA)
    /// instead of one issued at start.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How long the certificates issued to nodes last (they renew two
    /// thirds of the way through).
    #[arg(long, default_value = "720h", value_parser = parse_validity)]
    pub node_cert_validity: Duration,
}

fn parse_validity(text: &str) -> Result<Duration, String> {
    let validity = flotilla_spec::parse_duration(text).map_err(|e| e.to_string())?;
    if validity < Duration::from_secs(30) {
        return Err(format!("{text} is too short: nodes renew two thirds of the way through, give them at least 30s"));
    }
    Ok(validity)
}

impl TlsArgs {
    fn brought(&self) -> Brought {
        Brought {
            ca: self.ca.clone().zip(self.ca_key.clone()),
            serving: self.tls_cert.clone().zip(self.tls_key.clone()),
        }
    }
}

/// The names the API's certificate covers: loopback, the host name, the
/// listen address (every local address when it listens on all of them) and
/// what `--tls-san` adds.
fn certificate_names(listen: SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        crate::agent::host_name(),
    ];
    if listen.ip().is_unspecified() {
        if let Ok(addresses) = nix::ifaddrs::getifaddrs() {
            for interface in addresses {
                let ip = interface.address.and_then(|a| {
                    a.as_sockaddr_in()
                        .map(|v4| std::net::IpAddr::V4(v4.ip()))
                        .or_else(|| a.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip())))
                });
                if let Some(ip) = ip.filter(|ip| !ip.is_loopback()) {
                    names.push(ip.to_string());
                }
            }
        }
    } else {
        names.push(listen.ip().to_string());
    }
    names.extend(extra.iter().cloned());
    names.sort();
    names.dedup();
    names
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

/// The join token in `<data-dir>/join-token`, pinning `ca_hash`: its
/// secret is kept across restarts (and from a file of an older version,
/// which held the secret alone); the file is rewritten when the CA changed.
fn join_token_file(data_dir: &Path, ca_hash: &str) -> Result<JoinToken> {
    let stored = token_file(data_dir, "join-token")?;
    let secret = match stored.parse::<JoinToken>() {
        Ok(token) => token.secret,
        Err(_) => stored.clone(),
    };
    let token = JoinToken {
        ca_hash: ca_hash.to_string(),
        secret,
    };
    if token.to_string() != stored {
        config::write_private(&data_dir.join("join-token"), token.to_string().as_bytes())?;
    }
    Ok(token)
}

/// Creates `path` owner-only if it does not exist, and makes it so if it
/// does (SQLite gives its journal files the database file's mode).
pub fn private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .and_then(|_| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)))
        .with_context(|| format!("making {} private", path.display()))
}

/// Modules used to be rows of the SQLite store: moves them to the module
/// folder (each written and synced before its row goes), once.
fn move_blobs_out_of_the_store(store: &dyn Store, blobs: &BlobStore) -> Result<()> {
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
        crate::notice::say(format!(
            "moved {} modules from the store to the module folder",
            digests.len()
        ));
    }
    Ok(())
}

/// A bound, not yet serving, control plane.
pub struct ControlPlane {
    listener: tokio::net::TcpListener,
    store: Opened,
    blobs: Arc<BlobStore>,
    /// The `cluster` key-value buckets.
    kv: Arc<dyn flotilla_kv::Backend>,
    /// `https://addr` of the API.
    pub url: String,
    /// The admin token.
    pub admin_token: String,
    /// The join token (for agents).
    pub join_token: JoinToken,
    /// The CA and the control plane's certificates.
    pub trust: Arc<ClusterTrust>,
}

impl ControlPlane {
    /// Opens the store, creates the tokens, binds the API address and
    /// writes the admin client config.
    pub async fn bind(
        data_dir: &Path,
        listen: SocketAddr,
        tls: &TlsArgs,
        store_args: &StoreArgs,
    ) -> Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        // The store, tokens and keys are the cluster: owner only.
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", data_dir.display()))?;
        let trust = Arc::new(
            ClusterTrust::load_or_create(
                &data_dir.join("pki"),
                &certificate_names(listen, &tls.tls_san),
                &tls.brought(),
                tls.node_cert_validity,
            )
            .context("setting up the cluster's certificates")?,
        );
        // Secrets are sealed before they reach the store.
        let (store, blobs) = store_args.open(data_dir, &data_dir.join("blobs"))?;
        match &store {
            Opened::Sqlite(sqlite) => move_blobs_out_of_the_store(sqlite.as_ref(), &blobs)?,
            Opened::Etcd(etcd) => {
                crate::store_choice::check_same_cluster(etcd.as_ref(), &trust.authority.hash())?
            }
        }
        // Guests' `cluster` buckets: beside the objects, in a file of their
        // own (a burst of increments does not queue behind object writes);
        // in etcd when the servers share it.
        let kv: Arc<dyn flotilla_kv::Backend> = match &store {
            Opened::Sqlite(_) => {
                let kv_path = data_dir.join("keyvalue.db");
                private_file(&kv_path)?;
                Arc::new(
                    flotilla_kv::SqliteKv::open(&kv_path, "the control plane's key-value store")
                        .map_err(anyhow::Error::msg)?,
                )
            }
            Opened::Etcd(etcd) => Arc::new(flotilla_control_plane::store::etcd::EtcdKv::new(
                etcd.inner(),
            )),
        };
        let admin_token = token_file(data_dir, "admin-token")?;
        let join_token = join_token_file(data_dir, &trust.authority.hash())?;
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
            format!("cannot listen on {listen}: is another flotilla running? (choose another address with --listen)")
        })?;
        let url = serve::url_of(listener.local_addr()?);
        let shared = matches!(store, Opened::Etcd(_));
        let path = config::save(&config::for_server(
            &url,
            trust.ca_pem(),
            &admin_token,
            shared,
        ))?;
        crate::notice::say(format!("client config written to {}", path.display()));
        Ok(Self {
            listener,
            store,
            blobs,
            kv,
            url,
            admin_token,
            join_token,
            trust,
        })
    }

    /// Signs the certificate of the node that shares this process
    /// (`flotilla up`) and records it, as the API does for a joining node:
    /// one that could not be revoked is not issued.
    pub fn issue_local_node_certificate(
        &self,
        node: &str,
        csr: &str,
    ) -> Result<String, flotilla_trust::TrustError> {
        let certificate =
            self.trust
                .authority
                .sign_node(node, csr, self.trust.node_cert_validity)?;
        flotilla_control_plane::node_certificates::record(
            self.store.store().as_ref(),
            node,
            &certificate,
        )
        .map_err(|e| {
            flotilla_trust::TrustError::Certificate(format!(
                "recording the certificate of node {node}: {e}"
            ))
        })?;
        Ok(certificate)
    }

    /// Runs the controllers and serves the API until Ctrl-C.
    pub async fn serve(
        self,
        strategy: Strategy,
        node_grace: Duration,
        dashboard: DashboardArgs,
        registries: RegistryArgs,
        audit: AuditArgs,
        leading: Leading,
    ) -> Result<()> {
        let state = Arc::new(ApiState {
            audit: audit.open()?,
            store: self.store.store(),
            tokens: Tokens::new(vec![
                (self.admin_token, Role::Admin),
                (self.join_token.secret, Role::Join),
            ]),
            streams: Default::default(),
            event_rate: Default::default(),
            blobs: self.blobs.clone(),
            kv: self.kv.clone(),
            metrics: Default::default(),
            usage: UsageHistory::new(dashboard.usage_interval),
            insecure_registries: registries.insecure_registries,
            node_tls: self.trust.node_client_config()?,
            trust: self.trust.clone(),
            admission: Default::default(),
        });
        let tls = self.trust.api_config()?;
        tokio::spawn(usage::sample_forever(state.clone()));
        match self.store {
            Opened::Sqlite(store) => {
                tokio::spawn(controllers::run(store, self.blobs, node_grace, strategy));
            }
            Opened::Etcd(store) => {
                // Every server's folder is a cache of etcd's modules: each
                // collects its own, leading or not.
                tokio::spawn(controllers::module_gc::collect_cache_forever(
                    store.clone(),
                    self.blobs.clone(),
                ));
                let identity = format!("{} (pid {})", self.url, std::process::id());
                tokio::spawn(lead(
                    store, self.blobs, identity, node_grace, strategy, leading,
                ));
            }
        }
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        serve::serve(self.listener, router(state), tls, shutdown).await;
        Ok(())
    }
}

/// How the leader's term runs on an etcd store.
#[derive(Clone, Copy)]
pub struct Leading {
    /// The leader lease's TTL.
    pub lease: Duration,
    /// How often the leader compacts etcd.
    pub compaction: Duration,
}

/// Runs the controllers (and etcd's compaction) whenever this server leads,
/// with writes fenced by its lease.
async fn lead(
    store: Arc<
        flotilla_control_plane::store::SealedStore<flotilla_control_plane::store::EtcdStore>,
    >,
    blobs: Arc<BlobStore>,
    identity: String,
    node_grace: Duration,
    strategy: Strategy,
    leading: Leading,
) {
    let etcd = store.inner().clone();
    flotilla_control_plane::leader::lead(etcd.clone(), identity, leading.lease, |lease| {
        let fenced: Arc<dyn Store> = Arc::new(store.over(etcd.fenced(lease)));
        let compaction =
            flotilla_control_plane::store::etcd::compact_forever(etcd.clone(), leading.compaction);
        let controllers = controllers::run(fenced, blobs.clone(), node_grace, strategy);
        async move {
            tokio::join!(controllers, compaction);
        }
    })
    .await
}

pub async fn main(args: ServerArgs) -> Result<()> {
    let cp = ControlPlane::bind(&args.data_dir, args.listen, &args.tls, &args.store).await?;
    crate::notice::say(format!(
        "flotilla server is up: API {}; agents join with: flotilla agent --server {} --token-file {} (copy that file to the node; `flotilla token create` makes more)",
        cp.url,
        cp.url,
        args.data_dir.join("join-token").display()
    ));
    cp.serve(
        args.strategy.into(),
        args.node_grace,
        args.dashboard,
        args.registries,
        args.audit,
        Leading {
            lease: args.store.leader_lease,
            compaction: args.store.etcd_compaction_interval,
        },
    )
    .await
}
