//! `Node`: a machine running an agent.

use serde::{Deserialize, Serialize};

use crate::meta::Resource;

/// Where a node port serves instance logs to the control plane (its client
/// certificate): `{LOGS_PATH}{namespace}/{instance}[?follow=true&previous=true]`.
pub const LOGS_PATH: &str = "/.flotilla/logs/";

/// Where a node port serves the node's metrics to the control plane.
pub const METRICS_PATH: &str = "/.flotilla/metrics";

/// The label every node carries with its own name (as Kubernetes'
/// `kubernetes.io/hostname`), for node selectors.
pub const HOSTNAME_LABEL: &str = "flotilla.dev/hostname";

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A Node resource (cluster-scoped).
pub type Node = Resource<NodeSpec, NodeStatus>;

/// Desired state of a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// When true, nothing new is placed on it.
    #[serde(default)]
    pub unschedulable: bool,
    /// Fencing epoch, owned by the control plane: raised each time the
    /// node's instances are evicted because its lease (heartbeat) expired.
    /// Bindings carry the epoch they were made in; the agent stops those of
    /// older epochs when it reconnects.
    #[serde(default)]
    pub epoch: u64,
}

/// What the node's agent reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeStatus {
    /// Total memory in bytes.
    pub capacity_memory_bytes: u64,
    /// Total CPU in millicores.
    pub capacity_cpu_millis: u64,
    /// Most instances the node runs at once (its runtime's slots, like a
    /// kubelet's `pods`); 0: not reported (no limit).
    #[serde(skip_serializing_if = "is_zero")]
    pub capacity_instances: u32,
    /// Whether the agent is heartbeating.
    pub ready: bool,
    /// Last heartbeat (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_heartbeat: String,
    /// The agent's version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent_version: String,
    /// Which agent holds the name (kept in its data folder across restarts).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent_id: String,
    /// Where the node's ingress listens (`host:port`), if it runs one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ingress_address: String,
    /// Where the node port listens (`host:port`, TLS, certificates only):
    /// logs for the control plane, requests forwarded by other nodes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_address: String,
    /// The kubelet's `DiskPressure` condition: free disk under the agent's
    /// data folder is below its threshold, so nothing new is placed here.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disk_pressure: bool,
    /// Free bytes of the file system under the agent's data folder (0:
    /// not measured).
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub disk_available_bytes: u64,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}
