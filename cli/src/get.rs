//! `get`, `describe`, `delete`, `events`: kubectl-like views of the API.

use std::collections::HashMap;
use std::time::SystemTime;

use anyhow::Result;
use clap::{Args, ValueEnum};
use comfy_table::{presets::NOTHING, Table};
use flotilla_spec::instance::Instance;
use flotilla_spec::meta::parse_rfc3339;
use flotilla_spec::quantity::{format_memory_bytes, format_memory_in_unit_of};
use serde_json::Value;

use crate::kinds::{Collection, Kind};

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Wide,
    Yaml,
    Json,
}

#[derive(Args)]
pub struct GetArgs {
    #[arg(help = crate::kinds::help())]
    kind: String,
    /// One object's name (default: all).
    name: Option<String>,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// All namespaces.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long)]
    output: Option<Format>,
    /// With -o yaml|json: show Secrets' values (they are hidden otherwise).
    #[arg(long)]
    show_values: bool,
}

#[derive(Args)]
pub struct NameArgs {
    #[arg(help = crate::kinds::help())]
    kind: String,
    /// The object's name.
    name: String,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
}

#[derive(Args)]
pub struct EventsArgs {
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// All namespaces.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
}

/// "5s", "3m", "2h", "4d", like kubectl's AGE.
pub fn age(timestamp: &Value) -> String {
    let Some(t) = timestamp.as_str().and_then(parse_rfc3339) else {
        return "<unknown>".into();
    };
    let s = SystemTime::now()
        .duration_since(t)
        .unwrap_or_default()
        .as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".into(),
        other => other.to_string(),
    }
}

/// A Revision as `get revisions` shows it.
fn revision_row(r: &Value) -> Vec<String> {
    let s = &r["spec"];
    vec![
        text(&r["metadata"]["name"]),
        text(&s["workload"]),
        text(&s["revision"]),
        change(s),
        age(&r["metadata"]["creationTimestamp"]),
    ]
}

/// The columns of [`token_row`].
pub const TOKEN_COLUMNS: &[&str] = &[
    "ID",
    "ROLE",
    "NAMESPACE",
    "EXPIRES",
    "USES",
    "AGE",
    "DESCRIPTION",
];

/// A Token as `get tokens` and `token list` show it (never its secret:
/// the API has only its hash).
pub fn token_row(t: &Value) -> Vec<String> {
    let spec = &t["spec"];
    let expires = match spec["expires"].as_str() {
        Some(e) if !e.is_empty() => e.to_string(),
        _ => "never".to_string(),
    };
    vec![
        text(&t["metadata"]["name"]),
        text(&spec["role"]),
        match spec["namespace"].as_str() {
            Some(ns) if !ns.is_empty() => ns.to_string(),
            _ => "<cluster>".to_string(),
        },
        expires,
        // As used/limit, like quotas; a join token without a limit shows
        // its count alone, other tokens nothing.
        match (spec["uses"].as_u64(), t["status"]["used"].as_u64()) {
            (Some(uses), used) => format!("{}/{uses}", used.unwrap_or(0)),
            (None, Some(used)) => used.to_string(),
            (None, None) => "-".into(),
        },
        age(&t["metadata"]["creationTimestamp"]),
        spec["description"].as_str().unwrap_or_default().to_string(),
    ]
}

/// What a revision changed, as `rollout history` and `get revisions` show it.
pub fn change(spec: &Value) -> String {
    match spec["change"].as_str() {
        Some(change) if !change.is_empty() => change.to_string(),
        _ if spec["revision"] == 1 => "(first)".into(),
        _ => "(unchanged template)".into(),
    }
}

pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(NOTHING)
        .set_header(headers.iter().map(|h| h.to_string()));
    for row in rows {
        t.add_row(row);
    }
    // comfy-table pads the first column with one space; kubectl does not.
    t.to_string()
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the instances bound to each node request: (memory, cpu, count).
type Allocated = HashMap<String, (u64, u64, usize)>;

