//! The fast path's node index: a segment tree over the nodes (in name order)
//! that finds the best-scoring node that fits an unconstrained instance
//! without scanning every node.
//!
//! Each subtree keeps what bounds its nodes: the most free memory and CPU
//! (no node in it fits a larger request), and the extremes of the current
//! allocation fractions and of the allocatable inverses (no node in it can
//! score above the bound they give). The search is branch and bound: visit
//! the more promising child first, skip a subtree that cannot fit the
//! request or cannot beat the best node found so far. Scores at the leaves
//! are computed exactly as the full path computes them, so the choice is
//! the same; ties go to the smaller name, i.e. the leftmost leaf.

use crate::{
    better, fits, fraction, score, Node, Pending, Strategy, LOCALITY_BONUS, SCORE_EPSILON,
};

/// What bounds the nodes of one subtree.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    /// Most free memory of a schedulable node; -1 when none is.
    free_memory: i128,
    /// Most free CPU of a schedulable node; -1 when none is.
    free_cpu: i128,
    /// Whether some schedulable node has a free instance slot.
    any_slot: bool,
    /// Extremes of `used` (memory fraction + CPU fraction, before placement).
    max_used: f64,
    min_used: f64,
    /// Extremes of 1/allocatable, per resource (what a request adds).
    max_inv_memory: f64,
    min_inv_memory: f64,
    max_inv_cpu: f64,
    min_inv_cpu: f64,
    /// Some node in it holds some compiled module.
    any_cache: bool,
}

impl Bounds {
    const EMPTY: Bounds = Bounds {
        free_memory: -1,
        free_cpu: -1,
        any_slot: false,
        max_used: f64::NEG_INFINITY,
        min_used: f64::INFINITY,
        max_inv_memory: 0.0,
        min_inv_memory: 0.0,
        max_inv_cpu: 0.0,
        min_inv_cpu: 0.0,
        any_cache: false,
    };

    fn leaf(node: &Node) -> Self {
        // Only fit and score matter for a plain node: Ready, schedulable,
        // untainted, with room on its disk.
        if !node.ready || node.unschedulable || node.disk_pressure || !node.taints.is_empty() {
            return Self::EMPTY;
        }
        let (allocated, allocatable) = (node.allocated, node.allocatable);
        let used = fraction(allocated.memory, allocatable.memory)
            + fraction(allocated.cpu, allocatable.cpu);
        // A zero allocatable scores as full whatever the request: inverse 0.
        let inverse = |total: u64| if total == 0 { 0.0 } else { 1.0 / total as f64 };
        Bounds {
            free_memory: i128::from(allocatable.memory) - i128::from(allocated.memory),
            free_cpu: i128::from(allocatable.cpu) - i128::from(allocated.cpu),
            any_slot: node.free_slots() > 0,
            max_used: used,
            min_used: used,
            max_inv_memory: inverse(allocatable.memory),
            min_inv_memory: inverse(allocatable.memory),
            max_inv_cpu: inverse(allocatable.cpu),
            min_inv_cpu: inverse(allocatable.cpu),
            any_cache: !node.cached_modules.is_empty(),
        }
    }

    fn join(a: &Self, b: &Self) -> Self {
        if a.free_memory < 0 {
            return *b;
        }
        if b.free_memory < 0 {
            return *a;
        }
        Bounds {
            free_memory: a.free_memory.max(b.free_memory),
            free_cpu: a.free_cpu.max(b.free_cpu),
            any_slot: a.any_slot || b.any_slot,
            max_used: a.max_used.max(b.max_used),
            min_used: a.min_used.min(b.min_used),
            max_inv_memory: a.max_inv_memory.max(b.max_inv_memory),
            min_inv_memory: a.min_inv_memory.min(b.min_inv_memory),
            max_inv_cpu: a.max_inv_cpu.max(b.max_inv_cpu),
            min_inv_cpu: a.min_inv_cpu.min(b.min_inv_cpu),
            any_cache: a.any_cache || b.any_cache,
        }
    }

    /// No node here scores above this for `pod`.
    fn best_possible(&self, pod: &Pending, strategy: Strategy) -> f64 {
        let (memory, cpu) = (pod.requests.memory as f64, pod.requests.cpu as f64);
        let base = match strategy {
            Strategy::Binpack => {
                self.max_used + memory * self.max_inv_memory + cpu * self.max_inv_cpu
            }
            Strategy::Spread => {
                2.0 - (self.min_used + memory * self.min_inv_memory + cpu * self.min_inv_cpu)
            }
        };
        let bonus = if self.any_cache && pod.module.is_some() {
            LOCALITY_BONUS
        } else {
            0.0
        };
        base + bonus
    }

