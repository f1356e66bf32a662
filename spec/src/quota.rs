//! What a namespace may consume, as Kubernetes' ResourceQuota and
//! LimitRange:
//!
//! - `ResourceQuota` (namespaced): `spec.hard` caps the namespace's total
//!   of [`QUOTA_RESOURCES`] — the requests and limits of every replica its
//!   workloads declare, their persistent volumes, their key-value buckets'
//!   quotas, and counts of objects. A write that would raise a total past
//!   its cap is refused ([`ResourceQuotaSpec::check`]); the quota's
//!   `status` shows `used` beside `hard`.
//! - `LimitRange` (namespaced): per instance, default requests and limits
//!   for workloads that set none, and the least and most they may set; per
//!   persistent volume, the least and most size
//!   ([`LimitRangeSpec::apply_defaults`], [`LimitRangeSpec::check`]).
//!
//! Usage is counted from what workloads declare (`replicas` × each
//! replica's amounts), not from the instances running at a moment: what a
//! write asks for is known when it is admitted, and a rollout's surge or a
//! restart never trips a quota.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::meta::Resource;
use crate::workload::{KeyValueBackend, ResourceList, Resources, WorkloadSpec};

/// A ResourceQuota resource.
pub type ResourceQuota = Resource<ResourceQuotaSpec, ResourceQuotaStatus>;
/// A LimitRange resource.
pub type LimitRange = Resource<LimitRangeSpec, ()>;

/// How a quota resource is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes (`64Mi`).
    Bytes,
    /// CPU millicores (`500m`, `2`).
    Millicores,
    /// Objects or replicas (`10`).
    Count,
}

/// Every resource a quota may cap, with its unit.
pub const QUOTA_RESOURCES: &[(&str, Unit)] = &[
    ("requests.memory", Unit::Bytes),
    ("requests.cpu", Unit::Millicores),
    ("limits.memory", Unit::Bytes),
    ("limits.cpu", Unit::Millicores),
    // Persistent volumes' sizes, one volume per replica.
    ("storage", Unit::Bytes),
    // Key-value buckets' quotas, each bucket once.
    ("kv.bytes", Unit::Bytes),
    ("count/workloads", Unit::Count),
    // The replicas workloads declare.
    ("count/instances", Unit::Count),
    ("count/configs", Unit::Count),
    ("count/secrets", Unit::Count),
    ("count/roles", Unit::Count),
    ("count/rolebindings", Unit::Count),
];

/// The per-replica compute resources: a workload in a namespace whose
/// quota caps one of them must set it (or get it from a LimitRange), as in
/// Kubernetes, or the quota would count nothing for it.
const COMPUTE: &[&str] = &[
    "requests.memory",
    "requests.cpu",
    "limits.memory",
    "limits.cpu",
];

/// The unit of a quota resource, if it is one.
pub fn unit_of(resource: &str) -> Option<Unit> {
    QUOTA_RESOURCES
        .iter()
        .find(|(name, _)| *name == resource)
        .map(|(_, unit)| *unit)
}

/// The object kind a `count/…` resource counts, by its plural: the kinds
/// users create (instances are counted as declared replicas instead).
pub fn counted_plural(resource: &str) -> Option<&str> {
    resource
        .strip_prefix("count/")
        .filter(|plural| *plural != "workloads" && *plural != "instances")
        .filter(|_| unit_of(resource).is_some())
}

