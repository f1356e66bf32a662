//! The compile cache: precompiled artefacts on disk, keyed by the module's
//! sha256 and the engine's fingerprint, so a module is compiled once per
//! machine and engine configuration, not once per start.
//!
//! Files are written to a temporary name and renamed into place, so a crash
//! or a concurrent writer never leaves a half-written artefact under the final
//! name; an artefact that wasmtime refuses anyway is recompiled and replaced.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;

use super::RuntimeError;

/// A folder of precompiled artefacts for one engine configuration.
#[derive(Debug, Clone)]
pub(crate) struct CompileCache {
    dir: PathBuf,
    fingerprint: String,
}

impl CompileCache {
    /// Opens (creating, owner-only) the cache folder for `engine`.
    pub(crate) fn open(dir: &Path, engine: &Engine) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(dir).map_err(|e| cache_error(dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Artefacts are machine code loaded without re-validation: only
            // the owner may write them.
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir: dir.to_path_buf(),
            fingerprint: format!("{:016x}", hasher.finish()),
        })
    }

    /// Where the artefact for a module with this digest lives.
    pub(crate) fn path_for(&self, digest: &str) -> PathBuf {
        self.dir
            .join(format!("{digest}-{}.cwasm", self.fingerprint))
    }

    /// Stores an artefact atomically.
    pub(crate) fn store(&self, digest: &str, artefact: &[u8]) -> Result<PathBuf, RuntimeError> {
        let path = self.path_for(digest);
        let mut tmp =
            tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| cache_error(&self.dir, e))?;
        tmp.write_all(artefact)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| cache_error(tmp.path(), e))?;
        tmp.persist(&path)
            .map_err(|e| cache_error(&path, e.error))?;
        Ok(path)
    }
}

fn cache_error(path: &Path, e: std::io::Error) -> RuntimeError {
    RuntimeError::Cache {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}
