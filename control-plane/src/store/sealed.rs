//! Secrets encrypted at rest: a [`Store`] in front of another that seals
//! every Secret's values before they are written and opens them when they
//! are read, so the store file never holds a secret's plaintext.
//!
//! A Secret is stored with `data` replaced by `sealedData`: the JSON of its
//! `data`, encrypted with XChaCha20-Poly1305 (random 24-byte nonces, so no
//! nonce is ever reused under a key) under the current key of a
//! [`Keyring`], with the key's id beside it; the Secret's namespace and name
//! are authenticated with it, so a sealed value moved onto another Secret
//! does not open. Keys live in `<data-dir>/pki/secret-keys/` (0600, one
//! file each); [`SealedStore::rotate_key`] re-seals every Secret under a
//! new key and only then forgets the old ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::{json, Value};

use super::{Change, Listing, Store, StoreError};

/// The kind whose values are sealed.
const SECRET: &str = "Secret";

/// The file naming the key new seals use.
const CURRENT: &str = "current";

/// Keys by id, and which one seals.
pub struct Keyring {
    dir: PathBuf,
    keys: BTreeMap<String, [u8; 32]>,
    current: String,
    /// The key of [`Keyring::keyed_digest`] (`digest.key`, made once).
    digest_key: String,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn backend(message: String) -> StoreError {
    StoreError::Backend(message)
}

impl Keyring {
    /// The keys in `dir`, after making one if there is none.
    pub fn load_or_create(dir: &Path) -> Result<Self, StoreError> {
        let mut keys = BTreeMap::new();
        if dir.exists() {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| backend(format!("reading {}: {e}", dir.display())))?;
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(id) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".key"))
                    .filter(|id| *id != "digest")
                else {
                    continue;
                };
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| backend(format!("reading {}: {e}", path.display())))?;
                let key: [u8; 32] = hex::decode(text.trim())
                    .ok()
                    .and_then(|k| k.try_into().ok())
                    .ok_or_else(|| {
                        backend(format!(
                            "{} is not a secret key (64 hex digits): restore it from a backup",
                            path.display()
                        ))
                    })?;
                keys.insert(id.to_string(), key);
            }
        }
        let current = std::fs::read_to_string(dir.join(CURRENT))
            .map(|c| c.trim().to_string())
            .unwrap_or_default();
        let digest_path = dir.join("digest.key");
        let digest_key = match std::fs::read_to_string(&digest_path) {
            Ok(text) => text.trim().to_string(),
            Err(_) => {
                let key = hex::encode(rand::random::<[u8; 32]>());
                flotilla_trust::write_private(&digest_path, key.as_bytes())
                    .map_err(|e| backend(format!("writing the digest key: {e}")))?;
                key
            }
        };
        let mut ring = Self {
            dir: dir.to_path_buf(),
            keys,
            current,
            digest_key,
        };
        if !ring.keys.contains_key(&ring.current) {
            if !ring.current.is_empty() {
                return Err(backend(format!(
                    "the current secret key {:?} is missing from {}: restore it from a backup",
                    ring.current,
                    dir.display()
                )));
            }
            ring.add_key()?;
        }
        Ok(ring)
    }

    /// Makes a new key and seals with it from now on.
    fn add_key(&mut self) -> Result<String, StoreError> {
        let id = loop {
            let id = format!("k{}", hex::encode(rand::random::<[u8; 8]>()));
            if !self.keys.contains_key(&id) && !self.dir.join(format!("{id}.key")).exists() {
                break id;
            }
        };
        let key: [u8; 32] = rand::random();
        let write = |name: &str, bytes: &[u8]| {
            flotilla_trust::write_private(&self.dir.join(name), bytes)
                .map_err(|e| backend(format!("writing a secret key: {e}")))
        };
        write(&format!("{id}.key"), hex::encode(key).as_bytes())?;
        self.sync_dir()?;
        write(CURRENT, id.as_bytes())?;
        self.sync_dir()?;
        self.keys.insert(id.clone(), key);
        self.current = id.clone();
        Ok(id)
    }

    /// Makes the key folder's entries durable (a new key file must not be
    /// lost after records sealed with it are).
    fn sync_dir(&self) -> Result<(), StoreError> {
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| backend(format!("syncing {}: {e}", self.dir.display())))
    }

    /// A keyed digest of `data` (SHA-256 under the key folder's digest
    /// key, made once and never rotated): what lets the controllers tell
    /// that Secret values changed without a digest anyone could test
    /// guesses against.
    fn keyed_digest(&self, data: &[u8]) -> Result<[u8; 32], StoreError> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        hasher.update(self.digest_key.as_bytes());
        hasher.update(data);
        Ok(hasher.finalize().into())
    }

    /// Forgets (and deletes the files of) every key but the current one.
    fn drop_old_keys(&mut self) -> Result<(), StoreError> {
        let old: Vec<String> = self
            .keys
            .keys()
            .filter(|id| **id != self.current)
            .cloned()
            .collect();
        for id in old {
            let path = self.dir.join(format!("{id}.key"));
            std::fs::remove_file(&path)
                .map_err(|e| backend(format!("removing {}: {e}", path.display())))?;
            self.keys.remove(&id);
        }
        Ok(())
    }

    fn seal(&self, plaintext: &[u8], identity: &str) -> Result<Value, StoreError> {
        let key = self
            .keys
            .get(&self.current)
            .ok_or_else(|| backend("no current secret key: restart the control plane".into()))?;
        let cipher = XChaCha20Poly1305::new(key.into());
        let nonce: [u8; 24] = rand::random();
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: identity.as_bytes(),
                },
            )
            .map_err(|_| backend("sealing a secret failed".into()))?;
        Ok(json!({
            "keyId": self.current,
            "nonce": b64().encode(nonce),
            "ciphertext": b64().encode(ciphertext),
        }))
    }

    fn open(&self, sealed: &Value, identity: &str) -> Result<Vec<u8>, StoreError> {
        let id = sealed["keyId"].as_str().unwrap_or_default();
        let key = self.keys.get(id).ok_or_else(|| {
            backend(format!(
                "secret {identity} is sealed with key {id:?}, which is not in {}: restore that key file",
                self.dir.display()
            ))
        })?;
        let field = |name: &str| {
            sealed[name]
                .as_str()
                .and_then(|t| b64().decode(t).ok())
                .ok_or_else(|| backend(format!("secret {identity}: its sealed {name} is damaged")))
        };
        let nonce = field("nonce")?;
        if nonce.len() != 24 {
            return Err(backend(format!(
                "secret {identity}: its sealed nonce is damaged"
            )));
        }
        XChaCha20Poly1305::new(key.into())
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &field("ciphertext")?,
                    aad: identity.as_bytes(),
                },
            )
            .map_err(|_| {
                backend(format!(
                    "secret {identity} does not decrypt with key {id:?}: the record or the key file is damaged"
                ))
            })
    }
}

