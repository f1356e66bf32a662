//! The guests' `cluster` key-value buckets on etcd, so that every server of
//! a control plane on etcd answers for the same buckets (a file per server
//! would give each agent the answers of the server it happens to talk to).
//!
//! A value is the key `kv/BUCKET/KEY`; a bucket's usage (its keys' and
//! values' bytes, what its quota bounds) is `kvusage/BUCKET`. Every write
//! reads what it changes, plans, and commits in one transaction that holds
//! only if none of the keys it read (usage included) changed meanwhile —
//! otherwise it reads and plans again — so the quota is checked in the same
//! transaction as the write, as in the SQLite store. etcd bounds the
//! operations of one transaction (`--max-txn-ops`, 128 by default): a batch
//! larger than that needs etcd started with a larger one.

use std::collections::HashMap;
use std::sync::Arc;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use flotilla_kv::{Backend, KvError};

use super::{EtcdStore, Shared};

/// How long a write keeps planning again while others change its bucket.
const PERSISTENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// `cluster` buckets in etcd.
pub struct EtcdKv {
    shared: Arc<Shared>,
}

/// What a write read: each key's value and mod revision (0: absent).
struct Read {
    usage: u64,
    usage_revision: i64,
    /// The write that last set the usage (see [`EtcdKv::transact`]).
    writer: String,
    values: HashMap<String, (Option<Vec<u8>>, i64)>,
}

impl Read {
    fn size_of(&self, key: &str) -> u64 {
        match self.values.get(key) {
            Some((Some(value), _)) => (key.len() + value.len()) as u64,
            _ => 0,
        }
    }
}

/// What a write does to a key.
enum Change {
    Put(String, Vec<u8>),
    Delete(String),
}

impl EtcdKv {
    /// Buckets under the prefix of `store`.
    pub fn new(store: &EtcdStore) -> Self {
        Self {
            shared: store.shared().clone(),
        }
    }

    fn key(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.shared.key(&format!("kv/{bucket}/{key}"))
    }

    fn usage_key(&self, bucket: &str) -> Vec<u8> {
        self.shared.key(&format!("kvusage/{bucket}"))
    }

    fn failed(&self, e: impl std::fmt::Display) -> KvError {
        let message = e.to_string();
        if message.contains("too many operations in txn request") {
            return KvError::Other(format!(
                "{message}: a batch this large needs etcd started with a larger --max-txn-ops"
            ));
        }
        if message.contains("request is too large") {
            return KvError::Other(format!(
                "{message}: a batch this large needs etcd started with a larger --max-request-bytes (1.5 MiB by default); or write fewer values at once"
            ));
        }
        KvError::Other(format!("the cluster's key-value store: {message}"))
    }

    fn get_one(&self, key: Vec<u8>) -> Result<(Option<Vec<u8>>, i64), KvError> {
        self.shared.value(key).map_err(|e| self.failed(e))
    }

    fn read(&self, bucket: &str, keys: &[String]) -> Result<Read, KvError> {
        let (stored, usage_revision) = self.get_one(self.usage_key(bucket))?;
        // "BYTES WRITER": the usage, and which write set it.
        let stored = stored
            .and_then(|u| String::from_utf8(u).ok())
            .unwrap_or_default();
        let mut fields = stored.split_whitespace();
        let usage = fields.next().and_then(|u| u.parse().ok()).unwrap_or(0);
        let writer = fields.next().unwrap_or_default().to_string();
        let mut values = HashMap::new();
        for key in keys {
            values.insert(key.clone(), self.get_one(self.key(bucket, key))?);
        }
        Ok(Read {
            usage,
            usage_revision,
            writer,
            values,
        })
    }

    /// Reads `keys`, asks `plan` what to change (and what to answer), and
    /// commits it only over what was read, again (after a pause) while
    /// other writes to the bucket get in between. Each attempt signs the
    /// usage it writes: an attempt whose answer was lost (and that the
    /// store sent again, to be refused) is recognised as done by its
    /// signature, so an increment is never applied twice nor a swap that
    /// happened reported as failed.
    fn transact<T>(
        &self,
        bucket: &str,
        keys: &[String],
        plan: impl Fn(&Read) -> Result<(Vec<Change>, T), KvError>,
    ) -> Result<T, KvError> {
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(1);
        while started.elapsed() < PERSISTENCE {
            let read = self.read(bucket, keys)?;
            let (changes, answer) = plan(&read)?;
            if changes.is_empty() {
                return Ok(answer);
            }
            let signature = hex::encode(rand::random::<[u8; 12]>());
            let mut usage = read.usage;
            let mut ops = Vec::new();
            for change in &changes {
                match change {
                    Change::Put(key, value) => {
                        usage =
                            usage - read.size_of(key).min(usage) + (key.len() + value.len()) as u64;
                        ops.push(TxnOp::put(self.key(bucket, key), value.clone(), None));
                    }
                    Change::Delete(key) => {
                        usage -= read.size_of(key).min(usage);
                        ops.push(TxnOp::delete(self.key(bucket, key), None));
                    }
                }
            }
            ops.push(TxnOp::put(
                self.usage_key(bucket),
                format!("{usage} {signature}"),
                None,
            ));
            let mut compares = vec![Compare::mod_revision(
                self.usage_key(bucket),
                CompareOp::Equal,
                read.usage_revision,
            )];
            for (key, (_, revision)) in &read.values {
                compares.push(Compare::mod_revision(
                    self.key(bucket, key),
                    CompareOp::Equal,
                    *revision,
                ));
            }
            let txn = Txn::new().when(compares).and_then(ops);
            let kv = self.shared.client.kv_client();
            let response = self
                .shared
                .block(move || {
                    let (mut kv, txn) = (kv.clone(), txn.clone());
                    async move { kv.txn(txn).await }
                })
                .map_err(|e| self.failed(e))?;
            if response.succeeded() || self.read(bucket, &[])?.writer == signature {
                return Ok(answer);
            }
            // Others got in between: again, after a pause that grows (and
            // differs between writers, so that they stop colliding).
            std::thread::sleep(pause.mul_f64(0.5 + rand::random::<f64>()));
            pause = (pause * 2).min(std::time::Duration::from_millis(100));
        }
        Err(KvError::Other(format!(
            "bucket {bucket}: other writers kept changing it for {PERSISTENCE:?}; retry"
        )))
    }

