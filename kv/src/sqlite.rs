//! [`SqliteKv`]: buckets in one SQLite file (WAL, `synchronous=NORMAL`: a
//! killed process loses nothing committed). Each bucket's size (keys and
//! values) is kept beside it, so a quota is checked in the same transaction
//! as the write; writes take the database's write lock first (`BEGIN
//! IMMEDIATE`), so an increment or a compare-and-swap is linearizable.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::{Backend, KvError};

/// Buckets in one SQLite file.
pub struct SqliteKv {
    db: Mutex<Connection>,
    /// What the store is called in errors ("the node's key-value store").
    label: String,
}

impl std::fmt::Debug for SqliteKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqliteKv({})", self.label)
    }
}

impl SqliteKv {
    /// Opens (or creates) the store at `path`; `label` names it in errors.
    pub fn open(path: &Path, label: &str) -> Result<Self, String> {
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
                "cannot open {label} {}: {e} (is the data folder writable and the disk not full?)",
                path.display()
            )
        })?;
        Ok(Self {
            db: Mutex::new(db),
            label: label.to_string(),
        })
    }

    fn failed(&self, e: rusqlite::Error) -> KvError {
        KvError::Other(format!("{} failed: {e}", self.label))
    }

    fn with<T>(&self, work: impl FnOnce(&Tx<'_>) -> Result<T, KvError>) -> Result<T, KvError> {
        let mut db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let tx = db
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.failed(e))?;
        let result = work(&Tx { tx: &tx, kv: self })?;
        tx.commit().map_err(|e| self.failed(e))?;
        Ok(result)
    }
}

/// A write transaction, and the store (for its errors).
struct Tx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
    kv: &'a SqliteKv,
}

impl Tx<'_> {
    /// Bytes `bucket` holds now.
    fn used(&self, bucket: &str) -> Result<u64, KvError> {
        self.tx
            .query_row(
                "SELECT bytes FROM usage WHERE bucket = ?1",
                params![bucket],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map(|bytes| bytes.unwrap_or(0).max(0) as u64)
            .map_err(|e| self.kv.failed(e))
    }

    /// Bytes `key` takes in `bucket` now (0 if absent).
    fn size_of(&self, bucket: &str, key: &str) -> Result<u64, KvError> {
        self.tx
            .query_row(
                "SELECT length(value) FROM kv WHERE bucket = ?1 AND key = ?2",
                params![bucket, key],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map(|len| len.map_or(0, |n| n.max(0) as u64 + key.len() as u64))
            .map_err(|e| self.kv.failed(e))
    }

    /// Writes `pairs` into `bucket` within `quota`.
    fn put(&self, bucket: &str, pairs: &[(String, Vec<u8>)], quota: u64) -> Result<(), KvError> {
        let total = crate::usage_after(bucket, self.used(bucket)?, pairs, quota, |key| {
            self.size_of(bucket, key)
        })?;
        for (key, value) in pairs {
            self.tx
                .execute(
                    "INSERT INTO kv (bucket, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (bucket, key) DO UPDATE SET value = excluded.value",
                    params![bucket, key, value],
                )
                .map_err(|e| self.kv.failed(e))?;
        }
        self.tx
            .execute(
                "INSERT INTO usage (bucket, bytes) VALUES (?1, ?2)
             ON CONFLICT (bucket) DO UPDATE SET bytes = excluded.bytes",
                params![bucket, total as i64],
            )
            .map_err(|e| self.kv.failed(e))?;
        Ok(())
    }

    /// The value of `key` in `bucket`.
    fn value(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.tx
            .query_row(
                "SELECT value FROM kv WHERE bucket = ?1 AND key = ?2",
                params![bucket, key],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.kv.failed(e))
    }
}

impl Backend for SqliteKv {
    /// Microseconds a call on one in-process connection (WAL,
    /// `synchronous=NORMAL`: no sync per commit): made in place, as a hop
    /// to a blocking pool costs ten times that (benches/src/bin/kv-bench.rs).
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
        .map_err(|e| self.failed(e))
    }

    fn set_many(
        &self,
        bucket: &str,
        pairs: &[(String, Vec<u8>)],
        quota: u64,
    ) -> Result<(), KvError> {
        self.with(|tx| tx.put(bucket, pairs, quota))
    }

    fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError> {
        self.with(|tx| {
            let mut total = tx.used(bucket)?;
            for key in keys {
                total -= tx.size_of(bucket, key)?.min(total);
                tx.tx
                    .execute(
                        "DELETE FROM kv WHERE bucket = ?1 AND key = ?2",
                        params![bucket, key],
                    )
                    .map_err(|e| self.failed(e))?;
            }
            tx.tx
                .execute(
                    "UPDATE usage SET bytes = ?2 WHERE bucket = ?1",
                    params![bucket, total as i64],
                )
                .map_err(|e| self.failed(e))?;
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
            .map_err(|e| self.failed(e))?;
        let keys = query
            .query_map(params![bucket, after.unwrap_or(""), limit as i64], |row| {
                row.get(0)
            })
            .map_err(|e| self.failed(e))?
            .collect::<Result<Vec<String>, _>>()
            .map_err(|e| self.failed(e))?;
        Ok(keys)
    }

    fn increment(&self, bucket: &str, key: &str, delta: u64, quota: u64) -> Result<u64, KvError> {
        self.with(|tx| {
            let next = crate::incremented(key, tx.value(bucket, key)?.as_deref(), delta)?;
            tx.put(
                bucket,
                &[(key.to_string(), next.to_string().into_bytes())],
                quota,
            )?;
            Ok(next)
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
        self.with(|tx| {
            let current = tx.value(bucket, key)?.map(|v| crate::digest(&v));
            if current != expected {
                return Ok(false);
            }
            tx.put(bucket, &[(key.to_string(), value.to_vec())], quota)?;
            Ok(true)
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
        let kv = SqliteKv::open(&path, "test store").unwrap();
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
        let kv = SqliteKv::open(&path, "test store").unwrap();
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
            matches!(&e, KvError::Invalid(m) if m.contains("not a decimal")),
            "{e:?}"
        );
    }

    #[test]
    fn compare_and_swap_sets_only_over_the_expected_value() {
        let dir = tempfile::tempdir().unwrap();
        let kv = SqliteKv::open(&dir.path().join("kv.db"), "test store").unwrap();
        assert!(kv.compare_and_swap("b", "k", None, b"one", 100).unwrap());
        assert!(
            !kv.compare_and_swap("b", "k", None, b"two", 100).unwrap(),
            "present: an only-if-absent swap does nothing"
        );
        assert!(!kv
            .compare_and_swap("b", "k", Some(crate::digest(b"other")), b"two", 100)
            .unwrap());
        assert_eq!(kv.get("b", "k").unwrap(), Some(b"one".to_vec()));
        assert!(kv
            .compare_and_swap("b", "k", Some(crate::digest(b"one")), b"two", 100)
            .unwrap());
        assert_eq!(kv.get("b", "k").unwrap(), Some(b"two".to_vec()));
        let e = kv
            .compare_and_swap("b", "k", Some(crate::digest(b"two")), &[0; 200], 100)
            .unwrap_err();
        assert!(e.is_quota_exceeded(), "{e:?}");
    }
}
