//! One step of replacing a Workload's instances when its template changes:
//! which outdated instances may go and how many new ones may come now,
//! within the strategy's bounds (`spec.strategy`). Pure; the workload
//! controller applies the step and runs again when anything changes, so a
//! rollout is a sequence of steps each decided from the current state alone
//! (like the Deployment controller's, without ReplicaSets in between: the
//! instances' templates tell old from new).

use flotilla_spec::instance::{Instance, Phase};
use flotilla_spec::strategy::{rolling_bounds, StrategyKind};
use flotilla_spec::workload::WorkloadSpec;

/// What this step does.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    /// New instances to create (from the current template).
    pub create: usize,
    /// Instances to create from the outdated instances' template: a paused
    /// rollout scales the version it was paused at, not the new one.
    pub create_outdated: usize,
    /// Instances to delete, with the reason.
    pub delete: Vec<(String, &'static str)>,
}

/// Whether an instance counts as available: Ready (its readiness passes).
pub fn available(instance: &Instance) -> bool {
    instance.status.as_ref().is_some_and(|s| s.ready)
}

/// Least useful first: not available, not running, then the newest.
fn least_useful_first(instances: &mut [&Instance]) {
    let running = |i: &Instance| i.status.as_ref().is_some_and(|s| s.phase == Phase::Running);
    instances.sort_by(|a, b| {
        (available(a), running(a))
            .cmp(&(available(b), running(b)))
            .then_with(|| {
                b.metadata
                    .creation_timestamp
                    .cmp(&a.metadata.creation_timestamp)
            })
    });
}

fn names(instances: &[&Instance], reason: &'static str) -> Vec<(String, &'static str)> {
    instances
        .iter()
        .map(|i| (i.metadata.name.clone(), reason))
        .collect()
}

