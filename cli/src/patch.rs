//! `patch` and `scale`: change fields of an object in place, with a JSON
//! merge patch (`kubectl patch --type merge`), without sending the whole object.

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Value};

use crate::kinds::{Collection, Kind};

#[derive(Args)]
pub struct PatchArgs {
    #[arg(help = crate::kinds::help())]
    kind: String,
    /// The object's name.
    name: String,
    /// The merge patch, as JSON or YAML, e.g. '{"spec": {"replicas": 5}}'.
    #[arg(short = 'p', long)]
    patch: String,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
}

#[derive(Args)]
pub struct ScaleArgs {
    /// `workload` (or `workloads`).
    kind: String,
    /// The workload's name.
    name: String,
    /// How many replicas.
    #[arg(long)]
    replicas: u32,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
}

async fn send(kind: &str, name: &str, namespace: &str, patch: &Value) -> Result<()> {
    let client = crate::config::client()?;
    let kind = Kind::parse(kind)?;
    let path = format!("{}/{name}", kind.collection(Some(namespace)));
    client.merge_patch(&path, patch).await?;
    println!(
        "{}.flotilla.dev/{name} patched",
        kind.plural().trim_end_matches('s')
    );
    Ok(())
}

pub async fn patch(args: PatchArgs) -> Result<()> {
    // YAML is a superset of JSON: both forms are accepted.
    let patch: Value = serde_yaml_ng::from_str(&args.patch)
        .with_context(|| format!("-p {:?} is not a JSON or YAML object", args.patch))?;
    if !patch.is_object() {
        anyhow::bail!("-p must be an object, e.g. '{{\"spec\": {{\"replicas\": 5}}}}'");
    }
    send(&args.kind, &args.name, &args.namespace, &patch).await
}

pub async fn scale(args: ScaleArgs) -> Result<()> {
    if !matches!(args.kind.as_str(), "workload" | "workloads" | "wl") {
        anyhow::bail!("only workloads scale: flotilla scale workload NAME --replicas N");
    }
    let patch = json!({"spec": {"replicas": args.replicas}});
    send(&args.kind, &args.name, &args.namespace, &patch).await
}
