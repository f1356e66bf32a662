//! `flotilla bundle export REF… -o FILE` and `flotilla bundle import FILE`:
//! modules and their signatures carried to a control plane that cannot
//! reach a registry (air-gapped or metered sites).
//!
//! Export pulls each module from its registry (its digest checked) with
//! the manifest's exact bytes and its cosign signatures, into an OCI image
//! layout in a tar file. Import checks every blob of the file, uploads the
//! modules and records each reference as an `ImportedModule`, from which
//! the control plane then resolves `oci://` sources, signatures checked
//! against its ModulePolicies, without asking any registry.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use base64::Engine;
use clap::{Args, Subcommand};
use serde_json::json;

use flotilla_oci::bundle::{Bundle, FileWriter};
use flotilla_oci::ModuleRef;
use flotilla_spec::imported::name_for;

use crate::kinds::{Collection, Kind};
use crate::push::{bar, Login};

/// Largest module the control plane takes in an upload.
const MAX_UPLOAD_BYTES: u64 = flotilla_control_plane::api::MAX_BLOB_BYTES as u64;

#[derive(Args)]
pub struct BundleArgs {
    #[command(subcommand)]
    command: BundleCommand,
}

#[derive(Subcommand)]
enum BundleCommand {
    /// Write modules from registries, with their signatures, into a file.
    Export(ExportArgs),
    /// Upload a bundle's modules to the cluster and record their references.
    Import(ImportArgs),
}

#[derive(Args)]
struct ExportArgs {
    /// The modules: oci://REGISTRY/REPOSITORY:TAG or …@sha256:DIGEST.
    #[arg(required = true)]
    references: Vec<String>,
    /// The bundle to write (an OCI image layout in a tar file).
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    login: Login,
}

#[derive(Args)]
struct ImportArgs {
    /// The bundle (from flotilla bundle export, or any OCI image layout in a
    /// tar file holding Wasm modules).
    file: PathBuf,
    /// The repository of a layout whose index names tags only
    /// (oci://REGISTRY/REPOSITORY), as `oras copy --to-oci-layout` writes.
    #[arg(long)]
    repository: Option<String>,
}

pub async fn main(args: BundleArgs) -> Result<()> {
    match args.command {
        BundleCommand::Export(args) => export(args).await,
        BundleCommand::Import(args) => import(args).await,
    }
}

async fn export(args: ExportArgs) -> Result<()> {
    let references = args
        .references
        .iter()
        .map(|r| ModuleRef::parse(r))
        .collect::<Result<Vec<_>, _>>()?;
    let mut writer = FileWriter::beside(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let mut signatures = 0;
    let credentials = args.login.credentials()?;
    for reference in &references {
        let registry = args.login.registry_with(reference, credentials.clone())?;
        let progress = bar(0, &format!("{reference}"));
        let exported = registry
            .export(MAX_UPLOAD_BYTES, &mut |done, total| {
                progress.set_length(total);
                progress.set_position(done);
            })
            .await;
        let exported = match exported {
            Ok(exported) => {
                progress.finish_with_message(format!("{} signature(s)", exported.signatures.len()));
                exported
            }
            Err(e) => {
                progress.abandon_with_message("failed");
                return Err(e.into());
            }
        };
        signatures += exported.signatures.len();
        writer
            .add(&exported)
            .with_context(|| format!("writing {}", args.output.display()))?;
    }
    writer
        .persist(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "{}: {} module(s), {signatures} signature(s)",
        args.output.display(),
        references.len()
    );
    Ok(())
}

/// Records `entry` as the ImportedModule of `reference`.
async fn record(
    client: &flotilla_client::Client,
    reference: &str,
    entry: &flotilla_oci::bundle::Entry,
) -> Result<()> {
    let base64 = base64::engine::general_purpose::STANDARD;
    let mut object = json!({
        "apiVersion": flotilla_spec::meta::API_VERSION,
        "kind": "ImportedModule",
        "metadata": {"name": name_for(reference)},
        "spec": {
            "reference": reference,
            "manifest": base64.encode(&entry.manifest),
            "signatures": entry.signatures.iter().map(|s| json!({
                "payload": base64.encode(&s.payload),
                "signature": s.signature,
            })).collect::<Vec<_>>(),
        },
    });
    // As the server stores it (an empty list left out), so importing
    // again is "unchanged".
    if entry.signatures.is_empty() {
        if let Some(spec) = object["spec"].as_object_mut() {
            spec.remove("signatures");
        }
    }
    let collection = Kind::ImportedModule.collection(None);
    crate::apply::create_or_update(
        client,
        "importedmodule",
        &collection,
        &name_for(reference),
        &object,
    )
    .await
}

async fn import(args: ImportArgs) -> Result<()> {
    let (file, repository) = (args.file.clone(), args.repository.clone());
    let mut bundle = tokio::task::spawn_blocking(move || {
        Bundle::open(&file, repository.as_deref(), MAX_UPLOAD_BYTES)
    })
    .await??;
    if bundle.entries.is_empty() {
        bail!(
            "{}: its index.json names no Wasm module",
            args.file.display()
        );
    }
    let client = crate::config::client()?;
    let entries = std::mem::take(&mut bundle.entries);
    for entry in &entries {
        let module = bundle.module(entry)?;
        let sha256 = entry.layer.digest.trim_start_matches("sha256:");
        client
            .put_blob(sha256, module)
            .await
            .with_context(|| format!("uploading the module of {}", entry.reference))?;
        let reference = entry.reference.to_string();
        record(&client, &reference, entry).await?;
        // By digest too, so that workloads pinned to this manifest stay
        // checkable (their signatures found) after a later bundle moves
        // the tag.
        let by_digest = entry
            .reference
            .at_digest(&entry.manifest_digest)
            .to_string();
        if by_digest != reference {
            record(&client, &by_digest, entry).await?;
        }
        println!(
            "  {reference} → {} ({} signature(s))",
            entry.manifest_digest,
            entry.signatures.len()
        );
    }
    Ok(())
}
