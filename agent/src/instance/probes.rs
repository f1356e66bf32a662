//! One probe state machine for every instance, with Kubernetes' rules, fed
//! by checks of either kind (a daemon's watchdog silence, an http replica's
//! `httpGet` on a fresh instance):
//!
//! - each probe is checked every `period`, the first time one period after
//!   the start;
//! - `startup` runs alone until it passes once; `failureThreshold` failures
//!   in a row fail the instance (it is restarted);
//! - then `readiness` makes it ready on a pass and not ready after
//!   `failureThreshold` failures in a row (without a readiness probe it is
//!   ready once started);
//! - and `liveness` fails it (restarted) after `failureThreshold` failures
//!   in a row.

use std::time::Instant;

use super::template::ProbeTimes;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeKind {
    Startup,
    Readiness,
    Liveness,
}

/// What a check changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Ready, or no longer.
    Ready(bool),
    /// Startup or liveness failed enough: the instance is restarted; why.
    Failed(String),
}

#[derive(Debug, Clone, Copy)]
struct Schedule {
    times: ProbeTimes,
    due: Instant,
    failures: u32,
}

impl Schedule {
    fn new(times: ProbeTimes, now: Instant) -> Self {
        Self {
            times,
            due: now + times.period,
            failures: 0,
        }
    }
}

/// The probes of one instance, and where they stand.
#[derive(Debug, Clone)]
pub(crate) struct ProbeSet {
    startup: Option<Schedule>,
    readiness: Option<Schedule>,
    liveness: Option<Schedule>,
    started_up: bool,
    ready: bool,
}

impl ProbeSet {
    /// The probes of an instance that starts at `now`.
    pub fn new(
        startup: Option<ProbeTimes>,
        readiness: Option<ProbeTimes>,
        liveness: Option<ProbeTimes>,
        now: Instant,
    ) -> Self {
        Self {
            startup: startup.map(|t| Schedule::new(t, now)),
            readiness: readiness.map(|t| Schedule::new(t, now)),
            liveness: liveness.map(|t| Schedule::new(t, now)),
            started_up: startup.is_none(),
            ready: startup.is_none() && readiness.is_none(),
        }
    }

    /// The same probes, for a restart at `now`.
    pub fn restart(&mut self, now: Instant) {
        let times = |s: &Option<Schedule>| s.map(|s| s.times);
        *self = Self::new(
            times(&self.startup),
            times(&self.readiness),
            times(&self.liveness),
            now,
        );
    }

    /// Whether it is ready now.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Whether there is any probe.
    pub fn is_empty(&self) -> bool {
        self.startup.is_none() && self.readiness.is_none() && self.liveness.is_none()
    }

    /// The probes running now: startup alone until it has passed.
    fn active(&self) -> Vec<(ProbeKind, &Schedule)> {
        if !self.started_up {
            return self
                .startup
                .iter()
                .map(|s| (ProbeKind::Startup, s))
                .collect();
        }
        let readiness = self.readiness.iter().map(|s| (ProbeKind::Readiness, s));
        let liveness = self.liveness.iter().map(|s| (ProbeKind::Liveness, s));
        readiness.chain(liveness).collect()
    }

    /// When the next check is due; `None` without probes.
    pub fn next_due(&self) -> Option<Instant> {
        self.active().into_iter().map(|(_, s)| s.due).min()
    }

    /// The checks due at `now`, with their timing.
    pub fn due(&self, now: Instant) -> Vec<(ProbeKind, ProbeTimes)> {
        self.active()
            .into_iter()
            .filter(|(_, s)| s.due <= now)
            .map(|(kind, s)| (kind, s.times))
            .collect()
    }

    /// Records a check of `kind` made at `now`: what it changed, if anything.
    pub fn record(
        &mut self,
        kind: ProbeKind,
        result: Result<(), String>,
        now: Instant,
    ) -> Option<Change> {
        let schedule = match kind {
            ProbeKind::Startup => self.startup.as_mut(),
            ProbeKind::Readiness => self.readiness.as_mut(),
            ProbeKind::Liveness => self.liveness.as_mut(),
        }?;
        schedule.due = now + schedule.times.period;
        let threshold = schedule.times.failure_threshold;
        match result {
            Ok(()) => schedule.failures = 0,
            Err(_) => schedule.failures = schedule.failures.saturating_add(1),
        }
        let failures = schedule.failures;
        match (kind, result) {
            (ProbeKind::Startup, Ok(())) => {
                self.started_up = true;
                // The others count from now.
                for s in [&mut self.readiness, &mut self.liveness]
                    .into_iter()
                    .flatten()
                {
                    s.due = now + s.times.period;
                }
                (self.readiness.is_none() && !self.ready).then(|| {
                    self.ready = true;
                    Change::Ready(true)
                })
            }
            (ProbeKind::Readiness, Ok(())) => (!self.ready).then(|| {
                self.ready = true;
                Change::Ready(true)
            }),
            (ProbeKind::Liveness, Ok(())) => None,
            (ProbeKind::Readiness, Err(_)) => (self.ready && failures >= threshold).then(|| {
                self.ready = false;
                Change::Ready(false)
            }),
            (ProbeKind::Startup | ProbeKind::Liveness, Err(why)) => {
                (failures >= threshold).then(|| {
                    let name = if kind == ProbeKind::Startup {
                        "startup"
                    } else {
                        "liveness"
                    };
                    Change::Failed(format!(
                        "{name} probe failed: {why} ({failures} checks in a row, every {:?})",
                        schedule_period(self, kind)
                    ))
                })
            }
        }
    }
}