/// Parses `text` as an amount of `resource`.
pub fn parse_amount(resource: &str, text: &str) -> Result<u64, String> {
    match unit_of(resource) {
        Some(Unit::Bytes) => crate::parse_memory_bytes(text).map_err(|e| e.to_string()),
        // A zero CPU cap is a real cap ("no CPU requests here").
        Some(Unit::Millicores) if text.trim() == "0" => Ok(0),
        Some(Unit::Millicores) => crate::parse_cpu_millis(text).map_err(|e| e.to_string()),
        Some(Unit::Count) => text
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("{text:?} is not a count (use a whole number like 10)")),
        None => Err(format!(
            "{resource:?} is not a quota resource (use {})",
            QUOTA_RESOURCES
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Formats an amount of `resource` as users type it.
pub fn format_amount(resource: &str, amount: u64) -> String {
    match unit_of(resource) {
        Some(Unit::Bytes) => crate::quantity::format_memory_bytes(amount),
        Some(Unit::Millicores) if amount.is_multiple_of(1000) => (amount / 1000).to_string(),
        Some(Unit::Millicores) => format!("{amount}m"),
        _ => amount.to_string(),
    }
}

/// A namespace's caps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceQuotaSpec {
    /// Resource → most the namespace may hold (`requests.memory: 1Gi`,
    /// `count/workloads: "10"`).
    #[serde(default)]
    pub hard: BTreeMap<String, String>,
}

/// What the quota controller saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceQuotaStatus {
    /// The caps enforced, normalised.
    #[serde(default)]
    pub hard: BTreeMap<String, String>,
    /// The namespace's total of each.
    #[serde(default)]
    pub used: BTreeMap<String, String>,
}

/// Totals of quota resources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage(BTreeMap<&'static str, u64>);

impl Usage {
    /// The total of `resource` (zero if none).
    pub fn get(&self, resource: &str) -> u64 {
        self.0.get(resource).copied().unwrap_or(0)
    }

    /// Adds `amount` to `resource` (saturating: sums of outside input).
    pub fn add(&mut self, resource: &'static str, amount: u64) {
        let total = self.0.entry(resource).or_insert(0);
        *total = total.saturating_add(amount);
    }

    /// Adds every total of `other`.
    pub fn add_all(&mut self, other: &Usage) {
        for (resource, amount) in &other.0 {
            self.add(resource, *amount);
        }
    }

    /// The usage of the workloads of one namespace: every replica's
    /// requests (a limit without a request requests its limit) and limits,
    /// persistent volumes, and each key-value bucket once at the largest
    /// quota granted it (`default_bucket_quota` where a grant names none).
    pub fn of_workloads<'a>(
        workloads: impl IntoIterator<Item = &'a WorkloadSpec>,
        default_bucket_quota: u64,
    ) -> Self {
        let mut usage = Self::default();
        let mut buckets: BTreeMap<(&str, KeyValueBackend), u64> = BTreeMap::new();
        for spec in workloads {
            let replicas = u64::from(spec.replicas);
            let (limit_memory, limit_cpu) = spec.resources.limits.memory_and_cpu();
            let (request_memory, request_cpu) = spec.resources.requests.memory_and_cpu();
            let or_limit = |request: u64, limit: u64| if request == 0 { limit } else { request };
            usage.add("count/workloads", 1);
            usage.add("count/instances", replicas);
            usage.add(
                "requests.memory",
                replicas.saturating_mul(or_limit(request_memory, limit_memory)),
            );
            usage.add(
                "requests.cpu",
                replicas.saturating_mul(or_limit(request_cpu, limit_cpu)),
            );
            usage.add("limits.memory", replicas.saturating_mul(limit_memory));
            usage.add("limits.cpu", replicas.saturating_mul(limit_cpu));
            for (_, volume) in spec.persistent_volumes() {
                let size = crate::parse_memory_bytes(&volume.size).unwrap_or(0);
                usage.add("storage", replicas.saturating_mul(size));
            }
            for grant in &spec.grants.key_value {
                let quota = grant
                    .quota
                    .as_deref()
                    .and_then(|q| crate::parse_memory_bytes(q).ok())
                    .unwrap_or(default_bucket_quota);
                let largest = buckets
                    .entry((grant.bucket.as_str(), grant.backend))
                    .or_insert(0);
                *largest = (*largest).max(quota);
            }
        }
        for quota in buckets.into_values() {
            usage.add("kv.bytes", quota);
        }
        usage
    }
}

