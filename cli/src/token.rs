//! `flotilla token create | list | rotate | delete`: bearer tokens kept by the
//! server as `Token` objects (the secret's sha256 only). A join token is
//! printed with the CA hash it pins (`FL10<sha256>::<id>.<secret>`), ready
//! for an agent's `--token-file`; deleting a token stops new joins, never
//! the nodes already joined (they hold their own certificates). A join
//! token may be limited to a number of joins (`--uses`, counted by the
//! server in `status.used`); rotating a token gives it a new secret (the
//! old one stops working at once) and a fresh count, keeping its id — so
//! the RoleBindings that name it — role and namespace.

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
    /// Give a token a new secret and print it: the old secret stops
    /// working at once; id, role, namespace and bindings stay, a join
    /// token's use count starts again.
    Rotate {
        /// The token's id (the part before the dot).
        id: String,
        /// A new lifetime from now (e.g. 24h); the old expiry if not given.
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Duration>,
    },
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
    /// How many nodes a join token may join (each node certificate it
    /// gets is one use); unlimited if not given.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    uses: Option<u32>,
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

/// A new secret, and the sha256 the server keeps of it (hex).
fn new_secret() -> (String, String) {
    let secret = hex::encode(rand::random::<[u8; 16]>());
    let hash = hex::encode(Sha256::digest(secret.as_bytes()));
    (secret, hash)
}

/// `ttl` from now, as RFC 3339.
fn expiry(ttl: Duration) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() + ttl).to_string()
}

/// Creates a token with `role` ("join", "view", "edit", "admin", "none"),
/// held in `namespace` (the cluster if empty), that works for `ttl`
/// (forever if `None`) and, for a join token, `uses` joins (no limit if
/// `None`), and returns its bearer form `ID.SECRET`: the server keeps
/// only the secret's sha256.
pub async fn create_token(
    client: &flotilla_client::Client,
    role: &str,
    namespace: &str,
    ttl: Option<Duration>,
    uses: Option<u32>,
    description: &str,
) -> Result<String> {
    let id = token_id();
    let (secret, hash) = new_secret();
    let mut token = json!({
        "apiVersion": API_VERSION, "kind": "Token", "metadata": {"name": id},
        "spec": {"role": role, "namespace": namespace, "secretSha256": hash,
                 "expires": ttl.map(expiry).unwrap_or_default(), "description": description},
    });
    if let Some(uses) = uses {
        token["spec"]["uses"] = uses.into();
    }
    client
        .create(&collection_path("tokens", None), &token)
        .await?;
    Ok(format!("{id}.{secret}"))
}

/// Gives stored token `id` a new secret (and, with `ttl`, a new expiry)
/// and a fresh use count; returns its role and new bearer form. The
/// write carries the version read, so a concurrent change is a conflict,
/// not lost.
async fn rotate_token(
    client: &flotilla_client::Client,
    id: &str,
    ttl: Option<Duration>,
) -> Result<(String, String)> {
    let path = format!("{}/{id}", collection_path("tokens", None));
    let mut token = client.get(&path).await?;
    let (secret, hash) = new_secret();
    token["spec"]["secretSha256"] = hash.into();
    match ttl {
        Some(ttl) => token["spec"]["expires"] = expiry(ttl).into(),
        None => {
            let expired = token["spec"]["expires"]
                .as_str()
                .filter(|e| !e.is_empty())
                .and_then(flotilla_spec::meta::parse_rfc3339)
                .is_some_and(|at| at <= SystemTime::now());
            if expired {
                bail!(
                    "token {id} has expired ({}): give it a new lifetime with --ttl",
                    token["spec"]["expires"]
                );
            }
        }
    }
    let mut token = client.replace(&path, &token).await?;
    if !token["status"].is_null() {
        token["status"] = json!({});
        client.replace(&format!("{path}/status"), &token).await?;
    }
    let role = token["spec"]["role"].as_str().unwrap_or("join").to_string();
    Ok((role, format!("{id}.{secret}")))
}

/// Prints a token's bearer form: a join token with the CA hash it pins,
/// ready for an agent's `--token-file`.
fn print_bearer(role: &str, bearer: &str) -> Result<()> {
    if role != "join" {
        println!("{bearer}");
        return Ok(());
    }
    let config = crate::config::load()?;
    let ca =
        rustls::pki_types::CertificateDer::from_pem_slice(config.certificate_authority.as_bytes())
            .context("the client config's certificateAuthority")?;
    println!("FL10{}::{bearer}", flotilla_trust::ca_hash(&ca));
    Ok(())
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
                create.uses,
                &create.description,
            )
            .await?;
            print_bearer(create.role.name(), &bearer)?;
        }
        TokenCommand::Rotate { id, ttl } => {
            if !flotilla_control_plane::api::is_token_id(&id) {
                bail!("{id:?} is not a token id (6 of a-z, 0-9: the part before the dot)");
            }
            let (role, bearer) = rotate_token(&client, &id, ttl).await?;
            eprintln!("token {id} rotated: its old secret no longer works");
            print_bearer(&role, &bearer)?;
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
