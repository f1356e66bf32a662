//! Modules kept in etcd, so that any server can serve any module after any
//! one server is lost: each module in chunks of [`CHUNK`] bytes under
//! `b/DIGEST/c/NNNNNN`, then `b/DIGEST/meta` (written last: a module is
//! there only once whole). `b/DIGEST/touched`, on a lease as long as the
//! collection grace, is there while a server has lately seen the module
//! named again: the leader's collection leaves such a module alone. Every server keeps the modules it has served in
//! its own blob folder as a cache, and fills it from etcd on a miss.
//!
//! Why etcd rather than replicating files among servers: it is the one
//! place every server already trusts and reaches, it needs no membership
//! of its own, and a module is written once per version. The cost is etcd
//! space (a module counts fully against etcd's `--quota-backend-bytes`,
//! 2 GiB by default) until the module is collected.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use etcd_client::{Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp};
use sha2::{Digest, Sha256};

use super::Shared;
use crate::store::blobs::BlobMirror;

/// Bytes per etcd value (etcd refuses requests past 1.5 MiB by default).
const CHUNK: usize = 512 * 1024;

/// The blob mirror on an etcd store.
pub struct EtcdBlobs {
    shared: Arc<Shared>,
}

impl EtcdBlobs {
    /// Mirrors into the store of `store`.
    pub fn new(store: &super::EtcdStore) -> Self {
        Self {
            shared: store.shared().clone(),
        }
    }

    fn meta_key(&self, digest: &str) -> Vec<u8> {
        self.shared.key(&format!("b/{digest}/meta"))
    }

    /// Present while a server's touch of the module holds (its lease's
    /// time to live: the collection grace).
    fn touched_key(&self, digest: &str) -> Vec<u8> {
        self.shared.key(&format!("b/{digest}/touched"))
    }

    fn chunk_key(&self, digest: &str, index: usize) -> Vec<u8> {
        self.shared.key(&format!("b/{digest}/c/{index:06}"))
    }

    fn get(&self, key: Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        Ok(self.shared.value(key).map_err(|e| e.to_string())?.0)
    }

    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        let kv = self.shared.client.kv_client();
        self.shared
            .block(move || {
                let (mut kv, key, value) = (kv.clone(), key.clone(), value.clone());
                async move { kv.put(key, value, None).await }
            })
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    size: u64,
    chunks: usize,
}

impl BlobMirror for EtcdBlobs {
    fn store(&self, digest: &str, path: &Path) -> Result<(), String> {
        if self.get(self.meta_key(digest))?.is_some() {
            return Ok(());
        }
        let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let (mut size, mut chunks) = (0u64, 0usize);
        loop {
            let mut chunk = Vec::with_capacity(CHUNK);
            (&mut file)
                .take(CHUNK as u64)
                .read_to_end(&mut chunk)
                .map_err(|e| e.to_string())?;
            if chunk.is_empty() && chunks > 0 {
                break;
            }
            let last = chunk.len() < CHUNK;
            size += chunk.len() as u64;
            self.put(self.chunk_key(digest, chunks), chunk)?;
            chunks += 1;
            if last {
                break;
            }
        }
        let meta = serde_json::to_vec(&Meta { size, chunks }).map_err(|e| e.to_string())?;
        self.put(self.meta_key(digest), meta)
    }

    fn contains(&self, digest: &str) -> Result<bool, String> {
        Ok(self.get(self.meta_key(digest))?.is_some())
    }

    fn fetch(&self, digest: &str, into: &Path) -> Result<bool, String> {
        let Some(meta) = self.get(self.meta_key(digest))? else {
            return Ok(false);
        };
        let meta: Meta = serde_json::from_slice(&meta)
            .map_err(|e| format!("module {digest} in etcd: a bad index ({e})"))?;
        let dir = into.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| e.to_string())?;
        let mut hasher = Sha256::new();
        for index in 0..meta.chunks {
            let chunk = self
                .get(self.chunk_key(digest, index))?
                .ok_or_else(|| format!("module {digest} in etcd: chunk {index} is missing"))?;
            hasher.update(&chunk);
            tmp.write_all(&chunk).map_err(|e| e.to_string())?;
        }
        let actual = hex::encode(hasher.finalize());
        if actual != digest {
            return Err(format!(
                "module {digest} in etcd hashes to {actual}: it is damaged; upload it again"
            ));
        }
        tmp.as_file().sync_all().map_err(|e| e.to_string())?;
        tmp.persist(into).map_err(|e| e.error.to_string())?;
        Ok(true)
    }

    fn touch(&self, digest: &str, keep_for: std::time::Duration) -> Result<bool, String> {
        // The key lives as long as its lease: no clock of any server's is
        // compared, and the leader's delete below sees it or it does not.
        let (meta, touched) = (self.meta_key(digest), self.touched_key(digest));
        let ttl = keep_for.as_secs().clamp(1, i64::MAX as u64) as i64;
        let client = self.shared.client.clone();
        self.shared
            .block(move || {
                let (mut client, meta, touched) = (client.clone(), meta.clone(), touched.clone());
                async move {
                    let lease = client.lease_grant(ttl, None).await?.id();
                    let txn = Txn::new()
                        .when(vec![Compare::version(meta, CompareOp::Greater, 0)])
                        .and_then(vec![TxnOp::put(
                            touched,
                            "named again",
                            Some(PutOptions::new().with_lease(lease)),
                        )]);
                    Ok(client.txn(txn).await?.succeeded())
                }
            })
            .map_err(|e| e.to_string())
    }

    fn remove_unless_touched(&self, digest: &str) -> Result<bool, String> {
        let prefix = self.shared.key(&format!("b/{digest}/"));
        let touched = self.touched_key(digest);
        let kv = self.shared.client.kv_client();
        self.shared
            .block(move || {
                let (mut kv, prefix, touched) = (kv.clone(), prefix.clone(), touched.clone());
                async move {
                    // One transaction: a touch either landed before it (and
                    // the module stays) or finds the module gone.
                    let txn = Txn::new()
                        .when(vec![Compare::version(touched, CompareOp::Equal, 0)])
                        .and_then(vec![TxnOp::delete(
                            prefix,
                            Some(DeleteOptions::new().with_prefix()),
                        )]);
                    Ok(kv.txn(txn).await?.succeeded())
                }
            })
            .map_err(|e| e.to_string())
    }

    fn digests(&self) -> Result<Vec<String>, String> {
        let prefix = self.shared.key("b/");
        let kv = self.shared.client.kv_client();
        let mut response = self
            .shared
            .block(move || {
                let (mut kv, prefix) = (kv.clone(), prefix.clone());
                async move {
                    kv.get(
                        prefix,
                        Some(GetOptions::new().with_prefix().with_keys_only()),
                    )
                    .await
                }
            })
            .map_err(|e| e.to_string())?;
        let strip = String::from_utf8_lossy(&self.shared.key("b/")).into_owned();
        Ok(response
            .take_kvs()
            .iter()
            .filter_map(|kv| {
                let key = std::str::from_utf8(kv.key()).ok()?;
                // Chunks of an upload that broke off (no meta) count too,
                // so that they are collected.
                let digest = key.strip_prefix(&strip)?.split('/').next()?;
                Some(digest.to_string())
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect())
    }
}
