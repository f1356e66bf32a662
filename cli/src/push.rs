//! `flotilla push FILE oci://…`, `flotilla pull oci://… [-o FILE]` and
//! `flotilla sign oci://…|BUNDLE --key KEY`:
//! modules to and from OCI registries in the Wasm artifact layout (what
//! `wkg`, `wash` and `oras` read and write), with progress bars; a
//! dropped connection is taken up again where it stopped.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use flotilla_oci::layout::{ANNOTATION_SOURCE, ANNOTATION_VERSION};
use flotilla_oci::{Credentials, ModuleRef, Registry};

/// How to sign in to the registry.
#[derive(Args)]
pub struct Login {
    /// The registry user (or set FLOTILLA_REGISTRY_USERNAME).
    #[arg(long, env = "FLOTILLA_REGISTRY_USERNAME")]
    username: Option<String>,
    /// Read the registry password from standard input (else
    /// FLOTILLA_REGISTRY_PASSWORD).
    #[arg(long)]
    password_stdin: bool,
    /// Speak plain HTTP to the registry (registries on loopback always are).
    #[arg(long)]
    insecure: bool,
}

impl Login {
    pub fn registry(&self, reference: &ModuleRef) -> Result<Registry> {
        self.registry_with(reference, self.credentials()?)
    }

    /// The credentials asked for (standard input is read once).
    pub fn credentials(&self) -> Result<Option<Credentials>> {
        Ok(match &self.username {
            None => None,
            Some(username) => {
                let password = if self.password_stdin {
                    password_from_stdin()?
                } else {
                    std::env::var("FLOTILLA_REGISTRY_PASSWORD").context(
                        "--username needs a password: --password-stdin, or FLOTILLA_REGISTRY_PASSWORD",
                    )?
                };
                Some(Credentials {
                    username: username.clone(),
                    password,
                })
            }
        })
    }

    /// A client for `reference`'s registry with `credentials`.
    pub fn registry_with(
        &self,
        reference: &ModuleRef,
        credentials: Option<Credentials>,
    ) -> Result<Registry> {
        let insecure = if self.insecure {
            vec![reference.registry().to_string()]
        } else {
            Vec::new()
        };
        Ok(Registry::new(reference, credentials, &insecure)?)
    }
}

/// A password, the first line of standard input.
pub fn password_from_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .context("reading the password from standard input")?;
    let password = text.lines().next().unwrap_or_default().to_string();
    if password.is_empty() {
        bail!("no password on standard input (echo \"$PASSWORD\" | flotilla …)");
    }
    Ok(password)
}

#[derive(Args)]
pub struct PushArgs {
    /// The module: a .wasm core module or component.
    file: PathBuf,
    /// Where it goes: oci://REGISTRY/REPOSITORY:TAG.
    reference: String,
    /// Where its source code lives (annotation org.opencontainers.image.source).
    #[arg(long)]
    source: Option<String>,
    /// Its version (annotation org.opencontainers.image.version); the tag
    /// by default.
    #[arg(long)]
    version: Option<String>,
    #[command(flatten)]
    login: Login,
}

pub fn bar(total: u64, verb: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{verb} {{bar:30}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}} {{msg}}"
    )) {
        bar.set_style(style);
    }
    bar
}

pub async fn push(args: PushArgs) -> Result<()> {
    let reference = ModuleRef::parse(&args.reference)?;
    if reference.tag().is_none() || reference.digest().is_some() {
        bail!(
            "push to a tag: oci://{}/{}:TAG",
            reference.registry(),
            reference.repository()
        );
    }
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let mut annotations = BTreeMap::new();
    if let Some(source) = args.source {
        annotations.insert(ANNOTATION_SOURCE.to_string(), source);
    }
    let version = args
        .version
        .or_else(|| reference.tag().map(str::to_string))
        .unwrap_or_default();
    annotations.insert(ANNOTATION_VERSION.to_string(), version);
    let registry = args.login.registry(&reference)?;
    let progress = bar(bytes.len() as u64, "push");
    progress.enable_steady_tick(std::time::Duration::from_millis(200));
    let digest = registry
        .push(&bytes, annotations, &flotilla_spec::meta::now_rfc3339())
        .await;
    match digest {
        Ok(digest) => {
            progress.set_position(bytes.len() as u64);
            progress.finish_with_message("done");
            println!("{reference}@{digest}");
            Ok(())
        }
        Err(e) => {
            progress.abandon_with_message("failed");
            Err(e.into())
        }
    }
}

