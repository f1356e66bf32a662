//! `create config|secret` (as kubectl's `create configmap|secret generic|tls`)
//! and `secrets rotate-key`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use flotilla_spec::config::{
    base64_encode, check_key, Config, Secret, OPAQUE, TLS_CERT_KEY, TLS_KEY_KEY, TLS_SECRET_TYPE,
};
use flotilla_spec::meta::{ObjectMeta, API_VERSION};

use crate::kinds::CliKind;

#[derive(Args)]
pub struct CreateArgs {
    #[command(subcommand)]
    what: CreateCommand,
}

#[derive(Subcommand)]
enum CreateCommand {
    /// A Config (like a ConfigMap) from literals and files.
    Config(Values),
    /// A Secret.
    Secret {
        #[command(subcommand)]
        kind: SecretKind,
    },
}

#[derive(Subcommand)]
enum SecretKind {
    /// A Secret of any values (type Opaque unless --type says otherwise).
    Generic {
        #[command(flatten)]
        values: Values,
        /// The Secret's type.
        #[arg(long = "type", default_value = OPAQUE)]
        secret_type: String,
    },
    /// A certificate and its key for HTTPS at the ingress (type
    /// flotilla.dev/tls; name it in a workload's spec.tls).
    Tls {
        /// The Secret's name.
        name: String,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// The certificate chain (PEM), leaf first.
        #[arg(long)]
        cert: std::path::PathBuf,
        /// The certificate's private key (PEM).
        #[arg(long)]
        key: std::path::PathBuf,
    },
}

#[derive(Args)]
struct Values {
    /// The object's name.
    name: String,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// A value: `key=value` (repeatable).
    #[arg(long = "from-literal")]
    literals: Vec<String>,
    /// A file's contents: `path` (the key is the file name) or
    /// `key=path` (repeatable).
    #[arg(long = "from-file")]
    files: Vec<String>,
    /// Make it immutable: its values can never change.
    #[arg(long)]
    immutable: bool,
}

impl Values {
    /// Every value by key, checked (a key given twice is an error).
    fn read(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut values = BTreeMap::new();
        let mut add = |key: String, value: Vec<u8>| -> Result<()> {
            check_key(&key).map_err(anyhow::Error::msg)?;
            if values.insert(key.clone(), value).is_some() {
                bail!("key {key:?} is given twice");
            }
            Ok(())
        };
        for literal in &self.literals {
            let Some((key, value)) = literal.split_once('=') else {
                bail!("--from-literal {literal:?}: write it key=value");
            };
            add(key.to_string(), value.as_bytes().to_vec())?;
        }
        for file in &self.files {
            let (key, path) = match file.split_once('=') {
                Some((key, path)) => (key.to_string(), path),
                None => {
                    let name = Path::new(file)
                        .file_name()
                        .and_then(|n| n.to_str())
                        .with_context(|| format!("--from-file {file:?}: name the key: key=path"))?;
                    (name.to_string(), file.as_str())
                }
            };
            let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
            add(key, bytes)?;
        }
        Ok(values)
    }

    fn metadata(&self) -> ObjectMeta {
        ObjectMeta {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            ..ObjectMeta::default()
        }
    }
}

pub async fn main(args: CreateArgs) -> Result<()> {
    let client = crate::config::client()?;
    let (kind, namespace, name, object) = match args.what {
        CreateCommand::Config(values) => {
            let mut config = Config {
                api_version: API_VERSION.into(),
                kind: "Config".into(),
                metadata: values.metadata(),
                immutable: values.immutable,
                ..Config::default()
            };
            for (key, value) in values.read()? {
                // Text stays readable; anything else is binaryData.
                match String::from_utf8(value) {
                    Ok(text) => drop(config.data.insert(key, text)),
                    Err(e) => drop(config.binary_data.insert(key, base64_encode(e.as_bytes()))),
                }
            }
            config.validate().map_err(anyhow::Error::msg)?;
            let object = serde_json::to_value(&config)?;
            (CliKind::Config, values.namespace, values.name, object)
        }
        CreateCommand::Secret {
            kind:
                SecretKind::Generic {
                    values,
                    secret_type,
                },
        } => {
            let mut secret = Secret {
                api_version: API_VERSION.into(),
                kind: "Secret".into(),
                metadata: values.metadata(),
                secret_type,
                immutable: values.immutable,
                ..Secret::default()
            };
            for (key, value) in values.read()? {
                secret.data.insert(key, base64_encode(&value));
            }
            secret.normalise().map_err(anyhow::Error::msg)?;
            let object = serde_json::to_value(&secret)?;
            (CliKind::Secret, values.namespace, values.name, object)
        }
        CreateCommand::Secret {
            kind:
                SecretKind::Tls {
                    name,
                    namespace,
                    cert,
                    key,
                },
        } => {
            let read = |path: &Path| {
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))
            };
            let (cert_pem, key_pem) = (read(&cert)?, read(&key)?);
            // Refused here, as kubectl does, rather than by every ingress.
            flotilla_agent::ingress_tls::certified_key(&cert_pem, &key_pem)
                .map_err(|e| anyhow::anyhow!("{} and {}: {e}", cert.display(), key.display()))?;
            let mut secret = Secret {
                api_version: API_VERSION.into(),
                kind: "Secret".into(),
                metadata: ObjectMeta {
                    name: name.clone(),
                    namespace: namespace.clone(),
                    ..ObjectMeta::default()
                },
                secret_type: TLS_SECRET_TYPE.into(),
                ..Secret::default()
            };
            secret
                .data
                .insert(TLS_CERT_KEY.into(), base64_encode(&cert_pem));
            secret
                .data
                .insert(TLS_KEY_KEY.into(), base64_encode(&key_pem));
            secret.normalise().map_err(anyhow::Error::msg)?;
            let object = serde_json::to_value(&secret)?;
            (CliKind::Secret, namespace, name, object)
        }
    };
    client
        .create(&kind.collection(Some(&namespace)), &object)
        .await?;
    println!("{}.flotilla.dev/{name} created", kind.name().to_lowercase());
    Ok(())
}

#[derive(Args)]
pub struct SecretsArgs {
    #[command(subcommand)]
    command: SecretsCommand,
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Seal every Secret again under a new key, then delete the old keys
    /// (admin only).
    RotateKey,
}

pub async fn secrets(args: SecretsArgs) -> Result<()> {
    match args.command {
        SecretsCommand::RotateKey => {
            let client = crate::config::client()?;
            let answer = client
                .create("/secret-keys/rotate", &serde_json::json!({}))
                .await?;
            println!(
                "secret key rotated: {} secrets sealed again under the new key; the old keys are deleted",
                answer["resealed"]
            );
            Ok(())
        }
    }
}
