//! What the ingress knows of the whole cluster, kept current by list +
//! watch: the routes of every `http` workload and the workloads it may
//! call, where its replicas run and whether they are Ready, and where each
//! node's port listens. Readiness gates membership: an instance that is
//! not Ready gets no traffic.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use flotilla_client::{collection_path, Client};
use flotilla_spec::node::Node;
use flotilla_spec::revision::TEMPLATE_HASH_LABEL;
use flotilla_spec::workload::{granted_workload, Execution, IngressTls, Route};
use futures_util::StreamExt;
use serde_json::Value;

/// A Ready replica of an `http` workload, somewhere in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `namespace/name` of the Instance.
    pub instance: String,
    /// The node it runs on.
    pub node: String,
    /// The template hash of its instance.
    pub hash: String,
}

/// A canary's share of an http workload's requests: every node's ingress
/// sends `weight` in 100 of them to the replicas of template `hash`.
#[derive(Debug)]
pub struct Split {
    /// The canary's template hash.
    pub hash: String,
    /// Its share, in percent.
    pub weight: u32,
    /// Requests split so far on this node: the `n`th goes to the canary
    /// when `n × weight / 100` steps up, so each 100 give it exactly
    /// `weight` (no randomness to wait out).
    sent: AtomicU64,
}

impl Split {
    /// Whether the next request goes to the canary.
    pub fn next_is_canary(&self) -> bool {
        let n = self.sent.fetch_add(1, Ordering::Relaxed);
        let weight = u64::from(self.weight.min(100));
        (n + 1) * weight / 100 > n * weight / 100
    }
}

/// What routing needs of an http workload.
struct HttpWorkload {
    routes: Vec<Route>,
    /// The workloads it may call (`spec.grants.workloads`, as
    /// `namespace/name`): what another node's calls on its behalf may reach.
    calls: Vec<String>,
    tls: Vec<IngressTls>,
    split: Option<Arc<Split>>,
    /// After an automatic rollback, the template it reverted to: the only
    /// one that serves while the bad version's replicas stop.
    rolled_back_to: Option<String>,
}

#[derive(Default)]
struct State {
    /// `namespace/name` → routes and canary split, for `http` workloads.
    routes: HashMap<String, HttpWorkload>,
    /// Instance `namespace/name` → (workload `namespace/name`, endpoint), Ready ones only.
    ready: HashMap<String, (String, Endpoint)>,
    /// Which nodes run instances of which http workloads, ready or not.
    placements: Placements,
    /// Node → node port address.
    node_ports: HashMap<String, String>,
    /// Serials of revoked node certificates (the revocation list).
    revoked: HashMap<String, ()>,
}

/// Where the instances of http workloads are bound, whatever their
/// phase: a node may call on behalf of a workload only while it runs one
/// of its instances. Kept as counts per (workload, node) so that the check
/// made on every forwarded call is one lookup.
#[derive(Default)]
struct Placements {
    /// Instance `namespace/name` → (workload `namespace/name`, node).
    of_instance: HashMap<String, (String, String)>,
    /// (workload, node) → how many of its instances the node runs.
    count: HashMap<(String, String), usize>,
}

impl Placements {
    /// Records where `instance` is bound now (`None`: nowhere, or gone).
    fn set(&mut self, instance: String, placed: Option<(String, String)>) {
        if let Some(old) = self.of_instance.remove(&instance) {
            if let Some(n) = self.count.get_mut(&old) {
                *n -= 1;
                if *n == 0 {
                    self.count.remove(&old);
                }
            }
        }
        if let Some(placed) = placed {
            *self.count.entry(placed.clone()).or_default() += 1;
            self.of_instance.insert(instance, placed);
        }
    }

    fn apply(&mut self, change: &Change) {
        match change {
            Change::Reset(items) => {
                *self = Self::default();
                for item in items {
                    self.set(key(item), placement(item));
                }
            }
            Change::Put(item) => self.set(key(item), placement(item)),
            Change::Delete(item) => self.set(key(item), None),
        }
    }

    fn runs_on(&self, workload: &str, node: &str) -> bool {
        self.count
            .contains_key(&(workload.to_string(), node.to_string()))
    }
}

/// (workload `namespace/name`, node) of an http instance bound to a node.
fn placement(instance: &Value) -> Option<(String, String)> {
    let spec = &instance["spec"];
    let execution: Execution =
        serde_json::from_value(spec["template"]["execution"].clone()).ok()?;
    let node = spec["nodeName"].as_str().filter(|n| !n.is_empty())?;
    let workload = spec["workload"].as_str()?;
    let namespace = instance["metadata"]["namespace"].as_str()?;
    (execution == Execution::Http).then(|| (format!("{namespace}/{workload}"), node.to_string()))
}

/// The view; cheap to clone.
#[derive(Clone, Default)]
pub struct ClusterView {
    state: Arc<RwLock<State>>,
}

/// One change of a watched collection.
enum Change {
    /// The whole collection, after a (re)list.
    Reset(Vec<Value>),
    /// Added or modified.
    Put(Value),
    /// Deleted.
    Delete(Value),
}

