//! `wasi:config/store`: the values a workload's `spec.config.from` names
//! (Configs and Secrets, read by the agent when the instance starts), as
//! `get`/`get-all`. The implementation is `wasmtime-wasi-config`'s; this
//! module says which store data carries the values and which grant links it.

use wasmtime_wasi_config::WasiConfig;
pub use wasmtime_wasi_config::WasiConfigVariables;

use crate::{Capability, Grant};

/// The capability: only for workloads that name where their values come from.
pub const CAPABILITY: Capability = Capability {
    name: "wasi:config/store",
    interfaces: &["wasi:config/store"],
    // Component-model only: a core module cannot import it.
    core_modules: &[],
    grant: Grant::Spec("add spec.config.from: [{configRef: NAME}] (or secretRef) naming the Configs or Secrets it reads"),
};

/// Store data that carries an instance's configuration values.
pub trait ConfigView: Send + 'static {
    /// The values `get`/`get-all` answer with.
    fn config(&self) -> &WasiConfigVariables;
}

/// Adds `wasi:config/store` to a component linker.
pub fn add_to_linker<T: ConfigView>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    wasmtime_wasi_config::add_to_linker(linker, |state: &mut T| WasiConfig::from(state.config()))
}
