//! `rollout`: follow and steer a workload's rollout, as `kubectl rollout`
//! does a Deployment's — `status`, `pause`, `resume`, `restart`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::kinds::CliKind;

#[derive(Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    command: RolloutCommand,
}

#[derive(Subcommand)]
enum RolloutCommand {
    /// Follow a rollout until it finishes (exit 0) or fails (exit 1).
    Status(Target),
    /// Stop a rollout where it is: template changes wait until resume.
    Pause(Target),
    /// Let a paused rollout continue.
    Resume(Target),
    /// Replace every instance, as a rollout, with the template unchanged.
    Restart(Target),
    /// List the workload's revisions, oldest first, with what each changed.
    History(Target),
}

#[derive(Args)]
struct Target {
    /// `workload/NAME` (or `NAME`).
    workload: String,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// `status`: give up after this long (e.g. 5m; default: wait as long as
    /// the rollout's progress deadline allows).
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
}

fn parse_duration(t: &str) -> Result<Duration, String> {
    flotilla_spec::parse_duration(t).map_err(|e| e.to_string())
}

impl Target {
    fn name(&self) -> Result<&str> {
        let name = match self.workload.split_once('/') {
            Some((kind, name)) => {
                if CliKind::parse(kind)? != CliKind::Workload {
                    bail!("rollouts are of workloads: use workload/NAME");
                }
                name
            }
            None => self.workload.as_str(),
        };
        if name.is_empty() {
            bail!("name a workload: workload/NAME");
        }
        Ok(name)
    }

    fn path(&self) -> Result<String> {
        Ok(format!(
            "{}/{}",
            CliKind::Workload.collection(Some(&self.namespace)),
            self.name()?
        ))
    }
}

pub async fn main(args: RolloutArgs) -> Result<()> {
    match args.command {
        RolloutCommand::Status(target) => status(&target).await,
        RolloutCommand::Pause(target) => {
            patch(&target, json!({"spec": {"paused": true}}), "paused").await
        }
        RolloutCommand::Resume(target) => {
            patch(&target, json!({"spec": {"paused": false}}), "resumed").await
        }
        RolloutCommand::History(target) => history(&target).await,
        RolloutCommand::Restart(target) => {
            let now = flotilla_spec::meta::now_rfc3339_millis();
            patch(&target, json!({"spec": {"restartedAt": now}}), "restarted").await
        }
    }
}

async fn patch(target: &Target, patch: Value, done: &str) -> Result<()> {
    let client = crate::config::client()?;
    client.merge_patch(&target.path()?, &patch).await?;
    println!("workload.flotilla.dev/{} {done}", target.name()?);
    Ok(())
}

/// Where a rollout stands, from the workload's status.
enum Progress {
    /// Still moving; the line to show.
    Waiting(String),
    /// Every instance is new and available.
    Done,
    /// It cannot finish; why.
    Failed(String),
}

fn progress(workload: &Value) -> Progress {
    let name = workload["metadata"]["name"].as_str().unwrap_or_default();
    let spec = &workload["spec"];
    let status = &workload["status"];
    let count = |v: &Value| v.as_u64().unwrap_or(0);
    let wanted = spec["replicas"].as_u64().unwrap_or(1);
    if count(&status["observedGeneration"]) < count(&workload["metadata"]["generation"]) {
        return Progress::Waiting(format!(
            "Waiting for workload {name:?} spec update to be observed..."
        ));
    }
    let progressing = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Progressing"))
        .cloned()
        .unwrap_or_default();
    if progressing["reason"] == "ProgressDeadlineExceeded" {
        return Progress::Failed(
            progressing["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    if spec["paused"] == true {
        return Progress::Failed(format!(
            "workload {name:?} is paused: `flotilla rollout resume workload/{name}` continues it"
        ));
    }
    let (updated, total, available) = (
        count(&status["updatedReplicas"]),
        count(&status["replicas"]),
        count(&status["availableReplicas"]),
    );
    if updated < wanted {
        Progress::Waiting(format!(
            "Waiting for workload {name:?} rollout to finish: {updated} out of {wanted} new replicas have been updated..."
        ))
    } else if total > updated {
        Progress::Waiting(format!(
            "Waiting for workload {name:?} rollout to finish: {} old replicas are pending termination...",
            total - updated
        ))
    } else if available < updated {
        Progress::Waiting(format!(
            "Waiting for workload {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        ))
    } else {
        Progress::Done
    }
}

async fn status(target: &Target) -> Result<()> {
    let client = crate::config::client()?;
    let path = target.path()?;
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let workload = client.get(&path).await.with_context(|| {
            format!("cannot read workload {}", target.name().unwrap_or_default())
        })?;
        match progress(&workload) {
            Progress::Done => {
                println!("workload {:?} successfully rolled out", target.name()?);
                return Ok(());
            }
            Progress::Failed(why) => bail!("rollout of workload/{} failed: {why}", target.name()?),
            Progress::Waiting(line) => {
                if line != last {
                    println!("{line}");
                    last = line;
                }
            }
        }
        if target.timeout.is_some_and(|t| started.elapsed() > t) {
            bail!(
                "timed out after {:?} waiting for the rollout of workload/{}",
                started.elapsed(),
                target.name()?
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn history(target: &Target) -> Result<()> {
    let client = crate::config::client()?;
    let name = target.name()?;
    // The workload must exist: an unknown name is an error, not an empty list.
    client.get(&target.path()?).await?;
    let selector = format!(
        "labelSelector={}",
        percent_encode(&format!("flotilla.dev/workload={name}"))
    );
    let mut revisions = client
        .list(
            &CliKind::Revision.collection(Some(&target.namespace)),
            &selector,
        )
        .await?
        .items;
    revisions.sort_by_key(|r| r["spec"]["revision"].as_u64().unwrap_or(0));
    println!("workload.flotilla.dev/{name}");
    let rows = revisions
        .iter()
        .map(|r| {
            vec![
                r["spec"]["revision"].to_string(),
                crate::get::change(&r["spec"]),
                crate::get::age(&r["metadata"]["creationTimestamp"]),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::get::table(&["REVISION", "CHANGE", "CREATED"], rows)
    );
    Ok(())
}

fn percent_encode(text: &str) -> String {
    text.replace('=', "%3D").replace('/', "%2F")
}