impl Change {
    /// Applies this change to `map` (keyed by `key_of`), keeping what
    /// `entry` makes of each object; an object it gives nothing for is removed.
    fn apply_to<V>(
        self,
        map: &mut HashMap<String, V>,
        key_of: impl Fn(&Value) -> String,
        entry: impl Fn(&Value) -> Option<V>,
    ) {
        match self {
            Change::Reset(items) => {
                *map = items
                    .iter()
                    .filter_map(|v| Some((key_of(v), entry(v)?)))
                    .collect();
            }
            Change::Put(value) => match entry(&value) {
                Some(e) => drop(map.insert(key_of(&value), e)),
                None => drop(map.remove(&key_of(&value))),
            },
            Change::Delete(value) => drop(map.remove(&key_of(&value))),
        }
    }
}

fn key(value: &Value) -> String {
    format!(
        "{}/{}",
        value["metadata"]["namespace"].as_str().unwrap_or_default(),
        value["metadata"]["name"].as_str().unwrap_or_default()
    )
}

impl ClusterView {
    /// Follows workloads, instances, nodes and the revoked node
    /// certificates through `client` until the process ends.
    pub fn follow(&self, client: Client) {
        for (plural, apply) in [
            ("workloads", Self::apply_workload as fn(&mut State, Change)),
            ("instances", Self::apply_instance),
            ("nodes", Self::apply_node),
            ("nodecertificates", Self::apply_certificate),
        ] {
            let view = self.clone();
            let client = client.clone();
            tokio::spawn(async move {
                reflect(&client, plural, |change| {
                    let mut state = view.state.write().unwrap_or_else(|e| e.into_inner());
                    apply(&mut state, change);
                })
                .await
            });
        }
    }

    fn apply_workload(state: &mut State, change: Change) {
        change.apply_to(&mut state.routes, key, |value| {
            // A node sees other workloads reduced to these fields.
            let spec = &value["spec"];
            let execution: Execution = serde_json::from_value(spec["execution"].clone()).ok()?;
            let routes: Vec<Route> =
                serde_json::from_value(spec["routes"].clone()).unwrap_or_default();
            let tls: Vec<IngressTls> =
                serde_json::from_value(spec["tls"].clone()).unwrap_or_default();
            let namespace = value["metadata"]["namespace"].as_str().unwrap_or_default();
            let calls = serde_json::from_value::<Vec<String>>(spec["grants"]["workloads"].clone())
                .unwrap_or_default()
                .into_iter()
                .map(|g| granted_workload(namespace, &g))
                .collect();
            let canary = &value["status"]["canary"];
            let split = canary["hash"].as_str().map(|hash| {
                Arc::new(Split {
                    hash: hash.to_string(),
                    weight: canary["weight"].as_u64().unwrap_or(0).min(100) as u32,
                    sent: AtomicU64::new(0),
                })
            });
            let rolled_back_to = value["status"]["rolledBackTo"]
                .as_str()
                .filter(|h| !h.is_empty())
                .map(str::to_string);
            (execution == Execution::Http).then_some(HttpWorkload {
                routes,
                calls,
                tls,
                split,
                rolled_back_to,
            })
        });
    }

    fn apply_instance(state: &mut State, change: Change) {
        state.placements.apply(&change);
        change.apply_to(&mut state.ready, key, |value| {
            // A node sees instances bound elsewhere reduced to these fields.
            let spec = &value["spec"];
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            let execution: Execution =
                serde_json::from_value(spec["template"]["execution"].clone()).ok()?;
            let ready = value["status"]["ready"].as_bool().unwrap_or(false);
            let node = text(&spec["nodeName"]);
            (execution == Execution::Http && ready && !node.is_empty()).then(|| {
                let workload = format!(
                    "{}/{}",
                    text(&value["metadata"]["namespace"]),
                    text(&spec["workload"])
                );
                let endpoint = Endpoint {
                    instance: key(value),
                    node,
                    hash: text(&value["metadata"]["labels"][TEMPLATE_HASH_LABEL]),
                };
                (workload, endpoint)
            })
        });
    }

