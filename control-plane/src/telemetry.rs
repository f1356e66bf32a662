//! What the control plane measures outside the API's request path: how
//! the scheduler decides and how long the store takes. Process-wide
//! families (one control plane per process), recorded where the work
//! happens and encoded by the API's `/metrics` with its own.

use std::sync::LazyLock;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    // 50 µs to about 1.6 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

/// Scheduling attempts, by result (`scheduled`, `unschedulable`).
static SCHEDULING_DECISIONS: LazyLock<Family<Labels, Counter>> = LazyLock::new(Family::default);
/// Time one scheduling round took, for all the instances it placed.
static SCHEDULING_SECONDS: LazyLock<Histogram> = LazyLock::new(histogram);
/// Store operations' durations by operation, lock wait included.
static STORE_SECONDS: LazyLock<Histograms> =
    LazyLock::new(|| Family::new_with_constructor(histogram));

/// Counts a scheduler decision.
pub fn scheduled(placed: bool) {
    let result = if placed { "scheduled" } else { "unschedulable" };
    SCHEDULING_DECISIONS
        .get_or_create(&vec![("result", result)])
        .inc();
}

/// Records a scheduling round that started at `started`.
pub fn scheduling_round(started: Instant) {
    SCHEDULING_SECONDS.observe(started.elapsed().as_secs_f64());
}

/// Times a store operation until the guard drops.
pub fn time_store(operation: &'static str) -> StoreTimer {
    StoreTimer {
        operation,
        started: Instant::now(),
    }
}

/// See [`time_store`].
pub struct StoreTimer {
    operation: &'static str,
    started: Instant,
}

impl Drop for StoreTimer {
    fn drop(&mut self) {
        STORE_SECONDS
            .get_or_create(&vec![("operation", self.operation)])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// Adds the families to `registry`.
pub fn register(registry: &mut Registry) {
    registry.register(
        "flotilla_scheduler_decisions",
        "Scheduling attempts by result (an instance no node fits is tried again on each pass)",
        SCHEDULING_DECISIONS.clone(),
    );
    registry.register(
        "flotilla_scheduler_round_duration_seconds",
        "How long one scheduling round took (all instances waiting at once)",
        SCHEDULING_SECONDS.clone(),
    );
    registry.register(
        "flotilla_store_operation_duration_seconds",
        "Store operations by operation (get, list, create, update, delete, changes), waiting for the store's lock included",
        STORE_SECONDS.clone(),
    );
}
