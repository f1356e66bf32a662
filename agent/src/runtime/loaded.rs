//! The modules loaded in memory, by digest: a module loaded again costs a
//! map lookup. Modules no instance uses any more are kept for a while (a
//! restart or a new replica finds them), least recently used first out
//! past [`RuntimeConfig::max_idle_modules`](super::RuntimeConfig), so a node
//! that has run thousands of modules does not keep all their code.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::module::LoadedModule;

/// The map, with a use counter per entry.
pub(crate) struct LoadedModules {
    entries: Mutex<HashMap<String, (Arc<LoadedModule>, u64)>>,
    clock: AtomicU64,
    max_idle: usize,
}

impl LoadedModules {
    pub(crate) fn new(max_idle: usize) -> Self {
        Self {
            entries: Mutex::default(),
            clock: AtomicU64::new(0),
            max_idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<LoadedModule>, u64)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// The module with this digest, marked as just used.
    pub(crate) fn get(&self, digest: &str) -> Option<Arc<LoadedModule>> {
        let now = self.now();
        let mut entries = self.lock();
        let (module, used) = entries.get_mut(digest)?;
        *used = now;
        Some(module.clone())
    }

    /// Keeps `module` (or the one loaded meanwhile under the same digest),
    /// then lets go of the least recently used idle modules past the cap.
    pub(crate) fn insert(&self, digest: String, module: Arc<LoadedModule>) -> Arc<LoadedModule> {
        let now = self.now();
        let mut entries = self.lock();
        let kept = entries.entry(digest).or_insert((module, now)).0.clone();
        // Idle: only this map holds it (no run, replica or caller does).
        let mut idle: Vec<(u64, String)> = entries
            .iter()
            .filter(|(_, (m, _))| Arc::strong_count(m) == 1)
            .map(|(d, (_, used))| (*used, d.clone()))
            .collect();
        if idle.len() > self.max_idle {
            idle.sort();
            for (_, digest) in &idle[..idle.len() - self.max_idle] {
                entries.remove(digest);
            }
        }
        kept
    }

    /// Whether a run, a replica or a caller holds the module now.
    pub(crate) fn in_use(&self, digest: &str) -> bool {
        self.lock()
            .get(digest)
            .is_some_and(|(module, _)| Arc::strong_count(module) > 1)
    }

    /// Forgets a module.
    pub(crate) fn remove(&self, digest: &str) {
        self.lock().remove(digest);
    }

    /// How many modules are loaded.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Runtime, RuntimeConfig};

    #[test]
    fn idle_modules_past_the_cap_go_least_recently_used_first() {
        let runtime = Runtime::new(RuntimeConfig {
            max_instances: 4,
            max_memory_bytes: 1 << 20,
            max_idle_modules: 2,
            ..RuntimeConfig::default()
        })
        .unwrap();
        let module =
            |n: u32| format!("(module (func (export \"_start\")) (global i32 (i32.const {n})))");
        // Held by a caller (as a running instance holds it): never evicted.
        let held = runtime.load_bytes("held", module(0).as_bytes()).unwrap();
        let digests: Vec<String> = (1..=5)
            .map(|n| {
                let loaded = runtime.load_bytes("m", module(n).as_bytes()).unwrap();
                loaded.digest().to_string()
            })
            .collect();
        // Evicted when the next one came: the held one, the newest (its
        // caller held it then) and the 2 most recent idle ones stay.
        assert_eq!(runtime.loaded_count(), 4);
        assert!(runtime.loaded(held.digest()).is_some());
        assert!(runtime.loaded(&digests[0]).is_none());
        assert!(runtime.loaded(&digests[1]).is_none());
        assert!(runtime.loaded(&digests[2]).is_some());
        // The two most recent are still there: loading them again is a lookup.
        let again = runtime.load_bytes("m", module(5).as_bytes()).unwrap();
        assert!(std::sync::Arc::ptr_eq(
            &again,
            &runtime.loaded(again.digest()).unwrap()
        ));
    }
}