    fn apply_node(state: &mut State, change: Change) {
        let name = |value: &Value| {
            value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        change.apply_to(&mut state.node_ports, name, |value| {
            let status = serde_json::from_value::<Node>(value.clone()).ok()?.status?;
            (status.ready && !status.node_address.is_empty()).then_some(status.node_address)
        });
    }

    fn apply_certificate(state: &mut State, change: Change) {
        let serial = |value: &Value| {
            value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        change.apply_to(&mut state.revoked, serial, |value| {
            (value["spec"]["revoked"] == true).then_some(())
        });
    }

    /// Whether the node certificate with `serial` was revoked (as far as
    /// the watch of the revocation list has come).
    pub fn is_revoked(&self, serial: &str) -> bool {
        self.read().revoked.contains_key(serial)
    }

    /// A view of these workloads and instances (as a node's watch shows
    /// them), for tests.
    #[cfg(test)]
    pub(crate) fn of(workloads: Vec<Value>, instances: Vec<Value>) -> Self {
        let view = Self::default();
        {
            let mut state = view.state.write().unwrap_or_else(|e| e.into_inner());
            Self::apply_workload(&mut state, Change::Reset(workloads));
            Self::apply_instance(&mut state, Change::Reset(instances));
        }
        view
    }

    /// Applies a watch event of instances (`deleted`: a DELETED one), for tests.
    #[cfg(test)]
    pub(crate) fn apply_instance_event(&self, instance: Value, deleted: bool) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let change = if deleted {
            Change::Delete(instance)
        } else {
            Change::Put(instance)
        };
        Self::apply_instance(&mut state, change);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The `http` workload whose route matches `host` and `path` best (the
    /// longest prefix; ties by name).
    pub fn route(&self, host: &str, path: &str) -> Option<String> {
        let state = self.read();
        let mut best: Option<(usize, &String)> = None;
        for (workload, http) in &state.routes {
            for route in &http.routes {
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

    /// The TLS secrets the workloads name, as `(namespace, secret)` with
    /// the hosts each serves. A host for which workloads name different
    /// secrets gets none (logged): no workload can take over another's
    /// host by naming it too.
    pub fn tls_secrets(&self) -> Vec<((String, String), Vec<String>)> {
        let state = self.read();
        let mut by_host: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for (workload, http) in &state.routes {
            let namespace = workload.split('/').next().unwrap_or_default();
            for tls in &http.tls {
                for host in &tls.hosts {
                    let id = (namespace.to_string(), tls.secret_name.clone());
                    let named = by_host.entry(host.to_ascii_lowercase()).or_default();
                    if !named.contains(&id) {
                        named.push(id);
                    }
                }
            }
        }
        let mut secrets: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for (host, mut named) in by_host {
            if named.len() > 1 {
                named.sort();
                tracing::warn!(
                    "host {host} gets no certificate: workloads name different TLS secrets for it ({named:?}); name one"
                );
                continue;
            }
            if let Some(id) = named.pop() {
                secrets.entry(id).or_default().push(host);
            }
        }
        secrets.into_iter().collect()
    }

    /// Whether `workload` has routes: the public ingress of any node takes
    /// requests for it, so any node may forward them.
    pub fn is_routed(&self, workload: &str) -> bool {
        self.read()
            .routes
            .get(workload)
            .is_some_and(|http| !http.routes.is_empty())
    }

    /// Whether `caller`'s grants name `workload` (both `namespace/name`).
    pub fn may_call(&self, caller: &str, workload: &str) -> bool {
        self.read()
            .routes
            .get(caller)
            .is_some_and(|http| http.calls.iter().any(|c| c == workload))
    }

    /// Whether `node` runs an instance of `workload` (in any phase).
    pub fn runs_on(&self, workload: &str, node: &str) -> bool {
        self.read().placements.runs_on(workload, node)
    }

    /// Whether `workload` (`namespace/name`) is a known `http` workload.
    pub fn is_http_workload(&self, workload: &str) -> bool {
        self.read().routes.contains_key(workload)
    }

    /// The canary split of `workload`'s requests, while it has a canary.
    pub fn split(&self, workload: &str) -> Option<Arc<Split>> {
        self.read().routes.get(workload)?.split.clone()
    }

    /// The template an automatic rollback of `workload` reverted to, while
    /// the workload still asks for it.
    pub fn rolled_back_to(&self, workload: &str) -> Option<String> {
        self.read().routes.get(workload)?.rolled_back_to.clone()
    }

    /// The Ready replicas of `workload`, with the node port address of
    /// their node (replicas on nodes not Ready are left out).
    pub fn endpoints(&self, workload: &str) -> Vec<(Endpoint, String)> {
        let state = self.read();
        let mut found: Vec<(Endpoint, String)> = state
            .ready
            .values()
            .filter(|(w, _)| w == workload)
            .filter_map(|(_, e)| Some((e.clone(), state.node_ports.get(&e.node)?.clone())))
            .collect();
        found.sort_by(|a, b| a.0.instance.cmp(&b.0.instance));
        found
    }
}

/// List + watch of one collection, forever: every change goes to `apply`;
/// a failed list or an ended watch starts over after a pause.
async fn reflect(client: &Client, plural: &str, mut apply: impl FnMut(Change)) {
    let path = collection_path(plural, None);
    let mut wait = Duration::from_millis(200);
    loop {
        let session = async {
            let list = client.list(&path, "").await?;
            apply(Change::Reset(list.items));
            let mut events = Box::pin(client.watch(&path, "", &list.revision).await?);
            while let Some(event) = events.next().await {
                let event = event?;
                match event.kind.as_str() {
                    "ADDED" | "MODIFIED" => apply(Change::Put(event.object)),
                    "DELETED" => apply(Change::Delete(event.object)),
                    "ERROR" => break,
                    _ => {}
                }
            }
            Ok::<(), flotilla_client::ClientError>(())
        };
        match session.await {
            Ok(()) => wait = Duration::from_millis(200),
            Err(e) => {
                tracing::debug!("cluster view of {plural}: {e}; retrying in {wait:?}");
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
        tokio::time::sleep(wait).await;
    }
}
