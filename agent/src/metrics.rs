//! The node's metrics, in the Prometheus text format (`prometheus-client`),
//! served on the node port to the control plane, which serves them at
//! `GET /apis/flotilla.dev/v1/nodes/{node}/metrics` (behind a token).
//!
//! Per instance, named like cAdvisor's so dashboards translate, with
//! `namespace`, `workload`, `instance` and `node` labels:
//! `flotilla_instance_cpu_usage_seconds_total`,
//! `flotilla_instance_cpu_throttled_seconds_total` (time held back by the
//! CPU quota), `flotilla_instance_memory_bytes` (linear memories and tables
//! of the run under way), `flotilla_instance_memory_limit_bytes`,
//! `flotilla_instance_restarts_total{reason}` (runs ended, by reason); per
//! http replica `flotilla_http_requests_total{code}` and
//! `flotilla_http_request_duration_seconds` (a histogram).
//! Per node: capacity and how many instances it tracks.
//!
//! Numbers are read when scraped from each instance's [`Usage`], which the
//! runtime keeps current; an instance's entry lives as long as its task
//! (the [`Tracking`] guard), so the map is bounded by what the node runs.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::runtime::Usage;

type Labels = Vec<(String, String)>;

/// A label value as the text format needs it: `prometheus-client` writes
/// values as they are, so a name holding `"`, `\` or a newline (an
/// Instance's `spec.workload` is not checked at admission) would break the
/// whole page.
fn value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Tracked {
    namespace: String,
    workload: String,
    instance: String,
    usage: Arc<Usage>,
    memory_limit: Option<u64>,
    ended: BTreeMap<String, u64>,
}

/// What the node reports about itself and its instances.
pub struct NodeMetrics {
    node: String,
    /// The node's http replicas, for their request counts.
    endpoints: Arc<crate::endpoints::LocalEndpoints>,
    capacity_memory_bytes: u64,
    capacity_cpu_millis: u64,
    instances: Mutex<BTreeMap<u64, Tracked>>,
    next: AtomicU64,
    /// Request durations of the http replicas, kept across scrapes (each
    /// replica's entry removed with it: [`Timing`]).
    durations: Family<Labels, Histogram, fn() -> Histogram>,
}

fn duration_histogram() -> Histogram {
    // 1 ms to 32 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// An http replica's request-duration histogram; its series goes when this
/// is dropped.
pub struct Timing {
    metrics: Arc<NodeMetrics>,
    labels: Labels,
    /// Where its requests are observed.
    pub histogram: Histogram,
}

impl Drop for Timing {
    fn drop(&mut self) {
        self.metrics.durations.remove(&self.labels);
    }
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeMetrics({})", self.node)
    }
}

/// One instance's entry; removed when dropped.
pub struct Tracking {
    metrics: Arc<NodeMetrics>,
    id: u64,
    /// Where the runtime adds up the instance's usage.
    pub usage: Arc<Usage>,
}

impl Tracking {
    /// Counts a run of the instance that ended for `reason`.
    pub fn ended(&self, reason: &str) {
        let mut instances = self.metrics.lock();
        if let Some(tracked) = instances.get_mut(&self.id) {
            // Reasons are the runtime's few words, never the guest's.
            *tracked.ended.entry(reason.to_string()).or_default() += 1;
        }
    }
}

impl Drop for Tracking {
    fn drop(&mut self) {
        self.metrics.lock().remove(&self.id);
    }
}

impl NodeMetrics {
    /// The metrics of node `node` with this capacity, serving the http
    /// replicas of `endpoints`.
    pub fn new(
        node: &str,
        capacity_memory_bytes: u64,
        capacity_cpu_millis: u64,
        endpoints: Arc<crate::endpoints::LocalEndpoints>,
    ) -> Self {
        Self {
            node: node.to_string(),
            endpoints,
            capacity_memory_bytes,
            capacity_cpu_millis,
            instances: Mutex::default(),
            next: AtomicU64::new(0),
            durations: Family::new_with_constructor(duration_histogram),
        }
    }

