//! `create config|secret` (as kubectl's `create configmap|secret generic|tls`)
//! and `secrets rotate-key`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use flotilla_spec::config::{
    base64_encode, check_key, Config, Secret, DOCKER_CONFIG_KEY, DOCKER_CONFIG_SECRET_TYPE,
    NAMESPACE_PULL_SECRET_LABEL, OPAQUE, TLS_CERT_KEY, TLS_KEY_KEY, TLS_SECRET_TYPE,
};
use flotilla_spec::meta::{ObjectMeta, API_VERSION};

use crate::kinds::{Collection, Kind};

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
    /// Credentials for a registry of oci:// modules (type
    /// kubernetes.io/dockerconfigjson; name it in a workload's
    /// imagePullSecrets). Only the control plane reads it.
    DockerRegistry {
        /// The Secret's name.
        name: String,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// The registry, host[:port].
        #[arg(long)]
        docker_server: String,
        /// The user name.
        #[arg(long)]
        docker_username: String,
        /// The password; read from standard input when not given (never
        /// leave it in the shell history).
        #[arg(long)]
        docker_password: Option<String>,
        /// Use it for every workload of the namespace that names no pull
        /// secret for this registry (labels it
        /// flotilla.dev/namespace-pull-secret=true).
        #[arg(long)]
        for_namespace: bool,
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
            (Kind::Config, values.namespace, values.name, object)
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
            (Kind::Secret, values.namespace, values.name, object)
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
            let object = typed_secret(
                &name,
                &namespace,
                TLS_SECRET_TYPE,
                [(TLS_CERT_KEY, &cert_pem[..]), (TLS_KEY_KEY, &key_pem[..])],
            )?;
            (Kind::Secret, namespace, name, object)
        }
        CreateCommand::Secret {
            kind:
                SecretKind::DockerRegistry {
                    name,
                    namespace,
                    docker_server,
                    docker_username,
                    docker_password,
                    for_namespace,
                },
        } => {
            let password = match docker_password {
                Some(password) => password,
                None => crate::push::password_from_stdin()?,
            };
            let config = flotilla_oci::Credentials {
                username: docker_username,
                password,
            }
            .to_docker_config(&docker_server);
            let mut object = typed_secret(
                &name,
                &namespace,
                DOCKER_CONFIG_SECRET_TYPE,
                [(DOCKER_CONFIG_KEY, config.as_bytes())],
            )?;
            if for_namespace {
                object["metadata"]["labels"][NAMESPACE_PULL_SECRET_LABEL] = "true".into();
            }
            (Kind::Secret, namespace, name, object)
        }
    };
    client
        .create(&kind.collection(Some(&namespace)), &object)
        .await?;
    println!("{}.flotilla.dev/{name} created", kind.name().to_lowercase());
    Ok(())
}

/// A Secret of a well-known `secret_type`, with these values, checked.
fn typed_secret<'a>(
    name: &str,
    namespace: &str,
    secret_type: &str,
    values: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<serde_json::Value> {
    let mut secret = Secret {
        api_version: API_VERSION.into(),
        kind: "Secret".into(),
        metadata: ObjectMeta {
            name: name.to_string(),
            namespace: namespace.to_string(),
            ..ObjectMeta::default()
        },
        secret_type: secret_type.into(),
        ..Secret::default()
    };
    for (key, value) in values {
        secret.data.insert(key.into(), base64_encode(value));
    }
    secret.normalise().map_err(anyhow::Error::msg)?;
    Ok(serde_json::to_value(&secret)?)
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
