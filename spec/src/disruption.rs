//! `DisruptionBudget` (Kubernetes' PodDisruptionBudget): how many of the
//! instances a selector picks may be taken down on purpose at once — by a
//! drain's evictions and by rollouts — as `minAvailable` (at least so many
//! stay healthy) or `maxUnavailable` (at most so many are not), each a
//! count or a percentage of the instances expected.
//!
//! [`assess`] turns a budget and what runs into its status; the control
//! plane computes it live from the store when it evicts, so a status
//! written a second ago never lets two evictions through.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::meta::Resource;
use crate::strategy::IntOrPercent;

/// A DisruptionBudget resource.
pub type DisruptionBudget = Resource<DisruptionBudgetSpec, DisruptionBudgetStatus>;

/// How long an evicted instance counts as disrupted when it is still in
/// the store: the time its node needs to see the deletion (Kubernetes'
/// `DeletionTimeout` is 2 minutes too).
pub const DISRUPTED_FOR_SECONDS: u64 = 120;

/// Which instances, and how many of them must stay healthy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisruptionBudgetSpec {
    /// The instances it covers, by label.
    #[serde(default)]
    pub selector: Selector,
    /// At least this many stay healthy (percentages round up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<IntOrPercent>,
    /// At most this many are not healthy (percentages round up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrPercent>,
}

/// A label selector: every label listed, with its value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selector {
    /// Labels an instance must carry.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

impl Selector {
    /// Whether an object with `labels` is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
    }
}

/// What the budget allows now; written by the control plane.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DisruptionBudgetStatus {
    /// The budget's generation this status was computed for.
    #[serde(default)]
    pub observed_generation: u64,
    /// Instances its workloads ask for.
    #[serde(default)]
    pub expected_instances: u32,
    /// Selected instances that are ready and not being evicted.
    #[serde(default)]
    pub current_healthy: u32,
    /// How many must stay healthy.
    #[serde(default)]
    pub desired_healthy: u32,
    /// How many more may be evicted now.
    #[serde(default)]
    pub disruptions_allowed: u32,
    /// Instances evicted and not yet gone, by uid (a replacement may take
    /// an evicted instance's name), with when (RFC 3339): they count as
    /// unhealthy already.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub disrupted_instances: BTreeMap<String, String>,
}

impl DisruptionBudgetSpec {
    /// Problems, with field paths.
    pub fn validate(&self) -> Result<(), String> {
        if self.selector.match_labels.is_empty() {
            return Err(
                "spec.selector.matchLabels: name at least one label (e.g. app: web); a budget over every instance of a namespace is not allowed"
                    .into(),
            );
        }
        let check = |field: &str, value: &IntOrPercent| {
            value
                .of(100, true)
                .map(|_| ())
                .map_err(|e| format!("spec.{field}: {e}"))
        };
        match (&self.min_available, &self.max_unavailable) {
            (Some(_), Some(_)) => {
                Err("spec: set one of minAvailable and maxUnavailable, not both".into())
            }
            (None, None) => Err(
                "spec: set minAvailable or maxUnavailable (a count, or a percentage like \"50%\")"
                    .into(),
            ),
            (Some(min), None) => check("minAvailable", min),
            (None, Some(max)) => check("maxUnavailable", max),
        }
    }

    /// How many of `expected` instances must stay healthy.
    pub fn desired_healthy(&self, expected: u32) -> u32 {
        // Validated at admission; a stored one that is not protects all.
        match (&self.min_available, &self.max_unavailable) {
            (Some(min), _) => min.of(expected, true).unwrap_or(expected),
            (None, Some(max)) => expected.saturating_sub(max.of(expected, true).unwrap_or(0)),
            (None, None) => expected,
        }
    }
}

/// One selected instance as the budget sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    /// Its uid.
    pub uid: String,
    /// Whether it is ready.
    pub ready: bool,
}

