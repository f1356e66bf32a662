//! `flotilla apply -f FILE|DIR|-`: create or update Workloads. `file:`
//! module sources are read here (relative to the manifest's folder), uploaded
//! to the control plane's blob store, and recorded by digest.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use flotilla_spec::manifest::{parse_manifests, Manifest};
use sha2::{Digest, Sha256};

use crate::kinds::{Collection, Kind};

#[derive(Args)]
pub struct ApplyArgs {
    /// Manifest file, folder of manifests (.yaml, .yml, .json), or - for stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
}

/// Reads every manifest named by `-f`, with the folder its paths are relative to.
fn read_inputs(names: &[String]) -> Result<Vec<(String, PathBuf, String)>> {
    let mut inputs = Vec::new();
    for name in names {
        if name == "-" {
            let text = std::io::read_to_string(std::io::stdin()).context("reading stdin")?;
            inputs.push(("<stdin>".into(), PathBuf::from("."), text));
            continue;
        }
        let path = Path::new(name);
        let files: Vec<PathBuf> = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading folder {name}"))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension()
                        .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
                })
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_path_buf()]
        };
        for file in files {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read manifest {}", file.display()))?;
            let dir = file
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            inputs.push((file.display().to_string(), dir, text));
        }
    }
    Ok(inputs)
}

/// Uploads a `file:` module and records its digest.
async fn upload_module(
    client: &flotilla_client::Client,
    owner: &str,
    module: &mut flotilla_spec::workload::ModuleSource,
    base: &Path,
) -> Result<()> {
    let Some(source) = module.source.clone() else {
        return Ok(());
    };
    let Some(relative) = source.strip_prefix("file:") else {
        return Ok(());
    };
    let path = base.join(relative);
    let bytes = std::fs::read(&path).with_context(|| {
        format!("{owner}: cannot read module {} (spec.module.source {source:?}, relative to the manifest's folder)", path.display())
    })?;
    if !bytes.starts_with(b"\0asm") {
        bail!(
            "{owner}: {} is not a WebAssembly module (it does not start with the \\0asm magic bytes)",
            path.display()
        );
    }
    let digest = hex::encode(Sha256::digest(&bytes));
    if let Some(given) = &module.sha256 {
        if *given != digest {
            bail!(
                "{owner}: {} has sha256 {digest}, but spec.module.sha256 says {given}",
                path.display()
            );
        }
    }
    client.put_blob(&digest, bytes).await?;
    module.sha256 = Some(digest);
    Ok(())
}

/// Replaces an existing workload with `value`, unless it already says the
/// same. Controllers write status concurrently, which moves the
/// resourceVersion: a conflict is retried on a fresh read, as kubectl does.
async fn update(
    client: &flotilla_client::Client,
    path: &str,
    value: &mut serde_json::Value,
) -> Result<&'static str> {
    const ATTEMPTS: usize = 5;
    for attempt in 1..=ATTEMPTS {
        let current = client.get(path).await?;
        if current["spec"] == value["spec"]
            && current["metadata"]["labels"] == value["metadata"]["labels"]
        {
            return Ok("unchanged");
        }
        value["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        match client.replace(path, value).await {
            Ok(_) => return Ok("configured"),
            Err(e) if e.code() == Some(409) && attempt < ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("the last attempt returns")
}

pub async fn main(args: ApplyArgs) -> Result<()> {
    let client = crate::config::client()?;
    let mut workloads = Vec::new();
    // Everything but workloads, in the order it is applied: policies
    // first (the workloads beside them are checked against them), roles
    // before the bindings that name them, quotas and limit ranges before
    // the workloads they judge, disruption budgets before the workloads
    // whose rollouts they bound; jobs last (they start as soon as they
    // are stored).
    let mut others: [Vec<(Kind, serde_json::Value)>; 7] = Default::default();
    for (label, dir, text) in read_inputs(&args.files)? {
        for manifest in parse_manifests(&text).with_context(|| format!("in {label}"))? {
            let (order, kind, value) = match manifest {
                Manifest::Workload(w) => {
                    workloads.push((dir.clone(), w));
                    continue;
                }
                Manifest::ModulePolicy(p) => (0, Kind::ModulePolicy, serde_json::to_value(p)?),
                Manifest::Role(r) => (1, Kind::Role, serde_json::to_value(r)?),
                Manifest::RoleBinding(b) => (2, Kind::RoleBinding, serde_json::to_value(b)?),
                Manifest::ResourceQuota(q) => (3, Kind::ResourceQuota, serde_json::to_value(q)?),
                Manifest::LimitRange(l) => (4, Kind::LimitRange, serde_json::to_value(l)?),
                Manifest::DisruptionBudget(b) => {
                    (5, Kind::DisruptionBudget, serde_json::to_value(b)?)
                }
                Manifest::Job(mut job) => {
                    let owner = format!("job {}", job.metadata.name);
                    upload_module(&client, &owner, &mut job.spec.template.module, &dir).await?;
                    (6, Kind::Job, serde_json::to_value(job)?)
                }
            };
            others[order].push((kind, value));
        }
    }
    if workloads.is_empty() && others.iter().all(Vec::is_empty) {
        bail!("no objects found in {}", args.files.join(", "));
    }
    for (kind, value) in others.into_iter().flatten() {
        let meta = &value["metadata"];
        let name = meta["name"].as_str().unwrap_or_default().to_string();
        let collection = kind.collection(meta["namespace"].as_str());
        let label = kind.name().to_lowercase();
        create_or_update(&client, &label, &collection, &name, &value).await?;
    }
    for (dir, mut workload) in workloads {
        let owner = format!("workload {}", workload.metadata.name);
        upload_module(&client, &owner, &mut workload.spec.module, &dir).await?;
        let ns = workload.metadata.namespace.clone();
        let name = workload.metadata.name.clone();
        let collection = Kind::Workload.collection(Some(&ns));
        create_or_update(&client, "workload", &collection, &name, &workload).await?;
    }
    Ok(())
}

/// Creates the object, or, when it exists, updates it (as kubectl apply).
pub async fn create_or_update(
    client: &flotilla_client::Client,
    kind: &str,
    collection: &str,
    name: &str,
    object: &impl serde::Serialize,
) -> Result<()> {
    let mut value = serde_json::to_value(object)?;
    match client.create(collection, &value).await {
        Ok(_) => println!("{kind}.flotilla.dev/{name} created"),
        Err(e) if e.code() == Some(409) => {
            let path = format!("{collection}/{name}");
            let outcome = update(client, &path, &mut value)
                .await
                .with_context(|| format!("{kind} {name}"))?;
            println!("{kind}.flotilla.dev/{name} {outcome}");
        }
        Err(e) => return Err(e).with_context(|| format!("{kind} {name}")),
    }
    Ok(())
}
