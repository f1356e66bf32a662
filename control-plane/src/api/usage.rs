//! Workloads' recent usage, for the dashboard's graphs: every interval
//! (15 s by default) the server reads each Ready node's metrics page and
//! keeps, per workload, the last 15 minutes of CPU, memory, request rate
//! and latency — what a Prometheus would answer, without needing one.
//!
//! ```text
//! GET /apis/flotilla.dev/v1/namespaces/{ns}/workloads/{name}/usage
//!   → {"intervalSeconds": 15, "points": [{"time": …, "cpuCores": …, …}]}
//! ```
//!
//! A node speaks only for the instances bound to it: a series is taken
//! when its instance is in the store, bound to the node that served it,
//! and made for the workload it names. So the history holds at most one
//! series per stored instance, and one workload's graphs per stored
//! workload with instances, each [`WINDOW`] long.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::Json;
use prometheus_parse::{Scrape, Value as Sample};
use serde::Serialize;
use serde_json::Value;

use super::{ApiError, ApiState};

/// How much history a workload keeps.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// How often nodes are read, by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// How long one node may take to answer before its round is skipped.
const NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// One point of a workload's graphs: rates over the interval before `time`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    /// Unix time, seconds.
    pub time: u64,
    /// CPU used, in cores (1.0: one core busy).
    pub cpu_cores: f64,
    /// Memory of its instances' runs, summed.
    pub memory_bytes: f64,
    /// Requests answered per second (http workloads).
    pub requests_per_second: f64,
    /// Of which 5xx.
    pub errors_per_second: f64,
    /// Median time to the response's head; none without requests.
    pub latency_p50_seconds: Option<f64>,
    /// 95th percentile of the same.
    pub latency_p95_seconds: Option<f64>,
}

/// What the usage subresource answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    /// The server's time now (unix seconds): the graphs' right edge.
    pub time: u64,
    /// Seconds between points.
    pub interval_seconds: u64,
    /// Oldest first.
    pub points: Vec<Point>,
}

/// The counters and gauges of one instance in one round.
#[derive(Debug, Clone, Default, PartialEq)]
struct Reading {
    cpu: f64,
    memory: f64,
    requests: f64,
    errors: f64,
    /// Cumulative counts by upper bound (`le`), as exposed.
    buckets: BTreeMap<OrderedBound, f64>,
}

/// A bucket bound as a map key (bounds are finite or +Inf, never NaN).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
struct OrderedBound(f64);
impl Eq for OrderedBound {}
#[allow(clippy::derive_ord_xor_partial_ord)]
impl Ord for OrderedBound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Which instance a series is: (namespace, instance name).
type InstanceKey = (String, String);
/// Which workload: (namespace, name).
type WorkloadKey = (String, String);
/// One round's readings: per instance, its workload, when its node's page
/// arrived, and what it said.
type Round = HashMap<InstanceKey, (String, Instant, Reading)>;

/// The history, and the last round's readings to take rates against.
pub struct UsageHistory {
    interval: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Each instance's last reading and when it was taken, kept while the
    /// instance is bound (a node that misses a round leaves no dip: its
    /// next reading's rate spans both rounds).
    last: HashMap<InstanceKey, (Instant, Reading)>,
    workloads: HashMap<WorkloadKey, VecDeque<Point>>,
}

/// A workload's sums in one round.
#[derive(Default)]
struct Sum {
    /// Whether any of its instances had a reading to take a rate against.
    rated: bool,
    cpu_cores: f64,
    memory: f64,
    requests_per_second: f64,
    errors_per_second: f64,
    /// New answers by bucket (cumulative bounds), all instances together.
    buckets: BTreeMap<OrderedBound, f64>,
}

impl UsageHistory {
    /// A history sampled every `interval` (at least 1 s).
    pub fn new(interval: Duration) -> Self {
        Self {
            interval: interval.max(Duration::from_secs(1)),
            inner: Mutex::default(),
        }
    }

