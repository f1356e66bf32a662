//! Placement of instances on nodes: **filter → score → pick**.
//!
//! A pure library — no I/O, no async, no clock, no randomness — so the same
//! snapshot and pending list always give the same placements, and the
//! control plane can call it as often as it likes.
//!
//! - **Filter**: the node is Ready, schedulable, matches the node selector,
//!   every taint is tolerated, the requests fit allocatable minus allocated
//!   (memory and CPU), an instance slot is free, and a spread constraint's skew stays within bounds.
//! - **Score**: `binpack` prefers the most allocated node after placement (the
//!   edge default: keeps whole nodes free), `spread` the least allocated; a
//!   node that already holds the module's compiled artefact gets a bonus.
//! - **Pick**: the best score, ties broken by node name.
//!
//! When nothing fits, the decision explains why, kube-scheduler style:
//! `0/5 nodes available: 3 insufficient memory, 2 node selector mismatch`.

mod index;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use index::NodeIndex;

/// Memory in bytes and CPU in millicores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// Bytes.
    pub memory: u64,
    /// Millicores.
    pub cpu: u64,
}

/// A taint: instances that do not tolerate it are not placed on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// The taint a node under disk pressure carries, as Kubernetes'
/// `node.kubernetes.io/disk-pressure`: tolerate it to be placed there anyway.
pub const DISK_PRESSURE_TAINT: &str = "node.flotilla.dev/disk-pressure";

/// What a cordoned node (`spec.unschedulable`) counts as: only instances
/// tolerating it go there (every-node instances do, as a DaemonSet's).
pub const UNSCHEDULABLE_TAINT: &str = "node.flotilla.dev/unschedulable";

/// A toleration: `value: None` tolerates every value of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toleration {
    /// Key.
    pub key: String,
    /// Value, or any.
    pub value: Option<String>,
}

/// One node as the scheduler sees it.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// Unique name.
    pub name: String,
    /// What may be allocated in total.
    pub allocatable: Resources,
    /// What placed instances already request.
    pub allocated: Resources,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<Taint>,
    /// Heartbeating and Ready.
    pub ready: bool,
    /// Cordoned.
    pub unschedulable: bool,
    /// Free disk below the node's threshold (the kubelet's `DiskPressure`):
    /// only instances tolerating [`DISK_PRESSURE_TAINT`] go there.
    pub disk_pressure: bool,
    /// Digests of modules whose compiled artefact the node holds.
    pub cached_modules: BTreeSet<String>,
    /// Most instances the node can hold at once (its runtime's slots, as a
    /// kubelet's `pods`); 0: no limit.
    pub max_instances: u32,
    /// Instances placed on it.
    pub instances: u32,
}

impl Node {
    /// Instance slots left: `u32::MAX` without a limit.
    pub fn free_slots(&self) -> u32 {
        if self.max_instances == 0 {
            u32::MAX
        } else {
            self.max_instances.saturating_sub(self.instances)
        }
    }
}

/// Keep instances of one group evenly spread over the values of a node label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spread {
    /// Node label whose values are the domains (e.g. `zone`).
    pub topology_key: String,
    /// Largest allowed difference between the fullest and emptiest domain.
    pub max_skew: u32,
    /// Instances counted together (e.g. the workload's name).
    pub group: String,
}

/// An instance waiting for a node.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    /// Identifies the instance in the decisions.
    pub id: String,
    /// What it reserves.
    pub requests: Resources,
    /// Required node labels.
    pub node_selector: BTreeMap<String, String>,
    /// Tolerated taints.
    pub tolerations: Vec<Toleration>,
    /// The module's digest (for the locality bonus).
    pub module: Option<String>,
    /// An optional spread constraint.
    pub spread: Option<Spread>,
    /// Per-instance strategy override.
    pub strategy: Option<Strategy>,
}

/// How to choose among feasible nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Most allocated first.
    #[default]
    Binpack,
    /// Least allocated first.
    Spread,
}

/// The outcome for one pending instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Place it on this node.
    Place {
        /// Instance id.
        id: String,
        /// Node name.
        node: String,
    },
    /// No node fits; why.
    Unschedulable {
        /// Instance id.
        id: String,
        /// `0/N nodes available: …`.
        reason: String,
    },
}

