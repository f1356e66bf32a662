//! `cordon`, `uncordon` and `drain`: take a node out of scheduling, and
//! move its work elsewhere without breaking a service (as kubectl's).
//!
//! A drain cordons the node, then evicts its instances one at a time
//! through the eviction API, so every disruption budget is judged by the
//! server; after each eviction it waits until the workload is back to as
//! many ready instances as before (its replacement, placed elsewhere, is
//! ready) before the next one leaves. Every-node instances stay (they
//! belong to the node, as `--ignore-daemonsets`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use flotilla_client::{Client, ClientError};
use flotilla_spec::kinds::Kind;
use serde_json::{json, Value};

use crate::kinds::Collection;

#[derive(Args)]
pub struct CordonArgs {
    /// The node's name.
    node: String,
}

#[derive(Args)]
pub struct DrainArgs {
    /// The node's name.
    node: String,
    /// How long to wait for budgets and replacements before giving up
    /// (the node stays cordoned).
    #[arg(long, default_value = "60s", value_parser = parse_timeout)]
    timeout: Duration,
    /// When the timeout passes, delete the instances still there whatever
    /// their disruption budgets say (kubectl's `--disable-eviction`).
    #[arg(long)]
    force: bool,
}

/// How often a blocked eviction or a replacement is looked at again.
const POLL: Duration = Duration::from_millis(500);

fn parse_timeout(text: &str) -> Result<Duration, String> {
    flotilla_spec::parse_duration(text).map_err(|e| format!("{e} (e.g. 60s, 5m)"))
}

async fn set_unschedulable(client: &Client, node: &str, unschedulable: bool) -> Result<()> {
    let path = format!("{}/{node}", Kind::Node.collection(None));
    client
        .merge_patch(&path, &json!({"spec": {"unschedulable": unschedulable}}))
        .await
        .with_context(|| format!("cannot change node {node}"))?;
    Ok(())
}

pub async fn cordon(args: CordonArgs) -> Result<()> {
    let client = crate::config::client()?;
    set_unschedulable(&client, &args.node, true).await?;
    println!("node/{} cordoned", args.node);
    Ok(())
}

pub async fn uncordon(args: CordonArgs) -> Result<()> {
    let client = crate::config::client()?;
    set_unschedulable(&client, &args.node, false).await?;
    println!("node/{} uncordoned", args.node);
    Ok(())
}

/// An instance on the node being drained.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct OnNode {
    namespace: String,
    name: String,
    workload: String,
}

impl OnNode {
    fn path(&self) -> String {
        format!(
            "{}/{}",
            Kind::Instance.collection(Some(&self.namespace)),
            self.name
        )
    }
}

/// Every instance bound to `node`, but every-node ones (listed apart).
async fn instances_on(client: &Client, node: &str) -> Result<(Vec<OnNode>, Vec<OnNode>)> {
    let all = client.list(&Kind::Instance.collection(None), "").await?;
    let (mut movable, mut staying) = (Vec::new(), Vec::new());
    for item in all.items {
        if item["spec"]["nodeName"].as_str() != Some(node) {
            continue;
        }
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let on = OnNode {
            namespace: text(&item["metadata"]["namespace"]),
            name: text(&item["metadata"]["name"]),
            workload: text(&item["spec"]["workload"]),
        };
        if item["spec"]["template"]["placement"]["everyNode"] == true {
            staying.push(on);
        } else {
            movable.push(on);
        }
    }
    movable.sort();
    staying.sort();
    Ok((movable, staying))
}

/// Ready instances of a workload, on any node.
async fn ready_of(client: &Client, namespace: &str, workload: &str) -> Result<usize> {
    let list = client
        .list(&Kind::Instance.collection(Some(namespace)), "")
        .await?;
    Ok(list
        .items
        .iter()
        .filter(|i| i["spec"]["workload"] == workload && i["status"]["ready"] == true)
        .count())
}