    /// Seconds between points.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A workload's points, oldest first.
    pub fn points(&self, namespace: &str, workload: &str) -> Vec<Point> {
        self.lock()
            .workloads
            .get(&(namespace.to_string(), workload.to_string()))
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Takes one round (made at unix seconds `time`): a point per workload
    /// with the rates of its instances since their previous readings, each
    /// over its own elapsed time. `bound`: the instances that still exist.
    fn record(&self, round: Round, bound: &HashMap<InstanceKey, (String, String)>, time: u64) {
        let mut inner = self.lock();
        let mut sums: HashMap<WorkloadKey, Sum> = HashMap::new();
        for (key, (workload, at, reading)) in round {
            let sum = sums.entry((key.0.clone(), workload)).or_default();
            sum.memory += reading.memory;
            // A new series has no rate yet; a counter that went back was
            // restarted from zero, so all of it is new.
            if let Some((then, before)) = inner.last.get(&key) {
                let seconds = at.saturating_duration_since(*then).as_secs_f64();
                if seconds > 0.0 {
                    let delta = |now: f64, then: f64| if now >= then { now - then } else { now };
                    sum.rated = true;
                    sum.cpu_cores += delta(reading.cpu, before.cpu) / seconds;
                    sum.requests_per_second += delta(reading.requests, before.requests) / seconds;
                    sum.errors_per_second += delta(reading.errors, before.errors) / seconds;
                    for (bound, count) in &reading.buckets {
                        let then = before.buckets.get(bound).copied().unwrap_or(0.0);
                        *sum.buckets.entry(*bound).or_default() += delta(*count, then);
                    }
                }
            }
            inner.last.insert(key, (at, reading));
        }
        inner.last.retain(|key, _| bound.contains_key(key));
        let capacity = (WINDOW.as_secs() / self.interval.as_secs()).max(1) as usize;
        let oldest = time.saturating_sub(WINDOW.as_secs());
        for (workload, sum) in sums.into_iter().filter(|(_, sum)| sum.rated) {
            let points = inner.workloads.entry(workload).or_default();
            points.push_back(Point {
                time,
                cpu_cores: sum.cpu_cores,
                memory_bytes: sum.memory,
                requests_per_second: sum.requests_per_second,
                errors_per_second: sum.errors_per_second,
                latency_p50_seconds: quantile(0.5, &sum.buckets),
                latency_p95_seconds: quantile(0.95, &sum.buckets),
            });
            // Rounds slower than the interval space points out: the window
            // is in time, and the count a bound besides.
            while points.len() > capacity || points.front().is_some_and(|p| p.time <= oldest) {
                points.pop_front();
            }
        }
        // Workloads whose newest point left the window are gone.
        inner
            .workloads
            .retain(|_, points| points.back().is_some_and(|p| p.time > oldest));
    }
}

/// The `q` quantile of cumulative bucket counts, interpolated within the
/// bucket it falls in (as PromQL's `histogram_quantile`); none when empty.
fn quantile(q: f64, buckets: &BTreeMap<OrderedBound, f64>) -> Option<f64> {
    let total = buckets.values().copied().fold(0.0, f64::max);
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for (OrderedBound(bound), count) in buckets {
        if *count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let within = (count - lower.1).max(f64::MIN_POSITIVE);
            return Some(lower.0 + (bound - lower.0) * (rank - lower.1) / within);
        }
        lower = (*bound, *count);
    }
    Some(lower.0)
}