/// The step for a workload whose `current` instances match its template and
/// whose `outdated` ones do not.
pub fn step(spec: &WorkloadSpec, current: &[&Instance], outdated: &[&Instance]) -> Step {
    let wanted = spec.replicas as usize;
    let mut current = current.to_vec();
    let mut outdated = outdated.to_vec();
    least_useful_first(&mut current);
    least_useful_first(&mut outdated);
    let mut step = Step::default();
    if current.len() > wanted {
        step.delete = names(&current[..current.len() - wanted], "ScaledDown");
        current.drain(..current.len() - wanted);
    }
    if outdated.is_empty() {
        step.create = wanted - current.len();
        return step;
    }
    if spec.paused {
        // Paused: the template change waits; the replica count still holds,
        // outdated instances going first when there are too many.
        let total = current.len() + outdated.len();
        if total > wanted {
            let extra = (total - wanted).min(outdated.len());
            step.delete.extend(names(&outdated[..extra], "ScaledDown"));
        } else {
            step.create_outdated = wanted - total;
        }
        return step;
    }
    match spec.strategy.kind {
        StrategyKind::Recreate => {
            // Every old instance goes first; new ones come once none is left.
            step.delete.extend(names(&outdated, "OutdatedSpec"));
        }
        StrategyKind::RollingUpdate => {
            // Validated at admission; a stored object from before that is
            // rolled one at a time rather than not at all.
            let (surge, unavailable) =
                rolling_bounds(&spec.strategy, spec.replicas).unwrap_or((0, 1));
            let (surge, unavailable) = (surge as usize, unavailable as usize);
            let total = current.len() + outdated.len();
            step.create = (wanted - current.len()).min((wanted + surge).saturating_sub(total));
            // Never below `wanted - unavailable` available instances, even if
            // the new ones not yet available never become so.
            let min_available = wanted.saturating_sub(unavailable);
            let new_unavailable = current.iter().filter(|i| !available(i)).count();
            let mut budget = total
                .saturating_sub(min_available)
                .saturating_sub(new_unavailable);
            // Old instances that are not available cost nothing to remove.
            let unhealthy = outdated.iter().filter(|i| !available(i)).count();
            let first = unhealthy.min(budget);
            budget -= first;
            let all_available = current
                .iter()
                .chain(&outdated)
                .filter(|i| available(i))
                .count();
            let more = budget
                .min(all_available.saturating_sub(min_available))
                .min(outdated.len() - first);
            step.delete
                .extend(names(&outdated[..first + more], "OutdatedSpec"));
        }
    }
    step
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_spec::instance::InstanceStatus;
    use flotilla_spec::strategy::{IntOrPercent, RollingUpdate, Strategy};

    fn instance(name: &str, ready: bool) -> Instance {
        let mut i = Instance::default();
        i.metadata.name = name.into();
        i.status = Some(InstanceStatus {
            phase: Phase::Running,
            ready,
            ..InstanceStatus::default()
        });
        i
    }

    fn spec(replicas: u32, surge: u32, unavailable: u32) -> WorkloadSpec {
        WorkloadSpec {
            replicas,
            strategy: Strategy {
                kind: StrategyKind::RollingUpdate,
                rolling_update: Some(RollingUpdate {
                    max_surge: IntOrPercent::Int(surge),
                    max_unavailable: IntOrPercent::Int(unavailable),
                }),
            },
            ..WorkloadSpec::default()
        }
    }

    /// Runs a rollout to the end, making each created instance ready on the
    /// next step; checks the bounds after every step.
    fn roll(spec: &WorkloadSpec, surge: usize, unavailable: usize) -> usize {
        let wanted = spec.replicas as usize;
        let mut old: Vec<Instance> = (0..wanted)
            .map(|n| instance(&format!("old{n}"), true))
            .collect();
        let mut new: Vec<Instance> = Vec::new();
        let mut steps = 0;
        while !old.is_empty() || new.len() < wanted {
            steps += 1;
            assert!(steps < 100, "no progress");
            let current: Vec<&Instance> = new.iter().collect();
            let outdated: Vec<&Instance> = old.iter().collect();
            let step = step(spec, &current, &outdated);
            for (name, _) in &step.delete {
                old.retain(|i| &i.metadata.name != name);
                new.retain(|i| &i.metadata.name != name);
            }
            // Those created last step are ready now.
            for i in &mut new {
                i.status.as_mut().unwrap().ready = true;
            }
            for n in 0..step.create {
                new.push(instance(&format!("new{steps}-{n}"), false));
            }
            let available = old.iter().chain(&new).filter(|i| available(i)).count();
            assert!(
                old.len() + new.len() <= wanted + surge,
                "step {steps}: too many"
            );
            assert!(
                available + unavailable >= wanted,
                "step {steps}: too few available"
            );
        }
        steps
    }

    #[test]
    fn a_rolling_update_stays_within_its_surge_and_unavailability() {
        for (replicas, surge, unavailable) in
            [(4, 1, 1), (4, 0, 1), (4, 2, 0), (10, 3, 2), (1, 1, 0)]
        {
            roll(
                &spec(replicas, surge, unavailable),
                surge as usize,
                unavailable as usize,
            );
        }
    }

    #[test]
    fn recreate_removes_every_old_instance_before_any_new_one() {
        let mut recreate = spec(3, 1, 1);
        recreate.strategy = Strategy {
            kind: StrategyKind::Recreate,
            rolling_update: None,
        };
        let old: Vec<Instance> = (0..3).map(|n| instance(&format!("old{n}"), true)).collect();
        let outdated: Vec<&Instance> = old.iter().collect();
        let first = step(&recreate, &[], &outdated);
        assert_eq!((first.create, first.delete.len()), (0, 3));
        assert_eq!(step(&recreate, &[], &[]).create, 3);
    }

    #[test]
    fn a_paused_workload_keeps_its_old_instances_but_still_scales() {
        let mut paused = spec(3, 1, 1);
        paused.paused = true;
        let old: Vec<Instance> = (0..2).map(|n| instance(&format!("old{n}"), true)).collect();
        let outdated: Vec<&Instance> = old.iter().collect();
        assert_eq!(
            step(&paused, &[], &outdated),
            Step {
                create_outdated: 1,
                ..Step::default()
            }
        );
        paused.replicas = 1;
        assert_eq!(step(&paused, &[], &outdated).delete.len(), 1);
    }

    #[test]
    fn unavailable_old_instances_go_first() {
        let old = [instance("sick", false), instance("well", true)];
        let outdated: Vec<&Instance> = old.iter().collect();
        let first = step(&spec(2, 0, 1), &[], &outdated);
        assert_eq!(first.delete, vec![("sick".to_string(), "OutdatedSpec")]);
    }
}
