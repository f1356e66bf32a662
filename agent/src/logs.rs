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
