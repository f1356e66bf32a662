//! Memory limits: one budget over all of an instance's linear memories and
//! tables, enforced by wasmtime's `ResourceLimiter` hooks.
//!
//! A growth past the budget is *refused* (`memory.grow` returns -1 inside the
//! guest, `malloc` returns NULL), it does not trap: a guest may handle it. So
//! is a growth past a memory's or table's maximum — the module's own, or the
//! engine's per-slot cap (`TABLE_ELEMENTS_CAP`, the pool's memory slot
//! size). When the guest then dies anyway, the run is classified `OOMKilled`
//! and its message names the limit that refused (see `outcome`).

use wasmtime::ResourceLimiter;

/// Each table element is one pointer in wasmtime.
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// Most elements one table may have (the pool's per-table slot). A table
/// element costs 8 bytes of the instance's memory budget, so the workload's
/// memory limit binds long before this for any limit under 8 MiB × 16; the
/// cap only keeps the pool's reservation bounded (tables × this × 8 bytes of
/// address space, committed as used). wasmtime's own default is 20,000,
/// which refused ordinary programs' function tables whatever their limit.
pub const TABLE_ELEMENTS_CAP: usize = 1 << 20;

/// Tracks and caps the bytes of an instance's memories and tables.
#[derive(Debug, Default)]
pub(crate) struct MemoryLimiter {
    limit: Option<usize>,
    in_use: usize,
    peak: usize,
    /// What the first refused growth ran into, in words.
    refusal: Option<String>,
    /// Where the bytes in use are published (metrics).
    usage: Option<std::sync::Arc<super::Usage>>,
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        // The run's memories and tables go with its store.
        if let Some(usage) = &self.usage {
            usage.change_memory(self.in_use as u64, 0);
        }
    }
}

impl MemoryLimiter {
    /// A limiter with an optional budget in bytes, publishing the bytes in
    /// use to `usage`.
    pub(crate) fn new(limit: Option<u64>, usage: Option<std::sync::Arc<super::Usage>>) -> Self {
        Self {
            limit: limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
            in_use: 0,
            peak: 0,
            refusal: None,
            usage,
        }
    }

    /// The most bytes in use at any point.
    pub(crate) fn peak(&self) -> u64 {
        self.peak as u64
    }

    /// What the first refused growth ran into, e.g. `the memory limit of
    /// 33554432 bytes`.
    pub(crate) fn refusal(&self) -> Option<&str> {
        self.refusal.as_deref()
    }

    fn refuse(&mut self, why: String) -> bool {
        self.refusal.get_or_insert(why);
        false
    }

    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let next = self.in_use.saturating_sub(current).saturating_add(desired);
        if let Some(limit) = self.limit.filter(|&limit| next > limit) {
            return self.refuse(format!(
                "a growth to {next} bytes of memories and tables passed the memory limit of {limit} bytes (resources.limits.memory)"
            ));
        }
        if let Some(usage) = &self.usage {
            usage.change_memory(self.in_use as u64, next as u64);
        }
        self.in_use = next;
        self.peak = self.peak.max(next);
        true
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if let Some(maximum) = maximum.filter(|&m| desired > m) {
            return Ok(self.refuse(format!(
                "a linear memory growth to {desired} bytes passed its maximum of {maximum} bytes (the module's own maximum, or the node's memory slot size)"
            )));
        }
        Ok(self.grow(current, desired))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if let Some(maximum) = maximum.filter(|&m| desired > m) {
            return Ok(self.refuse(format!(
                "a table growth to {desired} elements passed its maximum of {maximum} elements (the module's own maximum, or the node's per-table cap of {} elements)",
                TABLE_ELEMENTS_CAP
            )));
        }
        Ok(self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        ))
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.refuse(format!("a linear memory growth failed: {error:#}"));
        Ok(())
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.refuse(format!("a table growth failed: {error:#}"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_all_memories_against_one_budget() {
        let usage = std::sync::Arc::new(super::super::Usage::default());
        let mut l = MemoryLimiter::new(Some(100), Some(usage.clone()));
        assert!(l.grow(0, 60));
        assert!(l.grow(0, 40));
        assert_eq!(usage.memory_bytes(), 100, "published as it grows");
        assert!(!l.grow(60, 61));
        assert!(l.refusal().unwrap().contains("memory limit of 100 bytes"));
        assert_eq!(l.peak(), 100);
        drop(l);
        assert_eq!(usage.memory_bytes(), 0, "gone with the run");
    }

    #[test]
    fn a_growth_past_a_maximum_is_a_refusal_that_names_it() {
        let mut l = MemoryLimiter::new(None, None);
        assert!(!l.table_growing(10, 30_000, Some(20_000)).unwrap());
        let why = l.refusal().unwrap().to_string();
        assert!(
            why.contains("30000 elements") && why.contains("20000"),
            "{why}"
        );
        // The first refusal is the one reported.
        assert!(!l.memory_growing(0, 100, Some(50)).unwrap());
        assert_eq!(l.refusal(), Some(why.as_str()));
    }
}
