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
    /// When it last happened (RFC 3339).
    pub timestamp: String,
    /// How many times it happened: the server folds repeats (same object,
    /// type, reason, message and source) into one Event, as Kubernetes does.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub count: u32,
    /// When it first happened (RFC 3339), once it repeated.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub first_timestamp: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl EventSpec {
    /// The name of the one Event that collects repeats of this one: the
    /// object's name and a digest of what makes two events the same.
    pub fn aggregate_name(&self) -> String {
        use sha2::Digest;
        let about = &self.involved_object;
        let key = [
            about.kind.as_str(),
            &about.namespace,
            &about.name,
            &self.kind,
            &self.reason,
            &self.message,
            &self.source,
        ]
        .join("\0");
        let digest = hex::encode(sha2::Sha256::digest(key.as_bytes()));
        // Object names may be up to 253 characters; leave room for the digest.
        let prefix: String = about.name.chars().take(200).collect();
        format!("{prefix}.{}", &digest[..16])
    }
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
