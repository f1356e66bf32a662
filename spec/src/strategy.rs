//! How a Workload replaces its instances when its template changes
//! (`spec.strategy`), with Kubernetes' Deployment defaults.

use serde::{Deserialize, Serialize};

/// `spec.strategy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Strategy {
    /// `RollingUpdate` (the default) or `Recreate`.
    #[serde(rename = "type", default)]
    pub kind: StrategyKind,
    /// The bounds of a rolling update (25%/25% when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
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
            kind: StrategyKind::RollingUpdate,
            rolling_update: Some(RollingUpdate {
                max_surge: IntOrPercent::Int(0),
                max_unavailable: IntOrPercent::Percent("10%".into()),
            }),
        };
        assert_eq!(rolling_bounds(&zero, 5), Ok((0, 1)));
        assert!(IntOrPercent::Percent("120%".into()).of(4, true).is_err());
        assert!(IntOrPercent::Percent("x".into()).of(4, true).is_err());
    }
}
