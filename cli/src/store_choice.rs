//! `--store`: where a control plane keeps its objects — the SQLite file in
//! its data folder (the default, one server), or etcd (several servers).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use flotilla_control_plane::store::etcd::{EtcdBlobs, EtcdTls};
use flotilla_control_plane::store::{
    BlobStore, EtcdStore, EtcdTarget, SealedStore, SqliteStore, Store, StoreError,
};

/// Where objects are kept.
#[derive(Args, Clone, Default)]
pub struct StoreArgs {
    /// `etcd://HOST:2379[,HOST:2379…][/PREFIX]` to keep objects in etcd
    /// (3.4 or newer) and share them with other servers; the SQLite file
    /// in the data folder otherwise. Every server of one cluster needs a
    /// copy of the first one's `pki/` and tokens (see the README).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// The CA of etcd's client port (PEM): etcd is then spoken to over TLS.
    #[arg(long, requires = "store")]
    pub etcd_ca: Option<PathBuf>,
    /// A client certificate for etcd (PEM; with --etcd-key).
    #[arg(long, requires_all = ["etcd_ca", "etcd_key"])]
    pub etcd_cert: Option<PathBuf>,
    /// The key of --etcd-cert.
    #[arg(long, requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// How long the controllers' leader lease lasts: a leader that dies is
    /// replaced within about this long.
    #[arg(long, default_value = "4s", value_parser = parse_lease)]
    pub leader_lease: Duration,
    /// How often the leader compacts etcd's history, keeping one period of
    /// it (watches further behind get 410 Gone and list again).
    #[arg(long, default_value = "5m", value_parser = parse_compaction)]
    pub etcd_compaction_interval: Duration,
}

fn parse_lease(text: &str) -> Result<Duration, String> {
    let ttl = flotilla_spec::parse_duration(text).map_err(|e| e.to_string())?;
    if ttl < Duration::from_secs(2) || ttl > Duration::from_secs(60) {
        return Err(format!("{text}: choose between 2s and 60s"));
    }
    Ok(ttl)
}

fn parse_compaction(text: &str) -> Result<Duration, String> {
    let every = flotilla_spec::parse_duration(text).map_err(|e| e.to_string())?;
    if every < Duration::from_secs(1) {
        return Err(format!("{text}: at least 1s"));
    }
    Ok(every)
}

/// The store a control plane runs on.
pub enum Opened {
    /// One server, one file.
    Sqlite(Arc<SealedStore<SqliteStore>>),
    /// Several servers on one etcd.
    Etcd(Arc<SealedStore<EtcdStore>>),
}

impl Opened {
    /// The store, as the API uses it.
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Opened::Sqlite(s) => s.clone(),
            Opened::Etcd(s) => s.clone(),
        }
    }
}

impl StoreArgs {
    /// The etcd store named, if one is.
    pub fn etcd_target(&self) -> Result<Option<EtcdTarget>> {
        let Some(url) = &self.store else {
            return Ok(None);
        };
        let mut target = EtcdTarget::parse(url).map_err(anyhow::Error::msg)?;
        if let Some(ca) = &self.etcd_ca {
            let read =
                |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let identity = match (&self.etcd_cert, &self.etcd_key) {
                (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                _ => None,
            };
            target.tls = Some(EtcdTls {
                ca: read(ca)?,
                identity,
            });
        }
        Ok(Some(target))
    }

    /// Opens the store (sealing Secrets with the keys in `key_dir`) and the
    /// blob folder (mirrored into etcd when the store is etcd).
    pub fn open(&self, data_dir: &Path, blob_dir: &Path) -> Result<(Opened, Arc<BlobStore>)> {
        let key_dir = data_dir.join("pki/secret-keys");
        let blobs = BlobStore::open(blob_dir)
            .with_context(|| format!("opening the module folder {}", blob_dir.display()))?;
        let Some(target) = self.etcd_target()? else {
            let path = data_dir.join("store.db");
            crate::server::private_file(&path)?;
            let store = Arc::new(SealedStore::new(SqliteStore::open(&path)?, &key_dir)?);
            return Ok((Opened::Sqlite(store), Arc::new(blobs)));
        };
        let etcd = EtcdStore::connect(&target)?;
        let blobs = blobs.with_mirror(Arc::new(EtcdBlobs::new(&etcd)));
        let store = Arc::new(SealedStore::new(etcd, &key_dir)?);
        Ok((Opened::Etcd(store), Arc::new(blobs)))
    }
}

/// Makes sure every server of a cluster on one etcd has the same CA and
/// Secret keys: the first one to start records them; a server with others
/// would issue certificates no node trusts and could not open Secrets.
pub fn check_same_cluster(store: &dyn Store, ca_hash: &str) -> Result<()> {
    let sealing = hex::encode(store.keyed_digest(b"flotilla: the cluster's secret keys")?);
    let record = json!({
        "apiVersion": flotilla_spec::meta::API_VERSION,
        "kind": "ClusterIdentity",
        "metadata": {"name": "cluster"},
        "caSha256": ca_hash,
        "secretKeys": sealing,
    });
    let stored = match store.create("ClusterIdentity", "", "cluster", record.clone()) {
        Ok(stored) => stored,
        Err(StoreError::AlreadyExists { .. }) => store
            .get("ClusterIdentity", "", "cluster")?
            .unwrap_or(record),
        Err(e) => return Err(e.into()),
    };
    let copy = "copy pki/ (ca.crt, ca.key, secret-keys/), admin-token and join-token from the first server's data folder into this one's, then start it again";
    if stored["caSha256"] != ca_hash {
        bail!(
            "this server's cluster CA ({ca_hash}) is not the one the other servers on this store use ({}): {copy}",
            stored["caSha256"].as_str().unwrap_or("?")
        );
    }
    if stored["secretKeys"] != sealing.as_str() {
        bail!("this server's Secret keys (pki/secret-keys) are not the other servers': {copy}");
    }
    Ok(())
}