/// The readings of one node's page, per instance, keeping only the series
/// of instances bound to `node` (`bound`: instance → workload).
fn readings_of(
    page: &str,
    node: &str,
    bound: &HashMap<InstanceKey, (String, String)>,
) -> HashMap<InstanceKey, (String, Reading)> {
    let Ok(scrape) = Scrape::parse(page.lines().map(|l| Ok(l.to_string()))) else {
        return HashMap::new();
    };
    let mut readings: HashMap<InstanceKey, (String, Reading)> = HashMap::new();
    for sample in scrape.samples {
        let label = |name: &str| sample.labels.get(name).unwrap_or_default().to_string();
        let key = (label("namespace"), label("instance"));
        let Some((workload, on)) = bound.get(&key) else {
            continue;
        };
        if on != node || *workload != label("workload") {
            continue;
        }
        let (_, reading) = readings
            .entry(key)
            .or_insert_with(|| (workload.clone(), Reading::default()));
        let number = match &sample.value {
            Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) => *v,
            Sample::Histogram(buckets) => {
                if sample.metric == "flotilla_http_request_duration_seconds" {
                    for b in buckets {
                        *reading
                            .buckets
                            .entry(OrderedBound(b.less_than))
                            .or_default() += b.count;
                    }
                }
                continue;
            }
            Sample::Summary(_) => continue,
        };
        if !number.is_finite() {
            continue;
        }
        match sample.metric.as_str() {
            "flotilla_instance_cpu_usage_seconds_total" => reading.cpu += number,
            "flotilla_instance_memory_bytes" => reading.memory += number,
            "flotilla_http_requests_total" => {
                reading.requests += number;
                if label("code").starts_with('5') {
                    reading.errors += number;
                }
            }
            _ => {}
        }
    }
    readings
}

/// Instances bound to a node, from the store: (namespace, name) →
/// (workload, node).
fn bound_instances(state: &ApiState) -> Result<HashMap<InstanceKey, (String, String)>, ApiError> {
    let instances = state.store.list("Instance", None)?.items;
    Ok(instances
        .iter()
        .filter_map(|i| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            let node = s(&i["spec"]["nodeName"]);
            (!node.is_empty()).then(|| {
                (
                    (s(&i["metadata"]["namespace"]), s(&i["metadata"]["name"])),
                    (s(&i["spec"]["workload"]), node),
                )
            })
        })
        .collect())
}

/// One round: every Ready node read at once, each within [`NODE_TIMEOUT`].
async fn sample_once(state: &Arc<ApiState>) -> Result<(), ApiError> {
    let (nodes, bound) = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || {
            Ok::<_, ApiError>((
                state.store.list("Node", None)?.items,
                bound_instances(&state)?,
            ))
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??
    };
    let bound = Arc::new(bound);
    let mut reads = tokio::task::JoinSet::new();
    for node in nodes {
        let name = node["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if node["status"]["ready"] != true || name.is_empty() {
            continue;
        }
        let (state, bound) = (state.clone(), bound.clone());
        reads.spawn(async move {
            match tokio::time::timeout(NODE_TIMEOUT, super::metrics::read_node(&state, &name)).await
            {
                Ok(Ok(page)) => stamped(readings_of(&page, &name, &bound), Instant::now()),
                Ok(Err(e)) => {
                    tracing::debug!("usage: {}", e.message);
                    Round::new()
                }
                Err(_) => {
                    tracing::debug!("usage: node {name} did not answer within {NODE_TIMEOUT:?}");
                    Round::new()
                }
            }
        });
    }
    let mut round = Round::new();
    while let Some(done) = reads.join_next().await {
        if let Ok(node_round) = done {
            round.extend(node_round);
        }
    }
    state.usage.record(round, &bound, unix_now());
    Ok(())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A node's readings, taken when its page arrived.
fn stamped(readings: HashMap<InstanceKey, (String, Reading)>, at: Instant) -> Round {
    readings
        .into_iter()
        .map(|(key, (workload, reading))| (key, (workload, at, reading)))
        .collect()
}

/// Samples every interval until the process ends.
pub async fn sample_forever(state: Arc<ApiState>) {
    let mut every = tokio::time::interval(state.usage.interval());
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(e) = sample_once(&state).await {
            tracing::warn!("usage history: {}", e.message);
        }
    }
}

