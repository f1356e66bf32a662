//! `flotilla migrate --from sqlite:PATH --to etcd://…`: copies a single
//! server's store into etcd, so that it can be run by several servers.
//! Objects are copied as stored (Secrets stay sealed: the servers on etcd
//! use the same `pki/secret-keys`), each keeping its uid; modules are
//! copied from the blob folder beside the SQLite file.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;

use flotilla_control_plane::store::blobs::BlobMirror;
use flotilla_control_plane::store::etcd::EtcdBlobs;
use flotilla_control_plane::store::{EtcdStore, SqliteStore, Store};

use crate::store_choice::StoreArgs;

#[derive(Args)]
pub struct MigrateArgs {
    /// The store to copy: `sqlite:PATH` (a server's <data-dir>/store.db;
    /// stop that server first).
    #[arg(long, value_name = "sqlite:PATH")]
    from: String,
    /// Where to: `etcd://HOST:2379[,…][/PREFIX]` (an empty prefix).
    #[arg(long, value_name = "URL")]
    to: String,
    /// The module folder to copy (the `blobs` folder beside the store file
    /// by default).
    #[arg(long)]
    blobs: Option<PathBuf>,
    /// etcd's TLS, as for `flotilla server`.
    #[arg(long)]
    etcd_ca: Option<PathBuf>,
    /// A client certificate for etcd.
    #[arg(long, requires_all = ["etcd_ca", "etcd_key"])]
    etcd_cert: Option<PathBuf>,
    /// The key of --etcd-cert.
    #[arg(long, requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
}

pub fn main(args: MigrateArgs) -> Result<()> {
    let path = PathBuf::from(args.from.strip_prefix("sqlite:").with_context(|| {
        format!(
            "--from {:?}: write sqlite:PATH (a server's store.db)",
            args.from
        )
    })?);
    if !path.is_file() {
        bail!("--from: no store at {}", path.display());
    }
    let source = SqliteStore::open(&path)?;
    let target = StoreArgs {
        store: Some(args.to.clone()),
        etcd_ca: args.etcd_ca,
        etcd_cert: args.etcd_cert,
        etcd_key: args.etcd_key,
        ..StoreArgs::default()
    }
    .etcd_target()?
    .context("--to must be an etcd:// URL")?;
    let etcd = EtcdStore::connect(&target)?;
    let kinds = source.kinds()?;
    for kind in &kinds {
        let held = etcd.list(kind, None)?.items.len();
        if held > 0 {
            bail!(
                "{} already holds {held} {kind} objects: migrate into an empty prefix (etcd://…/PREFIX)",
                etcd.describe()
            );
        }
    }
    let mut copied = 0;
    for kind in &kinds {
        for object in source.list(kind, None)?.items {
            let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            etcd.create(kind, namespace, name, object.clone())
                .with_context(|| format!("copying {kind} {namespace}/{name}"))?;
            copied += 1;
        }
    }
    let mirror: Arc<dyn BlobMirror> = Arc::new(EtcdBlobs::new(&etcd));
    let blob_dir = args
        .blobs
        .unwrap_or_else(|| path.parent().unwrap_or(&path).join("blobs"));
    let mut modules = 0;
    if blob_dir.is_dir() {
        for entry in std::fs::read_dir(&blob_dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                mirror
                    .store(&name, &entry.path())
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("copying module {name}"))?;
                modules += 1;
            }
        }
    }
    crate::notice::say(format!(
        "copied {copied} objects of {} kinds and {modules} modules into {}; start the servers with --store {} (each with a copy of this server's pki/, admin-token and join-token)",
        kinds.len(),
        etcd.describe(),
        args.to
    ));
    Ok(())
}
