//! What an instance has used, across its runs, readable from other threads
//! while it runs: the numbers behind the node's per-instance metrics. The
//! runtime adds to it (CPU time at the end of every poll of the guest, time
//! held back by the CPU quota, memory and tables at every growth); the
//! agent reads it when scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One instance's usage.
#[derive(Debug, Default)]
pub struct Usage {
    cpu_ns: AtomicU64,
    throttled_ns: AtomicU64,
    memory_bytes: AtomicU64,
}

impl Usage {
    /// CPU time of all its runs, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        self.cpu_ns.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Time its runs were held back by the CPU quota, in seconds.
    pub fn throttled_seconds(&self) -> f64 {
        self.throttled_ns.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Bytes of linear memory and tables of the runs under way (0 between
    /// runs).
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn add_cpu(&self, ns: u64) {
        self.cpu_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub(crate) fn add_throttled(&self, pause: Duration) {
        let ns = u64::try_from(pause.as_nanos()).unwrap_or(u64::MAX);
        self.throttled_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// One run's memory went from `before` to `after` bytes: runs at once
    /// (an http replica's requests) add up.
    pub(crate) fn change_memory(&self, before: u64, after: u64) {
        if after >= before {
            self.memory_bytes
                .fetch_add(after - before, Ordering::Relaxed);
        } else {
            // Never below zero, whatever the order of concurrent updates.
            let _ = self
                .memory_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                    Some(now.saturating_sub(before - after))
                });
        }
    }
}