/// Why a write was refused by a quota.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaRefusal {
    /// It would raise totals past their caps.
    #[error("exceeded quota: {quota}, requested: {requested}, used: {used}, limited: {limited} (make room: delete or shrink what the namespace has, or have an admin raise the quota)")]
    Exceeded {
        /// The quota's name.
        quota: String,
        /// What the write adds, `resource=amount` each.
        requested: String,
        /// The totals before it.
        used: String,
        /// The caps.
        limited: String,
    },
    /// A workload without a compute resource the quota caps.
    #[error("failed quota: {quota}: must specify {resources} (set spec.resources, or have an admin add a LimitRange with defaults to the namespace)")]
    MustSpecify {
        /// The quota's name.
        quota: String,
        /// The resources missing, comma-separated.
        resources: String,
    },
}

impl ResourceQuotaSpec {
    /// Problems, with field paths.
    pub fn validate(&self) -> Result<(), String> {
        for (resource, text) in &self.hard {
            parse_amount(resource, text).map_err(|e| format!("spec.hard.{resource}: {e}"))?;
        }
        Ok(())
    }

    /// The caps, parsed (validation refused anything that does not parse,
    /// so what does not is skipped).
    pub fn caps(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        QUOTA_RESOURCES.iter().filter_map(|(resource, _)| {
            let text = self.hard.get(*resource)?;
            Some((*resource, parse_amount(resource, text).ok()?))
        })
    }

    /// Whether a write that takes the namespace's usage from `before` to
    /// `after` may be stored, for the quota named `quota`: refused when it
    /// raises a capped total past its cap (a write that lowers or keeps a
    /// total already over, as after the quota was tightened, is allowed).
    pub fn check(&self, quota: &str, before: &Usage, after: &Usage) -> Result<(), QuotaRefusal> {
        let mut requested = Vec::new();
        let mut used = Vec::new();
        let mut limited = Vec::new();
        for (resource, cap) in self.caps() {
            let (old, new) = (before.get(resource), after.get(resource));
            // A saturated total (amounts near u64::MAX declared before the
            // quota) cannot grow in the sum, so it counts as growing.
            if new > cap && (new > old || new == u64::MAX) {
                let pair = |amount| format!("{resource}={}", format_amount(resource, amount));
                requested.push(pair(new - old));
                used.push(pair(old));
                limited.push(pair(cap));
            }
        }
        if requested.is_empty() {
            return Ok(());
        }
        Err(QuotaRefusal::Exceeded {
            quota: quota.to_string(),
            requested: requested.join(","),
            used: used.join(","),
            limited: limited.join(","),
        })
    }

    /// Refuses a workload that leaves unset a compute resource this quota
    /// caps.
    pub fn check_specified(&self, quota: &str, spec: &WorkloadSpec) -> Result<(), QuotaRefusal> {
        let resources = &spec.resources;
        let set = |resource: &str| match resource {
            "requests.memory" => {
                resources.requests.memory.is_some() || resources.limits.memory.is_some()
            }
            "requests.cpu" => resources.requests.cpu.is_some() || resources.limits.cpu.is_some(),
            "limits.memory" => resources.limits.memory.is_some(),
            _ => resources.limits.cpu.is_some(),
        };
        let missing: Vec<&str> = COMPUTE
            .iter()
            .copied()
            .filter(|r| self.hard.contains_key(*r) && !set(r))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(QuotaRefusal::MustSpecify {
            quota: quota.to_string(),
            resources: missing.join(","),
        })
    }

    /// The status for a namespace using `usage`.
    pub fn status(&self, usage: &Usage) -> ResourceQuotaStatus {
        let mut status = ResourceQuotaStatus::default();
        for (resource, cap) in self.caps() {
            status
                .hard
                .insert(resource.to_string(), format_amount(resource, cap));
            status.used.insert(
                resource.to_string(),
                format_amount(resource, usage.get(resource)),
            );
        }
        status
    }
}

/// Most entries in a LimitRange.
pub const MAX_LIMITS: usize = 16;

/// A namespace's defaults and bounds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitRangeSpec {
    /// Each applies to instances or to persistent volumes.
    #[serde(default)]
    pub limits: Vec<LimitRangeItem>,
}

/// What a LimitRange entry bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitType {
    /// Each replica's requests and limits (memory, cpu).
    #[default]
    Instance,
    /// Each persistent volume's size (storage).
    PersistentVolume,
}

