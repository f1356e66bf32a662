//! The persistent volumes this node holds: every [`SWEEP_EVERY`] the agent
//! lists the `Volume` objects, reports the usage of those bound to it (for
//! `flotilla get volumes`), and removes the folders of those that are gone
//! (their workload was deleted, an admin deleted them, or they were
//! reclaimed onto another node after this one was away too long).

use std::collections::HashMap;
use std::time::Duration;

use flotilla_client::{collection_path, Client, ClientError};
use serde_json::Value;

use crate::volumes::VolumeDirs;

/// How often volumes are swept and measured.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// A folder younger than this is never removed: its `Volume` may be a
/// moment behind the instance that made it.
const GRACE: Duration = Duration::from_secs(60);

/// Sweeps and reports forever.
pub async fn keep(client: Client, node: String, dirs: VolumeDirs) {
    loop {
        if let Err(e) = sweep(&client, &node, &dirs).await {
            tracing::debug!("persistent volumes not swept: {e}");
        }
        tokio::time::sleep(SWEEP_EVERY).await;
    }
}

/// One pass: measure and report ours, remove what no `Volume` holds here.
pub async fn sweep(client: &Client, node: &str, dirs: &VolumeDirs) -> Result<(), ClientError> {
    let listed = client.list(&collection_path("volumes", None), "").await?;
    let mine: HashMap<(String, String), Value> = listed
        .items
        .into_iter()
        .filter(|v| v["spec"]["nodeName"].as_str() == Some(node))
        .filter_map(|v| {
            let ns = v["metadata"]["namespace"].as_str()?.to_string();
            let name = v["metadata"]["name"].as_str()?.to_string();
            Some(((ns, name), v))
        })
        .collect();
    let held: Vec<(String, String)> = mine.keys().cloned().collect();
    let swept = dirs.clone();
    let removed = tokio::task::spawn_blocking(move || remove_unheld(&swept, &held))
        .await
        .unwrap_or_default();
    for gone in removed {
        tracing::info!("removed persistent volume folder {gone}: no Volume holds it here");
    }
    for ((ns, name), volume) in mine {
        let dir = dirs.persistent_dir(&ns, &name);
        let (bytes, files) = tokio::task::spawn_blocking(move || crate::volumes::usage(&dir))
            .await
            .unwrap_or_default();
        let status = &volume["status"];
        if status["usedBytes"].as_u64() == Some(bytes) && status["files"].as_u64() == Some(files) {
            continue;
        }
        let mut report = volume.clone();
        report["status"] = serde_json::json!({
            "usedBytes": bytes,
            "files": files,
            "measuredAt": flotilla_spec::meta::now_rfc3339(),
        });
        if let Some(meta) = report["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
        }
        let path = format!("{}/{name}/status", collection_path("volumes", Some(&ns)));
        match client.replace(&path, &report).await {
            Ok(_)
            | Err(ClientError::Api {
                code: 404 | 409, ..
            }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Removes the persistent folders (`<namespace>/<name>`) that are not in
/// `held`, not mounted by an instance, and older than [`GRACE`]; what it
/// removed.
fn remove_unheld(dirs: &VolumeDirs, held: &[(String, String)]) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(namespaces) = std::fs::read_dir(&dirs.persistent) else {
        return removed;
    };
    for ns in namespaces.flatten() {
        let Ok(volumes) = std::fs::read_dir(ns.path()) else {
            continue;
        };
        let ns_name = ns.file_name().to_string_lossy().into_owned();
        for volume in volumes.flatten() {
            let name = volume.file_name().to_string_lossy().into_owned();
            if held.iter().any(|(n, v)| *n == ns_name && *v == name)
                || dirs.is_mounted(&volume.path())
            {
                continue;
            }
            let young = volume
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age < GRACE);
            if !young && std::fs::remove_dir_all(volume.path()).is_ok() {
                removed.push(format!("{ns_name}/{name}"));
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn the_sweep_removes_only_old_folders_no_volume_holds_and_no_instance_mounts() {
        let data = tempfile::tempdir().unwrap();
        let dirs = VolumeDirs::of(data.path());
        let made = |name: &str, age: Duration| {
            let dir = dirs.persistent_dir("default", name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::File::open(&dir)
                .unwrap()
                .set_modified(SystemTime::now() - age)
                .unwrap();
            dir
        };
        let old = Duration::from_secs(120);
        let held = made("data.held-0", old);
        let orphan = made("data.gone-0", old);
        let young = made("data.new-0", Duration::ZERO);
        let volumes = [flotilla_spec::workload::Volume {
            name: "data".into(),
            persistent: Some(Default::default()),
            ..Default::default()
        }];
        let replica = crate::volumes::Replica {
            workload: "used",
            ordinal: Some(0),
        };
        let in_use = dirs
            .make("default", "used-0-uid", replica, &volumes)
            .unwrap();
        let used = in_use.dirs[0].path.clone();
        std::fs::File::open(&used)
            .unwrap()
            .set_modified(SystemTime::now() - old)
            .unwrap();
        let removed = remove_unheld(&dirs, &[("default".into(), "data.held-0".into())]);
        assert_eq!(removed, ["default/data.gone-0"]);
        assert!(held.exists() && young.exists() && used.exists() && !orphan.exists());
        drop(in_use);
        let removed = remove_unheld(&dirs, &[("default".into(), "data.held-0".into())]);
        assert_eq!(removed, ["default/data.used-0"], "unmounted, it goes");
    }
}
