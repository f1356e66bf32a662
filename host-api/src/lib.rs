//! Everything a guest may import from Flotilla beyond core WASI, in one
//! place, one module per capability (the way `wasmtime-wasi` lays out its
//! interfaces):
//!
//! | capability | guest imports | grant |
//! |---|---|---|
//! | [`watchdog`] | `flotilla:host/watchdog` (core modules also `flotilla::watchdog_kick`) | none: a kick without a watchdog probe does nothing |
//! | [`config`] | `wasi:config/store` | `spec.config.from` |
//! | [`keyvalue`] | `wasi:keyvalue/{store,atomics,batch}` | `spec.grants.keyValue` (each bucket) |
//! | [`outgoing_http`] | `wasi:http/outgoing-handler` (part of the proxy world) | `spec.grants.workloads` / `hosts`, checked per request |
//!
//! Each module has a view trait and an `add_to_linker` (plus
//! `add_to_core_linker` where core modules have the import). An embedder
//! holds one [`HostCtx`] per instance in its store data and implements
//! [`HostView`]; every capability's view follows from it, and
//! [`add_to_linker`] / [`add_to_core_linker`] link them all. [`Capability`]
//! says what each one's imports look like and which grant lets a workload
//! use them; [`check_grants`] refuses a guest that imports a capability
//! its workload was not granted, naming the grant.
//!
//! Adding a capability means: a module here (its state in [`HostCtx`], its
//! view, its `add_to_linker` called from [`add_to_linker`], its entry in
//! [`CAPABILITIES`]), the grant in the workload spec (`flotilla_spec`'s
//! `WorkloadSpec::capabilities`), and the agent filling its state in. The
//! runtime does not change.
//!
//! The WIT of `flotilla:host` is in `host-api/wit/`; guests generate their
//! bindings from it (`wit_bindgen::generate!({path: ".../host-api/wit",
//! world: "flotilla:host/guest"})`).

pub mod config;
pub mod keyvalue;
pub mod outgoing_http;
pub mod watchdog;

mod capability;
mod host;

pub use capability::{
    check_grants, needed_by_component, needed_by_core, Capability, Grant, NotGranted, CAPABILITIES,
};
pub use host::{add_to_core_linker, add_to_linker, HostCtx, HostView};
