//! Scheduler throughput and packing quality. Reproduce:
//! `cargo bench -p flotilla-benches --bench scheduler`
//!
//! 1. 50,000 pending instances onto 5,000 nodes, in-process: placements/s and
//!    the p99 of single decisions;
//! 2. packing: nodes used by `binpack` vs first-fit-decreasing on random
//!    memory+CPU traces (FFD sorts the whole trace first, which an online
//!    scheduler cannot do) and vs the volume lower bound, for small items,
//!    large ones (20–60 % of a node) and a mix.

use std::time::Instant;

use flotilla_scheduler::{schedule, Decision, Node, Pending, Resources, SpreadCounts, Strategy};

/// A small deterministic generator (xorshift), so every run sees the same traces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

fn nodes(n: usize, memory: u64, cpu: u64) -> Vec<Node> {
    (0..n)
        .map(|i| Node {
            name: format!("node-{i:05}"),
            allocatable: Resources { memory, cpu },
            ready: true,
            ..Node::default()
        })
        .collect()
}

fn trace(rng: &mut Rng, n: usize) -> Vec<Pending> {
    sized_trace(rng, n, &Sizes::SMALL)
}

/// Request sizes of a trace: memory in MiB and CPU in millicores, each drawn
/// from `small` or, with probability `large_share`, from `large`.
struct Sizes {
    small: ((u64, u64), (u64, u64)),
    large: ((u64, u64), (u64, u64)),
    large_share: u64,
}

impl Sizes {
    /// Small instances only (4–64 MiB, 10–250m on 1 GiB / 2000m nodes).
    const SMALL: Sizes = Sizes {
        small: ((4, 64), (10, 250)),
        large: ((4, 64), (10, 250)),
        large_share: 0,
    };
    /// Large ones only: 20–60 % of a node in each dimension, where a
    /// greedy order leaves the most room wasted.
    const LARGE: Sizes = Sizes {
        small: ((200, 600), (400, 1200)),
        large: ((200, 600), (400, 1200)),
        large_share: 0,
    };
    /// Mostly small, a fifth large: small ones must fill the large ones' gaps.
    const MIXED: Sizes = Sizes {
        small: ((4, 64), (10, 250)),
        large: ((200, 600), (400, 1200)),
        large_share: 20,
    };
}

fn sized_trace(rng: &mut Rng, n: usize, sizes: &Sizes) -> Vec<Pending> {
    (0..n)
        .map(|i| {
            let ((m0, m1), (c0, c1)) = if rng.range(0, 100) < sizes.large_share {
                sizes.large
            } else {
                sizes.small
            };
            Pending {
                id: format!("i{i}"),
                requests: Resources {
                    memory: rng.range(m0, m1) << 20,
                    cpu: rng.range(c0, c1),
                },
                ..Pending::default()
            }
        })
        .collect()
}

/// Fewest nodes any placement could use: the larger dimension's total over
/// a node's capacity, rounded up (a lower bound; FFD is a heuristic too).
fn lower_bound(items: &[Pending], memory: u64, cpu: u64) -> usize {
    let total_memory: u64 = items.iter().map(|p| p.requests.memory).sum();
    let total_cpu: u64 = items.iter().map(|p| p.requests.cpu).sum();
    total_memory.div_ceil(memory).max(total_cpu.div_ceil(cpu)) as usize
}

fn throughput() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let pending = trace(&mut rng, 50_000);

    // As the binder uses it: one call places every pending instance.
    for strategy in [Strategy::Binpack, Strategy::Spread] {
        let mut cluster = nodes(5_000, 2 << 30, 4_000);
        let start = Instant::now();
        let decisions = schedule(&mut cluster, &pending, strategy, &mut SpreadCounts::new());
        let elapsed = start.elapsed().as_secs_f64();
        assert!(decisions
            .iter()
            .all(|d| matches!(d, Decision::Place { .. })));
        println!(
            "5,000 nodes, 50,000 instances in one call, {strategy:?}: {:.0} placements/s ({:.3} s)",
            pending.len() as f64 / elapsed,
            elapsed
        );
    }

    // One instance per call, on the same growing cluster: decision latency.
    let mut cluster = nodes(5_000, 2 << 30, 4_000);
    let mut decision_ns = Vec::with_capacity(pending.len());
    let mut counts = SpreadCounts::new();
    for pod in &pending {
        let t = Instant::now();
        let d = schedule(
            &mut cluster,
            std::slice::from_ref(pod),
            Strategy::Binpack,
            &mut counts,
        );
        decision_ns.push(t.elapsed().as_nanos() as u64);
        assert!(matches!(d[0], Decision::Place { .. }));
    }
    decision_ns.sort_unstable();
    let p = |q: f64| {
        decision_ns[((decision_ns.len() as f64 * q) as usize).min(decision_ns.len() - 1)] as f64
            / 1000.0
    };
    println!(
        "one instance per call: decision p50 {:.1} µs, p99 {:.1} µs",
        p(0.5),
        p(0.99)
    );
}

/// Bins needed by first-fit-decreasing (by the larger normalised dimension).
fn ffd(items: &[Pending], memory: u64, cpu: u64) -> usize {
    let mut sorted: Vec<&Pending> = items.iter().collect();
    let size = |p: &Pending| {
        (p.requests.memory as f64 / memory as f64).max(p.requests.cpu as f64 / cpu as f64)
    };
    sorted.sort_by(|a, b| size(b).total_cmp(&size(a)));
    let mut bins: Vec<Resources> = Vec::new();
    for p in sorted {
        match bins
            .iter_mut()
            .find(|b| b.memory + p.requests.memory <= memory && b.cpu + p.requests.cpu <= cpu)
        {
            Some(b) => {
                b.memory += p.requests.memory;
                b.cpu += p.requests.cpu;
            }
            None => bins.push(p.requests),
        }
    }
    bins.len()
}

fn packing() {
    let (memory, cpu) = (1 << 30, 2_000);
    for (name, sizes) in [
        ("small", Sizes::SMALL),
        ("large", Sizes::LARGE),
        ("mixed", Sizes::MIXED),
    ] {
        let (mut to_ffd, mut to_bound) = (Vec::new(), Vec::new());
        for seed in 1..=20u64 {
            let mut rng = Rng(seed * 0x2545_F491_4F6C_DD1D);
            let items = sized_trace(&mut rng, 2_000, &sizes);
            let mut cluster = nodes(2_000, memory, cpu);
            schedule(
                &mut cluster,
                &items,
                Strategy::Binpack,
                &mut SpreadCounts::new(),
            );
            let used = cluster.iter().filter(|n| n.allocated.memory > 0).count();
            to_ffd.push(used as f64 / ffd(&items, memory, cpu) as f64);
            to_bound.push(used as f64 / lower_bound(&items, memory, cpu) as f64);
        }
        for ratios in [&mut to_ffd, &mut to_bound] {
            ratios.sort_by(f64::total_cmp);
        }
        println!(
            "packing, {name} items, 20 traces of 2,000: binpack ÷ FFD nodes median {:.3}×, worst {:.3}×; binpack ÷ lower bound median {:.3}×, worst {:.3}×",
            to_ffd[to_ffd.len() / 2],
            to_ffd[to_ffd.len() - 1],
            to_bound[to_bound.len() / 2],
            to_bound[to_bound.len() - 1]
        );
    }
}

fn main() {
    throughput();
    packing();
}
