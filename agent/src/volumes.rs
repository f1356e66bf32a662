//! An instance's volumes. `emptyDir`: folders of its own, made before its
//! first run, kept across its restarts, removed with it (the
//! [`InstanceVolumes`] guard) — on the node's disk under the agent's data
//! folder, or with `medium: Memory` in memory-backed storage (`/dev/shm`).
//! `persistent`: the folder of the replica's `Volume` object
//! (`<data>/persistent/<namespace>/<volume>.<workload>-<ordinal>`), kept
//! across instances, rollouts and agent restarts, removed only when the
//! `Volume` is (see `persistent`). Each `sizeLimit` and `size` is measured
//! (bytes and files, links not followed) every [`MEASURE_EVERY`] while the
//! instance runs; past it the instance is stopped (`VolumeQuotaExceeded`),
//! as the kubelet evicts a pod over its `emptyDir.sizeLimit`.
//!
//! What the guest sees of a volume is a WASI preopen: nothing else of the
//! node's files, and neither `..` nor a symlink leads out of it.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_spec::workload::Volume;

/// How often sized volumes are measured.
pub const MEASURE_EVERY: Duration = Duration::from_secs(2);

/// Where one node keeps instances' volumes.
#[derive(Debug, Clone)]
pub struct VolumeDirs {
    /// `emptyDir` on the node's disk.
    pub disk: PathBuf,
    /// `emptyDir` in memory (`medium: Memory`).
    pub memory: PathBuf,
    /// `persistent`: one folder per `Volume` object held here.
    pub persistent: PathBuf,
    /// Persistent folders instances have mounted now, with how many: the
    /// sweep never removes these.
    mounted: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<PathBuf, usize>>>,
}

/// Which replica an instance is, for its persistent volumes.
#[derive(Debug, Clone, Copy)]
pub struct Replica<'a> {
    /// Its workload.
    pub workload: &'a str,
    /// Its ordinal, if it is a stateful replica.
    pub ordinal: Option<u32>,
}

impl VolumeDirs {
    /// The folders of the agent whose data folder is `data_dir` (its own
    /// folder in `/dev/shm`, named by a digest of `data_dir`).
    pub fn of(data_dir: &Path) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
        Self {
            mounted: Default::default(),
            persistent: data_dir.join("persistent"),
            disk: data_dir.join("volumes"),
            memory: PathBuf::from(format!(
                "/dev/shm/flotilla-volumes-{}",
                &hex::encode(digest)[..12]
            )),
        }
    }

    /// Removes what earlier runs of this agent left (the instances it
    /// starts again begin with empty volumes) and makes both folders afresh.
    pub fn clear(&self) -> Result<(), String> {
        crate::config_files::fresh_private_dir(&self.disk)?;
        crate::config_files::fresh_private_dir(&self.memory)
    }

    /// Whether an instance has persistent folder `dir` mounted.
    pub fn is_mounted(&self, dir: &Path) -> bool {
        let mounted = self.mounted.lock().unwrap_or_else(|e| e.into_inner());
        mounted.contains_key(dir)
    }

    /// The folder of persistent volume `name` (a `Volume` object's) in
    /// `namespace`.
    pub fn persistent_dir(&self, namespace: &str, name: &str) -> PathBuf {
        self.persistent.join(namespace).join(name)
    }

    /// Makes the volumes of `volumes` for instance `folder` (its name and
    /// uid) of `replica` in `namespace`: the guard that removes the
    /// `emptyDir` ones, and each one's name and folder.
    pub fn make(
        &self,
        namespace: &str,
        folder: &str,
        replica: Replica<'_>,
        volumes: &[Volume],
    ) -> Result<InstanceVolumes, String> {
        let mut made = InstanceVolumes::default();
        for volume in volumes {
            if let Some(persistent) = &volume.persistent {
                let ordinal = replica.ordinal.ok_or_else(|| {
                    format!(
                        "volume {} is persistent, but this instance has no ordinal (label {}): it was made by an older control plane; delete it and the workload makes it again",
                        volume.name,
                        flotilla_spec::workload::ORDINAL_LABEL
                    )
                })?;
                let name =
                    flotilla_spec::volume::volume_name(&volume.name, replica.workload, ordinal);
                let dir = self.persistent_dir(namespace, &name);
                // Marked mounted before it exists: the sweep never takes it.
                *self
                    .mounted
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(dir.clone())
                    .or_default() += 1;
                made.mounted = Some(self.mounted.clone());
                made.held.push(dir.clone());
                crate::config_files::private_dir(&dir)?;
                made.dirs.push(VolumeDir {
                    name: volume.name.clone(),
                    path: dir,
                    limit: flotilla_spec::parse_memory_bytes(&persistent.size).ok(),
                    limit_field: "persistent.size",
                });
                continue;
            }
            let Some(empty) = &volume.empty_dir else {
                continue;
            };
            let base = if empty.medium == "Memory" {
                &self.memory
            } else {
                &self.disk
            };
            let root = base.join(namespace).join(folder);
            if !made.roots.contains(&root) {
                crate::config_files::private_dir(&root)?;
                made.roots.push(root.clone());
            }
            let dir = root.join(&volume.name);
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("cannot create volume {}: {e}", dir.display())),
            }
            let limit = empty
                .size_limit
                .as_deref()
                .and_then(|l| flotilla_spec::parse_memory_bytes(l).ok());
            made.dirs.push(VolumeDir {
                name: volume.name.clone(),
                path: dir,
                limit,
                limit_field: "emptyDir.sizeLimit",
            });
        }
        Ok(made)
    }
}

