//! Property tests over random clusters.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_scheduler::{
    schedule, Decision, Node, Pending, Resources, Spread, SpreadCounts, Taint, Toleration,
};
use proptest::prelude::*;

fn node_strategy(i: usize) -> impl Strategy<Value = Node> {
    (
        64u64..1024,
        250u64..4000,
        0u64..=100,
        0u64..=100,
        prop::sample::select(vec!["a", "b", "c"]),
        any::<bool>(),
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.2),
        any::<bool>(),
        (prop::sample::select(vec![0u32, 1, 2, 3, 8]), 0u32..=2),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            move |(
                mem_mi,
                cpu,
                mem_used_pct,
                cpu_used_pct,
                zone,
                gpu,
                ready,
                cordoned,
                tainted,
                cached,
                (max_instances, instances),
                disk_pressure,
            )| {
                let memory = mem_mi << 20;
                let mut labels = BTreeMap::from([("zone".to_string(), zone.to_string())]);
                if gpu {
                    labels.insert("gpu".into(), "yes".into());
                }
                Node {
                    name: format!("node-{i:03}"),
                    allocatable: Resources { memory, cpu },
                    allocated: Resources {
                        memory: memory * mem_used_pct / 100,
                        cpu: cpu * cpu_used_pct / 100,
                    },
                    labels,
                    taints: if tainted {
                        vec![Taint {
                            key: "edge".into(),
                            value: "flaky".into(),
                        }]
                    } else {
                        vec![]
                    },
                    ready,
                    unschedulable: cordoned,
                    disk_pressure,
                    cached_modules: if cached {
                        BTreeSet::from(["m1".to_string()])
                    } else {
                        BTreeSet::new()
                    },
                    max_instances,
                    instances,
                }
            },
        )
}

fn cluster() -> impl Strategy<Value = Vec<Node>> {
    (1usize..20).prop_flat_map(|n| (0..n).map(node_strategy).collect::<Vec<_>>())
}

fn pending() -> impl Strategy<Value = Vec<Pending>> {
    prop::collection::vec(
        (
            1u64..256,
            10u64..2000,
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.3),
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.5),
        ),
        1..40,
    )
    .prop_map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(
                |(i, (mem_mi, cpu, wants_gpu, tolerates, spread, binpack))| Pending {
                    id: format!("i{i}"),
                    requests: Resources {
                        memory: mem_mi << 20,
                        cpu,
                    },
                    node_selector: if wants_gpu {
                        BTreeMap::from([("gpu".into(), "yes".into())])
                    } else {
                        BTreeMap::new()
                    },
                    tolerations: if tolerates {
                        vec![Toleration {
                            key: "edge".into(),
                            value: None,
                        }]
                    } else {
                        vec![]
                    },
                    module: Some("m1".into()),
                    spread: spread.then(|| Spread {
                        topology_key: "zone".into(),
                        max_skew: 1,
                        group: "w".into(),
                    }),
                    strategy: Some(if binpack {
                        flotilla_scheduler::Strategy::Binpack
                    } else {
                        flotilla_scheduler::Strategy::Spread
                    }),
                },
            )
            .collect()
    })
}

