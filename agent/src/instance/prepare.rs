//! Everything before an instance's first run, the same for daemons and
//! http replicas: the host paths it is granted, its module (from the
//! node's cache or downloaded, verified, loaded), the capabilities it
//! imports against its grants, the Config and Secret values it reads, and
//! its `files` written. A problem that will not go away fails it for good;
//! one that may (the control plane unreachable, a Config not created yet)
//! keeps it `Pending`, saying why, and is tried again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flotilla_spec::workload::{KeyValueBackend, WorkloadSpec};

use super::lifecycle::Lifecycle;
use super::NodeContext;
use crate::config_files::InstanceFiles;
use crate::config_refs::{InstanceValues, Resolver, Unresolved};
use crate::report::Severity;
use crate::runtime::host_api::keyvalue::{BucketGrant, KeyValueCtx, DEFAULT_QUOTA_BYTES};
use crate::runtime::{LoadedModule, Preopen, RuntimeError};
use crate::volumes::InstanceVolumes;

/// An instance ready to start.
pub(crate) struct Prepared {
    /// Its module, loaded.
    pub module: Arc<LoadedModule>,
    /// The Config and Secret values it reads.
    pub values: InstanceValues,
    /// Its `files` mounts, as directories to preopen.
    pub preopens: Vec<Preopen>,
    /// Its folder of files (its name and uid).
    pub folder: String,
    /// Removes its files when dropped.
    pub _files: InstanceFiles,
    /// The key-value buckets it may open.
    pub keyvalue: KeyValueCtx,
    /// Its `emptyDir` volumes (removed when dropped).
    pub volumes: InstanceVolumes,
}

