//! One step of replacing a Workload's instances when its template changes:
//! which outdated instances may go and how many new ones may come now,
//! within the strategy's bounds (`spec.strategy`). Pure; the workload
//! controller applies the step and runs again when anything changes, so a
//! rollout is a sequence of steps each decided from the current state alone
//! (like the Deployment controller's, without ReplicaSets in between: the
//! instances' templates tell old from new). A canary's progress through its
//! steps is the one thing carried from step to step, in the workload's
//! status ([`CanaryState`]).

use std::time::{Duration, SystemTime};

use flotilla_spec::instance::{Instance, Phase};
use flotilla_spec::strategy::{self, rolling_bounds, StrategyKind};
use flotilla_spec::workload::WorkloadSpec;

/// When an instance counts as available: Ready, for `minReadySeconds`.
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    /// `spec.minReadySeconds`.
    pub min_ready: Duration,
    /// The time of this pass.
    pub now: SystemTime,
}

impl Gate {
    /// The gate of `spec` at `now`.
    pub fn of(spec: &WorkloadSpec, now: SystemTime) -> Self {
        Self {
            min_ready: Duration::from_secs(spec.min_ready_seconds.into()),
            now,
        }
    }

    /// Whether `instance` is available: Ready, and (with `minReadySeconds`)
    /// for that long. A Ready instance whose agent does not say since when
    /// counts as available rather than never.
    pub fn available(&self, instance: &Instance) -> bool {
        let Some(status) = instance.status.as_ref().filter(|s| s.ready) else {
            return false;
        };
        if self.min_ready.is_zero() {
            return true;
        }
        status
            .ready_since
            .as_deref()
            .and_then(flotilla_spec::meta::parse_rfc3339)
            .is_none_or(|since| {
                self.now.duration_since(since).unwrap_or_default() >= self.min_ready
            })
    }
}

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

