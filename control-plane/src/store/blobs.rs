//! Modules as content-addressed files: `<dir>/<sha256>`, streamed in and out,
//! hashed while they stream, never held whole in memory nor under the
//! object store's lock. A blob no Workload or Instance names is removed
//! after a grace period (an upload comes before the apply that names it).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Why an upload was not stored.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// Past the size cap.
    #[error("the module is larger than {max} bytes")]
    TooLarge {
        /// The cap.
        max: u64,
    },
    /// The bytes do not hash to the digest they were sent under.
    #[error("the uploaded bytes have sha256 {actual}, not {expected}: the upload was corrupted or the digest is wrong")]
    DigestMismatch {
        /// The digest in the URL.
        expected: String,
        /// The digest of the bytes.
        actual: String,
    },
    /// The shared store (etcd) did not take it.
    #[error("cannot keep the module in the shared store: {0}")]
    Mirror(String),
    /// The upload broke off.
    #[error("the upload broke off: {0}")]
    Body(String),
    /// The disk failed (full, read-only…).
    #[error(
        "cannot store the module in {dir}: {source} (free space on that disk, then upload again)"
    )]
    Io {
        /// The blob folder.
        dir: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// Somewhere else every module is kept too, so that other control-plane
/// servers can serve it (an etcd store's [`super::etcd::EtcdBlobs`]); the
/// folder is then this server's cache of it.
pub trait BlobMirror: Send + Sync {
    /// Keeps the module at `path` (already verified) under `digest`.
    fn store(&self, digest: &str, path: &Path) -> Result<(), String>;
    /// Whether it keeps a module (whole).
    fn contains(&self, digest: &str) -> Result<bool, String>;
    /// Writes the module into `into` if the mirror has it; whether it did.
    fn fetch(&self, digest: &str, into: &Path) -> Result<bool, String>;
    /// Every module it keeps.
    fn digests(&self) -> Result<Vec<String>, String>;
    /// Notes that a module was just named again (by any server), so that
    /// [`BlobMirror::remove_unless_touched`] keeps it for `keep_for`;
    /// whether the mirror has the module (if not, nothing is noted).
    fn touch(&self, digest: &str, keep_for: Duration) -> Result<bool, String>;
    /// Forgets a module unless a touch of it still holds, at once (a touch
    /// lands before or finds it gone); whether it did.
    fn remove_unless_touched(&self, digest: &str) -> Result<bool, String>;
}

/// What a collection of unreferenced modules removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collect {
    /// The folder and the mirror: the one server that collects for all
    /// (the leader on etcd, the only server on SQLite).
    FolderAndMirror,
    /// This server's folder only, a cache of the mirror: every other
    /// server's, so that followers' disks do not fill with modules long
    /// gone from every Workload.
    Folder,
}

/// How the files of modules still arriving are named (never a digest).
const INCOMING_PREFIX: &str = ".incoming-";

/// The blob folder.
pub struct BlobStore {
    dir: PathBuf,
    mirror: Option<Arc<dyn BlobMirror>>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore")
            .field("dir", &self.dir)
            .field("mirrored", &self.mirror.is_some())
            .finish()
    }
}

