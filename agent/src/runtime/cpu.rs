//! CPU accounting and the millicore quota.
//!
//! **Accounting.** A guest runs inside a wasmtime fiber that is resumed each
//! time the host polls the instance's future and suspended when it yields or
//! waits on I/O; between the two it runs on the polling thread. [`Metered`]
//! wraps that future and adds the thread's CPU time spent inside each `poll` to
//! the instance's [`CpuMeter`]: exact per-instance CPU time (guest code and the
//! host calls it makes), never counting time spent asleep or throttled.
//!
//! **Quota.** [`CpuQuota`] is a token bucket refilled at `millicores / 1000`
//! CPU-seconds per wall-second, holding at most one 100 ms period's worth. At
//! every epoch tick the engine calls back into the instance; when the bucket is
//! in debt the instance is put to sleep (a custom yield future) for exactly as
//! long as the refill needs. Debt carries over, so over any longer window the
//! instance gets its quota however coarse the tick.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use nix::time::{clock_gettime, ClockId};

/// The wall-clock window whose quota an instance may burst through.
const QUOTA_PERIOD: Duration = Duration::from_millis(100);

/// CPU time of the calling thread, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    // CLOCK_THREAD_CPUTIME_ID cannot fail on Linux for the calling thread;
    // if it somehow does, report no progress rather than garbage.
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// CPU time consumed by one instance.
#[derive(Debug, Default)]
pub(crate) struct CpuMeter {
    /// Total of completed polls.
    total_ns: AtomicU64,
    /// Thread CPU time when the current poll began (0 when not polling).
    poll_started_ns: AtomicU64,
    /// Where completed polls are added too, across runs (metrics).
    usage: Option<Arc<super::Usage>>,
}

impl CpuMeter {
    /// A meter that also adds to `usage`.
    pub(crate) fn counting_into(usage: Option<Arc<super::Usage>>) -> Self {
        Self {
            usage,
            ..Self::default()
        }
    }

    /// CPU time so far, including the poll in progress when called from
    /// inside it (as the epoch callback is).
    pub(crate) fn used_ns(&self) -> u64 {
        let total = self.total_ns.load(Ordering::Relaxed);
        match self.poll_started_ns.load(Ordering::Relaxed) {
            0 => total,
            started => total + thread_cpu_ns().saturating_sub(started),
        }
    }

    /// CPU time so far in seconds.
    pub(crate) fn used_seconds(&self) -> f64 {
        self.used_ns() as f64 / 1e9
    }
}

/// A future whose polls are charged to a [`CpuMeter`].
pub(crate) struct Metered<F> {
    inner: Pin<Box<F>>,
    meter: Arc<CpuMeter>,
}

impl<F> Metered<F> {
    pub(crate) fn new(inner: F, meter: Arc<CpuMeter>) -> Self {
        Self {
            inner: Box::pin(inner),
            meter,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let start = thread_cpu_ns().max(1);
        self.meter.poll_started_ns.store(start, Ordering::Relaxed);
        let result = self.inner.as_mut().poll(cx);
        let spent = thread_cpu_ns().saturating_sub(start);
        self.meter.poll_started_ns.store(0, Ordering::Relaxed);
        self.meter.total_ns.fetch_add(spent, Ordering::Relaxed);
        if let Some(usage) = &self.meter.usage {
            usage.add_cpu(spent);
        }
        result
    }
}

/// A token bucket of CPU time, checked at each epoch tick.
#[derive(Debug)]
pub(crate) struct CpuQuota {
    /// CPU-nanoseconds granted per wall-nanosecond (0.25 for 250m).
    rate: f64,
    /// Largest balance, in CPU-nanoseconds.
    burst: f64,
    /// Current balance; negative is debt.
    balance: f64,
    refilled_at: Instant,
    charged_ns: u64,
}

impl CpuQuota {
    /// A quota of `millicores` (1000 = one full core).
    pub(crate) fn new(millicores: u64) -> Self {
        let rate = millicores as f64 / 1000.0;
        let burst = rate * QUOTA_PERIOD.as_nanos() as f64;
        Self {
            rate,
            burst,
            balance: burst,
            refilled_at: Instant::now(),
            charged_ns: 0,
        }
    }

    /// Charges CPU used up to `used_ns` and returns how long the instance must
    /// sleep before it may run again, if it is in debt.
    pub(crate) fn charge(&mut self, used_ns: u64) -> Option<Duration> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled_at).as_nanos() as f64;
        self.refilled_at = now;
        self.balance = (self.balance + elapsed * self.rate).min(self.burst);
        self.balance -= used_ns.saturating_sub(self.charged_ns) as f64;
        self.charged_ns = used_ns;
        (self.balance < 0.0).then(|| Duration::from_nanos((-self.balance / self.rate) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debt_is_paid_by_sleeping_in_proportion() {
        let mut q = CpuQuota::new(250);
        // 25 ms of burst is free; 35 ms more leaves 10 ms of debt, which takes
        // 40 ms of wall time to refill at a quarter core.
        let pause = q.charge(35_000_000).expect("in debt");
        let expected = Duration::from_millis(40);
        assert!(
            pause.abs_diff(expected) < Duration::from_millis(2),
            "{pause:?}"
        );
    }

    #[test]
    fn meter_counts_cpu_inside_polls_only() {
        let meter = Arc::new(CpuMeter::default());
        let busy = Metered::new(
            async {
                // Burn 30 ms of this thread's CPU, however loaded the machine.
                let start = thread_cpu_ns();
                while thread_cpu_ns() - start < 30_000_000 {
                    std::hint::black_box(0u64);
                }
            },
            meter.clone(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(busy);
        let used = meter.used_ns();
        assert!((30_000_000..40_000_000).contains(&used), "{used}");
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(30)).await });
        assert!(meter.used_ns() == used);
    }
}