/// Instances already placed per group and topology value (for spread constraints).
pub type SpreadCounts = HashMap<(String, String), u32>;

/// Why a node was filtered out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Reject {
    NotReady,
    Unschedulable,
    DiskPressure,
    Selector,
    Taint,
    Memory,
    Cpu,
    Instances,
    Skew,
}

impl Reject {
    fn text(self) -> &'static str {
        match self {
            Reject::NotReady => "node not ready",
            Reject::Unschedulable => "node unschedulable",
            Reject::DiskPressure => "node has disk pressure",
            Reject::Selector => "node selector mismatch",
            Reject::Taint => "untolerated taint",
            Reject::Memory => "insufficient memory",
            Reject::Cpu => "insufficient cpu",
            Reject::Instances => "too many instances",
            Reject::Skew => "spread constraint",
        }
    }
}

/// The locality bonus, in the same units as the allocation score (0..=2).
const LOCALITY_BONUS: f64 = 0.1;

fn filter(node: &Node, pod: &Pending, skew_ok: impl Fn(&Node) -> bool) -> Option<Reject> {
    if !node.ready {
        return Some(Reject::NotReady);
    }
    if node.unschedulable && !pod.tolerations.iter().any(|t| t.key == UNSCHEDULABLE_TAINT) {
        return Some(Reject::Unschedulable);
    }
    if node.disk_pressure && !pod.tolerations.iter().any(|t| t.key == DISK_PRESSURE_TAINT) {
        return Some(Reject::DiskPressure);
    }
    if !pod
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v))
    {
        return Some(Reject::Selector);
    }
    let tolerated = |t: &Taint| {
        pod.tolerations
            .iter()
            .any(|tol| tol.key == t.key && tol.value.as_ref().is_none_or(|v| *v == t.value))
    };
    if !node.taints.iter().all(tolerated) {
        return Some(Reject::Taint);
    }
    if node.allocated.memory.saturating_add(pod.requests.memory) > node.allocatable.memory {
        return Some(Reject::Memory);
    }
    if node.allocated.cpu.saturating_add(pod.requests.cpu) > node.allocatable.cpu {
        return Some(Reject::Cpu);
    }
    if node.free_slots() == 0 {
        return Some(Reject::Instances);
    }
    if !skew_ok(node) {
        return Some(Reject::Skew);
    }
    None
}

fn fraction(used: u64, total: u64) -> f64 {
    if total == 0 {
        1.0
    } else {
        used as f64 / total as f64
    }
}

fn score(node: &Node, pod: &Pending, strategy: Strategy) -> f64 {
    let after = fraction(
        node.allocated.memory + pod.requests.memory,
        node.allocatable.memory,
    ) + fraction(node.allocated.cpu + pod.requests.cpu, node.allocatable.cpu);
    let base = match strategy {
        Strategy::Binpack => after,
        Strategy::Spread => 2.0 - after,
    };
    let local = pod
        .module
        .as_ref()
        .is_some_and(|m| node.cached_modules.contains(m));
    base + if local { LOCALITY_BONUS } else { 0.0 }
}

/// Whether placing one more of `spread.group` on `node` keeps the skew within bounds.
fn skew_ok(
    spread: &Spread,
    node: &Node,
    domains: &BTreeSet<String>,
    counts: &SpreadCounts,
) -> bool {
    let Some(value) = node.labels.get(&spread.topology_key) else {
        return false;
    };
    let count = |v: &String| {
        counts
            .get(&(spread.group.clone(), v.clone()))
            .copied()
            .unwrap_or(0)
    };
    let min = domains.iter().map(count).min().unwrap_or(0);
    count(value) + 1 - min <= spread.max_skew
}

/// Scores closer than this are a tie (broken by name): the index's bounds
/// and the leaves' exact scores may differ in the last bits.
const SCORE_EPSILON: f64 = 1e-9;

/// From how many unconstrained pending instances `schedule` builds the index.
const INDEX_FROM: usize = 4;

/// Whether a node scoring `s` with `name` beats the best so far.
fn better(s: f64, name: &str, best: Option<(f64, &str)>) -> bool {
    match best {
        None => true,
        Some((b, best_name)) => {
            s > b + SCORE_EPSILON || ((s - b).abs() <= SCORE_EPSILON && name < best_name)
        }
    }
}

