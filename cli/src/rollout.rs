//! `rollout`: follow and steer a workload's rollout, as `kubectl rollout`
//! does a Deployment's — `status`, `pause`, `resume`, `restart`,
//! `history`, `undo` — and `promote` a canary, as Argo Rollouts' plugin.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::kinds::{Collection, Kind};
use flotilla_spec::strategy::PROMOTE_ANNOTATION;

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
    /// Bring back an earlier revision's template (the previous one, or
    /// --to-revision N), as a new rollout.
    Undo(UndoArgs),
    /// End the pause a canary is in (or, with --full, skip all its
    /// remaining steps).
    Promote(PromoteArgs),
}

#[derive(Args)]
struct PromoteArgs {
    #[command(flatten)]
    target: Target,
    /// Skip every remaining step: the new template takes every replica now.
    #[arg(long)]
    full: bool,
}

#[derive(Args)]
struct UndoArgs {
    #[command(flatten)]
    target: Target,
    /// The revision to go back to (default: the one before the current).
    #[arg(long)]
    to_revision: Option<u64>,
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
                if Kind::parse(kind)? != Kind::Workload {
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
            Kind::Workload.collection(Some(&self.namespace)),
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
        RolloutCommand::Undo(args) => undo(&args).await,
        RolloutCommand::Promote(args) => promote(&args).await,
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
    let wanted = if spec["placement"]["everyNode"] == true {
        count(&status["desiredReplicas"])
    } else {
        spec["replicas"].as_u64().unwrap_or(1)
    };
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
    if [
        "ProgressDeadlineExceeded",
        "RolledBack",
        "CanaryAnalysisFailed",
    ]
    .contains(&progressing["reason"].as_str().unwrap_or_default())
    {
        return Progress::Failed(
            progressing["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    let (updated, total, available) = (
        count(&status["updatedReplicas"]),
        count(&status["replicas"]),
        count(&status["availableReplicas"]),
    );
    let done = updated >= wanted && total <= updated && available >= updated;
    if spec["paused"] == true && !done {
        return Progress::Failed(format!(
            "workload {name:?} is paused: `flotilla rollout resume workload/{name}` continues it"
        ));
    }
    let canary = &status["canary"];
    if !canary.is_null() {
        let steps = spec["strategy"]["canary"]["steps"]
            .as_array()
            .map_or(0, Vec::len);
        let step = count(&canary["step"]);
        let mut line = format!(
            "Waiting for workload {name:?} canary: step {} of {steps}, weight {}%, {updated} canary replicas",
            (step + 1).min(steps as u64),
            count(&canary["weight"]),
        );
        if progressing["reason"] == "CanaryPaused" {
            line.push_str(&format!(
                "; paused: `flotilla rollout promote workload/{name}` continues it"
            ));
        }
        return Progress::Waiting(line);
    }
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

/// The workload and its revisions, oldest first (the workload must exist:
/// an unknown name is an error, not an empty list).
async fn revisions(
    client: &flotilla_client::Client,
    target: &Target,
) -> Result<(Value, Vec<Value>)> {
    let name = target.name()?;
    let workload = client.get(&target.path()?).await?;
    let selector = format!(
        "labelSelector={}",
        percent_encode(&format!("flotilla.dev/workload={name}"))
    );
    let mut revisions = client
        .list(
            &Kind::Revision.collection(Some(&target.namespace)),
            &selector,
        )
        .await?
        .items;
    revisions.sort_by_key(|r| r["spec"]["revision"].as_u64().unwrap_or(0));
    Ok((workload, revisions))
}

async fn history(target: &Target) -> Result<()> {
    let client = crate::config::client()?;
    let name = target.name()?;
    let (_, revisions) = revisions(&client, target).await?;
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
    println!(
        "{}",
        crate::get::table(&["REVISION", "CHANGE", "CREATED"], rows)
    );
    Ok(())
}

/// Fields of a revision's template that are not part of it (how a rollout
/// proceeds, how many replicas): an undo leaves them as they are.
const NOT_TEMPLATE: [&str; 8] = [
    "replicas",
    "strategy",
    "progressDeadlineSeconds",
    "minReadySeconds",
    "paused",
    "revisionHistoryLimit",
    "imagePullSecrets",
    "persistentVolumeReclaimAfter",
];

async fn undo(args: &UndoArgs) -> Result<()> {
    let client = crate::config::client()?;
    let target = &args.target;
    let name = target.name()?;
    let (workload, revisions) = revisions(&client, target).await?;
    let number = |r: &Value| r["spec"]["revision"].as_u64().unwrap_or(0);
    let current = workload["status"]["updateRevision"]
        .as_u64()
        .or_else(|| revisions.last().map(number))
        .unwrap_or(0);
    let chosen = match args.to_revision {
        Some(wanted) => revisions
            .iter()
            .find(|r| number(r) == wanted)
            .with_context(|| {
                format!("workload/{name} has no revision {wanted} (`flotilla rollout history workload/{name}` lists them)")
            })?,
        None => revisions
            .iter()
            .rev()
            .find(|r| number(r) < current)
            .with_context(|| {
                format!("workload/{name} has no revision before {current} to go back to")
            })?,
    };
    if number(chosen) == current {
        println!("workload.flotilla.dev/{name} is at revision {current} already: nothing to undo");
        return Ok(());
    }
    // A merge patch that makes the template exactly the revision's; what
    // is not template (replicas, strategy…) is left as it is.
    let mut now = workload["spec"].clone();
    let mut then = chosen["spec"]["template"].clone();
    for key in NOT_TEMPLATE {
        for spec in [&mut now, &mut then] {
            if let Some(fields) = spec.as_object_mut() {
                fields.remove(key);
            }
        }
    }
    // Only onto the version read: a concurrent change is a 409, not merged.
    let patch = json!({
        "metadata": {"resourceVersion": workload["metadata"]["resourceVersion"]},
        "spec": replacing(&now, &then),
    });
    client.merge_patch(&target.path()?, &patch).await?;
    println!(
        "workload.flotilla.dev/{name} rolled back to revision {}",
        number(chosen)
    );
    Ok(())
}

/// Asks the controller to end the canary's current pause (or all its
/// steps): an annotation naming the canary's template and step, so it
/// acts once, on that canary only.
async fn promote(args: &PromoteArgs) -> Result<()> {
    let client = crate::config::client()?;
    let target = &args.target;
    let name = target.name()?;
    let workload = client.get(&target.path()?).await?;
    let canary = &workload["status"]["canary"];
    let revision = workload["status"]["updateRevision"].as_u64().unwrap_or(0);
    // A canary of another template is one being retired (rolled back).
    if canary["hash"].is_null() || canary["hash"] != workload["status"]["templateHash"] {
        bail!("workload/{name} has no canary under way: nothing to promote (`flotilla rollout status workload/{name}` shows where it stands)");
    }
    let step = if args.full {
        "full".to_string()
    } else {
        canary["step"].as_u64().unwrap_or(0).to_string()
    };
    let patch =
        json!({"metadata": {"annotations": {PROMOTE_ANNOTATION: format!("{revision}/{step}")}}});
    client.merge_patch(&target.path()?, &patch).await?;
    let what = if args.full {
        "promoted: every remaining step skipped"
    } else {
        "promoted: its current pause ends"
    };
    println!("workload.flotilla.dev/{name} {what}");
    Ok(())
}

/// The JSON merge patch (RFC 7386) that turns `now` into exactly `then`:
/// fields `then` lacks are set to null, at every depth.
fn replacing(now: &Value, then: &Value) -> Value {
    match (now, then) {
        (Value::Object(now), Value::Object(then)) => {
            let mut patch = serde_json::Map::new();
            for key in now.keys().filter(|k| !then.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            for (key, value) in then {
                let before = now.get(key).unwrap_or(&Value::Null);
                if before != value {
                    patch.insert(key.clone(), replacing(before, value));
                }
            }
            Value::Object(patch)
        }
        _ => then.clone(),
    }
}

fn percent_encode(text: &str) -> String {
    text.replace('=', "%3D").replace('/', "%2F")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_undo_patch_replaces_exactly() {
        let now = json!({"module": {"sha256": "b", "source": "file:x"}, "args": ["2"], "probes": {"x": 1}, "env": []});
        let then = json!({"module": {"sha256": "a"}, "args": ["1"], "env": []});
        assert_eq!(
            replacing(&now, &then),
            json!({"module": {"sha256": "a", "source": null}, "args": ["1"], "probes": null})
        );
    }
}
