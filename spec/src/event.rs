//! `Event`: a record of something that happened to an object, and why.

use serde::{Deserialize, Serialize};

use crate::meta::Resource;

/// An Event resource.
pub type Event = Resource<EventSpec, ()>;

/// The event's content (Kubernetes keeps these at top level; here they sit in
/// `spec` so every kind shares one envelope).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventSpec {
    /// The object it is about.
    pub involved_object: ObjectRef,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub kind: String,
    /// CamelCase reason: `Started`, `BackOff`, `OOMKilled`…
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
    /// Who reported it (`workload-controller`, `agent/<node>`).
    pub source: String,
    /// When (RFC 3339).
    pub timestamp: String,
}

/// A reference to an object by kind and name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectRef {
    /// Kind.
    pub kind: String,
    /// Namespace (empty for cluster-scoped kinds).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    pub name: String,
}
