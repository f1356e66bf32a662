//! `flotilla logs NAME [-f] [--previous] [--instance I]`: an instance's
//! output. NAME is an instance, or a workload (then its first instance, or
//! the one `--instance` names).

use std::io::Write;

use anyhow::{bail, Result};
use clap::Args;
use futures_util::StreamExt;

use crate::kinds::{Collection, Kind};

#[derive(Args)]
pub struct LogsArgs {
    /// A workload or instance name, or job/NAME (a Job's latest attempt).
    name: String,
    /// Keep streaming new output.
    #[arg(short = 'f', long)]
    follow: bool,
    /// The previous run's output.
    #[arg(short = 'p', long)]
    previous: bool,
    /// Which of the workload's instances.
    #[arg(long)]
    instance: Option<String>,
    /// With job/NAME: the latest attempt of this index (Indexed Jobs).
    #[arg(long)]
    index: Option<u32>,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
}

pub async fn main(args: LogsArgs) -> Result<()> {
    let client = crate::config::client()?;
    let instances = Kind::Instance.collection(Some(&args.namespace));
    let instance = match (&args.instance, args.name.strip_prefix("job/")) {
        (Some(i), _) => i.clone(),
        (None, Some(job)) => latest_attempt(&client, &instances, job, args.index).await?,
        (None, None) if args.index.is_some() => {
            bail!("--index is for Jobs: flotilla logs job/NAME --index N")
        }
        (None, None) => match client.get(&format!("{instances}/{}", args.name)).await {
            Ok(_) => args.name.clone(),
            Err(_) => {
                let selector = format!("labelSelector=flotilla.dev/workload={}", args.name);
                let mut names: Vec<String> = client
                    .list(&instances, &selector)
                    .await?
                    .items
                    .iter()
                    .filter_map(|i| i["metadata"]["name"].as_str().map(String::from))
                    .collect();
                names.sort();
                match names.len() {
                    0 => bail!(
                        "no instance or workload named {:?} has instances in namespace {:?}",
                        args.name,
                        args.namespace
                    ),
                    1 => names.remove(0),
                    n => {
                        eprintln!(
                            "Found {n} instances, using {} (pick one with --instance)",
                            names[0]
                        );
                        names.remove(0)
                    }
                }
            }
        },
    };
    let path = format!(
        "{instances}/{instance}/log?follow={}&previous={}",
        args.follow, args.previous
    );
    let mut stream = Box::pin(client.stream_text(&path).await?);
    let mut stdout = std::io::stdout();
    while let Some(chunk) = stream.next().await {
        stdout.write_all(&chunk?)?;
        stdout.flush()?;
    }
    Ok(())
}

/// The name of a Job's latest attempt (of `index`, when given).
async fn latest_attempt(
    client: &flotilla_client::Client,
    instances: &str,
    job: &str,
    index: Option<u32>,
) -> Result<String> {
    let mut selector = format!("labelSelector={}={job}", flotilla_spec::job::JOB_LABEL);
    if let Some(index) = index {
        selector.push_str(&format!(",{}={index}", flotilla_spec::job::JOB_INDEX_LABEL));
    }
    let attempts = client.list(instances, &selector).await?.items;
    attempts
        .iter()
        .max_by_key(|i| {
            (
                i["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                i["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .and_then(|i| i["metadata"]["name"].as_str().map(String::from))
        .ok_or_else(|| {
            let which = index.map_or_else(String::new, |n| format!(" of index {n}"));
            anyhow::anyhow!(
                "job {job} has no attempts{which} (yet, or any more: flotilla describe job {job})"
            )
        })
}
