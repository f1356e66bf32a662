//! The embedded store: one SQLite file (WAL mode), so a single machine needs
//! no other process. A write is one transaction that updates the object, bumps
//! the revision and appends to the change log, so a crash at any point leaves
//! either all of it or none.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::Value;

use super::{Change, ChangeType, Listing, Store, StoreError};

/// Changes kept for watchers that fall behind.
const CHANGE_LOG_KEEP: u64 = 100_000;

/// Recent changes kept in memory (the watch cache): every watcher wakes on
/// every write, and serving them from memory spares each one a SQLite read
/// and a JSON parse under the connection's lock.
const WATCH_CACHE: usize = 4096;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    revision INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name));
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY, kind TEXT NOT NULL, namespace TEXT NOT NULL,
    type TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (digest TEXT PRIMARY KEY, bytes BLOB NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('compacted', 0);
";

/// A [`Store`] in one SQLite file.
pub struct SqliteStore {
    db: Mutex<Connection>,
    notify: tokio::sync::watch::Sender<u64>,
    /// The latest changes since this process opened the store, oldest first.
    recent: Mutex<std::collections::VecDeque<Change>>,
}

fn backend(e: rusqlite::Error) -> StoreError {
    // SQLite rolls the transaction back: nothing half-written stays.
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        return StoreError::Full(e.to_string());
    }
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Connection::open(path)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        // WAL + NORMAL: a killed process loses nothing committed; only a power
        // loss can drop the last transactions.
        db.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        db.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        db.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        db.execute_batch(SCHEMA).map_err(backend)?;
        // Every statement of the store is prepared once (`prepare_cached`).
        db.set_prepared_statement_cache_capacity(64);
        let revision = read_meta(&db, "revision")?;
        let (notify, _) = tokio::sync::watch::channel(revision);
        Ok(Self {
            db: Mutex::new(db),
            notify,
            recent: Mutex::default(),
        })
    }

    /// Every kind the store holds objects of (for copying it elsewhere).
    pub fn kinds(&self) -> Result<Vec<String>, StoreError> {
        let db = self.conn();
        let mut statement = db
            .prepare("SELECT DISTINCT kind FROM objects ORDER BY kind")
            .map_err(backend)?;
        let kinds = statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        Ok(kinds)
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Change>> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic mid-transaction rolls the transaction back on drop, so the
        // connection is consistent even if the lock was poisoned.
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one write transaction: `write` gets the next revision and returns
    /// the change to log.
    fn write(
        &self,
        write: impl FnOnce(&Transaction, u64) -> Result<Change, StoreError>,
    ) -> Result<Change, StoreError> {
        super::off_worker(|| {
            let mut db = self.conn();
            let tx = db.transaction().map_err(backend)?;
            let revision = read_meta(&tx, "revision")? + 1;
            let change = write(&tx, revision)?;
            tx.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'revision'")
                .and_then(|mut stmt| stmt.execute(params![revision as i64]))
                .map_err(backend)?;
            let mut log = tx
                .prepare_cached(
                    "INSERT INTO changes (revision, kind, namespace, type, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(backend)?;
            log.execute(params![
                revision as i64,
                change.kind,
                change.namespace,
                change_type_name(change.change),
                change.object.to_string()
            ])
            .map_err(backend)?;
            drop(log);
            if revision % 1000 == 0 && revision > CHANGE_LOG_KEEP {
                let floor = revision - CHANGE_LOG_KEEP;
                tx.prepare_cached("DELETE FROM changes WHERE revision <= ?1")
                    .and_then(|mut stmt| stmt.execute(params![floor as i64]))
                    .map_err(backend)?;
                tx.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'compacted'")
                    .and_then(|mut stmt| stmt.execute(params![floor as i64]))
                    .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            // Still under the connection's lock: the cache keeps revision order.
            let mut recent = self.recent();
            recent.push_back(change.clone());
            if recent.len() > WATCH_CACHE {
                recent.pop_front();
            }
            drop(recent);
            drop(db);
            self.notify.send_replace(revision);
            Ok(change)
        })
    }
}

/// The log entry of a write.
fn change(revision: u64, kind: &str, namespace: &str, change: ChangeType, object: Value) -> Change {
    Change {
        revision,
        kind: kind.into(),
        namespace: namespace.into(),
        change,
        object,
    }
}

fn read_meta(db: &Connection, key: &str) -> Result<u64, StoreError> {
    db.prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .and_then(|mut stmt| stmt.query_row(params![key], |r| r.get::<_, i64>(0)))
        .map(|v| v as u64)
        .map_err(backend)
}

fn change_type_name(t: ChangeType) -> &'static str {
    match t {
        ChangeType::Added => "ADDED",
        ChangeType::Modified => "MODIFIED",
        ChangeType::Deleted => "DELETED",
    }
}

fn parse_change_type(s: &str) -> ChangeType {
    match s {
        "ADDED" => ChangeType::Added,
        "DELETED" => ChangeType::Deleted,
        _ => ChangeType::Modified,
    }
}

fn parse_body(text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Backend(format!("corrupt stored object: {e}")))
}

