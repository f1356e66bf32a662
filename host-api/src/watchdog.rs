//! `flotilla:host/watchdog`: how a long-running guest proves it is alive.
//!
//! A daemon busy in its entry point cannot be re-entered to call a health
//! export, so liveness is the other way round: the guest calls `kick` at
//! least once per probe window and the agent watches for silence. Core
//! modules import it as `flotilla:host/watchdog@0.1.0::kick` (wit-bindgen)
//! or, the older spelling, `flotilla::watchdog_kick`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::HasData;

use crate::{Capability, Grant};

mod generated {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "flotilla:host/imports",
    });
}

use generated::flotilla::host::watchdog as wit;

/// The capability: granted to every workload (a kick reaches nothing
/// outside the instance).
pub const CAPABILITY: Capability = Capability {
    name: "flotilla:host/watchdog",
    interfaces: &["flotilla:host/watchdog"],
    core_modules: &["flotilla:host/watchdog", LEGACY_CORE_IMPORT.0],
    grant: Grant::Always,
};

/// The core-module import of guests written before the WIT package.
pub const LEGACY_CORE_IMPORT: (&str, &str) = ("flotilla", "watchdog_kick");

#[derive(Debug)]
struct Kicks {
    base: Instant,
    /// Nanoseconds after `base` of the last kick, plus one; 0 = never.
    last: AtomicU64,
}

/// Shared between a running instance (which kicks) and its supervisor
/// (which reads).
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

/// Store data that may carry a watchdog.
pub trait WatchdogView: Send + 'static {
    /// The instance's watchdog; `None`: kicks are ignored.
    fn watchdog(&self) -> Option<&Watchdog>;
}

/// What the generated host trait is implemented on.
pub struct WatchdogHost<'a>(Option<&'a Watchdog>);

impl wit::Host for WatchdogHost<'_> {
    fn kick(&mut self) {
        if let Some(watchdog) = self.0 {
            watchdog.kick();
        }
    }
}

struct HasWatchdog;

impl HasData for HasWatchdog {
    type Data<'a> = WatchdogHost<'a>;
}

/// Adds `flotilla:host/watchdog` to a component linker.
pub fn add_to_linker<T: WatchdogView>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasWatchdog>(linker, |state| WatchdogHost(state.watchdog()))
}

/// Adds the watchdog's core-module imports (both spellings) to a core
/// linker.
pub fn add_to_core_linker<T: WatchdogView>(
    linker: &mut wasmtime::Linker<T>,
) -> wasmtime::Result<()> {
    let kick = |caller: wasmtime::Caller<'_, T>| {
        if let Some(watchdog) = caller.data().watchdog() {
            watchdog.kick();
        }
    };
    linker.func_wrap("flotilla:host/watchdog@0.1.0", "kick", kick)?;
    let (module, name) = LEGACY_CORE_IMPORT;
    linker.func_wrap(module, name, kick)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_counts_from_the_last_kick() {
        let watchdog = Watchdog::new();
        assert_eq!(watchdog.silence(), None);
        watchdog.kick();
        let silence = watchdog.silence().expect("kicked");
        assert!(silence < Duration::from_secs(5), "{silence:?}");
    }
}