/// One `emptyDir` or `persistent` volume of an instance.
#[derive(Debug, Clone)]
pub struct VolumeDir {
    /// The volume's name.
    pub name: String,
    /// Its folder.
    pub path: PathBuf,
    /// Its `sizeLimit` (or `size`) in bytes.
    pub limit: Option<u64>,
    /// Which field sets the limit, for messages.
    pub limit_field: &'static str,
}

/// One instance's volumes; its `emptyDir` ones are removed when dropped,
/// its persistent ones no longer marked mounted.
#[derive(Debug, Default)]
pub struct InstanceVolumes {
    roots: Vec<PathBuf>,
    /// Each volume.
    pub dirs: Vec<VolumeDir>,
    held: Vec<PathBuf>,
    mounted: Option<std::sync::Arc<std::sync::Mutex<std::collections::HashMap<PathBuf, usize>>>>,
}

impl Drop for InstanceVolumes {
    fn drop(&mut self) {
        for root in &self.roots {
            let _ = std::fs::remove_dir_all(root);
        }
        if let Some(mounted) = &self.mounted {
            let mut mounted = mounted.lock().unwrap_or_else(|e| e.into_inner());
            for dir in &self.held {
                if let Some(count) = mounted.get_mut(dir) {
                    *count -= 1;
                    if *count == 0 {
                        mounted.remove(dir);
                    }
                }
            }
        }
    }
}

/// Most entries (files, folders, links) an `emptyDir` may hold, whatever
/// its `sizeLimit`: past it the instance is stopped, and the walk ends.
pub const MAX_ENTRIES: u64 = 100_000;

/// What a folder holds: bytes of its files and how many entries (counting
/// stops past [`MAX_ENTRIES`]), links not followed (a link counts as
/// itself), and nothing outside `dir` (a folder the guest swapped for a
/// link while it was measured is skipped).
pub fn usage(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut entries) = (0u64, 0u64);
    let Ok(root) = dir.canonicalize() else {
        return (0, 0);
    };
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        if !dir.canonicalize().is_ok_and(|real| real.starts_with(&root)) {
            continue;
        }
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        if entries > MAX_ENTRIES {
            break;
        }
        for entry in read.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            entries += 1;
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                bytes = bytes.saturating_add(meta.len());
            }
        }
    }
    (bytes, entries)
}

