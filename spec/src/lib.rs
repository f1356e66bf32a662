//! Flotilla's resource vocabulary, shared by every other crate.
//!
//! - [`quantity`]: Kubernetes-style quantities (`64Mi`, `250m`, `5s`);
//! - [`meta`]: the envelope every resource shares (`apiVersion`, `kind`,
//!   `metadata`, `spec`, `status`);
//! - the kinds: [`workload`] (with its rollout [`strategy`]), its
//!   [`revision`]s, [`instance`], [`node`], [`event`], [`config`] (Config
//!   and Secret), [`policy`] (ModulePolicy), [`imported`] (ImportedModule), [`rbac`] (Role, RoleBinding),
//!   [`quota`] (ResourceQuota, LimitRange), [`disruption`] (DisruptionBudget), [`job`] (Job),
//!   [`certificate`] (NodeCertificate),
//!   [`token`];
//! - [`kinds`]: the table of every kind the API serves (names, plurals,
//!   short names, scope);
//! - [`validate`]: semantic checks with field paths and hints;
//! - [`manifest`]: YAML/JSON documents → typed, validated resources.
//!
//! This crate performs no I/O.

pub mod certificate;
pub mod config;
pub mod disruption;
pub mod event;
pub mod imported;
pub mod instance;
pub mod job;
pub mod kinds;
pub mod manifest;
pub mod meta;
pub mod node;
pub mod policy;
pub mod quantity;
pub mod quota;
pub mod rbac;
pub mod revision;
pub mod strategy;
pub mod token;
pub mod validate;
pub mod volume;
pub mod workload;

pub use quantity::{parse_cpu_millis, parse_duration, parse_memory_bytes, QuantityError};
