//! Which host directories a workload may be granted on this node.
//!
//! A `dirs` entry (`hostPath`) reaches the node's own file system, so it is
//! refused unless the node's operator allowed a prefix of it
//! (`--allow-host-path`), and never when it overlaps the agent's data folder
//! (journal, compiled code, tokens, other instances' logs) — a grant of `/`
//! would include it. Paths are compared after resolving symlinks and `..`.

use std::path::{Path, PathBuf};

/// The node's policy for host paths.
#[derive(Debug, Clone, Default)]
pub struct HostPathPolicy {
    /// Prefixes the operator allows (none: every hostPath is refused).
    pub allowed: Vec<PathBuf>,
    /// The agent's data folder and the control plane's (under `up`): never
    /// granted, nor any folder holding one.
    pub protected: Vec<PathBuf>,
}

impl HostPathPolicy {
    /// The resolved path to grant if `host_path` may be granted here, else
    /// why not and the fix. Grant the returned path, not `host_path`: a
    /// symlink swapped in after the check must not redirect the grant.
    pub fn check(&self, field: &str, host_path: &Path, node: &str) -> Result<PathBuf, String> {
        let resolved = host_path.canonicalize().map_err(|e| {
            format!(
                "{field}: {} cannot be granted on node {node}: {e} (create it on the node, or remove the grant)",
                host_path.display()
            )
        })?;
        for protected in &self.protected {
            let protected = protected
                .canonicalize()
                .unwrap_or_else(|_| protected.clone());
            if resolved.starts_with(&protected) || protected.starts_with(&resolved) {
                return Err(format!(
                    "{field}: {} overlaps the data folder {} on node {node}: it can never be granted (choose another directory)",
                    host_path.display(),
                    protected.display()
                ));
            }
        }
        let allowed = self.allowed.iter().any(|prefix| {
            prefix
                .canonicalize()
                .is_ok_and(|prefix| resolved.starts_with(prefix))
        });
        if !allowed {
            return Err(format!(
                "{field}: {} is not allowed on node {node}: its agent must be started with --allow-host-path {} (or a parent of it)",
                host_path.display(),
                host_path.display()
            ));
        }
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_prefixes_and_never_the_data_folder() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("agent");
        let shared = root.path().join("shared");
        std::fs::create_dir_all(data.join("logs")).unwrap();
        std::fs::create_dir_all(shared.join("inner")).unwrap();
        let policy = HostPathPolicy {
            allowed: vec![shared.clone(), root.path().to_path_buf()],
            protected: vec![data.clone()],
        };
        assert!(policy.check("d", &shared.join("inner"), "n").is_ok());
        let e = policy.check("d", &data.join("logs"), "n").unwrap_err();
        assert!(e.contains("data folder"), "{e}");
        // A parent of the data folder would expose it too, even if allowed.
        let e = policy.check("d", root.path(), "n").unwrap_err();
        assert!(e.contains("data folder"), "{e}");
        // `..` does not climb out of an allowed prefix.
        let strict = HostPathPolicy {
            allowed: vec![shared.clone()],
            protected: vec![data.clone()],
        };
        let escape = shared.join("inner/../../agent/logs");
        assert!(strict.check("d", &escape, "n").is_err());
        let other = root.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        let e = strict.check("d", &other, "n").unwrap_err();
        assert!(e.contains("--allow-host-path"), "{e}");
        assert!(HostPathPolicy::default().check("d", &shared, "n").is_err());
        assert!(strict.check("d", &shared.join("missing"), "n").is_err());
    }
}
