//! Instance logs on the node's disk:
//! `<data-dir>/logs/<namespace>/<instance>/current.log` for the run in
//! progress (rotating to `current.log.1` at [`ROTATE_AT`]) and `previous.log`
//! for the run before it, as `kubectl logs --previous` expects. An instance's
//! folder is removed with the instance.

use std::path::{Path, PathBuf};

use crate::runtime::LogWriter;

/// Size at which a run's log file rotates.
pub const ROTATE_AT: u64 = 8 << 20;

/// The log folders of one node.
#[derive(Debug, Clone)]
pub struct LogDir {
    root: PathBuf,
}

impl LogDir {
    /// Logs under `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    fn instance_dir(&self, namespace: &str, instance: &str) -> PathBuf {
        self.root.join(namespace).join(instance)
    }

    /// The file holding a run's output: the current run or the previous one.
    pub fn path(&self, namespace: &str, instance: &str, previous: bool) -> PathBuf {
        let name = if previous {
            "previous.log"
        } else {
            "current.log"
        };
        self.instance_dir(namespace, instance).join(name)
    }

    /// Starts the log of a new run: the current one becomes the previous one.
    pub fn start_run(&self, namespace: &str, instance: &str) -> std::io::Result<LogWriter> {
        let dir = self.instance_dir(namespace, instance);
        std::fs::create_dir_all(&dir)?;
        let current = dir.join("current.log");
        if current.exists() {
            std::fs::rename(&current, dir.join("previous.log"))?;
            let _ = std::fs::remove_file(dir.join("current.log.1"));
        }
        LogWriter::open(&current, ROTATE_AT)
    }

    /// Removes an instance's logs.
    pub fn remove(&self, namespace: &str, instance: &str) {
        let dir = self.instance_dir(namespace, instance);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("cannot remove logs {}: {e}", dir.display());
            }
        }
    }

    /// Instance folders present on disk, as (namespace, instance).
    pub fn present(&self) -> Vec<(String, String)> {
        let mut found = Vec::new();
        for ns in std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
        {
            for inst in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                found.push((
                    ns.file_name().to_string_lossy().into_owned(),
                    inst.file_name().to_string_lossy().into_owned(),
                ));
            }
        }
        found
    }
}

/// How often a followed log is checked for new output.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// An instance's log as a byte stream: what is there now, and with `follow`
/// whatever is appended after — across a new run or a rotation replacing the
/// file — until the instance's log folder is removed (it stopped for good).
pub fn stream(
    path: PathBuf,
    follow: bool,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send {
    use tokio::io::AsyncReadExt;
    futures_util::stream::unfold(
        (None::<tokio::fs::File>, path, 0u64, false),
        move |(mut file, path, mut offset, done)| async move {
            if done {
                return None;
            }
            loop {
                if file.is_none() {
                    file = tokio::fs::File::open(&path).await.ok();
                    offset = 0;
                }
                if let Some(f) = file.as_mut() {
                    let mut chunk = vec![0u8; 64 * 1024];
                    match f.read(&mut chunk).await {
                        Ok(n) if n > 0 => {
                            offset += n as u64;
                            chunk.truncate(n);
                            return Some((
                                Ok(bytes::Bytes::from(chunk)),
                                (file, path, offset, false),
                            ));
                        }
                        Ok(_) => {}
                        Err(e) => return Some((Err(e), (file, path, offset, true))),
                    }
                }
                let folder_gone = path.parent().is_none_or(|dir| !dir.exists());
                if !follow || folder_gone {
                    return None;
                }
                tokio::time::sleep(FOLLOW_POLL).await;
                // A new run (or a rotation) replaced the file: start on the new one.
                let replaced = tokio::fs::metadata(&path)
                    .await
                    .is_ok_and(|m| m.len() < offset);
                if replaced {
                    file = None;
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_log_rotates_at_its_size_and_a_new_run_keeps_one_previous() {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogDir::new(dir.path());
        let path = logs.path("default", "web-1", false);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let writer = LogWriter::open(&path, 100).unwrap();
        for n in 0..30 {
            writer.note(&format!("line {n:03}"));
        }
        let current = std::fs::read_to_string(&path).unwrap();
        let rotated = std::fs::read_to_string(path.with_extension("log.1")).unwrap();
        // 30 lines of 9 bytes: two rotations; never more than twice the size.
        assert!(
            current.len() <= 100 && rotated.len() <= 108,
            "{current:?} {rotated:?}"
        );
        assert!(current.ends_with("line 029\n"), "{current:?}");
        assert!(!current.contains("line 000") && !rotated.contains("line 000"));
        // A new run: the current log becomes the previous one, the rotated
        // part of the old run goes.
        let next = logs.start_run("default", "web-1").unwrap();
        next.note("run 2");
        assert!(std::fs::read_to_string(logs.path("default", "web-1", true))
            .unwrap()
            .ends_with("line 029\n"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "run 2\n");
        assert!(!path.with_extension("log.1").exists());
    }
}