/// Writes `revision` into `metadata.resourceVersion`.
fn stamp(mut object: Value, revision: u64) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
    object
}

/// The stored JSON of one object, if it exists.
fn stored_body(
    db: &Connection,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<String>, StoreError> {
    db.prepare_cached("SELECT body FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3")
        .and_then(|mut stmt| stmt.query_row(params![kind, namespace, name], |r| r.get(0)))
        .optional()
        .map_err(backend)
}

fn stored_revision(
    tx: &Transaction,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<u64>, StoreError> {
    tx.prepare_cached(
        "SELECT revision FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
    )
    .and_then(|mut stmt| stmt.query_row(params![kind, namespace, name], |r| r.get::<_, i64>(0)))
    .optional()
    .map(|r| r.map(|v| v as u64))
    .map_err(backend)
}

impl Store for SqliteStore {
    fn get(&self, kind: &str, namespace: &str, name: &str) -> Result<Option<Value>, StoreError> {
        super::off_worker(|| {
            let _timer = crate::telemetry::time_store("get");
            let db = self.conn();
            stored_body(&db, kind, namespace, name)?
                .as_deref()
                .map(parse_body)
                .transpose()
        })
    }

    fn list(&self, kind: &str, namespace: Option<&str>) -> Result<Listing, StoreError> {
        super::off_worker(|| {
            let _timer = crate::telemetry::time_store("list");
            let db = self.conn();
            let revision = read_meta(&db, "revision")?;
            let mut stmt = db
                .prepare_cached(
                    "SELECT body FROM objects WHERE kind = ?1 AND (?2 IS NULL OR namespace = ?2) ORDER BY namespace, name",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![kind, namespace], |r| r.get::<_, String>(0))
                .map_err(backend)?;
            let mut items = Vec::new();
            for row in rows {
                items.push(parse_body(&row.map_err(backend)?)?);
            }
            Ok(Listing { items, revision })
        })
    }

    fn create(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        object: Value,
    ) -> Result<Value, StoreError> {
        let _timer = crate::telemetry::time_store("create");
        let change = self.write(|tx, revision| {
            if stored_revision(tx, kind, namespace, name)?.is_some() {
                return Err(StoreError::already_exists(kind, namespace, name));
            }
            let object = stamp(object, revision);
            tx.prepare_cached(
                "INSERT INTO objects (kind, namespace, name, revision, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![kind, namespace, name, revision as i64, object.to_string()])
            })
            .map_err(backend)?;
            Ok(change(revision, kind, namespace, ChangeType::Added, object))
        })?;
        Ok(change.object)
    }

    fn update(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        object: Value,
        expected: Option<u64>,
    ) -> Result<Value, StoreError> {
        let _timer = crate::telemetry::time_store("update");
        let change = self.write(|tx, revision| {
            let current = stored_revision(tx, kind, namespace, name)?.ok_or_else(|| StoreError::not_found(kind, namespace, name))?;
            if let Some(given) = expected {
                if given != current {
                    return Err(StoreError::Conflict {
                        kind: kind.into(),
                        namespace: namespace.into(),
                        name: name.into(),
                        current,
                        given,
                    });
                }
            }
            let object = stamp(object, revision);
            tx.prepare_cached(
                "UPDATE objects SET revision = ?4, body = ?5 WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![kind, namespace, name, revision as i64, object.to_string()])
            })
            .map_err(backend)?;
            Ok(change(revision, kind, namespace, ChangeType::Modified, object))
        })?;
        Ok(change.object)
    }

    fn delete(&self, kind: &str, namespace: &str, name: &str) -> Result<Value, StoreError> {
        let _timer = crate::telemetry::time_store("delete");
        let change = self.write(|tx, revision| {
            let body = stored_body(tx, kind, namespace, name)?
                .ok_or_else(|| StoreError::not_found(kind, namespace, name))?;
            tx.prepare_cached(
                "DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
            )
            .and_then(|mut stmt| stmt.execute(params![kind, namespace, name]))
            .map_err(backend)?;
            let object = stamp(parse_body(&body)?, revision);
            Ok(change(
                revision,
                kind,
                namespace,
                ChangeType::Deleted,
                object,
            ))
        })?;
        Ok(change.object)
    }

    fn changes_since(&self, revision: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        super::off_worker(|| {
            let _timer = crate::telemetry::time_store("changes");
            {
                let recent = self.recent();
                // Served from memory when the cache holds every change after `revision`.
                if recent.front().is_some_and(|c| c.revision <= revision + 1) {
                    let start = recent.partition_point(|c| c.revision <= revision);
                    return Ok(recent.range(start..).take(limit).cloned().collect());
                }
            }
            let db = self.conn();
            let compacted = read_meta(&db, "compacted")?;
            if revision < compacted {
                return Err(StoreError::Gone(revision));
            }
            let mut stmt = db
                .prepare_cached(
                    "SELECT revision, kind, namespace, type, body FROM changes WHERE revision > ?1 ORDER BY revision LIMIT ?2",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![revision as i64, limit as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })
                .map_err(backend)?;
            let mut changes = Vec::new();
            for row in rows {
                let (revision, kind, namespace, change, body) = row.map_err(backend)?;
                changes.push(Change {
                    revision: revision as u64,
                    kind,
                    namespace,
                    change: parse_change_type(&change),
                    object: parse_body(&body)?,
                });
            }
            Ok(changes)
        })
    }

    fn revision(&self) -> Result<u64, StoreError> {
        super::off_worker(|| read_meta(&self.conn(), "revision"))
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.notify.subscribe()
    }

    fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), StoreError> {
        super::off_worker(|| {
            self.conn()
                .execute(
                    "INSERT OR IGNORE INTO blobs (digest, bytes) VALUES (?1, ?2)",
                    params![digest, bytes],
                )
                .map(drop)
                .map_err(backend)
        })
    }

    fn get_blob(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        super::off_worker(|| {
            self.conn()
                .query_row(
                    "SELECT bytes FROM blobs WHERE digest = ?1",
                    params![digest],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)
        })
    }

    fn blob_digests(&self) -> Result<Vec<String>, StoreError> {
        super::off_worker(|| {
            let db = self.conn();
            let mut stmt = db.prepare("SELECT digest FROM blobs").map_err(backend)?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
    }

    fn delete_blob(&self, digest: &str) -> Result<(), StoreError> {
        super::off_worker(|| {
            self.conn()
                .execute("DELETE FROM blobs WHERE digest = ?1", params![digest])
                .map(drop)
                .map_err(backend)
        })
    }

    fn has_blob(&self, digest: &str) -> Result<bool, StoreError> {
        super::off_worker(|| {
            self.conn()
                .query_row(
                    "SELECT 1 FROM blobs WHERE digest = ?1",
                    params![digest],
                    |_| Ok(()),
                )
                .optional()
                .map(|r| r.is_some())
                .map_err(backend)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(name: &str, v: u32) -> Value {
        json!({"apiVersion": "flotilla.dev/v1", "kind": "Workload", "metadata": {"name": name}, "spec": {"v": v}})
    }

    #[test]
    fn crud_revisions_conflicts_and_log_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            let a = s.create("Workload", "default", "a", obj("a", 1)).unwrap();
            assert_eq!(a["metadata"]["resourceVersion"], "1");
            assert!(matches!(
                s.create("Workload", "default", "a", obj("a", 1)),
                Err(StoreError::AlreadyExists { .. })
            ));
            s.update("Workload", "default", "a", obj("a", 2), Some(1))
                .unwrap();
            let stale = s.update("Workload", "default", "a", obj("a", 3), Some(1));
            assert!(
                matches!(
                    stale,
                    Err(StoreError::Conflict {
                        current: 2,
                        given: 1,
                        ..
                    })
                ),
                "{stale:?}"
            );
            s.create("Workload", "other", "b", obj("b", 1)).unwrap();
            s.delete("Workload", "other", "b").unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.revision().unwrap(), 4);
        assert_eq!(
            s.get("Workload", "default", "a").unwrap().unwrap()["spec"]["v"],
            2
        );
        assert_eq!(s.list("Workload", None).unwrap().items.len(), 1);
        let log = s.changes_since(1, 100).unwrap();
        let kinds: Vec<ChangeType> = log.iter().map(|c| c.change).collect();
        assert_eq!(
            kinds,
            [ChangeType::Modified, ChangeType::Added, ChangeType::Deleted]
        );
        s.put_blob("ab", b"wasm").unwrap();
        s.put_blob("ab", b"wasm").unwrap();
        assert_eq!(s.get_blob("ab").unwrap().as_deref(), Some(&b"wasm"[..]));
    }

    #[test]
    fn the_watch_cache_answers_as_the_log_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let first = SqliteStore::open(&path).unwrap();
        first
            .create("Workload", "default", "a", obj("a", 1))
            .unwrap();
        drop(first);
        // Reopened: revision 1 is only in SQLite, 2.. also in memory.
        let s = SqliteStore::open(&path).unwrap();
        for v in 2..10 {
            s.update("Workload", "default", "a", obj("a", v), None)
                .unwrap();
        }
        let from_disk = SqliteStore::open(&path).unwrap();
        for since in 0..10 {
            for limit in [1, 3, 100] {
                let cached = s.changes_since(since, limit).unwrap();
                let logged = from_disk.changes_since(since, limit).unwrap();
                let revisions = |c: &[Change]| c.iter().map(|c| c.revision).collect::<Vec<_>>();
                assert_eq!(
                    revisions(&cached),
                    revisions(&logged),
                    "since {since}, limit {limit}"
                );
                assert_eq!(
                    cached.last().map(|c| &c.object["spec"]),
                    logged.last().map(|c| &c.object["spec"])
                );
            }
        }
    }
}
