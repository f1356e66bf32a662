//! Everything a guest may import from Flotilla beyond core WASI, in one
//! place, one module per capability (the way `wasmtime-wasi` lays out its
//! interfaces):
//!
//! | capability | guest imports | grant |
//! |---|---|---|
//! | [`watchdog`] | `flotilla:host/watchdog` (core modules also `flotilla::watchdog_kick`) | none: a kick without a watchdog probe does nothing |
//! | [`config`] | `wasi:config/store` | `spec.config.from` |
//! | [`outgoing_http`] | `wasi:http/outgoing-handler` (part of the proxy world) | `spec.grants.workloads` / `hosts`, checked per request |
//!
//! Each module has a view trait the embedder's store data implements, and
//! an `add_to_linker` (plus `add_to_core_linker` where core modules have the
//! import). [`Capability`] says what each one's imports look like and which
//! grant lets a workload use them; [`check_grants`] refuses a guest that
//! imports a capability its workload was not granted, naming the grant.
//!
//! Adding a capability means: a module here, its entry in [`CAPABILITIES`],
//! and the grant in the workload spec (`flotilla_spec`'s
//! `WorkloadSpec::capabilities`). The runtime's linkers are built from this
//! crate's `add_to_linker` functions, so nothing else changes.
//!
//! The WIT of `flotilla:host` is in `host-api/wit/`; guests generate their
//! bindings from it (`wit_bindgen::generate!({path: ".../host-api/wit",
//! world: "flotilla:host/guest"})`).

pub mod config;
pub mod outgoing_http;
pub mod watchdog;

mod capability;

pub use capability::{
    check_grants, needed_by_component, needed_by_core, Capability, Grant, NotGranted, CAPABILITIES,
};
