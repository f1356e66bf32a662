//! The HTTP replicas running on this node, by workload: what the ingress
//! routes to. A supervisor registers its replica once the module is loaded
//! and keeps the returned guard; dropping the guard (the instance stopped)
//! takes the replica out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use flotilla_spec::workload::Route;
use tokio::sync::Semaphore;

use crate::runtime::{HandlerSpec, LoadedModule};

/// `namespace/name` of a workload.
pub type WorkloadKey = String;

/// One local replica of an `http` workload.
pub struct Replica {
    /// The Instance's name.
    pub instance: String,
    /// The handler.
    pub module: Arc<LoadedModule>,
    /// Limits, env, log and outbound policy of each request (replaced while
    /// it serves under `reload: live`).
    pub spec: SharedSpec,
    /// The workload's routes.
    pub routes: Vec<Route>,
    /// Free request slots (`maxConcurrency`).
    pub slots: Semaphore,
    /// Requests in flight or waiting for a slot: least-outstanding balancing.
    pub outstanding: AtomicUsize,
    /// The template hash of its instance: a canary's ingress split picks
    /// replicas by it.
    pub template_hash: String,
    /// Requests answered, kept across its re-registrations.
    pub counts: Arc<RequestCounts>,
    /// Told about every request whose guest failed.
    pub on_failure: Box<dyn Fn(&crate::runtime::Outcome) + Send + Sync>,
}

/// A replica's per-request spec, replaceable while it serves: each request
/// takes the spec of its moment.
#[derive(Clone)]
pub struct SharedSpec(Arc<std::sync::RwLock<Arc<HandlerSpec>>>);

impl SharedSpec {
    /// Holding `spec`.
    pub fn new(spec: HandlerSpec) -> Self {
        Self(Arc::new(std::sync::RwLock::new(Arc::new(spec))))
    }

    /// The spec now.
    pub fn get(&self) -> Arc<HandlerSpec> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces it: later requests take `spec`.
    pub fn set(&self, spec: HandlerSpec) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(spec);
    }
}

/// Requests one replica answered.
#[derive(Debug, Default)]
pub struct RequestCounts {
    /// All of them.
    pub served: AtomicU64,
    /// Those answered with a 5xx.
    pub server_errors: AtomicU64,
    /// Fresh instances made to answer them (a request refused before it
    /// got a slot made none).
    pub instances_created: AtomicU64,
    /// How many of each status code (at most the few hundred codes there
    /// are).
    pub codes: Mutex<std::collections::BTreeMap<u16, u64>>,
    /// How long answers took (until the response's head), if measured:
    /// the node's metrics hold it.
    pub duration: Option<prometheus_client::metrics::histogram::Histogram>,
}

impl RequestCounts {
    /// Counts one answer with `status`, given after `took`.
    pub fn answered(&self, status: http::StatusCode, took: std::time::Duration) {
        if let Some(duration) = &self.duration {
            duration.observe(took.as_secs_f64());
        }
        self.served.fetch_add(1, Ordering::Relaxed);
        if status.is_server_error() {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        *self
            .codes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status.as_u16())
            .or_default() += 1;
    }
}

/// The registry.
#[derive(Default)]
pub struct LocalEndpoints {
    replicas: Mutex<HashMap<WorkloadKey, Vec<Arc<Replica>>>>,
    /// Rotates the start of each pick, so ties go round-robin.
    cursor: AtomicUsize,
}

/// Keeps a replica registered while it lives.
pub struct Registration {
    endpoints: Arc<LocalEndpoints>,
    workload: WorkloadKey,
    replica: Arc<Replica>,
}

impl Registration {
    /// The registered replica.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut replicas = self.endpoints.lock();
        if let Some(list) = replicas.get_mut(&self.workload) {
            list.retain(|r| !Arc::ptr_eq(r, &self.replica));
            if list.is_empty() {
                replicas.remove(&self.workload);
            }
        }
    }
}

impl LocalEndpoints {
    fn lock(&self) -> MutexGuard<'_, HashMap<WorkloadKey, Vec<Arc<Replica>>>> {
        // A panic while holding this lock leaves consistent data: keep going.
        self.replicas.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `replica` of `workload` until the returned guard is dropped.
    pub fn register(self: &Arc<Self>, workload: WorkloadKey, replica: Replica) -> Registration {
        let replica = Arc::new(replica);
        self.lock()
            .entry(workload.clone())
            .or_default()
            .push(replica.clone());
        Registration {
            endpoints: self.clone(),
            workload,
            replica,
        }
    }

    /// Every local replica, by workload (`namespace/name`).
    pub fn all(&self) -> Vec<(WorkloadKey, Arc<Replica>)> {
        self.lock()
            .iter()
            .flat_map(|(workload, list)| list.iter().map(|r| (workload.clone(), r.clone())))
            .collect()
    }

    /// Every local replica of `workload`.
    pub fn replicas(&self, workload: &str) -> Vec<Arc<Replica>> {
        self.lock().get(workload).cloned().unwrap_or_default()
    }

    /// The local replica of `workload` with the fewest requests outstanding;
    /// ties go round-robin.
    pub fn pick(&self, workload: &str) -> Option<Arc<Replica>> {
        let replicas = self.lock();
        let list = replicas.get(workload)?;
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        (0..list.len())
            .map(|i| &list[(start + i) % list.len()])
            .min_by_key(|r| r.outstanding.load(Ordering::Relaxed))
            .cloned()
    }

    /// Like [`LocalEndpoints::pick`], among the replicas of template
    /// `hash` only (a request another node sent to one side of a canary:
    /// none here is an answer for the sender to try elsewhere, never the
    /// other side).
    pub fn pick_of(&self, workload: &str, hash: Option<&str>) -> Option<Arc<Replica>> {
        let Some(hash) = hash else {
            return self.pick(workload);
        };
        let replicas = self.lock();
        let list = replicas.get(workload)?;
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        (0..list.len())
            .map(|i| &list[(start + i) % list.len()])
            .filter(|r| r.template_hash == hash)
            .min_by_key(|r| r.outstanding.load(Ordering::Relaxed))
            .cloned()
    }

    /// The workload whose route matches `host` and `path` best (longest
    /// prefix), among those with a local replica.
    pub fn route(&self, host: &str, path: &str) -> Option<WorkloadKey> {
        let replicas = self.lock();
        let mut best: Option<(usize, &WorkloadKey)> = None;
        for (workload, list) in replicas.iter() {
            let Some(replica) = list.first() else {
                continue;
            };
            for route in &replica.routes {
                let len = route.specificity();
                if route.serves(host, path)
                    && best.is_none_or(|(l, w)| len > l || (len == l && workload < w))
                {
                    best = Some((len, workload));
                }
            }
        }
        best.map(|(_, w)| w.clone())
    }
}
