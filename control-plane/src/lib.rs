//! The Flotilla control plane.
//!
//! - [`store`]: where objects live — a [`store::Store`] trait with an embedded
//!   SQLite backend keeping every object and a revision log for watches, an
//!   etcd backend for control planes of several servers, and a
//!   content-addressed blob store for modules;
//! - [`leader`]: which server's controllers run when several share etcd;
//! - [`api`]: the REST API over TLS (Kubernetes-shaped paths, bearer tokens
//!   and node certificates, authorization by route and verb, optimistic
//!   concurrency, `?watch=true` streams);
//! - [`trust`]: the cluster CA and the control plane's certificates;
//! - [`controllers`]: level-triggered loops that drive stored state toward the
//!   desired state (workloads → instances, instances → nodes);
//! - [`telemetry`]: the scheduler's and the store's measurements;
//! - [`node_certificates`]: the certificates issued to nodes, kept so a
//!   node's can be revoked;
//! - [`quota`] and [`route_hosts`]: the per-namespace rules the API and
//!   the controllers both apply to what is written (ResourceQuotas and
//!   LimitRanges; a route host's one namespace);
//! - [`disruption`]: disruption budgets, judged live for evictions
//!   (`flotilla drain`), rolling updates and the budgets' statuses.

pub mod api;
pub mod controllers;
pub mod disruption;
pub mod leader;
pub mod node_certificates;
pub mod quota;
pub mod route_hosts;
pub mod store;
pub mod telemetry;
pub mod trust;
