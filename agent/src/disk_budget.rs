//! The node's module files within a disk budget: downloaded modules
//! (`modules/<sha256>.wasm`) and compiled code (`compiled/<sha256>-….cwasm`
//! and its `.mac`) are removed least recently used first once together they
//! pass `--module-cache-size`, except those of modules loaded now. A removed
//! module is downloaded and compiled again when next needed.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One file, its module's digest, size and last use.
struct Entry {
    path: PathBuf,
    digest: String,
    bytes: u64,
    used: SystemTime,
}

fn entries(dir: &Path) -> Vec<Entry> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    read.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let digest: String = name.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
            if digest.len() != 64 {
                return None; // the cache's key, temporary files…
            }
            let meta = e.metadata().ok()?;
            Some(Entry {
                path: e.path(),
                digest,
                bytes: meta.len(),
                used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            })
        })
        .collect()
}

/// Removes files of modules not `in_use` from `dirs`, oldest use first,
/// until all of them take at most `budget` bytes; returns the bytes freed.
pub fn prune(dirs: &[&Path], budget: u64, in_use: impl Fn(&str) -> bool) -> u64 {
    let mut all: Vec<Entry> = dirs.iter().flat_map(|d| entries(d)).collect();
    let mut total: u64 = all.iter().map(|e| e.bytes).sum();
    if total <= budget {
        return 0;
    }
    all.sort_by_key(|e| e.used);
    let mut freed = 0;
    for entry in all {
        if total <= budget {
            break;
        }
        if in_use(&entry.digest) {
            continue;
        }
        if std::fs::remove_file(&entry.path).is_ok() {
            tracing::info!(
                "removed {} ({} bytes): module files past the node's budget of {budget} bytes",
                entry.path.display(),
                entry.bytes
            );
            total -= entry.bytes;
            freed += entry.bytes;
        }
    }
    freed
}

/// Marks a module file as just used (its modification time is its last use).
pub fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn least_recently_used_idle_files_go_first() {
        let root = tempfile::tempdir().unwrap();
        let (modules, compiled) = (root.path().join("modules"), root.path().join("compiled"));
        std::fs::create_dir_all(&modules).unwrap();
        std::fs::create_dir_all(&compiled).unwrap();
        let digest = |n: u8| format!("{n:064x}");
        let write = |path: PathBuf, age_s: u64| {
            std::fs::write(&path, vec![0u8; 100]).unwrap();
            let file = std::fs::File::options().append(true).open(&path).unwrap();
            file.set_modified(SystemTime::now() - Duration::from_secs(age_s))
                .unwrap();
        };
        write(modules.join(format!("{}.wasm", digest(1))), 500); // oldest, in use
        write(modules.join(format!("{}.wasm", digest(2))), 400);
        write(compiled.join(format!("{}-ab.cwasm", digest(2))), 400);
        write(modules.join(format!("{}.wasm", digest(3))), 10); // recent
        std::fs::write(compiled.join("key"), [0u8; 32]).unwrap(); // never counted
        let freed = prune(&[&modules, &compiled], 250, |d| d == digest(1));
        assert_eq!(freed, 200);
        assert!(modules.join(format!("{}.wasm", digest(1))).exists());
        assert!(!modules.join(format!("{}.wasm", digest(2))).exists());
        assert!(!compiled.join(format!("{}-ab.cwasm", digest(2))).exists());
        assert!(modules.join(format!("{}.wasm", digest(3))).exists());
        assert!(compiled.join("key").exists());
        assert_eq!(prune(&[&modules, &compiled], 250, |_| false), 0);
    }
}