#[derive(Args)]
pub struct PullArgs {
    /// What to fetch: oci://REGISTRY/REPOSITORY:TAG or …@sha256:DIGEST.
    reference: String,
    /// Where to write it (REPOSITORY's last part .wasm by default).
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    login: Login,
}

/// Largest module `flotilla pull` and `flotilla bundle export` take.
pub const MAX_PULL_BYTES: u64 = 1 << 30;

/// A file written beside `path`, to be renamed over it when whole.
fn beside(path: &std::path::Path) -> Result<tempfile::NamedTempFile> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    tempfile::NamedTempFile::new_in(folder)
        .with_context(|| format!("writing into {}", folder.display()))
}

pub async fn pull(args: PullArgs) -> Result<()> {
    let reference = ModuleRef::parse(&args.reference)?;
    let registry = args.login.registry(&reference)?;
    let resolved = registry.resolve(MAX_PULL_BYTES).await?;
    let output = args.output.unwrap_or_else(|| {
        let name = reference
            .repository()
            .rsplit('/')
            .next()
            .unwrap_or("module");
        PathBuf::from(format!("{name}.wasm"))
    });
    // Whole and verified, or not at all: written beside as it arrives,
    // then renamed.
    let incoming = beside(&output)?;
    let mut file = tokio::fs::File::from_std(incoming.reopen()?);
    let progress = bar(resolved.size(), "pull");
    let pulled = registry
        .pull_to(&resolved, &mut file, &mut |done, _| {
            progress.set_position(done)
        })
        .await;
    match pulled {
        Ok(_) => progress.finish_with_message("verified"),
        Err(e) => {
            progress.abandon_with_message("failed");
            return Err(e.into());
        }
    };
    tokio::io::AsyncWriteExt::flush(&mut file).await?;
    file.sync_all().await?;
    incoming
        .persist(&output)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", output.display()))?;
    println!(
        "{} ({} bytes) from {}@{}",
        output.display(),
        resolved.size(),
        reference,
        resolved.manifest_digest
    );
    Ok(())
}

#[derive(Args)]
pub struct SignArgs {
    /// What to sign: oci://REGISTRY/REPOSITORY:TAG or …@sha256:DIGEST (the
    /// manifest it names now is what is signed), or a bundle file from
    /// `flotilla bundle export` (every module in it is signed, in place).
    reference: String,
    /// The private key: PEM, PKCS#8, ECDSA P-256 (`openssl genpkey
    /// -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out key.pem`; its
    /// public half, `openssl pkey -in key.pem -pubout`, goes in a
    /// ModulePolicy).
    #[arg(long)]
    key: PathBuf,
    #[command(flatten)]
    login: Login,
}

/// `flotilla sign`: a cosign-compatible signature of the manifest the
/// reference names, pushed as its `sha256-….sig` tag.
pub async fn sign(args: SignArgs) -> Result<()> {
    let pem = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading {}", args.key.display()))?;
    let key = flotilla_oci::signature::PrivateKey::from_pem(&pem)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.key.display()))?;
    if !ModuleRef::is_oci(&args.reference) {
        // A bundle: signed where it lies, with no registry.
        let path = PathBuf::from(&args.reference);
        let signed = flotilla_oci::bundle::sign(&path, &key, MAX_PULL_BYTES)?;
        println!("signed {signed} modules in {}", path.display());
        return Ok(());
    }
    let reference = ModuleRef::parse(&args.reference)?;
    let registry = args.login.registry(&reference)?;
    let resolved = registry.resolve(u64::MAX).await?;
    let tag = registry
        .push_signature(&resolved.manifest_digest, &key)
        .await?;
    println!(
        "signed {reference}@{} (signature at tag {tag})",
        resolved.manifest_digest
    );
    Ok(())
}
