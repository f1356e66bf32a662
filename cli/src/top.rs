//! `flotilla top nodes|instances|workloads` (as `kubectl top`): CPU in
//! millicores and memory, from the nodes' metrics (read through the API,
//! `GET /apis/flotilla.dev/v1/nodes/{node}/metrics`, twice, a second apart:
//! CPU is the difference of the CPU-seconds counters over the interval).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Args, ValueEnum};
use flotilla_spec::quantity::format_memory_bytes;

/// How long CPU use is measured over.
const WINDOW: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum What {
    #[value(alias = "node", alias = "no")]
    Nodes,
    #[value(alias = "instance", alias = "inst")]
    Instances,
    #[value(alias = "workload", alias = "wl")]
    Workloads,
}

#[derive(Args)]
pub struct TopArgs {
    /// nodes, instances or workloads.
    what: What,
    /// Namespace (instances and workloads).
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
}

/// One instance, as a node's metrics show it.
#[derive(Debug, Clone, Default)]
struct Sample {
    namespace: String,
    workload: String,
    node: String,
    cpu_seconds: f64,
    memory_bytes: f64,
}

/// `name{k="v",…} value` lines of the metrics we read; others skipped.
fn parse(text: &str) -> (BTreeMap<String, Sample>, BTreeMap<String, f64>) {
    let mut instances: BTreeMap<String, Sample> = BTreeMap::new();
    let mut node = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let labels: BTreeMap<&str, &str> = labels
            .trim_end_matches('}')
            .split(',')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                Some((k, v.trim_matches('"')))
            })
            .collect();
        let label = |k: &str| labels.get(k).copied().unwrap_or_default().to_string();
        match name {
            "flotilla_instance_cpu_usage_seconds_total" | "flotilla_instance_memory_bytes" => {
                let key = format!("{}/{}", label("namespace"), label("instance"));
                let sample = instances.entry(key).or_insert_with(|| Sample {
                    namespace: label("namespace"),
                    workload: label("workload"),
                    node: label("node"),
                    ..Sample::default()
                });
                if name.ends_with("_total") {
                    sample.cpu_seconds = value;
                } else {
                    sample.memory_bytes = value;
                }
            }
            "flotilla_node_capacity_memory_bytes" | "flotilla_node_capacity_cpu_millicores" => {
                node.insert(name.to_string(), value);
            }
            _ => {}
        }
    }
    (instances, node)
}

fn millicores(cpu_seconds: f64, over: Duration) -> String {
    format!(
        "{:.0}m",
        (cpu_seconds / over.as_secs_f64() * 1000.0).max(0.0)
    )
}

fn memory(bytes: f64) -> String {
    format_memory_bytes(bytes.max(0.0) as u64)
}

/// Runs `flotilla top`.
pub async fn main(args: TopArgs) -> Result<()> {
    let client = crate::config::client()?;
    let nodes = client
        .list(&flotilla_client::collection_path("nodes", None), "")
        .await?;
    let names: Vec<String> = nodes
        .items
        .iter()
        .filter(|n| n["status"]["ready"].as_bool() == Some(true))
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let scrape = |node: String| {
        let client = client.clone();
        async move {
            let path = format!("/apis/flotilla.dev/v1/nodes/{node}/metrics");
            let text = client.get_text(&path).await;
            (node, text)
        }
    };
    let first = futures_util::future::join_all(names.iter().cloned().map(scrape)).await;
    let started = Instant::now();
    tokio::time::sleep(WINDOW).await;
    let second = futures_util::future::join_all(names.iter().cloned().map(scrape)).await;
    let over = started.elapsed();
    let mut rows = Vec::new();
    let mut unreachable = Vec::new();
    let mut per_node = Vec::new();
    let mut instances = Vec::new();
    for ((node, before), (_, after)) in first.into_iter().zip(second) {
        let (Ok(before), Ok(after)) = (before, after) else {
            unreachable.push(node);
            continue;
        };
        let (before, _) = parse(&before);
        let (after, capacity) = parse(&after);
        let (mut cpu, mut mem) = (0.0, 0.0);
        for (key, now) in after {
            // A counter that went back is a new instance under the name:
            // all it used is within the window.
            let since = before.get(&key).map_or(0.0, |b| b.cpu_seconds);
            let used = if now.cpu_seconds >= since {
                now.cpu_seconds - since
            } else {
                now.cpu_seconds
            };
            cpu += used;
            mem += now.memory_bytes;
            instances.push((key, now, used));
        }
        per_node.push((node, cpu, mem, capacity));
    }
    let in_scope = |s: &Sample| args.all_namespaces || s.namespace == args.namespace;
    let headers: Vec<&str> = match args.what {
        What::Nodes => {
            for (node, cpu, mem, capacity) in per_node {
                let cap_cpu = capacity
                    .get("flotilla_node_capacity_cpu_millicores")
                    .copied();
                let cap_mem = capacity.get("flotilla_node_capacity_memory_bytes").copied();
                let percent = |used: f64, cap: Option<f64>| match cap {
                    Some(cap) if cap > 0.0 => format!("{:.0}%", used / cap * 100.0),
                    _ => "<unknown>".into(),
                };
                let cpu_m = cpu / over.as_secs_f64() * 1000.0;
                rows.push(vec![
                    node,
                    millicores(cpu, over),
                    percent(cpu_m, cap_cpu),
                    memory(mem),
                    percent(mem, cap_mem),
                ]);
            }
            vec!["NAME", "CPU(cores)", "CPU%", "MEMORY", "MEMORY%"]
        }
        What::Instances => {
            for (key, sample, used) in instances.iter().filter(|(_, s, _)| in_scope(s)) {
                let name = key.split_once('/').map_or(key.as_str(), |(_, n)| n);
                let mut row = vec![
                    name.to_string(),
                    millicores(*used, over),
                    memory(sample.memory_bytes),
                    sample.node.clone(),
                ];
                if args.all_namespaces {
                    row.insert(0, sample.namespace.clone());
                }
                rows.push(row);
            }
            if args.all_namespaces {
                vec!["NAMESPACE", "NAME", "CPU(cores)", "MEMORY", "NODE"]
            } else {
                vec!["NAME", "CPU(cores)", "MEMORY", "NODE"]
            }
        }
        What::Workloads => {
            let mut sums: BTreeMap<(String, String), (f64, f64, usize)> = BTreeMap::new();
            for (_, sample, used) in instances.iter().filter(|(_, s, _)| in_scope(s)) {
                let sum = sums
                    .entry((sample.namespace.clone(), sample.workload.clone()))
                    .or_default();
                *sum = (sum.0 + used, sum.1 + sample.memory_bytes, sum.2 + 1);
            }
            for ((ns, workload), (cpu, mem, count)) in sums {
                let mut row = vec![
                    workload,
                    count.to_string(),
                    millicores(cpu, over),
                    memory(mem),
                ];
                if args.all_namespaces {
                    row.insert(0, ns);
                }
                rows.push(row);
            }
            if args.all_namespaces {
                vec!["NAMESPACE", "NAME", "INSTANCES", "CPU(cores)", "MEMORY"]
            } else {
                vec!["NAME", "INSTANCES", "CPU(cores)", "MEMORY"]
            }
        }
    };
    if rows.is_empty() {
        println!("No metrics yet (no instances running here, or no Ready node).");
    } else {
        print!("{}", crate::get::table(&headers, rows));
    }
    for node in unreachable {
        eprintln!("warning: node {node}'s metrics could not be read (is its agent reachable from the control plane?)");
    }
    Ok(())
}