impl InstanceVolumes {
    /// Why the instance must stop: the first volume over its `sizeLimit`
    /// or over [`MAX_ENTRIES`], measured off the async threads.
    pub async fn over_limit(&self) -> Option<String> {
        let dirs = self.dirs.clone();
        if dirs.is_empty() {
            return None;
        }
        tokio::task::spawn_blocking(move || {
            dirs.iter().find_map(|volume| {
                let (bytes, files) = usage(&volume.path);
                if files > MAX_ENTRIES {
                    return Some(format!(
                        "volume {} holds more than {MAX_ENTRIES} entries: the instance is stopped (have the guest keep fewer files)",
                        volume.name
                    ));
                }
                let limit = volume.limit?;
                (bytes > limit).then(|| {
                    format!(
                        "volume {} holds {bytes} bytes in {files} entries, over its {} of {limit} bytes: the instance is stopped (raise {}, or have the guest write less)",
                        volume.name, volume.limit_field, volume.limit_field
                    )
                })
            })
        })
        .await
        .ok()
        .flatten()
    }

    /// Waits until a volume is over its limit (checked every
    /// [`MEASURE_EVERY`]); never returns without volumes.
    pub async fn watch(&self) -> String {
        if self.dirs.is_empty() {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(MEASURE_EVERY).await;
            if let Some(why) = self.over_limit().await {
                return why;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_spec::workload::EmptyDirVolume;

    #[test]
    fn volumes_are_made_measured_and_gone_with_their_guard() {
        let data = tempfile::tempdir().unwrap();
        let dirs = VolumeDirs::of(data.path());
        dirs.clear().unwrap();
        let volumes = [
            Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolume {
                    size_limit: Some("1Ki".into()),
                    medium: String::new(),
                }),
                ..Volume::default()
            },
            Volume {
                name: "fast".into(),
                empty_dir: Some(EmptyDirVolume {
                    medium: "Memory".into(),
                    ..EmptyDirVolume::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "data".into(),
                persistent: Some(flotilla_spec::workload::PersistentVolume {
                    size: "1Mi".into(),
                    ..Default::default()
                }),
                ..Volume::default()
            },
        ];
        let replica = Replica {
            workload: "web",
            ordinal: Some(1),
        };
        let made = dirs
            .make("default", "web-1-uid", replica, &volumes)
            .unwrap();
        let kept = made.dirs[2].path.clone();
        assert_eq!(kept, dirs.persistent.join("default/data.web-1"));
        assert!(dirs.is_mounted(&kept));
        std::fs::write(kept.join("state"), b"1").unwrap();
        let scratch = made.dirs[0].path.clone();
        assert!(made.dirs[1].path.starts_with("/dev/shm"));
        std::fs::create_dir(scratch.join("sub")).unwrap();
        std::fs::write(scratch.join("sub/a"), vec![0u8; 600]).unwrap();
        std::os::unix::fs::symlink("/etc", scratch.join("link")).unwrap();
        let (bytes, entries) = usage(&scratch);
        assert_eq!(entries, 3);
        assert!((600..700).contains(&bytes), "{bytes}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(made.over_limit()), None);
        std::fs::write(scratch.join("b"), vec![0u8; 600]).unwrap();
        let why = rt.block_on(made.over_limit()).unwrap();
        assert!(
            why.contains("volume scratch") && why.contains("1024"),
            "{why}"
        );
        drop(made);
        assert!(!scratch.exists());
        assert!(
            kept.join("state").exists(),
            "a persistent volume outlives it"
        );
        let orphan = Replica {
            workload: "web",
            ordinal: None,
        };
        let why = dirs
            .make("default", "web-x-uid", orphan, &volumes[2..])
            .unwrap_err();
        assert!(why.contains("no ordinal"), "{why}");
        let _ = std::fs::remove_dir_all(&dirs.memory);
    }
}