/// Sums the requests of every bound instance, per node.
async fn allocated(client: &flotilla_client::Client) -> Result<Allocated> {
    let mut sums = Allocated::new();
    for item in client
        .list(&Kind::Instance.collection(None), "")
        .await?
        .items
    {
        let Ok(instance) = serde_json::from_value::<Instance>(item) else {
            continue;
        };
        if instance.spec.node_name.is_empty() {
            continue;
        }
        let (memory, cpu) = instance.spec.template.resources.requests.memory_and_cpu();
        let sum = sums.entry(instance.spec.node_name).or_default();
        sum.0 += memory;
        sum.1 += cpu;
        sum.2 += 1;
    }
    Ok(sums)
}

fn rows(
    kind: Kind,
    items: &[Value],
    wide: bool,
    all_ns: bool,
    allocated: &Allocated,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let (mut headers, mut rows): (Vec<&str>, Vec<Vec<String>>) = match kind {
        Kind::Workload => (
            {
                let mut headers = vec![
                    "NAME",
                    "DESIRED",
                    "CURRENT",
                    "READY",
                    "UP-TO-DATE",
                    "AVAILABLE",
                    "AGE",
                ];
                if wide {
                    headers.extend(["MODULE", "LIMITS"]);
                }
                headers
            },
            items
                .iter()
                .map(|w| {
                    let count = |field: &str| w["status"][field].as_u64().unwrap_or(0).to_string();
                    // An every-node workload wants what its nodes say; any
                    // other its replicas (also before its first status).
                    let desired = if w["spec"]["placement"]["everyNode"] == true {
                        w["status"]["desiredReplicas"].as_u64()
                    } else {
                        w["spec"]["replicas"].as_u64()
                    }
                    .map_or_else(|| "-".to_string(), |n| n.to_string());
                    let mut row = vec![
                        text(&w["metadata"]["name"]),
                        desired,
                        count("replicas"),
                        count("readyReplicas"),
                        count("updatedReplicas"),
                        count("availableReplicas"),
                        age(&w["metadata"]["creationTimestamp"]),
                    ];
                    if wide {
                        let digest = w["spec"]["module"]["sha256"].as_str().unwrap_or_default();
                        row.push(format!("sha256:{}", &digest[..digest.len().min(12)]));
                        let l = &w["spec"]["resources"]["limits"];
                        row.push(format!(
                            "memory={} cpu={}",
                            text(&l["memory"]),
                            text(&l["cpu"])
                        ));
                    }
                    row
                })
                .collect(),
        ),
        Kind::Instance => (
            if wide {
                vec![
                    "NAME",
                    "READY",
                    "STATUS",
                    "RESTARTS",
                    "AGE",
                    "NODE",
                    "LAST EXIT",
                ]
            } else {
                vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
            },
            items
                .iter()
                .map(|i| {
                    let s = &i["status"];
                    let mut row = vec![
                        text(&i["metadata"]["name"]),
                        format!("{}/1", u8::from(s["ready"].as_bool().unwrap_or(false))),
                        s["phase"].as_str().unwrap_or("Pending").to_string(),
                        s["restarts"].as_u64().unwrap_or(0).to_string(),
                        age(&i["metadata"]["creationTimestamp"]),
                    ];
                    if wide {
                        row.push(
                            i["spec"]["nodeName"]
                                .as_str()
                                .unwrap_or("<none>")
                                .to_string(),
                        );
                        row.push(
                            s["lastTermination"]["reason"]
                                .as_str()
                                .unwrap_or("<none>")
                                .to_string(),
                        );
                    }
                    row
                })
                .collect(),
        ),
        Kind::Node => (
            vec![
                "NAME",
                "STATUS",
                "CPU (ALLOC/CAP)",
                "MEMORY (ALLOC/CAP)",
                "INSTANCES",
                "AGE",
                "VERSION",
            ],
            items
                .iter()
                .map(|n| {
                    let s = &n["status"];
                    // Kept by the node-lifecycle controller (lease expired → false).
                    let ready = s["ready"].as_bool().unwrap_or(false);
                    let name = text(&n["metadata"]["name"]);
                    let (memory, cpu, count) = allocated.get(&name).copied().unwrap_or_default();
                    let mut status = vec![if ready { "Ready" } else { "NotReady" }];
                    if n["spec"]["unschedulable"].as_bool() == Some(true) {
                        status.push("SchedulingDisabled");
                    }
                    if s["diskPressure"].as_bool() == Some(true) {
                        status.push("DiskPressure");
                    }
                    vec![
                        name,
                        status.join(","),
                        format!("{cpu}m/{}m", s["capacityCpuMillis"].as_u64().unwrap_or(0)),
                        {
                            let capacity = s["capacityMemoryBytes"].as_u64().unwrap_or(0);
                            format_memory_in_unit_of(&[memory, capacity], capacity).join("/")
                        },
                        match s["capacityInstances"].as_u64() {
                            Some(capacity) => format!("{count}/{capacity}"),
                            None => count.to_string(),
                        },
                        age(&n["metadata"]["creationTimestamp"]),
                        text(&s["agentVersion"]),
                    ]
                })
                .collect(),
        ),
        Kind::Token => (
            TOKEN_COLUMNS.to_vec(),
            items.iter().map(token_row).collect(),
        ),
        Kind::Role => (
            vec!["NAME", "RULES", "AGE"],
            items
                .iter()
                .map(|r| {
                    let rules = r["spec"]["rules"]
                        .as_array()
                        .map_or(String::new(), |rules| {
                            rules
                                .iter()
                                .map(|rule| {
                                    let join = |v: &Value| {
                                        v.as_array()
                                            .into_iter()
                                            .flatten()
                                            .filter_map(Value::as_str)
                                            .collect::<Vec<_>>()
                                            .join(",")
                                    };
                                    format!("{} {}", join(&rule["verbs"]), join(&rule["resources"]))
                                })
                                .collect::<Vec<_>>()
                                .join("; ")
                        });
                    vec![
                        text(&r["metadata"]["name"]),
                        rules,
                        age(&r["metadata"]["creationTimestamp"]),
                    ]
                })
                .collect(),
        ),
        Kind::RoleBinding => (
            vec!["NAME", "ROLE", "TOKENS", "AGE"],
            items
                .iter()
                .map(|b| {
                    let spec = &b["spec"];
                    let tokens = spec["subjects"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s["name"].as_str())
                        .collect::<Vec<_>>()
                        .join(",");
                    vec![
                        text(&b["metadata"]["name"]),
                        format!(
                            "{}/{}",
                            text(&spec["roleRef"]["kind"]),
                            text(&spec["roleRef"]["name"])
                        ),
                        tokens,
                        age(&b["metadata"]["creationTimestamp"]),
                    ]
                })
                .collect(),
        ),
        // As kubectl: each capped resource as used/hard, requests and
        // counts apart from limits.
        Kind::ResourceQuota => (
            vec!["NAME", "AGE", "REQUEST", "LIMIT"],
            items
                .iter()
                .map(|q| {
                    let column = |limits: bool| {
                        q["spec"]["hard"]
                            .as_object()
                            .into_iter()
                            .flatten()
                            .filter(|(resource, _)| resource.starts_with("limits.") == limits)
                            .map(|(resource, hard)| {
                                let status = &q["status"];
                                let used = status["used"][resource].as_str().unwrap_or("-");
                                let hard = status["hard"][resource]
                                    .as_str()
                                    .or(hard.as_str())
                                    .unwrap_or("-");
                                format!("{resource}: {used}/{hard}")
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    vec![
                        text(&q["metadata"]["name"]),
                        age(&q["metadata"]["creationTimestamp"]),
                        column(false),
                        column(true),
                    ]
                })
                .collect(),
        ),
        // As kubectl's jobs.
        Kind::Job => (
            vec!["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
            items
                .iter()
                .map(|j| {
                    let s = &j["status"];
                    let finished = s["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|c| c["status"] == "True")
                        .and_then(|c| c["type"].as_str());
                    let state = match finished {
                        Some("Complete") => "Complete",
                        Some("Failed") => "Failed",
                        _ => "Running",
                    };
                    let start = s["startTime"].as_str().and_then(parse_rfc3339);
                    let end = s["completionTime"]
                        .as_str()
                        .and_then(parse_rfc3339)
                        .unwrap_or_else(SystemTime::now);
                    let duration = start.map_or_else(
                        || "-".to_string(),
                        |start| {
                            let secs = end.duration_since(start).unwrap_or_default().as_secs();
                            if secs < 120 {
                                format!("{secs}s")
                            } else {
                                format!("{}m", secs / 60)
                            }
                        },
                    );
                    vec![
                        text(&j["metadata"]["name"]),
                        state.to_string(),
                        format!(
                            "{}/{}",
                            s["succeeded"].as_u64().unwrap_or(0),
                            j["spec"]["completions"].as_u64().unwrap_or(1)
                        ),
                        duration,
                        age(&j["metadata"]["creationTimestamp"]),
                    ]
                })
                .collect(),
        ),
        // As kubectl's poddisruptionbudgets.
        Kind::DisruptionBudget => (
            vec![
                "NAME",
                "MIN AVAILABLE",
                "MAX UNAVAILABLE",
                "ALLOWED DISRUPTIONS",
                "AGE",
            ],
            items
                .iter()
                .map(|b| {
                    let bound = |field: &str| match &b["spec"][field] {
                        Value::Null => "N/A".to_string(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    vec![
                        text(&b["metadata"]["name"]),
                        bound("minAvailable"),
                        bound("maxUnavailable"),
                        b["status"]["disruptionsAllowed"]
                            .as_u64()
                            .map_or_else(|| "-".to_string(), |n| n.to_string()),
                        age(&b["metadata"]["creationTimestamp"]),
                    ]
                })
                .collect(),
        ),
        Kind::NodeCertificate => (
            vec!["SERIAL", "NODE", "EXPIRES", "REVOKED", "AGE"],
            items
                .iter()
                .map(|c| {
                    let spec = &c["spec"];
                    vec![
                        text(&c["metadata"]["name"]),
                        text(&spec["node"]),
                        text(&spec["notAfter"]),
                        spec["revokedAt"].as_str().unwrap_or("-").to_string(),
                        age(&c["metadata"]["creationTimestamp"]),
                    ]
                })
                .collect(),
        ),
        Kind::LimitRange => (
            vec!["NAME", "LIMITS", "AGE"],
            items
                .iter()
                .map(|r| {
                    let limits = r["spec"]["limits"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|item| {
                            let kind = item["type"].as_str().unwrap_or("Instance");
                            let fields = ["min", "defaultRequest", "default", "max"]
                                .iter()
                                .filter_map(|field| {
                                    let amounts = item[*field].as_object()?;
                                    let amounts = amounts
                                        .iter()
                                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                                        .collect::<Vec<_>>()
                                        .join(",");
                                    Some(format!("{field} {amounts}"))
                                })
                                .collect::<Vec<_>>()
                                .join(" ");
                            format!("{kind}: {fields}")
                        })
                        .collect::<Vec<_>>()
                        .join("; ");
                    vec![
                        text(&r["metadata"]["name"]),
                        limits,
                        age(&r["metadata"]["creationTimestamp"]),
                    ]
                })
                .collect(),
        ),
        Kind::Revision => (
            vec!["NAME", "WORKLOAD", "REVISION", "CHANGE", "AGE"],
            items.iter().map(revision_row).collect(),
        ),
        Kind::ModulePolicy => (
            vec!["NAME", "NAMESPACES", "REQUIRE", "KEYS", "REGISTRIES", "AGE"],
            items
                .iter()
                .map(|p| {
                    let spec = &p["spec"];
                    let list = |v: &Value| {
                        v.as_array().map_or("<all>".to_string(), |a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                    };
                    vec![
                        text(&p["metadata"]["name"]),
                        list(&spec["namespaces"]),
                        spec["require"].as_str().unwrap_or("-").to_string(),
                        spec["keys"].as_array().map_or(0, Vec::len).to_string(),
                        list(&spec["registries"]),
                        age(&p["metadata"]["creationTimestamp"]),
                    ]
                })
                .collect(),
        ),
        Kind::ImportedModule => (
            vec!["NAME", "REFERENCE", "MANIFEST", "SIZE", "SIGNATURES", "AGE"],
            items
                .iter()
                .map(|m| {
                    let digest = text(&m["status"]["manifestDigest"]);
                    vec![
                        text(&m["metadata"]["name"]),
                        text(&m["spec"]["reference"]),
                        digest.chars().take(19).collect(),
                        format_memory_bytes(m["status"]["size"].as_u64().unwrap_or(0)),
                        m["spec"]["signatures"]
                            .as_array()
                            .map_or(0, Vec::len)
                            .to_string(),
                        age(&m["metadata"]["creationTimestamp"]),
                    ]
                })
                .collect(),
        ),
        Kind::Volume => (
            vec![
                "NAME", "WORKLOAD", "NODE", "SIZE", "USED", "FILES", "RECLAIM", "AGE",
            ],
            items
                .iter()
                .map(|v| {
                    let (spec, status) = (&v["spec"], &v["status"]);
                    vec![
                        text(&v["metadata"]["name"]),
                        text(&spec["workload"]),
                        text(&spec["nodeName"]),
                        text(&spec["size"]),
                        status["usedBytes"]
                            .as_u64()
                            .map_or("<unknown>".into(), format_memory_bytes),
                        status["files"]
                            .as_u64()
                            .map_or("<unknown>".into(), |n| n.to_string()),
                        spec["reclaimPolicy"]
                            .as_str()
                            .unwrap_or("Delete")
                            .to_string(),
                        age(&v["metadata"]["creationTimestamp"]),
                    ]
                })
                .collect(),
        ),
        Kind::Config => (
            vec!["NAME", "DATA", "AGE"],
            items
                .iter()
                .map(|c| {
                    let count = |field: &str| c[field].as_object().map_or(0, |m| m.len());
                    vec![
                        text(&c["metadata"]["name"]),
                        (count("data") + count("binaryData")).to_string(),
                        age(&c["metadata"]["creationTimestamp"]),
                    ]
                })
                .collect(),
        ),
        Kind::Secret => (
            vec!["NAME", "TYPE", "DATA", "AGE"],
            items
                .iter()
                .map(|s| {
                    vec![
                        text(&s["metadata"]["name"]),
                        text(&s["type"]),
                        s["data"].as_object().map_or(0, |m| m.len()).to_string(),
                        age(&s["metadata"]["creationTimestamp"]),
                    ]
                })
                .collect(),
        ),
        Kind::Event => {
            let mut sorted: Vec<&Value> = items.iter().collect();
            // The store revision orders events exactly; timestamps have 1 s resolution.
            sorted.sort_by_key(|e| {
                e["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            });
            (
                vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
                sorted
                    .iter()
                    .map(|e| {
                        let s = &e["spec"];
                        let seen = match s["count"].as_u64() {
                            // As kubectl describe: "5s (x12 over 2m)".
                            Some(count) if count > 1 => format!(
                                "{} (x{count} over {})",
                                age(&s["timestamp"]),
                                age(&s["firstTimestamp"])
                            ),
                            _ => age(&s["timestamp"]),
                        };
                        vec![
                            seen,
                            text(&s["type"]),
                            text(&s["reason"]),
                            format!(
                                "{}/{}",
                                text(&s["involvedObject"]["kind"]).to_lowercase(),
                                text(&s["involvedObject"]["name"])
                            ),
                            text(&s["message"])
                                .lines()
                                .next()
                                .unwrap_or_default()
                                .to_string(),
                        ]
                    })
                    .collect(),
            )
        }
    };
    if all_ns && kind.namespaced() {
        headers.insert(0, "NAMESPACE");
        let namespaces: Vec<String> = items
            .iter()
            .map(|o| text(&o["metadata"]["namespace"]))
            .collect();
        for (row, ns) in rows.iter_mut().zip(namespaces) {
            row.insert(0, ns);
        }
    }
    (headers, rows)
}

fn print_structured(value: &Value, format: Format) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        _ => print!("{}", serde_yaml_ng::to_string(value)?),
    }
    Ok(())
}

pub async fn get(args: GetArgs) -> Result<()> {
    let client = crate::config::client()?;
    let kind = Kind::parse(&args.kind)?;
    let ns = (!args.all_namespaces).then_some(args.namespace.as_str());
    let collection = kind.collection(ns);
    let items = match &args.name {
        Some(name) => vec![
            client
                .get(&format!(
                    "{}/{name}",
                    kind.collection(Some(&args.namespace))
                ))
                .await?,
        ],
        None => client.list(&collection, "").await?.items,
    };
    let items: Vec<Value> = if kind == Kind::Secret && !args.show_values {
        items.into_iter().map(hide_values).collect()
    } else {
        items
    };
    match args.output {
        Some(f @ (Format::Yaml | Format::Json)) => {
            let value = match &args.name {
                Some(_) => items.into_iter().next().unwrap_or_default(),
                None => {
                    serde_json::json!({"apiVersion": flotilla_spec::meta::API_VERSION, "kind": "List", "items": items})
                }
            };
            print_structured(&value, f)
        }
        other => {
            if items.is_empty() {
                let place = if kind.namespaced() && !args.all_namespaces {
                    format!(" in {} namespace", args.namespace)
                } else {
                    String::new()
                };
                eprintln!("No resources found{place}.");
                return Ok(());
            }
            let usage = if kind == Kind::Node {
                allocated(&client).await?
            } else {
                Allocated::new()
            };
            let (headers, rows) = rows(
                kind,
                &items,
                matches!(other, Some(Format::Wide)),
                args.all_namespaces,
                &usage,
            );
            println!("{}", table(&headers, rows));
            Ok(())
        }
    }
}

/// A Secret with each value replaced by its size: what `get` and
/// `describe` show unless asked for the values.
fn hide_values(mut secret: Value) -> Value {
    if let Some(data) = secret["data"].as_object_mut() {
        for value in data.values_mut() {
            let size = value
                .as_str()
                .and_then(flotilla_spec::config::base64_decode)
                .map_or(0, |b| b.len());
            *value = Value::String(format!("<{size} bytes>"));
        }
    }
    secret
}

pub async fn describe(args: NameArgs) -> Result<()> {
    let client = crate::config::client()?;
    let kind = Kind::parse(&args.kind)?;
    let object = client
        .get(&format!(
            "{}/{}",
            kind.collection(Some(&args.namespace)),
            args.name
        ))
        .await?;
    let object = if kind == Kind::Secret {
        hide_values(object)
    } else {
        object
    };
    let mut shown = object.clone();
    if let Some(meta) = shown["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    print!("{}", serde_yaml_ng::to_string(&shown)?);
    // Events about it (and, for a workload, about its instances).
    let events = client
        .list(&Kind::Event.collection(Some(&args.namespace)), "")
        .await?
        .items;
    let related: Vec<Value> = events
        .into_iter()
        .filter(|e| {
            let about = &e["spec"]["involvedObject"];
            let name = about["name"].as_str().unwrap_or_default();
            let about_kind = about["kind"].as_str().unwrap_or_default();
            (name == args.name && about_kind == kind.name())
                || (kind == Kind::Workload
                    && about_kind == "Instance"
                    && flotilla_spec::instance::is_named_for(&args.name, name))
        })
        .collect();
    println!("events:");
    if related.is_empty() {
        println!("  <none>");
    } else {
        let (headers, rows) = rows(Kind::Event, &related, false, false, &Allocated::new());
        for line in table(&headers, rows).lines() {
            println!("  {line}");
        }
    }
    Ok(())
}

pub async fn delete(args: NameArgs) -> Result<()> {
    let client = crate::config::client()?;
    let kind = Kind::parse(&args.kind)?;
    client
        .delete(&format!(
            "{}/{}",
            kind.collection(Some(&args.namespace)),
            args.name
        ))
        .await?;
    println!(
        "{}.flotilla.dev/{} deleted",
        kind.plural().trim_end_matches('s'),
        args.name
    );
    if kind == Kind::Node {
        println!("(its certificates are revoked: the machine rejoins only with a join token)");
    }
    Ok(())
}

pub async fn events(args: EventsArgs) -> Result<()> {
    get(GetArgs {
        kind: "events".into(),
        name: None,
        namespace: args.namespace,
        all_namespaces: args.all_namespaces,
        output: None,
        show_values: false,
    })
    .await
}