/// `GET /apis/flotilla.dev/v1/namespaces/{ns}/workloads/{name}/usage`.
pub async fn get(
    State(state): State<Arc<ApiState>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<History>, ApiError> {
    if state.store.get("Workload", &namespace, &name)?.is_none() {
        return Err(ApiError::not_found(format!(
            "workloads {name:?} not found in namespace {namespace:?}"
        )));
    }
    Ok(Json(History {
        time: unix_now(),
        interval_seconds: state.usage.interval().as_secs(),
        points: state.usage.points(&namespace, &name),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP flotilla_instance_cpu_usage_seconds CPU.
# TYPE flotilla_instance_cpu_usage_seconds counter
flotilla_instance_cpu_usage_seconds_total{namespace="default",workload="web",instance="web-a",node="n1"} 2.0
flotilla_instance_cpu_usage_seconds_total{namespace="default",workload="web",instance="web-b",node="n1"} 1.0
flotilla_instance_cpu_usage_seconds_total{namespace="other",workload="web",instance="forged",node="n1"} 100.0
# TYPE flotilla_instance_memory_bytes gauge
flotilla_instance_memory_bytes{namespace="default",workload="web",instance="web-a",node="n1"} 1048576
# TYPE flotilla_http_requests counter
flotilla_http_requests_total{namespace="default",workload="web",instance="web-a",node="n1",code="200"} 90
flotilla_http_requests_total{namespace="default",workload="web",instance="web-a",node="n1",code="503"} 10
# TYPE flotilla_http_request_duration_seconds histogram
flotilla_http_request_duration_seconds_sum{namespace="default",workload="web",instance="web-a",node="n1"} 3.0
flotilla_http_request_duration_seconds_count{namespace="default",workload="web",instance="web-a",node="n1"} 100
flotilla_http_request_duration_seconds_bucket{le="0.01",namespace="default",workload="web",instance="web-a",node="n1"} 50
flotilla_http_request_duration_seconds_bucket{le="0.1",namespace="default",workload="web",instance="web-a",node="n1"} 100
flotilla_http_request_duration_seconds_bucket{le="+Inf",namespace="default",workload="web",instance="web-a",node="n1"} 100
# EOF
"#;

    fn bound() -> HashMap<InstanceKey, (String, String)> {
        [("web-a", "n1"), ("web-b", "n1")]
            .into_iter()
            .map(|(i, n)| {
                (
                    ("default".to_string(), i.to_string()),
                    ("web".to_string(), n.to_string()),
                )
            })
            .collect()
    }

    #[test]
    fn a_page_is_read_per_bound_instance_and_nothing_else_is_taken() {
        let readings = readings_of(PAGE, "n1", &bound());
        assert_eq!(readings.len(), 2, "{readings:?}");
        let (workload, a) = &readings[&("default".to_string(), "web-a".to_string())];
        assert_eq!(workload, "web");
        assert_eq!(
            (a.cpu, a.memory, a.requests, a.errors),
            (2.0, 1048576.0, 100.0, 10.0)
        );
        assert_eq!(a.buckets.len(), 3);
        // The same page served by another node speaks for nobody.
        assert!(readings_of(PAGE, "n2", &bound()).is_empty());
        assert!(readings_of("not a metrics page {", "n1", &bound()).is_empty());
    }

    #[test]
    fn points_are_rates_against_the_previous_reading_and_restarts_count_from_zero() {
        let history = UsageHistory::new(Duration::from_secs(10));
        let start = Instant::now();
        let first = readings_of(PAGE, "n1", &bound());
        history.record(stamped(first.clone(), start), &bound(), 1000);
        assert!(
            history.points("default", "web").is_empty(),
            "one reading has no rate"
        );
        let mut second = first.clone();
        let key = ("default".to_string(), "web-a".to_string());
        let a = &mut second.get_mut(&key).unwrap().1;
        a.cpu += 5.0; // 0.5 core over 10 s
        a.requests += 200.0;
        for count in a.buckets.values_mut() {
            *count += 200.0;
        }
        // web-b restarted: its counter went back to 0.5.
        second
            .get_mut(&("default".to_string(), "web-b".to_string()))
            .unwrap()
            .1
            .cpu = 0.5;
        history.record(
            stamped(second, start + Duration::from_secs(10)),
            &bound(),
            1010,
        );
        let points = history.points("default", "web");
        assert_eq!(points.len(), 1);
        let p = &points[0];
        assert_eq!(p.time, 1010);
        assert!((p.cpu_cores - 0.55).abs() < 1e-9, "{p:?}");
        assert!((p.requests_per_second - 20.0).abs() < 1e-9, "{p:?}");
        assert_eq!(p.memory_bytes, 1048576.0);
        // 200 new answers all under 10 ms: the median is inside that bucket.
        let p50 = p.latency_p50_seconds.unwrap();
        assert!(p50 > 0.0 && p50 <= 0.01, "{p:?}");
        assert!(history.points("other", "web").is_empty());
    }

    #[test]
    fn a_node_that_misses_a_round_leaves_no_dip_and_each_rate_has_its_own_time() {
        let history = UsageHistory::new(Duration::from_secs(10));
        let start = Instant::now();
        let key = ("default".to_string(), "web-a".to_string());
        let at = |cpu: f64| {
            let mut r = readings_of(PAGE, "n1", &bound());
            r.retain(|k, _| *k == key);
            r.get_mut(&key).unwrap().1.cpu = cpu;
            r
        };
        history.record(stamped(at(0.0), start), &bound(), 1000);
        // The node did not answer this round.
        history.record(Round::new(), &bound(), 1010);
        // Read 25 s after the first reading (a slow round): 5 s of CPU.
        history.record(
            stamped(at(5.0), start + Duration::from_secs(25)),
            &bound(),
            1025,
        );
        let points = history.points("default", "web");
        assert_eq!(points.len(), 1, "{points:?}");
        assert!((points[0].cpu_cores - 0.2).abs() < 1e-9, "{points:?}");
        // Once the instance is gone from the store, its reading goes too.
        history.record(Round::new(), &HashMap::new(), 1035);
        assert!(history.lock().last.is_empty());
    }

    #[test]
    fn history_is_bounded_by_the_window_and_gone_workloads_are_dropped() {
        let history = UsageHistory::new(Duration::from_secs(60));
        let start = Instant::now();
        let readings = readings_of(PAGE, "n1", &bound());
        for round in 0..40u64 {
            let at = start + Duration::from_secs(60 * round);
            history.record(stamped(readings.clone(), at), &bound(), 60 * round);
        }
        assert_eq!(history.points("default", "web").len(), 15);
        // Slow rounds: the window is in time, not in points.
        for round in 40..44u64 {
            let at = start + Duration::from_secs(300 * round);
            history.record(stamped(readings.clone(), at), &bound(), 300 * round);
        }
        let points = history.points("default", "web");
        assert!(points.len() <= 4, "{}", points.len());
        assert!(points.iter().all(|p| p.time > 300 * 43 - 900));
        for round in 44..60u64 {
            history.record(Round::new(), &bound(), 300 * round);
        }
        assert!(history.points("default", "web").is_empty());
        assert!(history.lock().workloads.is_empty());
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let buckets: BTreeMap<OrderedBound, f64> =
            [(0.1, 50.0), (0.2, 100.0), (f64::INFINITY, 100.0)]
                .into_iter()
                .map(|(b, c)| (OrderedBound(b), c))
                .collect();
        assert!((quantile(0.5, &buckets).unwrap() - 0.1).abs() < 1e-9);
        assert!((quantile(0.75, &buckets).unwrap() - 0.15).abs() < 1e-9);
        assert_eq!(quantile(0.5, &BTreeMap::new()), None);
    }
}
