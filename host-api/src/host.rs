//! [`HostCtx`]: the state of every capability for one instance, in one
//! value the embedder moves into its store data; [`HostView`] reaches it;
//! [`add_to_linker`] / [`add_to_core_linker`] link every capability.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::config::{ConfigView, WasiConfigVariables};
use crate::keyvalue::{KeyValueCtx, KeyValueView};
use crate::outgoing_http::Hooks;
use crate::watchdog::{Watchdog, WatchdogView};

/// What one instance's capabilities hold, and what it was granted.
#[derive(Clone, Default)]
pub struct HostCtx {
    /// Capability names the workload grants ([`crate::Capability::name`]).
    pub granted: BTreeSet<String>,
    /// Kicked by `flotilla:host/watchdog`; `None`: kicks are ignored.
    pub watchdog: Option<Watchdog>,
    /// What `wasi:config/store` answers (shared by the requests of a replica).
    pub config: Arc<WasiConfigVariables>,
    /// Where an http handler's outgoing requests go.
    pub outgoing: Hooks,
    /// The key-value buckets it may open.
    pub keyvalue: KeyValueCtx,
}

/// Names what is granted and set, never a value (config values may be
/// secrets).
impl std::fmt::Debug for HostCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCtx")
            .field("granted", &self.granted)
            .field("watchdog", &self.watchdog.is_some())
            .field("outbound", &self.outgoing.outbound.is_some())
            .field(
                "buckets",
                &self
                    .keyvalue
                    .buckets
                    .iter()
                    .map(|b| &b.name)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Store data that holds a [`HostCtx`].
pub trait HostView: Send + 'static {
    /// The instance's capabilities.
    fn host(&self) -> &HostCtx;
    /// The same, to change (open buckets).
    fn host_mut(&mut self) -> &mut HostCtx;
}

impl<T: HostView> KeyValueView for T {
    fn keyvalue(&mut self) -> &mut KeyValueCtx {
        &mut self.host_mut().keyvalue
    }
}

impl<T: HostView> WatchdogView for T {
    fn watchdog(&self) -> Option<&Watchdog> {
        self.host().watchdog.as_ref()
    }
}

impl<T: HostView> ConfigView for T {
    fn config(&self) -> &WasiConfigVariables {
        &self.host().config
    }
}

/// Links every capability a component may import.
pub fn add_to_linker<T: HostView>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    crate::watchdog::add_to_linker(linker)?;
    crate::config::add_to_linker(linker)?;
    crate::keyvalue::add_to_linker(linker)?;
    Ok(())
}

/// Links every capability a core module may import.
pub fn add_to_core_linker<T: HostView>(linker: &mut wasmtime::Linker<T>) -> wasmtime::Result<()> {
    crate::watchdog::add_to_core_linker(linker)?;
    Ok(())
}
