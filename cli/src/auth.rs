//! `flotilla auth can-i VERB KIND [NAME] [-n NS | -A]`: whether the token
//! in the client config may do that, as the server decides it (a
//! SelfSubjectAccessReview; kubectl's `auth can-i`). Prints `yes` or `no`
//! (and why not), and exits 0 or 1, so scripts can branch on it.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::json;

#[derive(Args)]
pub struct AuthArgs {
    #[command(subcommand)]
    command: AuthCommand,
}

#[derive(Subcommand)]
enum AuthCommand {
    /// May this client's token do VERB on KIND?
    CanI(CanIArgs),
}

#[derive(Args)]
struct CanIArgs {
    /// get, list, watch, create, update, patch or delete.
    verb: String,
    /// A kind (workloads, secrets…), a subresource (instances/log), or
    /// buckets.
    kind: String,
    /// One object, if the question is about it.
    name: Option<String>,
    /// The namespace asked about.
    #[arg(long, short = 'n', default_value = flotilla_spec::meta::DEFAULT_NAMESPACE)]
    namespace: String,
    /// Ask about every namespace at once (lists and watches).
    #[arg(long, short = 'A')]
    all_namespaces: bool,
}

/// Whether the answer was yes.
pub async fn main(args: AuthArgs) -> Result<bool> {
    let AuthCommand::CanI(ask) = args.command;
    let (resource, subresource) = match ask.kind.split_once('/') {
        Some((kind, sub)) => (kind.to_string(), sub.to_string()),
        None => (ask.kind.clone(), String::new()),
    };
    if resource != "buckets" {
        // The server's own names: `wl` is asked as `workloads`.
        crate::kinds::Kind::parse(&resource)?;
    }
    let namespace = if ask.all_namespaces {
        String::new()
    } else {
        ask.namespace
    };
    let review = json!({
        "apiVersion": flotilla_spec::meta::API_VERSION, "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {
            "verb": ask.verb, "resource": resource, "subresource": subresource,
            "namespace": namespace, "name": ask.name.unwrap_or_default(),
        }},
    });
    let client = crate::config::client()?;
    let answer = client
        .create("/apis/flotilla.dev/v1/selfsubjectaccessreviews", &review)
        .await?;
    match answer["status"]["allowed"].as_bool() {
        Some(true) => {
            println!("yes");
            Ok(true)
        }
        Some(false) => {
            let reason = answer["status"]["reason"].as_str().unwrap_or_default();
            println!("no - {reason}");
            Ok(false)
        }
        None => bail!("the server's answer has no status.allowed: {answer}"),
    }
}