/// Every static filter (all but spread skew, checked separately).
fn passes(node: &Node, pod: &Pending) -> bool {
    node.ready
        && !node.unschedulable
        && (!node.disk_pressure
            || pod
                .tolerations
                .iter()
                .any(|t| t.key == flotilla_scheduler::DISK_PRESSURE_TAINT))
        && pod
            .node_selector
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v))
        && node
            .taints
            .iter()
            .all(|t| pod.tolerations.iter().any(|tol| tol.key == t.key))
        && node.allocated.memory + pod.requests.memory <= node.allocatable.memory
        && node.allocated.cpu + pod.requests.cpu <= node.allocatable.cpu
        && (node.max_instances == 0 || node.instances < node.max_instances)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn never_overcommits_and_every_placement_passes_every_filter(nodes in cluster(), pods in pending()) {
        let mut placed = nodes.clone();
        let decisions = schedule(&mut placed, &pods, flotilla_scheduler::Strategy::Binpack, &mut SpreadCounts::new());
        prop_assert_eq!(decisions.len(), pods.len());
        for n in &placed {
            prop_assert!(n.allocated.memory <= n.allocatable.memory || nodes.iter().any(|o| o.name == n.name && o.allocated == n.allocated));
            prop_assert!(n.allocated.cpu <= n.allocatable.cpu || nodes.iter().any(|o| o.name == n.name && o.allocated == n.allocated));
        }
        // Replay the placements in order against the original snapshot.
        let mut replay = nodes.clone();
        let mut per_zone: BTreeMap<String, u32> = BTreeMap::new();
        let zones: BTreeSet<String> = nodes.iter().map(|n| n.labels["zone"].clone()).collect();
        for (pod, decision) in pods.iter().zip(&decisions) {
            if let Decision::Place { node, .. } = decision {
                let n = replay.iter_mut().find(|n| &n.name == node).unwrap();
                prop_assert!(passes(n, pod), "{} placed on {} that fails a filter", pod.id, node);
                if pod.spread.is_some() {
                    let zone = n.labels["zone"].clone();
                    let min = zones.iter().map(|z| per_zone.get(z).copied().unwrap_or(0)).min().unwrap_or(0);
                    prop_assert!(per_zone.get(&zone).copied().unwrap_or(0) + 1 - min <= 1, "skew exceeded");
                    *per_zone.entry(zone).or_default() += 1;
                }
                n.allocated.memory += pod.requests.memory;
                n.allocated.cpu += pod.requests.cpu;
                n.instances += 1;
            }
        }
    }

    #[test]
    fn a_single_instance_that_fits_somewhere_is_placed(nodes in cluster(), pods in pending()) {
        let mut pod = pods[0].clone();
        pod.spread = None;
        let fits = nodes.iter().any(|n| passes(n, &pod));
        let mut placed = nodes.clone();
        let decisions = schedule(&mut placed, std::slice::from_ref(&pod), flotilla_scheduler::Strategy::Binpack, &mut SpreadCounts::new());
        prop_assert_eq!(fits, matches!(decisions[0], Decision::Place { .. }), "{:?}", decisions);
        if let Decision::Unschedulable { reason, .. } = &decisions[0] {
            let expected = format!("0/{} nodes available: ", nodes.len());
            prop_assert!(reason.starts_with(&expected), "{}", reason);
        }
    }

    #[test]
    fn the_fast_path_decides_as_the_full_path(nodes in cluster(), pods in pending()) {
        let simple: Vec<Pending> = pods.iter().cloned().map(|mut p| {
            p.node_selector.clear();
            p.tolerations.clear();
            p.spread = None;
            p
        }).collect();
        // A toleration of a taint no node has changes nothing but the path taken.
        let full: Vec<Pending> = simple.iter().cloned().map(|mut p| {
            p.tolerations.push(Toleration { key: "no-such-taint".into(), value: None });
            p
        }).collect();
        // Also with the nodes not in name order (the index sorts them; ties go by name).
        let reversed: Vec<Node> = nodes.iter().rev().cloned().collect();
        for strategy in [flotilla_scheduler::Strategy::Binpack, flotilla_scheduler::Strategy::Spread] {
            for nodes in [&nodes, &reversed] {
                let run = |pods: &[Pending]| schedule(&mut nodes.clone(), pods, strategy, &mut SpreadCounts::new());
                prop_assert_eq!(run(&simple), run(&full), "{:?}", strategy);
            }
        }
    }

    #[test]
    fn same_input_same_output(nodes in cluster(), pods in pending()) {
        let run = || schedule(&mut nodes.clone(), &pods, flotilla_scheduler::Strategy::Binpack, &mut SpreadCounts::new());
        prop_assert_eq!(run(), run());
    }
}

#[test]
fn strategies_pick_opposite_ends_and_explain_refusals() {
    let node = |name: &str, used: u64| Node {
        name: name.into(),
        allocatable: Resources {
            memory: 1 << 30,
            cpu: 1000,
        },
        allocated: Resources {
            memory: used << 20,
            cpu: 0,
        },
        ready: true,
        ..Node::default()
    };
    let pod = Pending {
        id: "p".into(),
        requests: Resources {
            memory: 64 << 20,
            cpu: 100,
        },
        ..Pending::default()
    };
    let mut nodes = vec![node("a", 100), node("b", 500)];
    let place = |nodes: &mut Vec<Node>, s| {
        schedule(
            nodes,
            std::slice::from_ref(&pod),
            s,
            &mut SpreadCounts::new(),
        )
    };
    assert_eq!(
        place(&mut nodes.clone(), flotilla_scheduler::Strategy::Binpack)[0],
        Decision::Place {
            id: "p".into(),
            node: "b".into()
        }
    );
    assert_eq!(
        place(&mut nodes, flotilla_scheduler::Strategy::Spread)[0],
        Decision::Place {
            id: "p".into(),
            node: "a".into()
        }
    );

    let big = Pending {
        id: "big".into(),
        requests: Resources {
            memory: 2 << 30,
            cpu: 1,
        },
        ..Pending::default()
    };
    let mut cluster = vec![node("a", 0), node("b", 0), node("c", 0)];
    cluster[2].labels.insert("x".into(), "y".into());
    let d = schedule(
        &mut cluster,
        &[Pending {
            node_selector: BTreeMap::from([("x".into(), "y".into())]),
            ..big.clone()
        }],
        flotilla_scheduler::Strategy::Binpack,
        &mut SpreadCounts::new(),
    );
    assert_eq!(
        d[0],
        Decision::Unschedulable {
            id: "big".into(),
            reason: "0/3 nodes available: 2 node selector mismatch, 1 insufficient memory".into()
        }
    );
}
