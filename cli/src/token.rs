//! `flotilla token create | list | delete`: bearer tokens kept by the
//! server as `Token` objects (the secret's sha256 only). A join token is
//! printed with the CA hash it pins (`FL10<sha256>::<id>.<secret>`), ready
//! for an agent's `--token-file`; deleting a token stops new joins, never
//! the nodes already joined (they hold their own certificates).

use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use flotilla_client::collection_path;
use flotilla_spec::meta::API_VERSION;
use rustls::pki_types::pem::PemObject;
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (it is shown once).
    Create(CreateArgs),
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by its id.
    Delete {
        /// The token's id (the part before the dot).
        id: String,
    },
}

#[derive(Args)]
struct CreateArgs {
    /// What it may do: join a node, read (view), write a namespace's
    /// workloads, configs, secrets and buckets (edit, with --namespace),
    /// everything (admin), or nothing but what RoleBindings give it (none).
    #[arg(long, value_enum, default_value_t = RoleArg::Join)]
    role: RoleArg,
    /// Hold the role in this namespace only (view, edit, admin), as
    /// Kubernetes' namespaced roles; the whole cluster when not given.
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// How long it works (e.g. 24h); forever if not given.
    #[arg(long, value_parser = parse_ttl)]
    ttl: Option<Duration>,
    /// What it is for.
    #[arg(long, default_value = "")]
    description: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Join,
    View,
    Edit,
    Admin,
    None,
}

impl RoleArg {
    fn name(self) -> &'static str {
        match self {
            RoleArg::Join => "join",
            RoleArg::View => "view",
            RoleArg::Edit => "edit",
            RoleArg::Admin => "admin",
            RoleArg::None => "none",
        }
    }
}

/// Six random characters of `[a-z0-9]`.
fn token_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..6)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Creates a token with `role` ("join", "view", "edit", "admin", "none"),
/// held in `namespace` (the cluster if empty), that works for `ttl`
/// (forever if `None`), and returns its bearer form `ID.SECRET`: the
/// server keeps only the secret's sha256.
pub async fn create_token(
    client: &flotilla_client::Client,
    role: &str,
    namespace: &str,
    ttl: Option<Duration>,
    description: &str,
) -> Result<String> {
    let id = token_id();
    let secret = hex::encode(rand::random::<[u8; 16]>());
    let expires = ttl
        .map(|ttl| humantime::format_rfc3339_seconds(SystemTime::now() + ttl).to_string())
        .unwrap_or_default();
    let token = json!({
        "apiVersion": API_VERSION, "kind": "Token", "metadata": {"name": id},
        "spec": {"role": role, "namespace": namespace,
                 "secretSha256": hex::encode(Sha256::digest(secret.as_bytes())),
                 "expires": expires, "description": description},
    });
    client
        .create(&collection_path("tokens", None), &token)
        .await?;
    Ok(format!("{id}.{secret}"))
}

pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    flotilla_spec::parse_duration(text).map_err(|e| e.to_string())
}

pub async fn main(args: TokenArgs) -> Result<()> {
    let client = crate::config::client()?;
    let tokens = collection_path("tokens", None);
    match args.command {
        TokenCommand::Create(create) => {
            let namespace = create.namespace.unwrap_or_default();
            let bearer = create_token(
                &client,
                create.role.name(),
                &namespace,
                create.ttl,
                &create.description,
            )
            .await?;
            match create.role {
                RoleArg::Join => {
                    let config = crate::config::load()?;
                    let ca = rustls::pki_types::CertificateDer::from_pem_slice(
                        config.certificate_authority.as_bytes(),
                    )
                    .context("the client config's certificateAuthority")?;
                    println!("FL10{}::{bearer}", flotilla_trust::ca_hash(&ca));
                }
                _ => println!("{bearer}"),
            }
        }
        TokenCommand::List => {
            let list = client.list(&tokens, "").await?;
            let rows = list.items.iter().map(crate::get::token_row).collect();
            let table = crate::get::table(crate::get::TOKEN_COLUMNS, rows);
            if list.items.is_empty() {
                println!(
                    "No tokens (the server's own admin and join tokens are in its data folder)."
                );
            } else {
                println!("{table}");
            }
        }
        TokenCommand::Delete { id } => {
            if !flotilla_control_plane::api::is_token_id(&id) {
                bail!("{id:?} is not a token id (6 of a-z, 0-9: the part before the dot)");
            }
            client.delete(&format!("{tokens}/{id}")).await?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}