/// How many instances the workload of `instance` asks for now (0 once it
/// is gone).
async fn wanted(client: &Client, instance: &OnNode) -> Result<usize> {
    let path = format!(
        "{}/{}",
        Kind::Workload.collection(Some(&instance.namespace)),
        instance.workload
    );
    match client.get(&path).await {
        Ok(w) => {
            let every_node = w["spec"]["placement"]["everyNode"] == true;
            let wanted = if every_node {
                w["status"]["desiredReplicas"].as_u64()
            } else {
                w["spec"]["replicas"].as_u64()
            };
            Ok(wanted.unwrap_or(1) as usize)
        }
        Err(e) if e.code() == Some(404) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

pub async fn drain(args: DrainArgs) -> Result<()> {
    let client = crate::config::client()?;
    let node = &args.node;
    set_unschedulable(&client, node, true).await?;
    println!("node/{node} cordoned");
    let deadline = Instant::now() + args.timeout;
    let mut said_staying = false;
    let mut last_blocker = String::new();
    loop {
        let (movable, staying) = instances_on(&client, node).await?;
        if !staying.is_empty() && !said_staying {
            said_staying = true;
            let names: Vec<String> = staying
                .iter()
                .map(|i| format!("{}/{}", i.namespace, i.name))
                .collect();
            println!("ignoring every-node instances: {}", names.join(", "));
        }
        if movable.is_empty() {
            println!("node/{node} drained");
            return Ok(());
        }
        if Instant::now() >= deadline {
            return give_up(&client, &args, &movable, &last_blocker).await;
        }
        let mut evicted = None;
        for instance in &movable {
            let before = ready_of(&client, &instance.namespace, &instance.workload).await?;
            println!("evicting instance {}/{}", instance.namespace, instance.name);
            match client
                .create(
                    &format!("{}/eviction", instance.path()),
                    &json!({"apiVersion": "v1", "kind": "Eviction"}),
                )
                .await
            {
                Ok(_) => {
                    println!("instance {}/{} evicted", instance.namespace, instance.name);
                    evicted = Some((instance.clone(), before));
                    break;
                }
                // Gone meanwhile (its workload deleted or scaled down).
                Err(e) if e.code() == Some(404) => {}
                Err(ClientError::Api {
                    code: 429, message, ..
                }) => {
                    if message != last_blocker {
                        eprintln!("{message}");
                        last_blocker = message;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let Some((instance, before)) = evicted else {
            tokio::time::sleep(POLL).await;
            continue;
        };
        // The next one leaves once this one's replacement is ready (or its
        // workload no longer wants one: scaled down or deleted).
        while ready_of(&client, &instance.namespace, &instance.workload).await?
            < before.min(wanted(&client, &instance).await?)
        {
            if Instant::now() >= deadline {
                last_blocker = format!(
                    "the replacement of instance {}/{} (workload {}) is not ready: see flotilla describe workload {} -n {}",
                    instance.namespace, instance.name, instance.workload, instance.workload, instance.namespace
                );
                break;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The timeout passed with `movable` still on the node: an error naming
/// why, or with `--force`, their deletion.
async fn give_up(
    client: &Client,
    args: &DrainArgs,
    movable: &[OnNode],
    last_blocker: &str,
) -> Result<()> {
    let node = &args.node;
    let names: BTreeSet<String> = movable
        .iter()
        .map(|i| format!("{}/{}", i.namespace, i.name))
        .collect();
    let names = names.into_iter().collect::<Vec<_>>().join(", ");
    let why = if last_blocker.is_empty() {
        String::new()
    } else {
        format!(": {last_blocker}")
    };
    if !args.force {
        bail!(
            "drain of node {node} timed out after {:?} with {} instance(s) left ({names}){why}. The node stays cordoned: run drain again (a longer --timeout), or add --force to delete them whatever their disruption budgets say",
            args.timeout,
            movable.len()
        );
    }
    for instance in movable {
        match client.delete(&instance.path()).await {
            Ok(_) => println!(
                "instance {}/{} deleted (--force)",
                instance.namespace, instance.name
            ),
            Err(e) if e.code() == Some(404) => {}
            Err(e) => return Err(e.into()),
        }
    }
    println!("node/{node} drained (--force{why})");
    Ok(())
}