/// The period of `kind`'s probe (for messages).
fn schedule_period(set: &ProbeSet, kind: ProbeKind) -> std::time::Duration {
    let schedule = match kind {
        ProbeKind::Startup => set.startup,
        ProbeKind::Readiness => set.readiness,
        ProbeKind::Liveness => set.liveness,
    };
    schedule.map(|s| s.times.period).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn times(period_ms: u64, threshold: u32) -> Option<ProbeTimes> {
        Some(ProbeTimes {
            period: Duration::from_millis(period_ms),
            timeout: Duration::from_secs(1),
            failure_threshold: threshold,
        })
    }

    #[test]
    fn without_probes_it_is_ready_at_once_and_nothing_is_due() {
        let set = ProbeSet::new(None, None, None, Instant::now());
        assert!(set.ready() && set.is_empty());
        assert_eq!(set.next_due(), None);
    }

    #[test]
    fn startup_runs_alone_then_readiness_decides() {
        let t0 = Instant::now();
        let mut set = ProbeSet::new(times(100, 3), times(100, 2), times(100, 2), t0);
        assert!(!set.ready());
        let t1 = t0 + Duration::from_millis(100);
        let due: Vec<ProbeKind> = set.due(t1).into_iter().map(|(k, _)| k).collect();
        assert_eq!(due, [ProbeKind::Startup]);
        assert_eq!(set.record(ProbeKind::Startup, Err("no".into()), t1), None);
        assert_eq!(
            set.record(ProbeKind::Startup, Ok(()), t1),
            None,
            "readiness decides"
        );
        let t2 = t1 + Duration::from_millis(100);
        let due: Vec<ProbeKind> = set.due(t2).into_iter().map(|(k, _)| k).collect();
        assert_eq!(due, [ProbeKind::Readiness, ProbeKind::Liveness]);
        assert_eq!(
            set.record(ProbeKind::Readiness, Ok(()), t2),
            Some(Change::Ready(true))
        );
        // Not ready only after failureThreshold failures in a row.
        assert_eq!(set.record(ProbeKind::Readiness, Err("x".into()), t2), None);
        assert_eq!(
            set.record(ProbeKind::Readiness, Err("x".into()), t2),
            Some(Change::Ready(false))
        );
    }

    #[test]
    fn startup_and_liveness_fail_after_their_threshold() {
        let t0 = Instant::now();
        let mut set = ProbeSet::new(times(100, 2), None, times(100, 2), t0);
        assert_eq!(set.record(ProbeKind::Startup, Err("a".into()), t0), None);
        let failed = set.record(ProbeKind::Startup, Err("silent".into()), t0);
        assert!(
            matches!(&failed, Some(Change::Failed(why)) if why.contains("startup probe failed: silent")),
            "{failed:?}"
        );
        set.restart(t0);
        assert_eq!(
            set.record(ProbeKind::Startup, Ok(()), t0),
            Some(Change::Ready(true))
        );
        assert_eq!(set.record(ProbeKind::Liveness, Err("a".into()), t0), None);
        assert_eq!(
            set.record(ProbeKind::Liveness, Ok(()), t0),
            None,
            "a pass resets"
        );
        assert_eq!(set.record(ProbeKind::Liveness, Err("a".into()), t0), None);
        let failed = set.record(ProbeKind::Liveness, Err("hung".into()), t0);
        assert!(
            matches!(&failed, Some(Change::Failed(why)) if why.contains("liveness probe failed: hung")),
            "{failed:?}"
        );
    }

    #[test]
    fn checks_come_due_one_period_apart_and_after_startup_passes() {
        let t0 = Instant::now();
        let mut set = ProbeSet::new(times(100, 3), times(300, 1), times(200, 1), t0);
        assert_eq!(set.next_due(), Some(t0 + Duration::from_millis(100)));
        assert!(set.due(t0 + Duration::from_millis(99)).is_empty());
        let t1 = t0 + Duration::from_millis(100);
        set.record(ProbeKind::Startup, Ok(()), t1);
        // Readiness and liveness count from the startup pass.
        assert_eq!(set.next_due(), Some(t1 + Duration::from_millis(200)));
        let due: Vec<ProbeKind> = set
            .due(t1 + Duration::from_millis(200))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(due, [ProbeKind::Liveness]);
        set.record(ProbeKind::Liveness, Ok(()), t1 + Duration::from_millis(200));
        assert_eq!(set.next_due(), Some(t1 + Duration::from_millis(300)));
        // A restart starts over: startup alone, not ready.
        set.restart(t1);
        assert!(!set.ready());
        let due: Vec<ProbeKind> = set
            .due(t1 + Duration::from_millis(100))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(due, [ProbeKind::Startup]);
    }
}
