//! The agent's journal: the Instances assigned to this node, on local disk,
//! so that after a restart the agent brings them back before (or without)
//! hearing from the control plane. Written atomically (temp file + rename).

use std::path::{Path, PathBuf};

use flotilla_spec::instance::Instance;

/// The journal file of one node.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// The journal at `path`.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    /// The assignments last written; empty if none or unreadable.
    pub fn load(&self) -> Vec<Instance> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("ignoring unreadable journal {}: {e}", self.path.display());
                Vec::new()
            }),
            Err(_) => Vec::new(),
        }
    }

    /// Replaces the journal with `instances`.
    pub fn save(&self, instances: &[&Instance]) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        // One write: serde_json on an unbuffered file makes a syscall per token.
        std::io::Write::write_all(&mut tmp, &serde_json::to_vec(instances)?)?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}