/// Whether the requests fit what the node has left (an instance slot included).
fn fits(node: &Node, pod: &Pending) -> bool {
    node.allocated.memory.saturating_add(pod.requests.memory) <= node.allocatable.memory
        && node.allocated.cpu.saturating_add(pod.requests.cpu) <= node.allocatable.cpu
        && node.free_slots() > 0
}

/// Places `pending` in order on `nodes`, updating each chosen node's
/// `allocated` (and `spread_counts`) so later instances see earlier ones.
pub fn schedule(
    nodes: &mut [Node],
    pending: &[Pending],
    default_strategy: Strategy,
    spread_counts: &mut SpreadCounts,
) -> Vec<Decision> {
    let mut decisions = Vec::with_capacity(pending.len());
    // Domains of every topology key in use, from all nodes (not only feasible ones).
    let mut domains: HashMap<&str, BTreeSet<String>> = HashMap::new();
    for pod in pending {
        if let Some(s) = &pod.spread {
            domains.entry(s.topology_key.as_str()).or_insert_with(|| {
                nodes
                    .iter()
                    .filter_map(|n| n.labels.get(&s.topology_key).cloned())
                    .collect()
            });
        }
    }
    // Building the index costs about one scan of the nodes: worth it from a
    // few unconstrained instances on; fewer take the full path.
    let simple = |pod: &Pending| {
        pod.node_selector.is_empty() && pod.tolerations.is_empty() && pod.spread.is_none()
    };
    let mut index = (pending
        .iter()
        .filter(|p| simple(p))
        .nth(INDEX_FROM - 1)
        .is_some())
    .then(|| NodeIndex::new(nodes));
    for pod in pending {
        let strategy = pod.strategy.unwrap_or(default_strategy);
        let fast = match &index {
            Some(index) if simple(pod) => index.pick(pod, strategy, nodes),
            _ => None,
        };
        let mut best: Option<(f64, usize)> = fast.map(|index| (0.0, index));
        let mut rejects: BTreeMap<Reject, usize> = BTreeMap::new();
        // The full path: pods with constraints, and the explanation when the
        // fast path found nothing.
        if best.is_none() {
            for (at, node) in nodes.iter().enumerate() {
                let fits_skew = |n: &Node| match &pod.spread {
                    None => true,
                    Some(s) => skew_ok(s, n, &domains[s.topology_key.as_str()], spread_counts),
                };
                if let Some(reject) = filter(node, pod, fits_skew) {
                    *rejects.entry(reject).or_default() += 1;
                    continue;
                }
                let s = score(node, pod, strategy);
                // Better, or a tie with a smaller name: deterministic.
                if better(
                    s,
                    &node.name,
                    best.map(|(b, i)| (b, nodes[i].name.as_str())),
                ) {
                    best = Some((s, at));
                }
            }
        }
        match best {
            Some((_, at)) => {
                let node = &mut nodes[at];
                node.allocated.memory += pod.requests.memory;
                node.allocated.cpu += pod.requests.cpu;
                node.instances = node.instances.saturating_add(1);
                if let Some(index) = &mut index {
                    index.update(at, node);
                }
                if let Some(s) = &pod.spread {
                    if let Some(v) = node.labels.get(&s.topology_key) {
                        *spread_counts
                            .entry((s.group.clone(), v.clone()))
                            .or_default() += 1;
                    }
                }
                decisions.push(Decision::Place {
                    id: pod.id.clone(),
                    node: node.name.clone(),
                });
            }
            None => {
                // Most common reason first, as in the kube-scheduler message.
                let mut counted: Vec<(usize, &str)> =
                    rejects.iter().map(|(r, n)| (*n, r.text())).collect();
                counted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
                let parts: Vec<String> = counted
                    .iter()
                    .map(|(n, text)| format!("{n} {text}"))
                    .collect();
                let reason = if nodes.is_empty() {
                    "0/0 nodes available: no nodes have joined".to_string()
                } else {
                    format!("0/{} nodes available: {}", nodes.len(), parts.join(", "))
                };
                decisions.push(Decision::Unschedulable {
                    id: pod.id.clone(),
                    reason,
                });
            }
        }
    }
    decisions
}
