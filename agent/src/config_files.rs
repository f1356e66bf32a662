//! The `files` of one instance, written where its guest can read them: a
//! Secret's into memory-backed storage (`/dev/shm`, so they never reach a
//! disk), a Config's under the agent's data folder. Directories 0700,
//! files 0600, preopened read-only; removed when the instance stops (the
//! [`InstanceFiles`] guard) and, for whatever a crash left, when the agent
//! starts ([`FileDirs::clear`]).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::config_refs::MountValues;
use crate::runtime::Preopen;

/// Where one node writes instances' files.
#[derive(Debug, Clone)]
pub struct FileDirs {
    /// For Configs' values.
    pub configs: PathBuf,
    /// For Secrets' values: memory-backed.
    pub secrets: PathBuf,
}

impl FileDirs {
    /// The folders of the agent whose data folder is `data_dir`: its own
    /// folder in `/dev/shm` (named by a digest of `data_dir`, so that two
    /// agents on one machine never share it).
    pub fn of(data_dir: &Path) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
        Self {
            configs: data_dir.join("config-files"),
            secrets: PathBuf::from(format!("/dev/shm/flotilla-{}", &hex::encode(digest)[..12])),
        }
    }

    /// Removes what earlier runs of this agent left, and makes both folders
    /// afresh: private (0700), this process's own, not a link — in a
    /// folder anyone may write to (`/dev/shm`), a folder someone else made
    /// first is refused rather than used.
    pub fn clear(&self) -> Result<(), String> {
        for dir in [&self.configs, &self.secrets] {
            fresh_private_dir(dir)?;
        }
        Ok(())
    }

    /// Writes `mounts` for instance `instance` (its name and uid: two
    /// instances of one name never share a folder) in `namespace`: the
    /// guard that removes them, and the read-only preopens that show them.
    pub fn write(
        &self,
        namespace: &str,
        instance: &str,
        mounts: &[MountValues],
    ) -> Result<(InstanceFiles, Vec<Preopen>), String> {
        let name = instance;
        let guard = InstanceFiles {
            roots: [&self.configs, &self.secrets]
                .iter()
                .map(|base| base.join(namespace).join(name))
                .collect(),
        };
        guard.remove();
        let mut preopens = Vec::with_capacity(mounts.len());
        for (n, mount) in mounts.iter().enumerate() {
            let base = if mount.secret {
                if !Path::new("/dev/shm").is_dir() {
                    return Err("this node has no /dev/shm: secret files are kept only in memory-backed storage, so they cannot be mounted here".into());
                }
                &self.secrets
            } else {
                &self.configs
            };
            check_private(base)?;
            let dir = base.join(namespace).join(name).join(n.to_string());
            private_dir(&dir)?;
            for (path, contents) in &mount.files {
                // Relative paths that only go down (checked at admission;
                // keys are single names), checked again here.
                let file = dir.join(inside(path)?);
                if let Some(parent) = file.parent() {
                    private_dir(parent)?;
                }
                new_private_file(&file, contents)
                    .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
            }
            preopens.push(Preopen {
                host: dir,
                guest: mount.guest_path.clone(),
                read_only: true,
            });
        }
        Ok((guard, preopens))
    }
}

impl FileDirs {
    /// Writes `mounts` again over the files [`FileDirs::write`] made for
    /// `instance` (`reload: live`): each file replaced whole (a new file
    /// renamed over the old), so a guest reading it sees the old or the new
    /// contents, never a mix. A key no longer there keeps its last file.
    pub fn refresh(
        &self,
        namespace: &str,
        instance: &str,
        mounts: &[MountValues],
    ) -> Result<(), String> {
        for (n, mount) in mounts.iter().enumerate() {
            let base = if mount.secret {
                &self.secrets
            } else {
                &self.configs
            };
            check_private(base)?;
            let dir = base.join(namespace).join(instance).join(n.to_string());
            if !dir.is_dir() {
                // The instance's files are gone: so is the instance.
                return Ok(());
            }
            for (path, contents) in &mount.files {
                let file = dir.join(inside(path)?);
                let parent = file.parent().unwrap_or(&dir);
                // Folders below the mount's own, one at a time: never the
                // instance's folder again once it has been removed.
                let mut folder = dir.clone();
                for part in parent
                    .strip_prefix(&dir)
                    .into_iter()
                    .flat_map(|p| p.components())
                {
                    folder.push(part);
                    match std::fs::DirBuilder::new().mode(0o700).create(&folder) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(format!("cannot create {}: {e}", folder.display())),
                    }
                }
                let fresh = parent.join(format!(".flotilla-{:016x}", rand::random::<u64>()));
                new_private_file(&fresh, contents)
                    .and_then(|()| std::fs::rename(&fresh, &file))
                    .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
            }
        }
        Ok(())
    }
}

/// Makes `dir` afresh: whatever was there is removed, then a folder made
/// private (0700), this process's own, not a link — in a folder anyone may
/// write to (`/dev/shm`), a folder someone else made first is refused
/// rather than used.
pub(crate) fn fresh_private_dir(dir: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() || !meta.is_dir() => {
            std::fs::remove_file(dir)
                .map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
        }
        Ok(_) => std::fs::remove_dir_all(dir)
            .map_err(|e| format!("cannot clear {}: {e}", dir.display()))?,
        Err(_) => {}
    }
    if let Some(parent) = dir.parent() {
        if parent != Path::new("/dev/shm") {
            private_dir(parent)?;
        }
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    check_private(dir)
}

/// Whether `dir` is a folder (not a link) of this process's user that no
/// one else may enter.
fn check_private(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} is not a private folder of this agent's user: remove it and start the agent again",
            dir.display()
        ));
    }
    Ok(())
}

/// `path`, if it is relative and only goes down (no `..`, no root).
fn inside(path: &str) -> Result<&Path, String> {
    let relative = Path::new(path);
    let plain = !path.is_empty()
        && relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if plain {
        Ok(relative)
    } else {
        Err(format!("{path:?} is not a path inside the mount"))
    }
}

/// Creates `path` (it must not exist: nothing is followed or reused),
/// 0600, holding `contents`.
fn new_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents))
}

pub(crate) fn private_dir(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// One instance's files; removed when dropped.
#[derive(Debug)]
pub struct InstanceFiles {
    roots: Vec<PathBuf>,
}

impl InstanceFiles {
    fn remove(&self) {
        for root in &self.roots {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

impl Drop for InstanceFiles {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_private_read_only_and_gone_with_their_guard() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = FileDirs::of(dir.path());
        dirs.clear().unwrap();
        let mounts = [
            MountValues {
                guest_path: "/etc/app".into(),
                secret: false,
                files: vec![("conf/app.toml".into(), b"mode = 1".to_vec())],
            },
            MountValues {
                guest_path: "/run/secrets".into(),
                secret: true,
                files: vec![("password".into(), b"hunter2".to_vec())],
            },
        ];
        let (guard, preopens) = dirs.write("default", "web-x7k2q", &mounts).unwrap();
        assert!(preopens.iter().all(|p| p.read_only));
        let secret = preopens[1].host.join("password");
        assert!(secret.starts_with("/dev/shm"), "{secret:?}");
        assert_eq!(std::fs::read(&secret).unwrap(), b"hunter2");
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let config = preopens[0].host.join("conf/app.toml");
        assert_eq!(std::fs::read(&config).unwrap(), b"mode = 1");
        drop(guard);
        assert!(!secret.exists() && !config.exists());
    }
}