/// Least useful first: not available, not running, then the newest.
fn least_useful_first(instances: &mut [&Instance], gate: &Gate) {
    let running = |i: &Instance| i.status.as_ref().is_some_and(|s| s.phase == Phase::Running);
    instances.sort_by(|a, b| {
        (gate.available(a), running(a))
            .cmp(&(gate.available(b), running(b)))
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
pub fn step(
    spec: &WorkloadSpec,
    current: &[&Instance],
    outdated: &[&Instance],
    gate: &Gate,
) -> Step {
    let wanted = spec.replicas as usize;
    let mut current = current.to_vec();
    let mut outdated = outdated.to_vec();
    least_useful_first(&mut current, gate);
    least_useful_first(&mut outdated, gate);
    let mut step = Step::default();
    if spec.is_stateful() {
        // A StatefulSet scales down from its highest ordinal.
        current.sort_by_key(|i| std::cmp::Reverse(super::workloads::ordinal(i)));
    }
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
        // A canary past its steps (the controller calls [`canary`] before)
        // finishes as a rolling update.
        StrategyKind::RollingUpdate | StrategyKind::Canary => {
            // Validated at admission; a stored object from before that is
            // rolled one at a time rather than not at all.
            let (surge, unavailable) = if spec.is_stateful() {
                // A replica and its volume are one: the old one goes before
                // the new one comes, one at a time (as a StatefulSet).
                (0, 1)
            } else {
                rolling_bounds(&spec.strategy, spec.replicas).unwrap_or((0, 1))
            };
            let (surge, unavailable) = (surge as usize, unavailable as usize);
            let total = current.len() + outdated.len();
            step.create = (wanted - current.len()).min((wanted + surge).saturating_sub(total));
            // Never below `wanted - unavailable` available instances, even if
            // the new ones not yet available never become so.
            let min_available = wanted.saturating_sub(unavailable);
            let new_unavailable = current.iter().filter(|i| !gate.available(i)).count();
            let mut budget = total
                .saturating_sub(min_available)
                .saturating_sub(new_unavailable);
            // Old instances that are not available cost nothing to remove.
            let unhealthy = outdated.iter().filter(|i| !gate.available(i)).count();
            let first = unhealthy.min(budget);
            budget -= first;
            let all_available = current
                .iter()
                .chain(&outdated)
                .filter(|i| gate.available(i))
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

/// Where a canary stands: kept in the workload's status between passes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CanaryState {
    /// The step under way (the number of steps once all are done).
    pub step: usize,
    /// The share the canary has now, in percent.
    pub weight: u32,
    /// When the pause under way began.
    pub pause_start: Option<SystemTime>,
}

/// What `flotilla rollout promote` asked of the canary under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promotion {
    /// Nothing.
    None,
    /// End the pause at this step.
    Step(usize),
    /// Skip every remaining step.
    Full,
}

/// How long a canary that took all the traffic waits before the stable
/// instances go: the time for every ingress to see the new weight (a
/// watch event, normally milliseconds).
pub const TRAFFIC_SHIFT: Duration = Duration::from_secs(1);

/// Instances of the canary for a share of `weight` percent of `replicas`:
/// an http canary gets traffic by weight whatever its size, so one replica
/// is enough for a small share; a daemon's share is its replica count.
fn canary_replicas(replicas: usize, weight: u32, http: bool) -> usize {
    let share = (replicas * weight.min(100) as usize).div_ceil(100);
    if http && weight > 0 {
        share.max(1)
    } else {
        share
    }
}

/// One step of a canary rollout (`current`: the canary's instances,
/// `outdated`: the stable ones): moves through the steps as far as the
/// instances and the clock allow, then sizes both sides for where it
/// stands. Past the last step the new template takes every replica: an
/// http workload's canary grows to `replicas` and gets all the traffic
/// before the stable instances go; a daemon's finishes as a rolling update.
pub fn canary(
    spec: &WorkloadSpec,
    current: &[&Instance],
    outdated: &[&Instance],
    gate: &Gate,
    mut state: CanaryState,
    promotion: Promotion,
    http: bool,
) -> (Step, CanaryState) {
    let steps: Vec<strategy::Step> = spec
        .strategy
        .canary
        .iter()
        .flat_map(|c| &c.steps)
        .filter_map(|s| s.parse().ok())
        .collect();
    let wanted = spec.replicas as usize;
    let ready = current.iter().filter(|i| gate.available(i)).count();
    if promotion == Promotion::Full {
        state.step = steps.len();
    }
    while let Some(&next) = steps.get(state.step) {
        let done = match next {
            strategy::Step::SetWeight(weight) => {
                let done = ready >= canary_replicas(wanted, weight, http);
                if done {
                    state.weight = weight;
                }
                done
            }
            strategy::Step::Pause(length) => {
                let start = *state.pause_start.get_or_insert(gate.now);
                gate.now.duration_since(start).unwrap_or_default() >= length
                    || promotion == Promotion::Step(state.step)
            }
            strategy::Step::PauseUntilPromoted => {
                state.pause_start.get_or_insert(gate.now);
                promotion == Promotion::Step(state.step)
            }
        };
        if !done {
            break;
        }
        state.step += 1;
        state.pause_start = None;
    }
    let mut current = current.to_vec();
    let mut outdated = outdated.to_vec();
    least_useful_first(&mut current, gate);
    least_useful_first(&mut outdated, gate);
    let mut step = Step::default();
    let canaries = match steps.get(state.step) {
        Some(strategy::Step::SetWeight(weight)) => canary_replicas(wanted, *weight, http),
        Some(_) => canary_replicas(wanted, state.weight, http),
        None if http => wanted,
        None => return (self::step(spec, &current, &outdated, gate), state),
    };
    if current.len() > canaries {
        step.delete = names(&current[..current.len() - canaries], "ScaledDown");
    } else {
        step.create = canaries - current.len();
    }
    // The stable side gives up what the canary holds, once the canary's
    // instances are available: never fewer than `replicas` available.
    let stable = if steps.get(state.step).is_none() {
        // Past the steps (http): every replica of the new template is
        // available, then it gets all the traffic, and only once every
        // ingress has had [`TRAFFIC_SHIFT`] to learn that do the stable
        // instances go.
        if ready < wanted {
            wanted
        } else if state.weight < 100 {
            state.weight = 100;
            state.pause_start = Some(gate.now);
            wanted
        } else {
            let since = state.pause_start.unwrap_or(gate.now);
            if gate.now.duration_since(since).unwrap_or_default() >= TRAFFIC_SHIFT {
                0
            } else {
                wanted
            }
        }
    } else if http {
        wanted
    } else {
        wanted - canaries.min(ready)
    };
    if outdated.len() > stable {
        step.delete
            .extend(names(&outdated[..outdated.len() - stable], "OutdatedSpec"));
    } else {
        // Stable instances lost meanwhile (a node died) come back.
        step.create_outdated = stable - outdated.len();
    }
    (step, state)
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

    fn gate() -> Gate {
        Gate {
            min_ready: Duration::ZERO,
            now: SystemTime::now(),
        }
    }

    fn spec(replicas: u32, surge: u32, unavailable: u32) -> WorkloadSpec {
        WorkloadSpec {
            replicas,
            strategy: Strategy {
                rolling_update: Some(RollingUpdate {
                    max_surge: IntOrPercent::Int(surge),
                    max_unavailable: IntOrPercent::Int(unavailable),
                }),
                ..Strategy::default()
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
            let step = step(spec, &current, &outdated, &gate());
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
            let available = old
                .iter()
                .chain(&new)
                .filter(|i| gate().available(i))
                .count();
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
            ..Strategy::default()
        };
        let old: Vec<Instance> = (0..3).map(|n| instance(&format!("old{n}"), true)).collect();
        let outdated: Vec<&Instance> = old.iter().collect();
        let first = step(&recreate, &[], &outdated, &gate());
        assert_eq!((first.create, first.delete.len()), (0, 3));
        assert_eq!(step(&recreate, &[], &[], &gate()).create, 3);
    }

    #[test]
    fn a_paused_workload_keeps_its_old_instances_but_still_scales() {
        let mut paused = spec(3, 1, 1);
        paused.paused = true;
        let old: Vec<Instance> = (0..2).map(|n| instance(&format!("old{n}"), true)).collect();
        let outdated: Vec<&Instance> = old.iter().collect();
        assert_eq!(
            step(&paused, &[], &outdated, &gate()),
            Step {
                create_outdated: 1,
                ..Step::default()
            }
        );
        paused.replicas = 1;
        assert_eq!(step(&paused, &[], &outdated, &gate()).delete.len(), 1);
    }

    #[test]
    fn unavailable_old_instances_go_first() {
        let old = [instance("sick", false), instance("well", true)];
        let outdated: Vec<&Instance> = old.iter().collect();
        let first = step(&spec(2, 0, 1), &[], &outdated, &gate());
        assert_eq!(first.delete, vec![("sick".to_string(), "OutdatedSpec")]);
    }

    fn canary_spec(replicas: u32, steps: &[strategy::Step]) -> WorkloadSpec {
        use flotilla_spec::strategy::{Canary, CanaryStep, Pause};
        let steps = steps
            .iter()
            .map(|step| match step {
                strategy::Step::SetWeight(w) => CanaryStep {
                    set_weight: Some(*w),
                    pause: None,
                },
                strategy::Step::Pause(d) => CanaryStep {
                    set_weight: None,
                    pause: Some(Pause {
                        duration: Some(format!("{}s", d.as_secs())),
                    }),
                },
                strategy::Step::PauseUntilPromoted => CanaryStep {
                    set_weight: None,
                    pause: Some(Pause::default()),
                },
            })
            .collect();
        WorkloadSpec {
            replicas,
            strategy: Strategy {
                kind: StrategyKind::Canary,
                canary: Some(Canary {
                    steps,
                    analysis: None,
                }),
                ..Strategy::default()
            },
            ..WorkloadSpec::default()
        }
    }

    /// Applies `step` to the two sides; new instances are not ready yet.
    fn apply(step: &Step, new: &mut Vec<Instance>, old: &mut Vec<Instance>, round: usize) {
        for (name, _) in &step.delete {
            old.retain(|i| &i.metadata.name != name);
            new.retain(|i| &i.metadata.name != name);
        }
        for n in 0..step.create {
            new.push(instance(&format!("new{round}-{n}"), false));
        }
    }

    #[test]
    fn an_http_canary_walks_its_steps_and_waits_to_be_promoted() {
        use strategy::Step::*;
        let spec = canary_spec(
            4,
            &[
                SetWeight(10),
                PauseUntilPromoted,
                SetWeight(50),
                Pause(Duration::from_secs(30)),
            ],
        );
        let start = SystemTime::now();
        let at = |secs| Gate {
            min_ready: Duration::ZERO,
            now: start + Duration::from_secs(secs),
        };
        let mut old: Vec<Instance> = (0..4).map(|n| instance(&format!("old{n}"), true)).collect();
        let mut new = Vec::new();
        let run = |new: &Vec<Instance>, old: &Vec<Instance>, state, promotion, gate: Gate| {
            let (c, o): (Vec<&Instance>, Vec<&Instance>) =
                (new.iter().collect(), old.iter().collect());
            canary(&spec, &c, &o, &gate, state, promotion, true)
        };
        // setWeight 10: one canary replica (whatever 10% of 4 is); no
        // weight until it is available; the stable side stays whole.
        let (step, state) = run(&new, &old, CanaryState::default(), Promotion::None, at(0));
        assert_eq!(
            (step.create, step.delete.len(), state.step, state.weight),
            (1, 0, 0, 0)
        );
        apply(&step, &mut new, &mut old, 0);
        new[0].status.as_mut().unwrap().ready = true;
        // Available: weight 10, then the open pause holds it.
        let (step, state) = run(&new, &old, state, Promotion::None, at(1));
        assert_eq!((step, state.step, state.weight), (Step::default(), 1, 10));
        let (_, later) = run(&new, &old, state, Promotion::None, at(500));
        assert_eq!(later.step, 1, "an open pause waits for promote");
        // A promote of another step does nothing; of this one, moves on.
        assert_eq!(run(&new, &old, state, Promotion::Step(3), at(2)).1.step, 1);
        let (step, state) = run(&new, &old, state, Promotion::Step(1), at(2));
        assert_eq!((step.create, state.step, state.weight), (1, 2, 10));
        apply(&step, &mut new, &mut old, 1);
        for i in &mut new {
            i.status.as_mut().unwrap().ready = true;
        }
        // setWeight 50 reached; the 30 s pause starts.
        let (_, state) = run(&new, &old, state, Promotion::None, at(3));
        assert_eq!((state.step, state.weight), (3, 50));
        assert!(state.pause_start.is_some());
        assert_eq!(run(&new, &old, state, Promotion::None, at(20)).1.step, 3);
        // Past the pause: the canary grows to every replica, then takes all
        // the traffic and the stable side goes.
        let (step, state) = run(&new, &old, state, Promotion::None, at(34));
        assert_eq!((step.create, step.delete.len(), state.step), (2, 0, 4));
        apply(&step, &mut new, &mut old, 2);
        for i in &mut new {
            i.status.as_mut().unwrap().ready = true;
        }
        // All traffic first; the stable side goes once ingresses had time
        // to see that.
        let (step, state) = run(&new, &old, state, Promotion::None, at(35));
        assert_eq!((step.create, step.delete.len(), state.weight), (0, 0, 100));
        let (step, _) = run(&new, &old, state, Promotion::None, at(35));
        assert_eq!(step.delete.len(), 0, "not before TRAFFIC_SHIFT");
        let (step, state) = run(&new, &old, state, Promotion::None, at(37));
        assert_eq!((step.create, step.delete.len(), state.weight), (0, 4, 100));
        // Before that, a stable instance lost comes back.
        let fewer = old[..3].to_vec();
        let (step, _) = run(&new, &fewer, state, Promotion::None, at(35));
        assert_eq!(step.create_outdated, 1);
    }

    #[test]
    fn a_daemon_canary_trades_replicas_and_a_full_promotion_skips_the_steps() {
        use strategy::Step::*;
        let spec = canary_spec(4, &[SetWeight(50), PauseUntilPromoted]);
        let gate = gate();
        let old: Vec<Instance> = (0..4).map(|n| instance(&format!("old{n}"), true)).collect();
        let outdated: Vec<&Instance> = old.iter().collect();
        // Half the replicas: two canaries first, no stable one goes yet.
        let (step, _) = canary(
            &spec,
            &[],
            &outdated,
            &gate,
            CanaryState::default(),
            Promotion::None,
            false,
        );
        assert_eq!((step.create, step.delete.len()), (2, 0));
        // Both available: two stable ones go.
        let new = [instance("new0", true), instance("new1", true)];
        let current: Vec<&Instance> = new.iter().collect();
        let (step, state) = canary(
            &spec,
            &current,
            &outdated,
            &gate,
            CanaryState::default(),
            Promotion::None,
            false,
        );
        assert_eq!(
            (step.create, step.delete.len(), state.step, state.weight),
            (0, 2, 1, 50)
        );
        // Promoted in full: a rolling update finishes it.
        let (step, state) = canary(
            &spec,
            &current,
            &outdated[..2],
            &gate,
            state,
            Promotion::Full,
            false,
        );
        assert_eq!(state.step, 2);
        assert!(step.create > 0, "{step:?}");
    }

    #[test]
    fn min_ready_seconds_hold_a_ready_instance_back() {
        let mut ready = instance("a", true);
        let since = SystemTime::now() - Duration::from_secs(5);
        ready.status.as_mut().unwrap().ready_since = Some(flotilla_spec::meta::rfc3339(since));
        let gate = |secs| Gate {
            min_ready: Duration::from_secs(secs),
            now: SystemTime::now(),
        };
        assert!(gate(0).available(&ready));
        assert!(gate(4).available(&ready));
        assert!(!gate(10).available(&ready));
        assert!(!gate(0).available(&instance("b", false)));
    }
}