    fn fits(&self, pod: &Pending) -> bool {
        self.free_memory >= i128::from(pod.requests.memory)
            && self.free_cpu >= i128::from(pod.requests.cpu)
            && self.any_slot
    }
}

/// The index: leaf `p` is the `p`-th node by name.
pub(crate) struct NodeIndex {
    /// Node index (into `nodes`) of each leaf position.
    by_name: Vec<usize>,
    /// Leaf position of each node index.
    position: Vec<usize>,
    /// Implicit binary tree: root at 1, children of `i` at `2i` and `2i+1`.
    tree: Vec<Bounds>,
    leaves: usize,
}

impl NodeIndex {
    pub(crate) fn new(nodes: &[Node]) -> Self {
        let mut by_name: Vec<usize> = (0..nodes.len()).collect();
        by_name.sort_by(|&a, &b| nodes[a].name.cmp(&nodes[b].name));
        let mut position = vec![0; nodes.len()];
        for (p, &i) in by_name.iter().enumerate() {
            position[i] = p;
        }
        let leaves = nodes.len().next_power_of_two().max(1);
        let mut tree = vec![Bounds::EMPTY; 2 * leaves];
        for (p, &i) in by_name.iter().enumerate() {
            tree[leaves + p] = Bounds::leaf(&nodes[i]);
        }
        for t in (1..leaves).rev() {
            tree[t] = Bounds::join(&tree[2 * t], &tree[2 * t + 1]);
        }
        Self {
            by_name,
            position,
            tree,
            leaves,
        }
    }

    /// Records that `node` (at `index`) changed.
    pub(crate) fn update(&mut self, index: usize, node: &Node) {
        let mut t = self.leaves + self.position[index];
        self.tree[t] = Bounds::leaf(node);
        while t > 1 {
            t /= 2;
            self.tree[t] = Bounds::join(&self.tree[2 * t], &self.tree[2 * t + 1]);
        }
    }

    /// The best node for `pod` (no selector, tolerations or spread), as the
    /// full path would choose it among plain nodes.
    pub(crate) fn pick(&self, pod: &Pending, strategy: Strategy, nodes: &[Node]) -> Option<usize> {
        let mut best: Option<(f64, usize)> = None;
        self.search(1, 0, self.leaves, pod, strategy, nodes, &mut best);
        best.map(|(_, index)| index)
    }

    #[allow(clippy::too_many_arguments)]
    fn search(
        &self,
        t: usize,
        first: usize,
        width: usize,
        pod: &Pending,
        strategy: Strategy,
        nodes: &[Node],
        best: &mut Option<(f64, usize)>,
    ) {
        let bounds = &self.tree[t];
        if !bounds.fits(pod) {
            return;
        }
        if let Some((score, index)) = *best {
            let possible = bounds.best_possible(pod, strategy);
            // Certainly worse; or at best a tie, lost on name to a leaf
            // further left. The margins absorb the bound's rounding.
            if possible < score - 2.0 * SCORE_EPSILON
                || (first > self.position[index] && possible <= score + SCORE_EPSILON / 2.0)
            {
                return;
            }
        }
        if width == 1 {
            let Some(&index) = self.by_name.get(first) else {
                return;
            };
            if !fits(&nodes[index], pod) {
                return;
            }
            let s = score(&nodes[index], pod, strategy);
            if better(
                s,
                &nodes[index].name,
                best.map(|(b, i)| (b, nodes[i].name.as_str())),
            ) {
                *best = Some((s, index));
            }
            return;
        }
        let half = width / 2;
        let (left, right) = (2 * t, 2 * t + 1);
        // The more promising half first: the better the first find, the more
        // the bound prunes. On equal promise, the left (smaller names).
        let left_first = self.tree[left].best_possible(pod, strategy)
            >= self.tree[right].best_possible(pod, strategy);
        let order = if left_first {
            [(left, first), (right, first + half)]
        } else {
            [(right, first + half), (left, first)]
        };
        for (child, start) in order {
            self.search(child, start, half, pod, strategy, nodes, best);
        }
    }
}
