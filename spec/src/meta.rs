//! The Kubernetes-shaped envelope every resource shares.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The API group and version of every Flotilla resource.
pub const API_VERSION: &str = "flotilla.dev/v1";

/// The namespace objects land in when none is given.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Identity and bookkeeping of an object. The server owns `generation`,
/// `resourceVersion`, `uid` and `creationTimestamp`; users set the rest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Unique within its kind and namespace; a DNS label.
    pub name: String,
    /// Empty for cluster-scoped kinds (Node); `default` when omitted otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Free-form labels, used by selectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form notes for tools (`flotilla rollout promote` writes one).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Incremented by the server on every change of `spec`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
    /// The store revision of the last write; send it back to update safely.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    /// Set by the server at creation; never reused.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// RFC 3339, set by the server at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// Objects this one belongs to (an Instance to its Workload).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
}

/// A link from an owned object to its owner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnerReference {
    /// The owner's kind.
    pub kind: String,
    /// The owner's name (same namespace).
    pub name: String,
    /// The owner's uid, so a recreated owner does not adopt old objects.
    pub uid: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A full resource: `apiVersion`, `kind`, `metadata`, `spec`, `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resource<Spec, Status> {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// The kind's name, e.g. `Workload`.
    pub kind: String,
    /// Identity.
    pub metadata: ObjectMeta,
    /// Desired state, written by users (or controllers for owned objects).
    #[serde(default)]
    pub spec: Spec,
    /// Observed state, written by controllers and agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

/// Current time as RFC 3339 with second precision.
pub fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now())
}

/// `time` as RFC 3339 with second precision.
pub fn rfc3339(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The current time in RFC 3339 with milliseconds (`…T12:00:00.123Z`): for
/// the start and end of runs, which are milliseconds apart when a crashing
/// instance is restarted without backoff.
pub fn now_rfc3339_millis() -> String {
    rfc3339_millis(std::time::SystemTime::now())
}

/// `time` as RFC 3339 UTC with milliseconds.
pub fn rfc3339_millis(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// Parses an RFC 3339 timestamp as written by [`now_rfc3339`] (fractions of
/// a second allowed).
pub fn parse_rfc3339(text: &str) -> Option<std::time::SystemTime> {
    humantime::parse_rfc3339_weak(text).ok()
}