/// The budget's status given the instances it selects, the number its
/// workloads expect, and the evictions it recorded that are still under
/// way (those of instances still present and evicted less than
/// [`DISRUPTED_FOR_SECONDS`] ago: `still_disrupted` decides).
pub fn assess(
    budget: &DisruptionBudget,
    selected: &[Selected],
    expected: u32,
    still_disrupted: impl Fn(&str, &str) -> bool,
) -> DisruptionBudgetStatus {
    let previous = budget.status.clone().unwrap_or_default();
    let disrupted: BTreeMap<String, String> = previous
        .disrupted_instances
        .into_iter()
        .filter(|(uid, at)| selected.iter().any(|s| &s.uid == uid) && still_disrupted(uid, at))
        .collect();
    let current_healthy = selected
        .iter()
        .filter(|s| s.ready && !disrupted.contains_key(&s.uid))
        .count() as u32;
    let desired_healthy = budget.spec.desired_healthy(expected);
    DisruptionBudgetStatus {
        observed_generation: budget.metadata.generation,
        expected_instances: expected,
        current_healthy,
        desired_healthy,
        disruptions_allowed: current_healthy.saturating_sub(desired_healthy),
        disrupted_instances: disrupted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(min: Option<IntOrPercent>, max: Option<IntOrPercent>) -> DisruptionBudget {
        DisruptionBudget {
            api_version: crate::meta::API_VERSION.into(),
            kind: "DisruptionBudget".into(),
            metadata: Default::default(),
            spec: DisruptionBudgetSpec {
                selector: Selector {
                    match_labels: [("app".to_string(), "web".to_string())].into(),
                },
                min_available: min,
                max_unavailable: max,
            },
            status: None,
        }
    }

    fn instances(ready: &[bool]) -> Vec<Selected> {
        ready
            .iter()
            .enumerate()
            .map(|(n, ready)| Selected {
                uid: format!("uid-{n}"),
                ready: *ready,
            })
            .collect()
    }

    #[test]
    fn exactly_one_of_the_bounds_and_a_selector_are_required() {
        let int = |n| Some(IntOrPercent::Int(n));
        assert!(budget(int(1), None).spec.validate().is_ok());
        assert!(budget(None, Some(IntOrPercent::Percent("50%".into())))
            .spec
            .validate()
            .is_ok());
        assert!(budget(int(1), int(1))
            .spec
            .validate()
            .unwrap_err()
            .contains("not both"));
        assert!(budget(None, None).spec.validate().is_err());
        let bad = budget(None, Some(IntOrPercent::Percent("150%".into())));
        assert!(bad
            .spec
            .validate()
            .unwrap_err()
            .contains("spec.maxUnavailable"));
        let mut everything = budget(int(1), None);
        everything.spec.selector.match_labels.clear();
        assert!(everything
            .spec
            .validate()
            .unwrap_err()
            .contains("matchLabels"));
    }

    #[test]
    fn disruptions_allowed_are_healthy_instances_beyond_the_desired() {
        let max1 = budget(None, Some(IntOrPercent::Int(1)));
        let status = assess(&max1, &instances(&[true, true, true]), 3, |_, _| true);
        assert_eq!(
            (
                status.current_healthy,
                status.desired_healthy,
                status.disruptions_allowed
            ),
            (3, 2, 1)
        );
        // One already down: nothing more may go.
        let status = assess(&max1, &instances(&[true, true, false]), 3, |_, _| true);
        assert_eq!(status.disruptions_allowed, 0);
        // Percentages round up: half of 3 must stay → 2.
        let half = budget(Some(IntOrPercent::Percent("50%".into())), None);
        assert_eq!(
            assess(&half, &instances(&[true; 3]), 3, |_, _| true).desired_healthy,
            2
        );
        // maxUnavailable 34% of 3 rounds up to 2 unavailable → 1 healthy.
        let third = budget(None, Some(IntOrPercent::Percent("34%".into())));
        assert_eq!(
            assess(&third, &instances(&[true; 3]), 3, |_, _| true).desired_healthy,
            1
        );
    }

    #[test]
    fn an_eviction_under_way_counts_as_unhealthy_until_its_instance_is_gone() {
        let mut max1 = budget(None, Some(IntOrPercent::Int(1)));
        max1.status = Some(DisruptionBudgetStatus {
            disrupted_instances: [
                ("uid-0".to_string(), "t".to_string()),
                ("gone".to_string(), "t".to_string()),
            ]
            .into(),
            ..Default::default()
        });
        let status = assess(&max1, &instances(&[true, true, true]), 3, |_, _| true);
        assert_eq!(status.current_healthy, 2);
        assert_eq!(status.disruptions_allowed, 0);
        assert_eq!(
            status.disrupted_instances.keys().collect::<Vec<_>>(),
            ["uid-0"],
            "an instance no longer there is forgotten"
        );
        // Past the deadline it counts as what it reports.
        let status = assess(&max1, &instances(&[true, true, true]), 3, |_, _| false);
        assert_eq!(status.disruptions_allowed, 1);
    }
}
