//! The agent's journal: the Instances assigned to this node, on local disk,
//! so that after a restart the agent brings them back before (or without)
//! hearing from the control plane. Written atomically (temp file + rename),
//! by a writer task, so the agent's loop never waits for the disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
        self.save_bytes(&serde_json::to_vec(instances)?)
    }

    /// Replaces the journal with `bytes` (a serialised list of instances).
    fn save_bytes(&self, bytes: &[u8]) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        // One write: serde_json on an unbuffered file makes a syscall per token.
        std::io::Write::write_all(&mut tmp, bytes)?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }

    /// A writer that persists snapshots off the caller's thread, in order,
    /// the latest one winning when they come faster than the disk.
    pub fn writer(&self) -> JournalWriter {
        let (latest, mut snapshots) = tokio::sync::watch::channel(None::<Arc<Vec<u8>>>);
        let journal = self.clone();
        tokio::spawn(async move {
            while snapshots.changed().await.is_ok() {
                let Some(bytes) = snapshots.borrow_and_update().clone() else {
                    continue;
                };
                let journal = journal.clone();
                let written = tokio::task::spawn_blocking(move || journal.save_bytes(&bytes)).await;
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!("cannot write the journal: {e}"),
                    Err(e) => tracing::warn!("journal writer: {e}"),
                }
            }
        });
        JournalWriter { latest }
    }
}

/// Sends snapshots of the assignments to the journal (see [`Journal::writer`]).
pub struct JournalWriter {
    latest: tokio::sync::watch::Sender<Option<Arc<Vec<u8>>>>,
}

impl JournalWriter {
    /// Queues `instances` as the journal's next content.
    pub fn save(&self, instances: &[&Instance]) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(instances)?;
        self.latest.send_replace(Some(Arc::new(bytes)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// A damaged journal (a torn write, a full disk, a newer agent's
        /// format) is ignored with a warning, never a crash.
        #[test]
        fn any_journal_bytes_load_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("journal.json");
            std::fs::write(&path, &bytes).unwrap();
            let _ = super::Journal::new(&path).load();
        }

        #[test]
        fn json_shaped_journals_load_without_panicking(text in "\\[(\\{\"[a-z]{1,8}\":[\\[\\]{}\"0-9a-z,:]{0,40}\\},?){0,3}\\]") {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("journal.json");
            std::fs::write(&path, text.as_bytes()).unwrap();
            let _ = super::Journal::new(&path).load();
        }
    }
}