/// `namespace/name` of an object: what its seal is bound to.
fn identity(object: &Value) -> String {
    format!(
        "{}/{}",
        object["metadata"]["namespace"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// A store that seals Secrets on their way into `inner` and opens them on
/// their way out.
pub struct SealedStore<S> {
    inner: S,
    keys: Arc<RwLock<Keyring>>,
}

impl<S: Store> SealedStore<S> {
    /// `inner`, sealing with the keys in `key_dir`.
    pub fn new(inner: S, key_dir: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            inner,
            keys: Arc::new(RwLock::new(Keyring::load_or_create(key_dir)?)),
        })
    }

    /// The store it seals for.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// `other`, sealed with the same keys (a rotation seen by both): the
    /// leader's fenced handle on the same store.
    pub fn over<T: Store>(&self, other: T) -> SealedStore<T> {
        SealedStore {
            inner: other,
            keys: self.keys.clone(),
        }
    }

    fn ring(&self) -> std::sync::RwLockReadGuard<'_, Keyring> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Seals with `ring` (held by the caller across the write that stores
    /// the result, so that a rotation never misses it).
    fn seal(ring: &Keyring, kind: &str, mut object: Value) -> Result<Value, StoreError> {
        if kind != SECRET {
            return Ok(object);
        }
        let data = object
            .as_object_mut()
            .and_then(|o| o.remove("data"))
            .unwrap_or_else(|| json!({}));
        let plaintext = serde_json::to_vec(&data).map_err(|e| backend(e.to_string()))?;
        object["sealedData"] = ring.seal(&plaintext, &identity(&object))?;
        Ok(object)
    }

    /// [`Self::open`], or, for a record that does not open, the object
    /// without its values (logged): one damaged Secret must not stop every
    /// list, watch and controller pass.
    fn open_or_stub(&self, kind: &str, mut object: Value) -> Value {
        match self.open(kind, object.clone()) {
            Ok(opened) => opened,
            Err(e) => {
                tracing::warn!("{e}");
                if let Some(fields) = object.as_object_mut() {
                    fields.remove("sealedData");
                }
                object
            }
        }
    }

    fn open(&self, kind: &str, object: Value) -> Result<Value, StoreError> {
        if kind != SECRET {
            // Other kinds never wait on the keys (nor on a rotation).
            return Ok(object);
        }
        Self::open_with(&self.ring(), kind, object)
    }

    fn open_with(ring: &Keyring, kind: &str, mut object: Value) -> Result<Value, StoreError> {
        if kind != SECRET {
            return Ok(object);
        }
        let Some(sealed) = object.as_object_mut().and_then(|o| o.remove("sealedData")) else {
            return Ok(object);
        };
        let plaintext = ring.open(&sealed, &identity(&object))?;
        let data: Value = serde_json::from_slice(&plaintext).map_err(|e| backend(e.to_string()))?;
        if data.as_object().is_some_and(|d| !d.is_empty()) {
            object["data"] = data;
        }
        Ok(object)
    }

    /// Seals every Secret again under a new key, then deletes the old
    /// keys. A failure part way leaves every key in place (each Secret
    /// opens with the key its record names); running it again finishes.
    pub fn rotate_key(&self) -> Result<usize, StoreError> {
        // Held throughout: every write of a Secret holds the read side from
        // sealing to storing, so none is sealed with an old key meanwhile,
        // and two rotations never interleave.
        let mut ring = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let id = ring.add_key()?;
        let mut count = 0;
        for secret in self.inner.list(SECRET, None)?.items {
            if secret["sealedData"]["keyId"] == id.as_str() {
                continue;
            }
            let text = |field: &str| {
                secret["metadata"][field]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            };
            let (namespace, name) = (text("namespace"), text("name"));
            let expected = super::revision_of(&secret);
            let opened = match Self::open_with(&ring, SECRET, secret) {
                Ok(opened) => opened,
                // Damaged: left as it is, and named below.
                Err(e) => {
                    tracing::warn!("{e}");
                    continue;
                }
            };
            let resealed = Self::seal(&ring, SECRET, opened)?;
            match self
                .inner
                .update(SECRET, &namespace, &name, resealed, expected)
            {
                Ok(_) => count += 1,
                // Deleted meanwhile (deletes need no key).
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        // Only when nothing needs them any more do the old keys go.
        let left: Vec<String> = self
            .inner
            .list(SECRET, None)?
            .items
            .iter()
            .filter(|s| s["sealedData"]["keyId"] != id.as_str())
            .map(identity)
            .collect();
        if !left.is_empty() {
            return Err(backend(format!(
                "secrets {} are still sealed with older keys, which are kept: they do not open (restore the key files they name) or changed meanwhile (run the rotation again)",
                left.join(", ")
            )));
        }
        ring.drop_old_keys()?;
        Ok(count)
    }
}

impl<S: Store> Store for SealedStore<S> {
    fn get(&self, kind: &str, namespace: &str, name: &str) -> Result<Option<Value>, StoreError> {
        self.inner
            .get(kind, namespace, name)?
            .map(|o| self.open(kind, o))
            .transpose()
    }

    fn list(&self, kind: &str, namespace: Option<&str>) -> Result<Listing, StoreError> {
        let listing = self.inner.list(kind, namespace)?;
        Ok(Listing {
            items: listing
                .items
                .into_iter()
                .map(|o| self.open_or_stub(kind, o))
                .collect(),
            revision: listing.revision,
        })
    }

    fn create(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        object: Value,
    ) -> Result<Value, StoreError> {
        if kind != SECRET {
            return self.inner.create(kind, namespace, name, object);
        }
        let ring = self.ring();
        let stored = self
            .inner
            .create(kind, namespace, name, Self::seal(&ring, kind, object)?)?;
        Self::open_with(&ring, kind, stored)
    }

    fn update(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        object: Value,
        expected: Option<u64>,
    ) -> Result<Value, StoreError> {
        if kind != SECRET {
            return self.inner.update(kind, namespace, name, object, expected);
        }
        let ring = self.ring();
        let stored = self.inner.update(
            kind,
            namespace,
            name,
            Self::seal(&ring, kind, object)?,
            expected,
        )?;
        Self::open_with(&ring, kind, stored)
    }

    fn delete(&self, kind: &str, namespace: &str, name: &str) -> Result<Value, StoreError> {
        let gone = self.inner.delete(kind, namespace, name)?;
        Ok(self.open_or_stub(kind, gone))
    }

    fn changes_since(&self, revision: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        Ok(self
            .inner
            .changes_since(revision, limit)?
            .into_iter()
            .map(|mut change| {
                change.object = self.open_or_stub(&change.kind, change.object);
                change
            })
            .collect())
    }

    fn revision(&self) -> Result<u64, StoreError> {
        self.inner.revision()
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.subscribe()
    }

    fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.put_blob(digest, bytes)
    }

    fn get_blob(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_blob(digest)
    }

    fn has_blob(&self, digest: &str) -> Result<bool, StoreError> {
        self.inner.has_blob(digest)
    }

    fn blob_digests(&self) -> Result<Vec<String>, StoreError> {
        self.inner.blob_digests()
    }

    fn delete_blob(&self, digest: &str) -> Result<(), StoreError> {
        self.inner.delete_blob(digest)
    }

    fn rotate_secret_key(&self) -> Result<usize, StoreError> {
        self.rotate_key()
    }

    fn keyed_digest(&self, data: &[u8]) -> Result<[u8; 32], StoreError> {
        self.ring().keyed_digest(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn secret(name: &str, value: &str) -> Value {
        json!({
            "apiVersion": "flotilla.dev/v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": "default"},
            "type": "Opaque",
            "data": {"password": base64::engine::general_purpose::STANDARD.encode(value)},
        })
    }

    fn file_holds(path: &Path, needle: &[u8]) -> bool {
        // The database and its write-ahead log.
        ["", "-wal"].iter().any(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            std::fs::read(&name).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        })
    }

    #[test]
    fn secrets_are_stored_sealed_read_open_and_survive_a_key_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store.db");
        let keys = dir.path().join("keys");
        let store = SealedStore::new(SqliteStore::open(&db).unwrap(), &keys).unwrap();
        let value = "correct-horse-battery-staple";
        let encoded = base64::engine::general_purpose::STANDARD.encode(value);
        store
            .create("Secret", "default", "db", secret("db", value))
            .unwrap();
        let read = store.get("Secret", "default", "db").unwrap().unwrap();
        assert_eq!(read["data"]["password"], encoded.as_str());
        assert!(read.get("sealedData").is_none());
        for needle in [value.as_bytes(), encoded.as_bytes()] {
            assert!(!file_holds(&db, needle), "the store file holds the secret");
        }
        let before = store.inner.get("Secret", "default", "db").unwrap().unwrap();
        let old_key = before["sealedData"]["keyId"].as_str().unwrap().to_string();
        assert_eq!(store.rotate_key().unwrap(), 1);
        let after = store.inner.get("Secret", "default", "db").unwrap().unwrap();
        assert_ne!(after["sealedData"]["keyId"], old_key.as_str());
        assert!(
            !keys.join(format!("{old_key}.key")).exists(),
            "the old key is gone"
        );
        // Another process (a restart) opens it with the keys on disk.
        drop(store);
        let again = SealedStore::new(SqliteStore::open(&db).unwrap(), &keys).unwrap();
        let read = again.get("Secret", "default", "db").unwrap().unwrap();
        assert_eq!(read["data"]["password"], encoded.as_str());
        // A sealed value moved onto another secret does not open.
        let mut moved = after.clone();
        moved["metadata"]["name"] = "other".into();
        again
            .inner
            .create("Secret", "default", "other", moved)
            .unwrap();
        let err = again.get("Secret", "default", "other").unwrap_err();
        assert!(err.to_string().contains("does not decrypt"), "{err}");
        // Other kinds pass through untouched.
        let config = json!({"apiVersion": "flotilla.dev/v1", "kind": "Config",
            "metadata": {"name": "c", "namespace": "default"}, "data": {"k": "plain"}});
        again.create("Config", "default", "c", config).unwrap();
        assert_eq!(
            again.inner.get("Config", "default", "c").unwrap().unwrap()["data"]["k"],
            "plain"
        );
    }

    #[test]
    fn a_missing_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store.db");
        let keys = dir.path().join("keys");
        let store = SealedStore::new(SqliteStore::open(&db).unwrap(), &keys).unwrap();
        store
            .create("Secret", "default", "db", secret("db", "x"))
            .unwrap();
        drop(store);
        for entry in std::fs::read_dir(&keys).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "key") {
                std::fs::remove_file(path).unwrap();
            }
        }
        let err = SealedStore::new(SqliteStore::open(&db).unwrap(), &keys)
            .err()
            .expect("the current key is missing");
        assert!(err.to_string().contains("restore it"), "{err}");
    }
}