    /// Puts `pairs` within `quota`, given what was read.
    fn puts(
        read: &Read,
        bucket: &str,
        pairs: &[(String, Vec<u8>)],
        quota: u64,
    ) -> Result<Vec<Change>, KvError> {
        flotilla_kv::usage_after(
            bucket,
            read.usage,
            pairs,
            quota,
            |key| Ok(read.size_of(key)),
        )?;
        Ok(pairs
            .iter()
            .map(|(k, v)| Change::Put(k.clone(), v.clone()))
            .collect())
    }
}

impl Backend for EtcdKv {
    fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.get_one(self.key(bucket, key))?.0)
    }

    fn set_many(
        &self,
        bucket: &str,
        pairs: &[(String, Vec<u8>)],
        quota: u64,
    ) -> Result<(), KvError> {
        // A key named twice: its last value counts (as in SQLite).
        let mut last: Vec<(String, Vec<u8>)> = Vec::new();
        for (key, value) in pairs {
            last.retain(|(k, _)| k != key);
            last.push((key.clone(), value.clone()));
        }
        let keys: Vec<String> = last.iter().map(|(k, _)| k.clone()).collect();
        self.transact(bucket, &keys, |read| {
            Ok((Self::puts(read, bucket, &last, quota)?, ()))
        })
    }

    fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError> {
        let mut unique = keys.to_vec();
        unique.sort();
        unique.dedup();
        self.transact(bucket, &unique, |read| {
            let present = unique
                .iter()
                .filter(|k| read.size_of(k) > 0)
                .map(|k| Change::Delete(k.clone()))
                .collect();
            Ok((present, ()))
        })
    }

    fn list_keys(
        &self,
        bucket: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, KvError> {
        let prefix = self.key(bucket, "");
        let mut start = prefix.clone();
        if let Some(after) = after {
            // Strictly after: the smallest key greater than `after`.
            start.extend_from_slice(after.as_bytes());
            start.push(0);
        }
        // The end of the prefix's range: its last byte plus one (`/` → `0`).
        let mut end = prefix.clone();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let kv = self.shared.client.kv_client();
        let options = GetOptions::new()
            .with_range(end)
            .with_keys_only()
            .with_limit(limit as i64);
        let mut response = self
            .shared
            .block(move || {
                let (mut kv, start, options) = (kv.clone(), start.clone(), options.clone());
                async move { kv.get(start, Some(options)).await }
            })
            .map_err(|e| self.failed(e))?;
        Ok(response
            .take_kvs()
            .iter()
            .filter_map(|kv| {
                let key = kv.key().strip_prefix(prefix.as_slice())?;
                String::from_utf8(key.to_vec()).ok()
            })
            .collect())
    }

    fn increment(&self, bucket: &str, key: &str, delta: u64, quota: u64) -> Result<u64, KvError> {
        self.transact(bucket, &[key.to_string()], |read| {
            let current = read.values.get(key).and_then(|(v, _)| v.as_deref());
            let next = flotilla_kv::incremented(key, current, delta)?;
            let pair = [(key.to_string(), next.to_string().into_bytes())];
            Ok((Self::puts(read, bucket, &pair, quota)?, next))
        })
    }

    fn compare_and_swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<[u8; 32]>,
        value: &[u8],
        quota: u64,
    ) -> Result<bool, KvError> {
        self.transact(bucket, &[key.to_string()], |read| {
            let current = read
                .values
                .get(key)
                .and_then(|(v, _)| v.as_deref())
                .map(flotilla_kv::digest);
            if current != expected {
                return Ok((Vec::new(), false));
            }
            let pair = [(key.to_string(), value.to_vec())];
            Ok((Self::puts(read, bucket, &pair, quota)?, true))
        })
    }
}
