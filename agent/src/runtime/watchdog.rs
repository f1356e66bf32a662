//! The watchdog: how a long-running guest proves it is alive.
//!
//! A daemon busy in `_start` cannot be re-entered to call a health export, so
//! liveness is the other way round: the guest calls the host import
//! `flotilla::watchdog_kick` (no arguments, no result) at least once per probe
//! window, and the supervisor watches for silence.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The import module and name guests call.
pub const WATCHDOG_IMPORT: (&str, &str) = ("flotilla", "watchdog_kick");

#[derive(Debug)]
struct Kicks {
    base: Instant,
    /// Nanoseconds after `base` of the last kick, plus one; 0 = never.
    last: AtomicU64,
}

/// Shared between a running instance (which kicks) and its supervisor (which reads).
#[derive(Debug, Clone)]
pub struct Watchdog(Arc<Kicks>);

impl Default for Watchdog {
    fn default() -> Self {
        Self(Arc::new(Kicks {
            base: Instant::now(),
            last: AtomicU64::new(0),
        }))
    }
}

impl Watchdog {
    /// A watchdog never kicked yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a sign of life.
    pub fn kick(&self) {
        let nanos = self.0.base.elapsed().as_nanos() as u64;
        self.0.last.store(nanos + 1, Ordering::Relaxed);
    }

    /// Time since the last kick, or `None` if the guest never kicked.
    pub fn silence(&self) -> Option<Duration> {
        match self.0.last.load(Ordering::Relaxed) {
            0 => None,
            last => Some(
                self.0
                    .base
                    .elapsed()
                    .saturating_sub(Duration::from_nanos(last - 1)),
            ),
        }
    }
}
