//! How a Workload replaces its instances when its template changes
//! (`spec.strategy`), with Kubernetes' Deployment defaults.

use serde::{Deserialize, Serialize};

/// The annotation `flotilla rollout promote` writes on a Workload:
/// `<updateRevision>/<step>` ends that pause step of the canary of that
/// revision, `<updateRevision>/full` skips its remaining steps. Naming the
/// revision and the step makes it act once, on that canary only (a
/// template brought back later takes a new revision number).
pub const PROMOTE_ANNOTATION: &str = "flotilla.dev/promote";

/// `spec.strategy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Strategy {
    /// `RollingUpdate` (the default), `Recreate` or `Canary`.
    #[serde(rename = "type", default)]
    pub kind: StrategyKind,
    /// The bounds of a rolling update (25%/25% when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
    /// The steps of a canary (`type: Canary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// Whether a failed rollout (deadline passed, new instances crash
    /// looping, canary analysis failed) reverts to the last revision that
    /// completed; true unless set false.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub auto_rollback: bool,
}

impl Default for Strategy {
    fn default() -> Self {
        Self {
            kind: StrategyKind::default(),
            rolling_update: None,
            canary: None,
            auto_rollback: true,
        }
    }
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

impl Strategy {
    /// Whether nothing is set (the default is then not written out).
    pub fn is_default(&self) -> bool {
        *self == Strategy::default()
    }
}

/// The kinds of strategy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StrategyKind {
    /// Replace instances a few at a time, within `maxSurge`/`maxUnavailable`.
    #[default]
    RollingUpdate,
    /// Stop every old instance, then start the new ones.
    Recreate,
    /// Move to the new template in `canary.steps`: a share of the traffic
    /// (http) or of the replicas (daemons), pauses, then all of it.
    Canary,
}

/// `spec.strategy.canary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Canary {
    /// What to do, in order; after the last step the new template takes
    /// every replica.
    pub steps: Vec<CanaryStep>,
    /// When the canary counts as failed (http workloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
}

/// One step of a canary: exactly one of its fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryStep {
    /// The share of requests (http) or replicas (daemons), in percent, the
    /// new template gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_weight: Option<u32>,
    /// Wait: for `duration`, or (`pause: {}`) for `flotilla rollout promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
}

/// `pause:` of a canary step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pause {
    /// How long (`30s`, `5m`, `1h`, or seconds); none: until promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

/// A canary step, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Give the new template this share, in percent.
    SetWeight(u32),
    /// Wait this long.
    Pause(std::time::Duration),
    /// Wait for `flotilla rollout promote`.
    PauseUntilPromoted,
}

impl CanaryStep {
    /// The step this is, or why it is none.
    pub fn parse(&self) -> Result<Step, String> {
        match (self.set_weight, &self.pause) {
            (Some(weight), None) if weight <= 100 => Ok(Step::SetWeight(weight)),
            (Some(weight), None) => Err(format!("setWeight {weight} is above 100 (percent)")),
            (None, Some(Pause { duration: None })) => Ok(Step::PauseUntilPromoted),
            (
                None,
                Some(Pause {
                    duration: Some(text),
                }),
            ) => parse_duration(text).map(Step::Pause),
            _ => Err(
                "a step is either {setWeight: N} or {pause: {duration: 30s}} or {pause: {}}".into(),
            ),
        }
    }
}

/// `30s`, `5m`, `1h` or a number of seconds.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if scale > 0 && n.checked_mul(scale).is_some_and(|s| s <= 7 * 24 * 3600) => {
            Ok(std::time::Duration::from_secs(n * scale))
        }
        _ => Err(format!(
            "{text:?} is not a duration of at most a week (30s, 5m, 1h)"
        )),
    }
}

/// `spec.strategy.canary.analysis`: the canary fails when, over at least
/// `minRequests` of its requests, more than `maxErrorRate` were answered
/// with a 5xx.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Analysis {
    /// A percentage (`1%`, `0.5%`).
    #[serde(default = "one_percent")]
    pub max_error_rate: String,
    /// Requests to the canary before its error rate is judged.
    #[serde(default = "fifty")]
    pub min_requests: u64,
}

impl Default for Analysis {
    fn default() -> Self {
        Self {
            max_error_rate: one_percent(),
            min_requests: fifty(),
        }
    }
}

fn one_percent() -> String {
    "1%".into()
}

fn fifty() -> u64 {
    50
}

