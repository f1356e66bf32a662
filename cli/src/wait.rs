//! `flotilla wait KIND/NAME --for condition=TYPE [--timeout 60s]`: waits
//! until an object's condition is True (as `kubectl wait`): exit 0 when it
//! is, non-zero on the timeout — or at once when a Job finished the other
//! way (waiting for `Complete` on a Job that `Failed` can only time out).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::Value;

use crate::kinds::{Collection, Kind};

#[derive(Args)]
pub struct WaitArgs {
    /// What to wait for, as KIND/NAME (job/crunch, workload/web).
    target: String,
    /// The condition: condition=TYPE (Complete, Failed, Available…).
    #[arg(long = "for")]
    condition: String,
    /// How long to wait.
    #[arg(long, default_value = "30s", value_parser = parse_timeout)]
    timeout: Duration,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    flotilla_spec::parse_duration(text).map_err(|e| format!("{e} (e.g. 60s, 5m)"))
}

/// How often the object is read again.
const POLL: Duration = Duration::from_millis(250);

fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

pub async fn main(args: WaitArgs) -> Result<()> {
    let Some((kind, name)) = args.target.split_once('/') else {
        bail!(
            "{:?}: name the object as KIND/NAME, e.g. job/crunch",
            args.target
        );
    };
    let kind = Kind::parse(kind)?;
    let Some(wanted) = args.condition.strip_prefix("condition=") else {
        bail!(
            "--for {:?}: only --for condition=TYPE is supported (e.g. condition=Complete)",
            args.condition
        );
    };
    let client = crate::config::client()?;
    let path = format!("{}/{name}", kind.collection(Some(&args.namespace)));
    let label = format!("{}/{name}", kind.name().to_lowercase());
    let deadline = Instant::now() + args.timeout;
    loop {
        let object = client
            .get(&path)
            .await
            .with_context(|| format!("cannot read {label}"))?;
        if condition(&object, wanted).is_some_and(|c| c["status"] == "True") {
            println!("{label} condition met");
            return Ok(());
        }
        if kind == Kind::Job {
            let other = if wanted == "Complete" {
                "Failed"
            } else {
                "Complete"
            };
            if let Some(c) = condition(&object, other).filter(|c| c["status"] == "True") {
                bail!(
                    "{label} finished {other} ({}: {}), so it will never be {wanted}",
                    c["reason"].as_str().unwrap_or_default(),
                    c["message"].as_str().unwrap_or_default()
                );
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out after {:?} waiting for the condition {wanted} on {label}",
                args.timeout
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