/// Prepares the instance of `life`; `None` when it failed for good (said
/// in its status and an Event).
pub(crate) async fn prepare(ctx: &NodeContext, life: &mut Lifecycle) -> Option<Prepared> {
    let instance = life.instance().clone();
    let template = &instance.spec.template;
    if let Err(message) = granted_dirs(ctx, template) {
        life.fail("HostPathNotAllowed", message);
        return None;
    }
    let digest = template.module.sha256.clone().unwrap_or_default();
    let mut wait = Duration::from_millis(500);
    let module = loop {
        match fetch_module(ctx, &digest, &instance.spec.workload).await {
            Ok(module) => break module,
            Err(FetchError::Permanent(message)) => {
                life.fail("InvalidModule", message);
                return None;
            }
            Err(FetchError::Transient(message)) => {
                life.pending(format!("fetching module: {message}"));
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    };
    // A guest that imports a capability its workload does not grant would
    // fail the same way on every start: it fails once, naming the grant.
    if let Err(e) = module.check_grants(&template.capabilities()) {
        life.fail("CapabilityNotGranted", e.to_string());
        return None;
    }
    // The values it reads from Configs and Secrets: it waits for missing
    // ones (ConfigMissing), said once, looked for again every few seconds.
    let ns = &instance.metadata.namespace;
    let mut wait = Duration::from_secs(1);
    let mut said = String::new();
    let values = loop {
        match Resolver::new(&ctx.client, ns).all(template).await {
            Ok(values) => break values,
            Err(Unresolved::Missing(message)) => {
                life.pending(format!("ConfigMissing: {message}"));
                if said != message {
                    life.event(Severity::Warning, "ConfigMissing", message.clone());
                    said = message;
                }
            }
            Err(Unresolved::Unreachable(message)) => life.pending(message),
            // As large the next time: it fails, naming the cause.
            Err(Unresolved::TooLarge(message)) => {
                life.fail("ConfigTooLarge", message);
                return None;
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    };
    let keyvalue = match buckets(ctx, life) {
        Ok(keyvalue) => keyvalue,
        Err(message) => {
            life.fail("KeyValueUnavailable", message);
            return None;
        }
    };
    // Kept for as long as the instance runs here; removed with it.
    let folder = format!("{}-{}", instance.metadata.name, instance.metadata.uid);
    let (files, mut preopens) = match ctx.files.write(ns, &folder, &values.mounts) {
        Ok(written) => written,
        Err(message) => {
            life.fail("FilesNotWritten", message);
            return None;
        }
    };
    let replica = crate::volumes::Replica {
        workload: &instance.spec.workload,
        ordinal: instance
            .metadata
            .labels
            .get(flotilla_spec::workload::ORDINAL_LABEL)
            .and_then(|o| o.parse().ok()),
    };
    let volumes = match ctx.volumes.make(ns, &folder, replica, &template.volumes) {
        Ok(volumes) => volumes,
        Err(message) => {
            life.fail("VolumeNotMade", message);
            return None;
        }
    };
    match mounted(ctx, template, &volumes) {
        Ok(mounts) => preopens.extend(mounts),
        Err(message) => {
            life.fail("HostPathNotAllowed", message);
            return None;
        }
    }
    Some(Prepared {
        module,
        values,
        preopens,
        folder,
        _files: files,
        keyvalue,
        volumes,
    })
}

/// The preopens of the template's `volumeMounts`: its `emptyDir` folders,
/// and `hostPath` folders this node allows (see `host_paths`).
fn mounted(
    ctx: &NodeContext,
    template: &WorkloadSpec,
    volumes: &InstanceVolumes,
) -> Result<Vec<Preopen>, String> {
    let mut preopens = Vec::with_capacity(template.volume_mounts.len());
    for mount in &template.volume_mounts {
        let Some(i) = template.volumes.iter().position(|v| v.name == mount.name) else {
            continue; // refused at admission
        };
        let volume = &template.volumes[i];
        let (host, read_only) =
            if let Some(dir) = volumes.dirs.iter().find(|d| d.name == mount.name) {
                (dir.path.clone(), mount.read_only)
            } else if let Some(host) = &volume.host_path {
                let allowed = ctx.host_paths.check(
                    &format!("spec.volumes[{i}].hostPath.path"),
                    std::path::Path::new(&host.path),
                    &ctx.node_name,
                )?;
                (allowed, mount.read_only || host.read_only)
            } else {
                continue;
            };
        preopens.push(Preopen {
            host,
            guest: mount.mount_path.clone(),
            read_only,
        });
    }
    Ok(preopens)
}

/// The buckets the instance's template grants, on their backends; a bucket
/// the guest opens without a grant raises an Event naming the grant.
fn buckets(ctx: &NodeContext, life: &Lifecycle) -> Result<KeyValueCtx, String> {
    let instance = life.instance();
    let grants = &instance.spec.template.grants.key_value;
    if grants.is_empty() {
        return Ok(KeyValueCtx::default());
    }
    let ns = &instance.metadata.namespace;
    let buckets = grants
        .iter()
        .map(|grant| {
            let backend: Arc<dyn flotilla_kv::Backend> = match grant.backend {
                KeyValueBackend::Node => ctx.kv.clone()?,
                KeyValueBackend::Cluster => ctx.cluster_kv.clone(),
            };
            Ok(BucketGrant {
                name: grant.bucket.clone(),
                id: format!("{ns}/{}", grant.bucket),
                backend,
                quota: grant
                    .quota
                    .as_deref()
                    .and_then(|q| flotilla_spec::parse_memory_bytes(q).ok())
                    .unwrap_or(DEFAULT_QUOTA_BYTES),
            })
        })
        .collect::<Result<_, String>>()?;
    let (reporter, about) = (ctx.reporter.clone(), life.about().clone());
    // Said once per name (and for at most 16 names): a guest opening
    // buckets in a loop does not use up the node's Events.
    let said = std::sync::Mutex::new(std::collections::BTreeSet::<String>::new());
    let on_denied = move |bucket: &str| {
        // The guest chose the name: shown short.
        let bucket: String = bucket.chars().take(64).collect();
        {
            let mut said = said.lock().unwrap_or_else(|e| e.into_inner());
            if said.len() >= 16 || !said.insert(bucket.clone()) {
                return;
            }
        }
        reporter.event(
            &about,
            Severity::Warning,
            "KeyValueDenied",
            format!(
                "the guest opened bucket {bucket:?}, which its workload is not granted: add {{bucket: {bucket}}} to spec.grants.keyValue"
            ),
        );
    };
    Ok(KeyValueCtx::new(buckets, Some(Arc::new(on_denied))))
}

enum FetchError {
    /// Worth retrying (server unreachable…).
    Transient(String),
    /// Will never work (invalid module).
    Permanent(String),
}

/// The module for `digest`: from the node's module cache, else downloaded;
/// verified and loaded into the runtime off the async threads (see
/// [`Runtime::load_bytes_in_background`]).
async fn fetch_module(
    ctx: &NodeContext,
    digest: &str,
    label: &str,
) -> Result<Arc<LoadedModule>, FetchError> {
    if let Some(loaded) = ctx.runtime.loaded(digest) {
        return Ok(loaded);
    }
    let path = ctx.modules_dir.join(format!("{digest}.wasm"));
    let (bytes, downloaded) = match tokio::fs::read(&path).await {
        Ok(bytes) => (bytes, false),
        Err(_) => {
            let bytes = ctx
                .client
                .get_blob(digest)
                .await
                .map_err(|e| FetchError::Transient(e.to_string()))?;
            (bytes, true)
        }
    };
    let keep = downloaded.then(|| bytes.clone());
    let loaded = ctx
        .runtime
        .load_bytes_in_background(label, bytes, Some(digest))
        .await;
    match loaded {
        Ok(module) => {
            match keep {
                Some(bytes) => keep_module(ctx.modules_dir.clone(), path, bytes).await,
                None => crate::disk_budget::touch(&path),
            }
            prune_module_files(ctx).await;
            Ok(module)
        }
        Err(e @ RuntimeError::DigestMismatch { .. }) => {
            // A damaged copy on disk is removed, so the next try downloads.
            let _ = tokio::fs::remove_file(&path).await;
            Err(FetchError::Transient(e.to_string()))
        }
        Err(e) => Err(FetchError::Permanent(e.to_string())),
    }
}

/// Keeps the module folders within their budget, off the async threads;
/// modules loaded now are never removed.
async fn prune_module_files(ctx: &NodeContext) {
    let (modules, compiled) = (ctx.modules_dir.clone(), ctx.compiled_dir.clone());
    let (runtime, budget) = (ctx.runtime.clone(), ctx.module_cache_bytes);
    let _ = tokio::task::spawn_blocking(move || {
        crate::disk_budget::prune(&[&modules, &compiled], budget, |digest| {
            runtime.in_use(digest)
        })
    })
    .await;
}

/// Keeps a downloaded (and verified) module in the node's module folder,
/// written atomically off the async threads.
async fn keep_module(dir: PathBuf, path: PathBuf, bytes: Vec<u8>) {
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
        std::io::Write::write_all(&mut tmp, &bytes)?;
        tmp.persist(&path).map_err(|e| e.error).map(drop)
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("cannot keep a downloaded module: {e}"),
        Err(e) => tracing::warn!("cannot keep a downloaded module: {e}"),
    }
}

/// The resolved host paths of the template's `dirs`, if this node allows
/// every one of them (see `host_paths`).
pub(crate) fn granted_dirs(
    ctx: &NodeContext,
    template: &WorkloadSpec,
) -> Result<Vec<PathBuf>, String> {
    template
        .dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            ctx.host_paths.check(
                &format!("spec.dirs[{i}].hostPath"),
                std::path::Path::new(&dir.host_path),
                &ctx.node_name,
            )
        })
        .collect()
}
