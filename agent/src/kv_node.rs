//! The `node` backend of `wasi:keyvalue`: one SQLite file in the agent's
//! data folder (WAL), buckets by namespace and name. The data stays with the
//! node: it survives restarts of instances and of the agent, and is not seen
//! from other nodes. Each bucket's size (keys and values) is kept beside
//! it, so a quota is checked in the same transaction as the write.

use std::path::Path;
use std::sync::Mutex;

use flotilla_host_api::keyvalue::{Backend, KvError};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// The node's buckets.
pub struct NodeKv {
    db: Mutex<Connection>,
}

impl std::fmt::Debug for NodeKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeKv")
    }
}

fn backend_error(e: rusqlite::Error) -> KvError {
    KvError::Other(format!("the node's key-value store failed: {e}"))
}

impl NodeKv {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, String> {
        let open = || -> rusqlite::Result<Connection> {
            let db = Connection::open(path)?;
            db.pragma_update(None, "journal_mode", "WAL")?;
            db.pragma_update(None, "synchronous", "NORMAL")?;
            db.busy_timeout(std::time::Duration::from_secs(5))?;
            db.execute_batch(
                "CREATE TABLE IF NOT EXISTS kv (
                     bucket TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                     PRIMARY KEY (bucket, key)) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS usage (
                     bucket TEXT PRIMARY KEY, bytes INTEGER NOT NULL) WITHOUT ROWID;",
            )?;
            Ok(db)
        };
        let db = open().map_err(|e| {
            format!(
                "cannot open the node's key-value store {}: {e} (is the data folder writable and the disk not full?)",
                path.display()
            )
        })?;
        Ok(Self { db: Mutex::new(db) })
    }

    fn with<T>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, KvError>,
    ) -> Result<T, KvError> {
        let mut db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let tx = db
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend_error)?;
        let result = work(&tx)?;
        tx.commit().map_err(backend_error)?;
        Ok(result)
    }
}

/// Bytes `bucket` holds now.
fn used(tx: &rusqlite::Transaction<'_>, bucket: &str) -> Result<u64, KvError> {
    tx.query_row(
        "SELECT bytes FROM usage WHERE bucket = ?1",
        params![bucket],
        |row| row.get::<_, i64>(0),
    )
    .optional()
    .map(|bytes| bytes.unwrap_or(0).max(0) as u64)
    .map_err(backend_error)
}

/// Bytes `key` takes in `bucket` now (0 if absent).
fn size_of(tx: &rusqlite::Transaction<'_>, bucket: &str, key: &str) -> Result<u64, KvError> {
    tx.query_row(
        "SELECT length(value) FROM kv WHERE bucket = ?1 AND key = ?2",
        params![bucket, key],
        |row| row.get::<_, i64>(0),
    )
    .optional()
    .map(|len| len.map_or(0, |n| n.max(0) as u64 + key.len() as u64))
    .map_err(backend_error)
}

/// Writes `pairs` into `bucket` within `quota` (in the caller's transaction).
fn put(
    tx: &rusqlite::Transaction<'_>,
    bucket: &str,
    pairs: &[(String, Vec<u8>)],
    quota: u64,
) -> Result<(), KvError> {
    let mut total = used(tx, bucket)?;
    for (key, value) in pairs {
        let before = size_of(tx, bucket, key)?;
        let after = (key.len() + value.len()) as u64;
        if after > before && total - before.min(total) + after > quota {
            return Err(KvError::quota_exceeded(
                bucket,
                total,
                after - before,
                quota,
            ));
        }
        total = total - before.min(total) + after;
        tx.execute(
            "INSERT INTO kv (bucket, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (bucket, key) DO UPDATE SET value = excluded.value",
            params![bucket, key, value],
        )
        .map_err(backend_error)?;
    }
    tx.execute(
        "INSERT INTO usage (bucket, bytes) VALUES (?1, ?2)
         ON CONFLICT (bucket) DO UPDATE SET bytes = excluded.bytes",
        params![bucket, total as i64],
    )
    .map_err(backend_error)?;
    Ok(())
}

impl Backend for NodeKv {
    /// Microseconds a call on one in-process connection (WAL,
    /// `synchronous=NORMAL`: no sync per commit): made in place, as a hop
    /// to the blocking pool costs ten times that (benches/src/bin/kv-bench.rs).
    fn inline(&self) -> bool {
        true
    }

    fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        db.query_row(
            "SELECT value FROM kv WHERE bucket = ?1 AND key = ?2",
            params![bucket, key],
            |row| row.get(0),
        )
        .optional()
        .map_err(backend_error)
    }

    fn set_many(
        &self,
        bucket: &str,
        pairs: &[(String, Vec<u8>)],
        quota: u64,
    ) -> Result<(), KvError> {
        self.with(|tx| put(tx, bucket, pairs, quota))
    }

    fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError> {
        self.with(|tx| {
            let mut total = used(tx, bucket)?;
            for key in keys {
                total -= size_of(tx, bucket, key)?.min(total);
                tx.execute(
                    "DELETE FROM kv WHERE bucket = ?1 AND key = ?2",
                    params![bucket, key],
                )
                .map_err(backend_error)?;
            }
            tx.execute(
                "UPDATE usage SET bytes = ?2 WHERE bucket = ?1",
                params![bucket, total as i64],
            )
            .map_err(backend_error)?;
            Ok(())
        })
    }

    fn list_keys(
        &self,
        bucket: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, KvError> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        // By key, not by offset: each page is an index range, and writes
        // between pages do not shift it.
        let mut query = db
            .prepare_cached(
                "SELECT key FROM kv WHERE bucket = ?1 AND key > ?2 ORDER BY key LIMIT ?3",
            )
            .map_err(backend_error)?;
        let keys = query
            .query_map(params![bucket, after.unwrap_or(""), limit as i64], |row| {
                row.get(0)
            })
            .map_err(backend_error)?
            .collect::<Result<Vec<String>, _>>()
            .map_err(backend_error)?;
        Ok(keys)
    }

    fn increment(&self, bucket: &str, key: &str, delta: u64, quota: u64) -> Result<u64, KvError> {
        self.with(|tx| {
            let current: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT value FROM kv WHERE bucket = ?1 AND key = ?2",
                    params![bucket, key],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend_error)?;
            let current = match current {
                None => 0,
                Some(bytes) => std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|text| text.trim().parse::<u64>().ok())
                    .ok_or_else(|| {
                        KvError::Other(format!(
                            "the value of {key:?} is not a decimal number, so it cannot be incremented"
                        ))
                    })?,
            };
            let next = current.checked_add(delta).ok_or_else(|| {
                KvError::Other(format!("incrementing {key:?} by {delta} overflows a u64"))
            })?;
            put(tx, bucket, &[(key.to_string(), next.to_string().into_bytes())], quota)?;
            Ok(next)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_persist_and_quota_and_increment_hold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let kv = NodeKv::open(&path).unwrap();
        kv.set_many("ns/b", &[("a".into(), b"12345".to_vec())], 100)
            .unwrap();
        assert_eq!(kv.get("ns/b", "a").unwrap(), Some(b"12345".to_vec()));
        assert_eq!(kv.get("ns/other", "a").unwrap(), None, "buckets are apart");
        // 6 bytes used; 95 more would pass 100.
        let e = kv
            .set_many("ns/b", &[("b".into(), vec![0; 94])], 100)
            .unwrap_err();
        assert!(
            matches!(&e, KvError::Other(m) if m.starts_with("quota-exceeded")),
            "{e:?}"
        );
        // Replacing a value counts only the difference.
        kv.set_many("ns/b", &[("a".into(), vec![1; 99])], 100)
            .unwrap();
        kv.delete_many("ns/b", &["a".into()]).unwrap();
        assert_eq!(kv.increment("ns/b", "n", 5, 100).unwrap(), 5);
        assert_eq!(kv.increment("ns/b", "n", 2, 100).unwrap(), 7);
        drop(kv);
        let kv = NodeKv::open(&path).unwrap();
        assert_eq!(kv.get("ns/b", "n").unwrap(), Some(b"7".to_vec()));
        assert_eq!(kv.list_keys("ns/b", None, 10).unwrap(), ["n"]);
        assert!(kv.list_keys("ns/b", Some("n"), 10).unwrap().is_empty());
        // A delete frees its share of the quota (absent keys are no error).
        kv.delete_many("ns/b", &["n".into(), "absent".into()])
            .unwrap();
        kv.set_many("ns/b", &[("c".into(), vec![0; 99])], 100)
            .unwrap();
        kv.delete_many("ns/b", &["c".into()]).unwrap();
        kv.set_many("ns/b", &[("t".into(), b"x".to_vec())], 100)
            .unwrap();
        let e = kv.increment("ns/b", "t", 1, 100).unwrap_err();
        assert!(
            matches!(&e, KvError::Other(m) if m.contains("not a decimal")),
            "{e:?}"
        );
    }
}
