//! Memory limits: one budget over all of an instance's linear memories and
//! tables, enforced by wasmtime's `ResourceLimiter` hooks.
//!
//! A growth past the budget is *refused* (`memory.grow` returns -1 inside the
//! guest, `malloc` returns NULL), it does not trap: a guest may handle it. When
//! the guest then dies anyway, the run is classified `OOMKilled` because a
//! growth was refused (see `outcome`).

use wasmtime::ResourceLimiter;

/// Each table element is one pointer in wasmtime.
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// Tracks and caps the bytes of an instance's memories and tables.
#[derive(Debug, Default)]
pub(crate) struct MemoryLimiter {
    limit: Option<usize>,
    in_use: usize,
    peak: usize,
    refused: bool,
}

impl MemoryLimiter {
    /// A limiter with an optional budget in bytes.
    pub(crate) fn new(limit: Option<u64>) -> Self {
        Self {
            limit: limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
            ..Self::default()
        }
    }

    /// The most bytes in use at any point.
    pub(crate) fn peak(&self) -> u64 {
        self.peak as u64
    }

    /// Whether any growth was refused for being over the budget.
    pub(crate) fn refused(&self) -> bool {
        self.refused
    }

    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let next = self.in_use.saturating_sub(current).saturating_add(desired);
        if self.limit.is_some_and(|limit| next > limit) {
            self.refused = true;
            return false;
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
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_all_memories_against_one_budget() {
        let mut l = MemoryLimiter::new(Some(100));
        assert!(l.grow(0, 60));
        assert!(l.grow(0, 40));
        assert!(!l.grow(60, 61));
        assert!(l.refused());
        assert_eq!(l.peak(), 100);
    }
}