    /// The request-duration histogram of http replica `instance`.
    pub fn time_requests(
        self: &Arc<Self>,
        namespace: &str,
        workload: &str,
        instance: &str,
    ) -> Timing {
        let labels: Labels = vec![
            ("namespace".into(), value(namespace)),
            ("workload".into(), value(workload)),
            ("instance".into(), value(instance)),
            ("node".into(), value(&self.node)),
        ];
        let histogram = self.durations.get_or_create(&labels).clone();
        Timing {
            metrics: self.clone(),
            labels,
            histogram,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Tracked>> {
        self.instances.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts tracking instance `namespace/instance` of `workload`.
    pub fn track(
        self: &Arc<Self>,
        namespace: &str,
        instance: &str,
        workload: &str,
        memory_limit: Option<u64>,
    ) -> Tracking {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let usage = Arc::new(Usage::default());
        self.lock().insert(
            id,
            Tracked {
                namespace: namespace.to_string(),
                workload: workload.to_string(),
                instance: instance.to_string(),
                usage: usage.clone(),
                memory_limit,
                ended: BTreeMap::new(),
            },
        );
        Tracking {
            metrics: self.clone(),
            id,
            usage,
        }
    }

    /// Everything, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut registry = Registry::default();
        let cpu = Family::<Labels, Counter<f64, AtomicU64>>::default();
        let throttled = Family::<Labels, Counter<f64, AtomicU64>>::default();
        let memory = Family::<Labels, Gauge<i64>>::default();
        let limit = Family::<Labels, Gauge<i64>>::default();
        let ended = Family::<Labels, Counter>::default();
        let node = vec![("node".to_string(), value(&self.node))];
        let tracked = {
            let instances = self.lock();
            for t in instances.values() {
                let labels: Labels = vec![
                    ("namespace".into(), value(&t.namespace)),
                    ("workload".into(), value(&t.workload)),
                    ("instance".into(), value(&t.instance)),
                    ("node".into(), value(&self.node)),
                ];
                cpu.get_or_create(&labels).inc_by(t.usage.cpu_seconds());
                throttled
                    .get_or_create(&labels)
                    .inc_by(t.usage.throttled_seconds());
                memory
                    .get_or_create(&labels)
                    .set(i64::try_from(t.usage.memory_bytes()).unwrap_or(i64::MAX));
                if let Some(bytes) = t.memory_limit {
                    limit
                        .get_or_create(&labels)
                        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
                }
                for (reason, count) in &t.ended {
                    let mut with_reason = labels.clone();
                    with_reason.push(("reason".into(), value(reason)));
                    ended.get_or_create(&with_reason).inc_by(*count);
                }
            }
            instances.len()
        };
        registry.register(
            "flotilla_instance_cpu_usage_seconds",
            "CPU time the instance's runs used (guest code and its host calls)",
            cpu,
        );
        registry.register(
            "flotilla_instance_cpu_throttled_seconds",
            "Time the instance's runs were held back by their CPU quota",
            throttled,
        );
        registry.register(
            "flotilla_instance_memory_bytes",
            "Linear memories and tables of the instance's run under way",
            memory,
        );
        registry.register(
            "flotilla_instance_memory_limit_bytes",
            "The instance's memory limit",
            limit,
        );
        registry.register(
            "flotilla_instance_restarts",
            "Runs of the instance that ended, by reason (Completed, Error, Trap, OOMKilled, DeadlineExceeded, Unhealthy)",
            ended,
        );
        let requests = Family::<Labels, Counter>::default();
        let created = Family::<Labels, Counter>::default();
        for (workload, replica) in self.endpoints.all() {
            let (namespace, workload) = workload.split_once('/').unwrap_or(("", &workload));
            let labels: Labels = vec![
                ("namespace".into(), value(namespace)),
                ("workload".into(), value(workload)),
                ("instance".into(), value(&replica.instance)),
                ("node".into(), value(&self.node)),
            ];
            created.get_or_create(&labels).inc_by(
                replica
                    .counts
                    .instances_created
                    .load(std::sync::atomic::Ordering::Relaxed),
            );
            let codes = replica
                .counts
                .codes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            for (code, count) in codes {
                let labels: Labels = vec![
                    ("namespace".into(), value(namespace)),
                    ("workload".into(), value(workload)),
                    ("instance".into(), value(&replica.instance)),
                    ("node".into(), value(&self.node)),
                    ("code".into(), code.to_string()),
                ];
                requests.get_or_create(&labels).inc_by(count);
            }
        }
        registry.register(
            "flotilla_http_requests",
            "Requests an http replica answered, by status code",
            requests,
        );
        registry.register(
            "flotilla_http_instances_created",
            "Fresh Wasm instances an http replica made, one per request it took",
            created,
        );
        registry.register(
            "flotilla_http_request_duration_seconds",
            "How long an http replica took to answer (until the response's head)",
            self.durations.clone(),
        );
        let gauge = |value: u64| {
            let family = Family::<Labels, Gauge<i64>>::default();
            family
                .get_or_create(&node)
                .set(i64::try_from(value).unwrap_or(i64::MAX));
            family
        };
        registry.register(
            "flotilla_node_capacity_memory_bytes",
            "Memory the node offers",
            gauge(self.capacity_memory_bytes),
        );
        registry.register(
            "flotilla_node_capacity_cpu_millicores",
            "CPU the node offers, in millicores",
            gauge(self.capacity_cpu_millis),
        );
        registry.register(
            "flotilla_node_instances",
            "Instances the node runs (daemons and http replicas)",
            gauge(tracked as u64),
        );
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_appear_with_their_usage_and_go_with_their_guard() {
        let metrics = Arc::new(NodeMetrics::new("edge-a", 1 << 30, 2000, Arc::default()));
        let tracking = metrics.track("default", "spin-x1", "spin", Some(64 << 20));
        tracking.ended("Error");
        tracking.ended("Error");
        let text = metrics.encode();
        let labels = r#"namespace="default",workload="spin",instance="spin-x1",node="edge-a""#;
        assert!(
            text.contains(&format!(
                "flotilla_instance_cpu_usage_seconds_total{{{labels}}} 0.0"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "flotilla_instance_memory_limit_bytes{{{labels}}} 67108864"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "flotilla_instance_restarts_total{{{labels},reason=\"Error\"}} 2"
            )),
            "{text}"
        );
        assert!(
            text.contains("flotilla_node_instances{node=\"edge-a\"} 1"),
            "{text}"
        );
        let odd = metrics.track("default", "x", "a\"b\\c\nd", None);
        let text = metrics.encode();
        assert!(text.contains(r#"workload="a\"b\\c\nd""#), "{text}");
        drop(odd);
        drop(tracking);
        let text = metrics.encode();
        assert!(!text.contains("spin-x1"), "{text}");
        assert!(
            text.contains("flotilla_node_instances{node=\"edge-a\"} 0"),
            "{text}"
        );
    }
}
