//! The compile cache: precompiled artefacts on disk, keyed by the module's
//! sha256 and the engine's fingerprint, so a module is compiled once per
//! machine and engine configuration, not once per start.
//!
//! Files are written to a temporary name and renamed into place, so a crash
//! or a concurrent writer never leaves a half-written artefact under the final
//! name; an artefact that wasmtime refuses anyway is recompiled and replaced.
//!
//! Deserializing compiled code is `unsafe`: whoever can write an artefact
//! runs native code in the host. So the folder is owner-only, no guest may be
//! granted it (see `run.rs`), and every artefact carries a keyed digest
//! (a nested keyed sha256 over the engine fingerprint, the module digest and
//! the artefact; the key kept 0600 in the folder) that is
//! checked on the bytes actually deserialized; anything else is recompiled.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;

use super::RuntimeError;

/// A folder of precompiled artefacts for one engine configuration.
#[derive(Debug, Clone)]
pub(crate) struct CompileCache {
    dir: PathBuf,
    fingerprint: String,
    key: Vec<u8>,
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
            key: cache_key(dir)?,
        })
    }

    /// The folder (never to be granted to a guest).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The keyed digest of the artefact for module `digest`: bound to the
    /// module and the engine (an artefact renamed onto another module's name
    /// fails), nested like HMAC so it cannot be extended.
    fn mac(&self, digest: &str, artefact: &[u8]) -> String {
        let inner = Sha256::new()
            .chain_update(&self.key)
            .chain_update(self.fingerprint.as_bytes())
            .chain_update(b"\0")
            .chain_update(digest.as_bytes())
            .chain_update(b"\0")
            .chain_update(artefact)
            .finalize();
        hex::encode(
            Sha256::new()
                .chain_update(&self.key)
                .chain_update(inner)
                .finalize(),
        )
    }

    fn mac_path(&self, digest: &str) -> PathBuf {
        self.path_for(digest).with_extension("cwasm.mac")
    }

    /// The cached artefact for `digest`, if there is one whose keyed digest
    /// checks out; `Err` says why one that exists was not used.
    pub(crate) fn load(&self, digest: &str) -> Result<Option<Vec<u8>>, String> {
        let Ok(artefact) = std::fs::read(self.path_for(digest)) else {
            return Ok(None);
        };
        let expected = std::fs::read_to_string(self.mac_path(digest)).unwrap_or_default();
        if self.mac(digest, &artefact) != expected.trim() {
            return Err(format!(
                "{} does not match its keyed digest (written by something other than flotilla?)",
                self.path_for(digest).display()
            ));
        }
        Ok(Some(artefact))
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
        let mac_path = self.mac_path(digest);
        let mut mac =
            tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| cache_error(&self.dir, e))?;
        mac.write_all(self.mac(digest, artefact).as_bytes())
            .map_err(|e| cache_error(mac.path(), e))?;
        mac.persist(&mac_path)
            .map_err(|e| cache_error(&mac_path, e.error))?;
        Ok(path)
    }
}

/// The cache's key: read, or created (owner-only) on first use.
fn cache_key(dir: &Path) -> Result<Vec<u8>, RuntimeError> {
    let path = dir.join("key");
    if let Ok(key) = std::fs::read(&path) {
        if key.len() >= 32 {
            return Ok(key);
        }
    }
    let key: [u8; 32] = rand::random();
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| cache_error(dir, e))?;
    tmp.write_all(&key).map_err(|e| cache_error(&path, e))?;
    // NamedTempFile is created 0600; a concurrent first start may win the
    // rename, so read back whatever key is in place.
    tmp.persist(&path)
        .map_err(|e| cache_error(&path, e.error))?;
    std::fs::read(&path).map_err(|e| cache_error(&path, e))
}

fn cache_error(path: &Path, e: std::io::Error) -> RuntimeError {
    RuntimeError::Cache {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tampered_artefact_is_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = CompileCache::open(dir.path(), &engine).unwrap();
        assert_eq!(cache.load("ab"), Ok(None));
        cache.store("ab", b"machine code").unwrap();
        assert_eq!(cache.load("ab"), Ok(Some(b"machine code".to_vec())));
        // The same cache opened again (a restart) keeps its key.
        let again = CompileCache::open(dir.path(), &engine).unwrap();
        assert_eq!(again.load("ab"), Ok(Some(b"machine code".to_vec())));
        // Another module's artefact and digest renamed onto this one's name.
        cache.store("cd", b"other code").unwrap();
        std::fs::copy(cache.path_for("cd"), cache.path_for("ab")).unwrap();
        std::fs::copy(cache.mac_path("cd"), cache.mac_path("ab")).unwrap();
        assert!(cache.load("ab").unwrap_err().contains("keyed digest"));
        std::fs::write(cache.path_for("cd"), b"evil code").unwrap();
        assert!(cache.load("cd").unwrap_err().contains("keyed digest"));
    }
}