/// Defaults and bounds of one type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitRangeItem {
    /// `Instance` (the default) or `PersistentVolume`.
    #[serde(rename = "type", default)]
    pub kind: LimitType,
    /// Limits given to a workload that sets none (Instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Amounts>,
    /// Requests given to a workload that sets none (Instance; else the
    /// default limit, as a limit without a request requests its limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_request: Option<Amounts>,
    /// The least a request or limit (or a volume's size) may be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Amounts>,
    /// The most a request or limit (or a volume's size) may be; with a
    /// `max`, a workload must have a limit (a default gives one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Amounts>,
}

/// Amounts of memory, CPU or storage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Amounts {
    /// Memory (`64Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// CPU (`250m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// A persistent volume's size (`1Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
}

/// One resource of [`Amounts`], parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    Memory,
    Cpu,
    Storage,
}

impl Measure {
    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Cpu => "cpu",
            Self::Storage => "storage",
        }
    }

    fn text(self, amounts: &Amounts) -> Option<&str> {
        match self {
            Self::Memory => amounts.memory.as_deref(),
            Self::Cpu => amounts.cpu.as_deref(),
            Self::Storage => amounts.storage.as_deref(),
        }
    }

    fn parse(self, text: &str) -> Result<u64, String> {
        match self {
            Self::Cpu => crate::parse_cpu_millis(text),
            _ => crate::parse_memory_bytes(text),
        }
        .map_err(|e| e.to_string())
    }

    fn amount(self, amounts: Option<&Amounts>) -> Option<u64> {
        self.parse(self.text(amounts?)?).ok()
    }

    fn format(self, amount: u64) -> String {
        match self {
            Self::Cpu => format_amount("requests.cpu", amount),
            _ => crate::quantity::format_memory_bytes(amount),
        }
    }

    fn of_list(self, list: &ResourceList) -> Option<u64> {
        let text = match self {
            Self::Memory => list.memory.as_deref(),
            _ => list.cpu.as_deref(),
        }?;
        self.parse(text).ok()
    }
}

impl LimitType {
    fn measures(self) -> &'static [Measure] {
        match self {
            Self::Instance => &[Measure::Memory, Measure::Cpu],
            Self::PersistentVolume => &[Measure::Storage],
        }
    }
}

impl LimitRangeSpec {
    /// Problems, with field paths.
    pub fn validate(&self) -> Result<(), String> {
        if self.limits.len() > MAX_LIMITS {
            return Err(format!("spec.limits: at most {MAX_LIMITS}"));
        }
        for (n, item) in self.limits.iter().enumerate() {
            let fields = [
                ("min", &item.min),
                ("defaultRequest", &item.default_request),
                ("default", &item.default),
                ("max", &item.max),
            ];
            if item.kind == LimitType::PersistentVolume
                && (item.default.is_some() || item.default_request.is_some())
            {
                return Err(format!(
                    "spec.limits[{n}]: a PersistentVolume entry has min and max only (a volume's size is always set)"
                ));
            }
            for measure in [Measure::Memory, Measure::Cpu, Measure::Storage] {
                let allowed = item.kind.measures().contains(&measure);
                let mut last: Option<(&str, u64)> = None;
                for (field, amounts) in fields {
                    let Some(text) = amounts.as_ref().and_then(|a| measure.text(a)) else {
                        continue;
                    };
                    let path = format!("spec.limits[{n}].{field}.{}", measure.name());
                    if !allowed {
                        return Err(format!(
                            "{path}: a {:?} entry bounds {} only",
                            item.kind,
                            item.kind
                                .measures()
                                .iter()
                                .map(|m| m.name())
                                .collect::<Vec<_>>()
                                .join(" and ")
                        ));
                    }
                    let amount = measure.parse(text).map_err(|e| format!("{path}: {e}"))?;
                    if let Some((before, least)) = last {
                        if amount < least {
                            return Err(format!(
                                "{path}: {text} is less than {before}.{} (min ≤ defaultRequest ≤ default ≤ max)",
                                measure.name()
                            ));
                        }
                    }
                    last = Some((field, amount));
                }
            }
        }
        Ok(())
    }