impl Analysis {
    /// `maxErrorRate` as a fraction (`1%` → 0.01).
    pub fn max_error_fraction(&self) -> Result<f64, String> {
        self.max_error_rate
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<f64>().ok())
            .filter(|p| (0.0..=100.0).contains(p))
            .map(|p| p / 100.0)
            .ok_or_else(|| {
                format!(
                    "{:?} is not a percentage from 0% to 100% (1%, 0.5%)",
                    self.max_error_rate
                )
            })
    }
}

/// `spec.strategy.rollingUpdate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollingUpdate {
    /// Instances allowed above `replicas` during the update (rounded up).
    #[serde(default = "quarter")]
    pub max_surge: IntOrPercent,
    /// Instances allowed below `replicas` being available (rounded down).
    #[serde(default = "quarter")]
    pub max_unavailable: IntOrPercent,
}

impl Default for RollingUpdate {
    fn default() -> Self {
        Self {
            max_surge: quarter(),
            max_unavailable: quarter(),
        }
    }
}

fn quarter() -> IntOrPercent {
    IntOrPercent::Percent("25%".into())
}

/// A count, or a percentage of `replicas` (`"25%"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrPercent {
    /// An absolute number of instances.
    Int(u32),
    /// A percentage of the replicas, written `N%`.
    Percent(String),
}

impl IntOrPercent {
    /// The number of instances this is out of `replicas`: percentages round
    /// up for a surge and down for unavailability, as Kubernetes does.
    pub fn of(&self, replicas: u32, round_up: bool) -> Result<u32, String> {
        match self {
            IntOrPercent::Int(n) => Ok(*n),
            IntOrPercent::Percent(text) => {
                let percent: u64 = text
                    .strip_suffix('%')
                    .and_then(|n| n.parse().ok())
                    .filter(|p| *p <= 100)
                    .ok_or_else(|| {
                        format!("{text:?} is neither a number nor a percentage from 0% to 100%")
                    })?;
                let scaled = u64::from(replicas) * percent;
                let count = if round_up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                };
                Ok(count as u32)
            }
        }
    }
}

/// The surge and unavailability a rolling update of `replicas` allows:
/// `(max_surge, max_unavailable)`, never both zero (then one may be
/// unavailable, as Kubernetes resolves it).
pub fn rolling_bounds(strategy: &Strategy, replicas: u32) -> Result<(u32, u32), String> {
    let rolling = strategy.rolling_update.clone().unwrap_or_default();
    let surge = rolling.max_surge.of(replicas, true)?;
    let unavailable = rolling.max_unavailable.of(replicas, false)?;
    Ok(if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_as_kubernetes_does() {
        let default = Strategy::default();
        assert_eq!(rolling_bounds(&default, 4), Ok((1, 1)));
        assert_eq!(rolling_bounds(&default, 10), Ok((3, 2)));
        assert_eq!(rolling_bounds(&default, 1), Ok((1, 0)));
        let zero = Strategy {
            rolling_update: Some(RollingUpdate {
                max_surge: IntOrPercent::Int(0),
                max_unavailable: IntOrPercent::Percent("10%".into()),
            }),
            ..Strategy::default()
        };
        assert_eq!(rolling_bounds(&zero, 5), Ok((0, 1)));
        assert!(IntOrPercent::Percent("120%".into()).of(4, true).is_err());
        assert!(IntOrPercent::Percent("x".into()).of(4, true).is_err());
    }

    #[test]
    fn canary_steps_parse_and_bad_ones_say_why() {
        let weight = CanaryStep {
            set_weight: Some(10),
            pause: None,
        };
        assert_eq!(weight.parse(), Ok(Step::SetWeight(10)));
        let timed = CanaryStep {
            set_weight: None,
            pause: Some(Pause {
                duration: Some("2m".into()),
            }),
        };
        assert_eq!(
            timed.parse(),
            Ok(Step::Pause(std::time::Duration::from_secs(120)))
        );
        let open = CanaryStep {
            set_weight: None,
            pause: Some(Pause::default()),
        };
        assert_eq!(open.parse(), Ok(Step::PauseUntilPromoted));
        assert!(CanaryStep::default().parse().is_err());
        let both = CanaryStep {
            set_weight: Some(5),
            pause: Some(Pause::default()),
        };
        assert!(both.parse().is_err());
        assert!(CanaryStep {
            set_weight: Some(101),
            pause: None
        }
        .parse()
        .is_err());
        for bad in ["5x", "", "m", "99999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("45"), Ok(std::time::Duration::from_secs(45)));
        let analysis = Analysis {
            max_error_rate: "0.5%".into(),
            min_requests: 50,
        };
        assert_eq!(analysis.max_error_fraction(), Ok(0.005));
        assert!(Analysis {
            max_error_rate: "2".into(),
            min_requests: 1
        }
        .max_error_fraction()
        .is_err());
    }
}