impl BlobStore {
    /// Opens (creating, owner-only) the folder.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let store = Self {
            dir: dir.to_path_buf(),
            mirror: None,
        };
        store.sweep_incoming();
        Ok(store)
    }

    /// Removes what uploads and pulls cut short by a killed server left
    /// (up to the upload limit each): a live server's temporary files go
    /// with their handles, so any found at start belong to a dead one.
    fn sweep_incoming(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let (mut files, mut bytes) = (0u64, 0u64);
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // `.tmp` is what earlier versions named them.
            if !(name.starts_with(INCOMING_PREFIX) || name.starts_with(".tmp")) {
                continue;
            }
            let size = entry.metadata().map_or(0, |m| m.len());
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    files += 1;
                    bytes += size;
                }
                Err(e) => tracing::warn!(
                    "cannot remove the unfinished module {}: {e}",
                    entry.path().display()
                ),
            }
        }
        if files > 0 {
            tracing::info!(
                "removed {files} unfinished module file(s) ({bytes} bytes) left by an upload or pull that was cut short"
            );
        }
    }

    /// Keeps every module in `mirror` too, and fills the folder from it.
    pub fn with_mirror(mut self, mirror: Arc<dyn BlobMirror>) -> Self {
        self.mirror = Some(mirror);
        self
    }

    /// Keeps a module just written in the mirror; one the mirror could not
    /// take is removed here too, so that the upload fails as a whole and is
    /// made again (a module only one server has would fail the others).
    fn mirror_stored(&self, digest: &str) -> Result<(), String> {
        let Some(mirror) = &self.mirror else {
            return Ok(());
        };
        mirror.store(digest, &self.path(digest)).inspect_err(|_| {
            let _ = std::fs::remove_file(self.path(digest));
        })
    }

    /// Where the blob with this digest is (or would be).
    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(digest)
    }

    /// Whether the blob is stored, here or in the mirror (asked, not
    /// fetched).
    pub fn has(&self, digest: &str) -> bool {
        if self.path(digest).is_file() {
            return true;
        }
        let Some(mirror) = &self.mirror else {
            return false;
        };
        match mirror.contains(digest) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!("asking the shared store for module {digest}: {e}");
                false
            }
        }
    }

    /// Makes sure the blob is in the folder, fetching it from the mirror if
    /// only the mirror has it (blocking: call it off the async workers).
    pub fn materialize(&self, digest: &str) -> Result<bool, String> {
        if self.path(digest).is_file() {
            return Ok(true);
        }
        match &self.mirror {
            Some(mirror) => mirror.fetch(digest, &self.path(digest)),
            None => Ok(false),
        }
    }

    /// Stores `chunks` under `digest` if they hash to it and stay within
    /// `max` bytes: written to a temporary file while hashing, renamed into
    /// place only when whole and verified.
    pub async fn put<S, E>(&self, digest: &str, chunks: S, max: u64) -> Result<(), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let io = |source| BlobError::Io {
            dir: self.dir.clone(),
            source,
        };
        let tmp = self.incoming().map_err(io)?;
        let (file, tmp_path) = tmp.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut chunks = chunks;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            if size > max {
                return Err(BlobError::TooLarge { max });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.sync_all().await.map_err(io)?;
        let actual = hex::encode(hasher.finalize());
        if actual != digest {
            return Err(BlobError::DigestMismatch {
                expected: digest.to_string(),
                actual,
            });
        }
        tmp_path
            .persist(self.path(digest))
            .map_err(|e| io(e.error))?;
        self.sync_dir().map_err(io)?;
        let mirrored = {
            let digest = digest.to_string();
            let this = self.mirror.clone().map(|m| (m, self.path(&digest)));
            tokio::task::spawn_blocking(move || match this {
                Some((mirror, path)) => mirror.store(&digest, &path).inspect_err(|_| {
                    let _ = std::fs::remove_file(&path);
                }),
                None => Ok(()),
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
        };
        mirrored.map_err(BlobError::Mirror)
    }

    /// Stores whole bytes (the one-time move out of the SQLite store).
    pub fn put_bytes(&self, digest: &str, bytes: &[u8]) -> std::io::Result<()> {
        let mut tmp = self.incoming()?;
        std::io::Write::write_all(&mut tmp, bytes)?;
        self.adopt(digest, tmp)
    }

    /// A file in the blob folder to write a module into as it arrives (a
    /// pull from a registry), kept by [`BlobStore::adopt`] once verified.
    pub fn incoming(&self) -> std::io::Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix(INCOMING_PREFIX)
            .tempfile_in(&self.dir)
    }

    /// Keeps `file` (from [`BlobStore::incoming`]), whose bytes the caller
    /// checked to hash to `digest`, as that blob: durable, and in the
    /// mirror (blocking).
    pub fn adopt(&self, digest: &str, file: tempfile::NamedTempFile) -> std::io::Result<()> {
        file.as_file().sync_all()?;
        file.persist(self.path(digest)).map_err(|e| e.error)?;
        // Durable before the caller drops the only other copy.
        self.sync_dir()?;
        self.mirror_stored(digest).map_err(std::io::Error::other)
    }

    /// Marks a blob as just referenced (an upload of it again, or an
    /// admission that names it), so a collection racing that write keeps
    /// it: this folder's copy by its modification time, the mirror's for
    /// `grace` (the leader, perhaps another server, collects that one). A
    /// module the mirror lost (collected just before this server was asked
    /// for it) is put back from this folder. Blocks on the mirror.
    pub fn touch(&self, digest: &str, grace: Duration) -> Result<(), BlobError> {
        if let Ok(file) = std::fs::File::options()
            .append(true)
            .open(self.path(digest))
        {
            let _ = file.set_modified(SystemTime::now());
        }
        let Some(mirror) = &self.mirror else {
            return Ok(());
        };
        super::off_worker(|| {
            if mirror.touch(digest, grace)? {
                return Ok(());
            }
            if !self.path(digest).is_file() {
                return Err(format!(
                    "module {digest} is in neither this server's folder nor the shared store: upload it again"
                ));
            }
            mirror.store(digest, &self.path(digest))?;
            mirror.touch(digest, grace).map(|_| ())
        })
        .map_err(BlobError::Mirror)
    }

    /// Removes every blob that no one has referenced for `grace`: absent
    /// from `referenced` on every pass for that long (`unreferenced` keeps
    /// since when, across passes) and not touched within it either — from
    /// the folder and, with [`Collect::FolderAndMirror`], the mirror.
    /// Returns how many went.
    pub fn collect_garbage(
        &self,
        referenced: &HashSet<String>,
        grace: Duration,
        unreferenced: &mut HashMap<String, Instant>,
        scope: Collect,
    ) -> std::io::Result<usize> {
        let mirror = match scope {
            Collect::FolderAndMirror => self.mirror.as_ref(),
            Collect::Folder => None,
        };
        let now = SystemTime::now();
        let mut present = HashSet::new();
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_blob = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_blob || referenced.contains(&name) {
                continue;
            }
            let since = *unreferenced
                .entry(name.clone())
                .or_insert_with(Instant::now);
            present.insert(name.clone());
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default();
            if since.elapsed() < grace || age < grace {
                continue;
            }
            // The mirror's copy first: named again through another server
            // lately, both stay.
            if let Some(mirror) = mirror {
                if !mirror
                    .remove_unless_touched(&name)
                    .map_err(std::io::Error::other)?
                {
                    continue;
                }
            }
            if std::fs::remove_file(entry.path()).is_ok() {
                tracing::info!("removed module {name}: nothing has named it for {grace:?}");
                present.remove(&name);
                removed += 1;
            }
        }
        // Modules only the mirror has (uploaded through another server).
        if let Some(mirror) = mirror {
            for name in mirror.digests().map_err(std::io::Error::other)? {
                if referenced.contains(&name) || self.path(&name).is_file() {
                    continue;
                }
                let since = *unreferenced
                    .entry(name.clone())
                    .or_insert_with(Instant::now);
                present.insert(name.clone());
                if since.elapsed() >= grace
                    && mirror
                        .remove_unless_touched(&name)
                        .map_err(std::io::Error::other)?
                {
                    tracing::info!("removed module {name}: nothing has named it for {grace:?}");
                    present.remove(&name);
                    removed += 1;
                }
            }
        }
        unreferenced.retain(|digest, _| present.contains(digest));
        Ok(removed)
    }

    /// Makes the folder's entries (a rename) durable.
    fn sync_dir(&self) -> std::io::Result<()> {
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn what_a_killed_server_left_half_written_is_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).unwrap();
        let digest = hex::encode(Sha256::digest(b"kept"));
        blobs.put_bytes(&digest, b"kept").unwrap();
        // A pull under way, then "killed": its file stays behind.
        let (_, cut_short) = blobs.incoming().unwrap().keep().unwrap();
        std::fs::write(&cut_short, b"half a module").unwrap();
        std::fs::write(dir.path().join(".tmpAbC123"), b"older name").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
        let reopened = BlobStore::open(dir.path()).unwrap();
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, std::slice::from_ref(&digest));
        assert!(reopened.has(&digest));
    }

    #[tokio::test]
    async fn uploads_are_verified_capped_and_collected() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).unwrap();
        let digest = hex::encode(Sha256::digest(b"wasm bytes"));
        blobs
            .put(&digest, chunks(&[b"wasm ", b"bytes"]), 100)
            .await
            .unwrap();
        assert_eq!(std::fs::read(blobs.path(&digest)).unwrap(), b"wasm bytes");
        let wrong = blobs.put(&"0".repeat(64), chunks(&[b"other"]), 100).await;
        assert!(matches!(wrong, Err(BlobError::DigestMismatch { .. })));
        let big = blobs
            .put(&digest, chunks(&[b"0123456789", b"0123456789"]), 15)
            .await;
        assert!(matches!(big, Err(BlobError::TooLarge { max: 15 })));
        // Nothing half-written is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // Referenced, or unreferenced for less than the grace: kept.
        let mut since = HashMap::new();
        let referenced = HashSet::from([digest.clone()]);
        let kept = blobs.collect_garbage(
            &referenced,
            Duration::ZERO,
            &mut since,
            Collect::FolderAndMirror,
        );
        assert_eq!(kept.unwrap(), 0);
        assert!(since.is_empty());
        let grace = Duration::from_millis(300);
        let young =
            blobs.collect_garbage(&HashSet::new(), grace, &mut since, Collect::FolderAndMirror);
        assert_eq!(young.unwrap(), 0);
        assert_eq!(since.len(), 1, "unreferenced from now on");
        std::thread::sleep(grace);
        // Touched (named again by an admission) within the grace: kept.
        blobs.touch(&digest, grace).unwrap();
        let touched =
            blobs.collect_garbage(&HashSet::new(), grace, &mut since, Collect::FolderAndMirror);
        assert_eq!(touched.unwrap(), 0);
        std::thread::sleep(grace);
        let old =
            blobs.collect_garbage(&HashSet::new(), grace, &mut since, Collect::FolderAndMirror);
        assert_eq!(old.unwrap(), 1);
        assert!(!blobs.has(&digest));
        assert!(since.is_empty());
    }

    /// A mirror in memory: the digests it keeps, and until when a touch of
    /// each holds.
    #[derive(Default)]
    struct Kept {
        digests: std::sync::Mutex<HashSet<String>>,
        touched: std::sync::Mutex<HashMap<String, Instant>>,
    }

    impl Kept {
        fn has(&self, digest: &str) -> bool {
            self.digests.lock().unwrap().contains(digest)
        }
        /// As the leader's collection on another server would.
        fn lose(&self, digest: &str) {
            self.digests.lock().unwrap().remove(digest);
            self.touched.lock().unwrap().remove(digest);
        }
    }

    impl BlobMirror for Kept {
        fn store(&self, digest: &str, _: &Path) -> Result<(), String> {
            self.digests.lock().unwrap().insert(digest.into());
            Ok(())
        }
        fn contains(&self, digest: &str) -> Result<bool, String> {
            Ok(self.has(digest))
        }
        fn fetch(&self, _: &str, _: &Path) -> Result<bool, String> {
            Ok(false)
        }
        fn digests(&self) -> Result<Vec<String>, String> {
            Ok(self.digests.lock().unwrap().iter().cloned().collect())
        }
        fn touch(&self, digest: &str, keep_for: Duration) -> Result<bool, String> {
            if !self.has(digest) {
                return Ok(false);
            }
            let until = Instant::now() + keep_for;
            self.touched.lock().unwrap().insert(digest.into(), until);
            Ok(true)
        }
        fn remove_unless_touched(&self, digest: &str) -> Result<bool, String> {
            let held = self
                .touched
                .lock()
                .unwrap()
                .get(digest)
                .is_some_and(|until| Instant::now() < *until);
            if !held {
                self.lose(digest);
            }
            Ok(!held)
        }
    }

    #[tokio::test]
    async fn a_follower_collects_its_folder_and_leaves_the_mirror_to_the_leader() {
        let dir = tempfile::tempdir().unwrap();
        let mirror = Arc::new(Kept::default());
        let blobs = BlobStore::open(dir.path())
            .unwrap()
            .with_mirror(mirror.clone());
        let digest = hex::encode(Sha256::digest(b"old module"));
        blobs
            .put(&digest, chunks(&[b"old module"]), 100)
            .await
            .unwrap();
        assert!(mirror.has(&digest));
        let none = HashSet::new();
        // Wide enough that a pass delayed on a busy machine still falls
        // inside it.
        let grace = Duration::from_secs(1);
        let mut followers = HashMap::new();
        let follower_pass = |since: &mut HashMap<String, Instant>| {
            blobs
                .collect_garbage(&none, grace, since, Collect::Folder)
                .unwrap()
        };
        assert_eq!(follower_pass(&mut followers), 0);
        std::thread::sleep(grace);
        assert_eq!(follower_pass(&mut followers), 1);
        assert!(!blobs.path(&digest).exists(), "gone from the folder");
        assert!(mirror.has(&digest), "kept in the mirror");
        // Only the mirror has it now: a follower leaves it there.
        assert_eq!(follower_pass(&mut followers), 0);
        assert!(mirror.has(&digest));

        // The leader, on another server, with the module in its folder.
        let other = tempfile::tempdir().unwrap();
        let leader = BlobStore::open(other.path())
            .unwrap()
            .with_mirror(mirror.clone());
        leader
            .put(&digest, chunks(&[b"old module"]), 100)
            .await
            .unwrap();
        let mut leaders = HashMap::new();
        let leader_pass = |since: &mut HashMap<String, Instant>| {
            leader
                .collect_garbage(&none, grace, since, Collect::FolderAndMirror)
                .unwrap()
        };
        assert_eq!(leader_pass(&mut leaders), 0);
        std::thread::sleep(grace);
        // Named again through the first server (an apply) just before the
        // leader's pass: both copies stay.
        blobs.touch(&digest, grace).unwrap();
        assert_eq!(leader_pass(&mut leaders), 0);
        assert!(mirror.has(&digest), "named again elsewhere: kept");
        assert!(leader.path(&digest).exists());
        std::thread::sleep(grace);
        assert_eq!(leader_pass(&mut leaders), 1);
        assert!(!mirror.has(&digest) && !leader.path(&digest).exists());

        // Named again through a server whose folder still has it, after the
        // leader collected the mirror's copy: the copy is put back.
        leader
            .put(&digest, chunks(&[b"old module"]), 100)
            .await
            .unwrap();
        mirror.lose(&digest);
        leader.touch(&digest, grace).unwrap();
        assert!(mirror.has(&digest), "put back");
        // Named where neither has it: an error naming the fix, not a
        // Workload admitted for a module no server can serve.
        mirror.lose(&digest);
        let missing = blobs.touch(&digest, grace).unwrap_err();
        assert!(missing.to_string().contains("upload it again"), "{missing}");
    }
}