    /// Fills the requests and limits a workload left unset from the
    /// entries' defaults (the first entry that has one wins).
    pub fn apply_defaults(&self, resources: &mut Resources) {
        for item in self.limits.iter().filter(|i| i.kind == LimitType::Instance) {
            let fill = |field: &mut Option<String>, from: Option<&Amounts>, measure: Measure| {
                if field.is_none() {
                    *field = from.and_then(|a| measure.text(a)).map(str::to_string);
                }
            };
            fill(
                &mut resources.limits.memory,
                item.default.as_ref(),
                Measure::Memory,
            );
            fill(
                &mut resources.limits.cpu,
                item.default.as_ref(),
                Measure::Cpu,
            );
            fill(
                &mut resources.requests.memory,
                item.default_request.as_ref(),
                Measure::Memory,
            );
            fill(
                &mut resources.requests.cpu,
                item.default_request.as_ref(),
                Measure::Cpu,
            );
        }
    }

    /// Refuses requests, limits and volume sizes outside the entries'
    /// bounds, naming the field, the bound and `range` (the LimitRange's
    /// name). Run after [`apply_defaults`](Self::apply_defaults) and the
    /// request-to-limit defaulting.
    pub fn check(&self, range: &str, spec: &WorkloadSpec) -> Result<(), String> {
        for item in &self.limits {
            let bound = |measure: Measure, amounts: Option<&Amounts>| measure.amount(amounts);
            match item.kind {
                LimitType::Instance => {
                    for measure in [Measure::Memory, Measure::Cpu] {
                        let name = measure.name();
                        // Limits first: a request defaulted to its limit
                        // is out of bounds because the limit is.
                        let fields = [
                            ("limits", measure.of_list(&spec.resources.limits)),
                            ("requests", measure.of_list(&spec.resources.requests)),
                        ];
                        if let Some(min) = bound(measure, item.min.as_ref()) {
                            for (field, amount) in fields {
                                if let Some(amount) = amount.filter(|a| *a < min) {
                                    return Err(format!(
                                        "spec.resources.{field}.{name}: {} is less than {}, the least limit range {range} allows per instance (min.{name})",
                                        measure.format(amount),
                                        measure.format(min)
                                    ));
                                }
                            }
                        }
                        if let Some(max) = bound(measure, item.max.as_ref()) {
                            if fields[0].1.is_none() {
                                return Err(format!(
                                    "spec.resources.limits.{name}: must be set: limit range {range} allows at most {} per instance (max.{name}); set a limit, or have an admin give the range a default",
                                    measure.format(max)
                                ));
                            }
                            for (field, amount) in fields {
                                if let Some(amount) = amount.filter(|a| *a > max) {
                                    return Err(format!(
                                        "spec.resources.{field}.{name}: {} is more than {}, the most limit range {range} allows per instance (max.{name})",
                                        measure.format(amount),
                                        measure.format(max)
                                    ));
                                }
                            }
                        }
                    }
                }
                LimitType::PersistentVolume => {
                    let (min, max) = (
                        bound(Measure::Storage, item.min.as_ref()),
                        bound(Measure::Storage, item.max.as_ref()),
                    );
                    for (n, volume) in spec.volumes.iter().enumerate() {
                        let Some(persistent) = &volume.persistent else {
                            continue;
                        };
                        let size = crate::parse_memory_bytes(&persistent.size).unwrap_or(0);
                        let format = crate::quantity::format_memory_bytes;
                        if let Some(min) = min.filter(|m| size < *m) {
                            return Err(format!(
                                "spec.volumes[{n}].persistent.size: {} is less than {}, the least limit range {range} allows per volume (min.storage)",
                                format(size),
                                format(min)
                            ));
                        }
                        if let Some(max) = max.filter(|m| size > *m) {
                            return Err(format!(
                                "spec.volumes[{n}].persistent.size: {} is more than {}, the most limit range {range} allows per volume (max.storage)",
                                format(size),
                                format(max)
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(replicas: u32, memory: Option<&str>) -> WorkloadSpec {
        let mut spec = WorkloadSpec {
            replicas,
            ..WorkloadSpec::default()
        };
        spec.resources.limits.memory = memory.map(str::to_string);
        spec
    }

    fn quota(pairs: &[(&str, &str)]) -> ResourceQuotaSpec {
        ResourceQuotaSpec {
            hard: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn usage_counts_every_declared_replica_and_each_bucket_once() {
        let mut a = workload(2, Some("16Mi"));
        a.resources.requests.cpu = Some("250m".into());
        a.grants.key_value = vec![crate::workload::KeyValueGrant {
            bucket: "cache".into(),
            quota: Some("1Mi".into()),
            ..Default::default()
        }];
        let mut b = workload(3, Some("32Mi"));
        b.grants.key_value = vec![crate::workload::KeyValueGrant {
            bucket: "cache".into(),
            quota: Some("4Mi".into()),
            ..Default::default()
        }];
        b.volumes = vec![crate::workload::Volume {
            name: "data".into(),
            persistent: Some(crate::workload::PersistentVolume {
                size: "1Gi".into(),
                ..Default::default()
            }),
            ..Default::default()
        }];
        let usage = Usage::of_workloads([&a, &b], 64 << 20);
        assert_eq!(usage.get("count/workloads"), 2);
        assert_eq!(usage.get("count/instances"), 5);
        assert_eq!(usage.get("requests.memory"), (2 * 16 + 3 * 32) << 20);
        assert_eq!(usage.get("limits.memory"), (2 * 16 + 3 * 32) << 20);
        assert_eq!(usage.get("requests.cpu"), 500);
        assert_eq!(usage.get("limits.cpu"), 0);
        assert_eq!(usage.get("storage"), 3 << 30);
        assert_eq!(usage.get("kv.bytes"), 4 << 20);
    }

    #[test]
    fn a_quota_refuses_what_raises_a_total_past_its_cap_and_names_the_numbers() {
        let q = quota(&[("requests.memory", "64Mi"), ("count/workloads", "5")]);
        assert!(q.validate().is_ok());
        let small = workload(1, Some("32Mi"));
        let before = Usage::of_workloads([&small], 0);
        let fits = workload(1, Some("32Mi"));
        let after = Usage::of_workloads([&small, &fits], 0);
        assert!(q.check("compute", &before, &after).is_ok());
        let over = workload(1, Some("33Mi"));
        let after = Usage::of_workloads([&small, &over], 0);
        let e = q.check("compute", &before, &after).unwrap_err().to_string();
        assert!(
            e.starts_with("exceeded quota: compute, requested: requests.memory=33Mi, used: requests.memory=32Mi, limited: requests.memory=64Mi (make room"),
            "{e}"
        );
        // Over already (the quota was tightened): shrinking is allowed,
        // growing is not.
        let tight = quota(&[("requests.memory", "16Mi")]);
        let shrunk = Usage::of_workloads([&workload(1, Some("20Mi"))], 0);
        assert!(tight.check("compute", &before, &shrunk).is_ok());
        assert!(tight.check("compute", &shrunk, &before).is_err());
        // A total already saturated does not switch the cap off.
        let huge = workload(2, Some("18000000000000000000"));
        let saturated = Usage::of_workloads([&huge], 0);
        let more = Usage::of_workloads([&huge, &workload(1, Some("1Mi"))], 0);
        assert!(tight.check("compute", &saturated, &more).is_err());
    }

    #[test]
    fn a_capped_compute_resource_must_be_set() {
        let q = quota(&[("limits.cpu", "2"), ("requests.memory", "1Gi")]);
        let e = q
            .check_specified("compute", &workload(1, Some("8Mi")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("must specify limits.cpu"), "{e}");
        let e = q
            .check_specified("compute", &workload(1, None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("requests.memory,limits.cpu"), "{e}");
    }

    #[test]
    fn quota_values_are_checked_with_their_paths() {
        let e = quota(&[("count/jobz", "1")]).validate().unwrap_err();
        assert!(e.contains("spec.hard.count/jobz") && e.contains("count/workloads"));
        let e = quota(&[("requests.memory", "64MB")])
            .validate()
            .unwrap_err();
        assert!(e.contains("spec.hard.requests.memory"), "{e}");
        let e = quota(&[("count/workloads", "-1")]).validate().unwrap_err();
        assert!(e.contains("not a count"), "{e}");
        assert!(quota(&[("requests.cpu", "0")]).validate().is_ok());
        assert_eq!(counted_plural("count/configs"), Some("configs"));
        assert_eq!(counted_plural("count/instances"), None);
        assert_eq!(format_amount("requests.cpu", 1500), "1500m");
        assert_eq!(format_amount("limits.cpu", 2000), "2");
    }

    #[test]
    fn the_example_parses() {
        let manifests =
            crate::manifest::parse_manifests(include_str!("../../examples/team-quota.yaml"))
                .unwrap();
        assert!(matches!(
            manifests.as_slice(),
            [
                crate::manifest::Manifest::ResourceQuota(_),
                crate::manifest::Manifest::LimitRange(_)
            ]
        ));
    }

    fn range(text: &str) -> LimitRangeSpec {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_limit_range_defaults_what_is_unset_and_bounds_what_is_set() {
        let r = range(
            r#"{"limits":[{"default":{"memory":"64Mi"},"defaultRequest":{"cpu":"100m"},
                "min":{"memory":"16Mi"},"max":{"memory":"128Mi","cpu":"1"}},
               {"type":"PersistentVolume","max":{"storage":"1Gi"}}]}"#,
        );
        assert!(r.validate().is_ok());
        let mut spec = workload(1, None);
        r.apply_defaults(&mut spec.resources);
        assert_eq!(spec.resources.limits.memory.as_deref(), Some("64Mi"));
        assert_eq!(spec.resources.requests.cpu.as_deref(), Some("100m"));
        // cpu has a max but no default limit: a limit must be given.
        let e = r.check("limits", &spec).unwrap_err();
        assert!(
            e.starts_with("spec.resources.limits.cpu: must be set"),
            "{e}"
        );
        spec.resources.limits.cpu = Some("2".into());
        let e = r.check("limits", &spec).unwrap_err();
        assert!(
            e.contains(
                "spec.resources.limits.cpu: 2 is more than 1, the most limit range limits allows"
            ),
            "{e}"
        );
        spec.resources.limits.cpu = Some("500m".into());
        assert!(r.check("limits", &spec).is_ok());
        // Set values are kept.
        let mut small = workload(1, Some("8Mi"));
        r.apply_defaults(&mut small.resources);
        assert_eq!(small.resources.limits.memory.as_deref(), Some("8Mi"));
        small.resources.limits.cpu = Some("500m".into());
        let e = r.check("limits", &small).unwrap_err();
        assert!(e.contains("8Mi is less than 16Mi"), "{e}");
        spec.volumes = vec![crate::workload::Volume {
            name: "data".into(),
            persistent: Some(crate::workload::PersistentVolume {
                size: "2Gi".into(),
                ..Default::default()
            }),
            ..Default::default()
        }];
        let e = r.check("limits", &spec).unwrap_err();
        assert!(
            e.starts_with("spec.volumes[0].persistent.size: 2Gi is more than 1Gi"),
            "{e}"
        );
    }

    #[test]
    fn limit_ranges_are_checked_with_their_paths() {
        let e = range(r#"{"limits":[{"min":{"memory":"64Mi"},"max":{"memory":"32Mi"}}]}"#)
            .validate()
            .unwrap_err();
        assert!(e.starts_with("spec.limits[0].max.memory"), "{e}");
        let e = range(r#"{"limits":[{"max":{"storage":"1Gi"}}]}"#)
            .validate()
            .unwrap_err();
        assert!(
            e.contains("Instance entry bounds memory and cpu only"),
            "{e}"
        );
        let e = range(r#"{"limits":[{"type":"PersistentVolume","default":{"storage":"1Gi"}}]}"#)
            .validate()
            .unwrap_err();
        assert!(e.contains("min and max only"), "{e}");
        let e = range(r#"{"limits":[{"default":{"cpu":"lots"}}]}"#)
            .validate()
            .unwrap_err();
        assert!(e.starts_with("spec.limits[0].default.cpu"), "{e}");
    }
}
