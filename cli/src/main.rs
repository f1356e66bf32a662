//! `flotilla`: the single binary of the Flotilla project.
//!
//! - `run`: one Wasm module under memory/CPU/time limits, like `wasmtime run`
//!   (exit codes documented on [`run::exit_code`]);
//! - `up`: control plane and agent in one process, embedded store;
//! - `server` and `agent`: the same, as separate processes (many nodes);
//! - `apply`, `get`, `describe`, `delete`, `patch`, `scale`, `logs`, `events`: kubectl-like
//!   commands against the server in the client config;
//! - `token`: bearer tokens (join, view, admin);
//! - `dashboard`: the dashboard's address and a short-lived view token.

mod agent;
mod apply;
mod auth;
mod bundle;
mod config;
mod create;
mod dashboard;
mod drain;
mod get;
mod kinds;
mod kv;
mod logs;
mod migrate;
mod node;
mod notice;
mod patch;
mod push;
mod rollout;
mod run;
mod server;
mod store_choice;
mod token;
mod top;
mod up;
mod wait;

use clap::{Parser, Subcommand};

/// Flotilla: WebAssembly workloads under Wasm-native limits.
#[derive(Parser)]
#[command(name = "flotilla", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How logs are written to stderr: `text` (coloured only on a
    /// terminal) or `json` (one object per line, for log collectors).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run one Wasm module (core module, component or .wat) to completion under limits.
    Run(run::RunArgs),
    /// Start a control plane and an agent in one process, with an embedded store.
    Up(up::UpArgs),
    /// Start the control plane alone (API, store, controllers).
    Server(server::ServerArgs),
    /// Copy a single server's SQLite store (objects and modules) into etcd.
    Migrate(migrate::MigrateArgs),
    /// Join this machine to a control plane as a node.
    Agent(agent::AgentArgs),
    /// Create or update objects from manifests.
    Apply(apply::ApplyArgs),
    /// List objects, or show one.
    Get(get::GetArgs),
    /// Show one object in detail, with its recent events.
    Describe(get::NameArgs),
    /// Delete an object.
    Delete(get::NameArgs),
    /// Change fields of an object with a JSON merge patch.
    Patch(patch::PatchArgs),
    /// Set a workload's replica count.
    Scale(patch::ScaleArgs),
    /// Print an instance's output.
    Logs(logs::LogsArgs),
    /// Wait until an object's condition is True (job/NAME --for condition=Complete).
    Wait(wait::WaitArgs),
    /// List recent events.
    Events(get::EventsArgs),
    /// Revoke a node: its certificates refused everywhere, its Node deleted.
    Node(node::NodeArgs),
    /// Mark a node unschedulable: nothing new is placed on it.
    Cordon(drain::CordonArgs),
    /// Mark a node schedulable again.
    Uncordon(drain::CordonArgs),
    /// Cordon a node and move its instances elsewhere one by one, as
    /// disruption budgets allow (every-node instances stay).
    Drain(drain::DrainArgs),
    /// Create, list and revoke bearer tokens (join, view, edit, admin; for
    /// the cluster or one namespace).
    Token(token::TokenArgs),
    /// Ask what this client's token may do (auth can-i VERB KIND).
    Auth(auth::AuthArgs),
    /// Print the dashboard's address and a short-lived view token to sign in with.
    Dashboard(dashboard::DashboardArgs),
    /// Follow and steer a workload's rollout: status, pause, resume, restart.
    Rollout(rollout::RolloutArgs),
    /// Create a Config or a Secret from literals and files.
    Create(create::CreateArgs),
    /// Manage how Secrets are sealed at rest (rotate-key).
    Secrets(create::SecretsArgs),
    /// Read and write the cluster's key-value buckets: get, put, delete, list, increment.
    Kv(kv::KvArgs),
    /// Show CPU (millicores) and memory of nodes, instances or workloads.
    Top(top::TopArgs),
    /// Push a module to an OCI registry (the Wasm artifact layout).
    Push(push::PushArgs),
    /// Fetch a module from an OCI registry, its digest checked.
    Pull(push::PullArgs),
    /// Sign a module in an OCI registry, or the modules of a bundle, with a
    /// key (cosign-compatible).
    Sign(push::SignArgs),
    /// Carry modules and their signatures to a control plane without a
    /// registry: export from registries into a file, import into a cluster.
    Bundle(bundle::BundleArgs),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let usage_error = e.use_stderr();
            let _ = e.print();
            std::process::exit(if usage_error {
                run::exit_code::FLOTILLA_ERROR
            } else {
                0
            });
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLOTILLA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // oci-client logs registry tokens at debug: never below info.
    let filter = match "oci_client=info".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => {
            notice::use_json();
            logs.json().init()
        }
        // No colour codes in log files.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    // One TLS implementation for every client in the process (the API's,
    // and the registries' that oci-client makes).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let command = match cli.command {
        Command::Run(args) => std::process::exit(run::main(args)),
        other => other,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Run(_) => unreachable!("handled above"),
            Command::Up(args) => up::main(args).await,
            Command::Server(args) => server::main(args).await,
            Command::Migrate(args) => migrate::main(args),
            Command::Agent(args) => agent::main(args).await,
            Command::Apply(args) => apply::main(args).await,
            Command::Get(args) => get::get(args).await,
            Command::Describe(args) => get::describe(args).await,
            Command::Delete(args) => get::delete(args).await,
            Command::Patch(args) => patch::patch(args).await,
            Command::Scale(args) => patch::scale(args).await,
            Command::Rollout(args) => rollout::main(args).await,
            Command::Logs(args) => logs::main(args).await,
            Command::Wait(args) => wait::main(args).await,
            Command::Events(args) => get::events(args).await,
            Command::Token(args) => token::main(args).await,
            Command::Node(args) => node::main(args).await,
            Command::Cordon(args) => drain::cordon(args).await,
            Command::Uncordon(args) => drain::uncordon(args).await,
            Command::Drain(args) => drain::drain(args).await,
            Command::Auth(args) => match auth::main(args).await {
                Ok(true) => Ok(()),
                Ok(false) => std::process::exit(1),
                Err(e) => Err(e),
            },
            Command::Dashboard(args) => dashboard::main(args).await,
            Command::Create(args) => create::main(args).await,
            Command::Secrets(args) => create::secrets(args).await,
            Command::Kv(args) => kv::main(args).await,
            Command::Top(args) => top::main(args).await,
            Command::Push(args) => push::push(args).await,
            Command::Pull(args) => push::pull(args).await,
            Command::Sign(args) => push::sign(args).await,
            Command::Bundle(args) => bundle::main(args).await,
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
