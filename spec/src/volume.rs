//! `Volume`: one persistent volume of one replica of a stateful workload
//! (as a Kubernetes PersistentVolumeClaim of a StatefulSet, named
//! `<volume>.<workload>-<ordinal>`). Made by the scheduler's binder when it
//! first places the replica, bound to that node (`spec.nodeName`) from then
//! on; its node's agent keeps the data and reports the usage.

use serde::{Deserialize, Serialize};

use crate::meta::Resource;
use crate::workload::ReclaimPolicy;

/// A Volume resource.
pub type VolumeObject = Resource<VolumeSpec, VolumeStatus>;

/// The name of the volume `volume` of replica `ordinal` of `workload`. A
/// volume's name is a DNS label (no dot), so the dot tells where it ends:
/// no two (volume, workload) pairs share a name.
pub fn volume_name(volume: &str, workload: &str, ordinal: u32) -> String {
    format!("{volume}.{workload}-{ordinal}")
}

/// What a volume is, and where.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeSpec {
    /// The workload it belongs to.
    pub workload: String,
    /// Its name among the workload's `spec.volumes`.
    pub volume: String,
    /// The replica's ordinal.
    pub ordinal: u32,
    /// Its size (`spec.volumes[].persistent.size`).
    pub size: String,
    /// The node that holds it.
    pub node_name: String,
    /// What deleting the workload does to it.
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
}

/// What its node's agent last measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VolumeStatus {
    /// Bytes its files hold.
    pub used_bytes: u64,
    /// Files, folders and links in it.
    pub files: u64,
    /// When (RFC 3339).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub measured_at: String,
}
