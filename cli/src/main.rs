//! `flotilla`: the single binary of the Flotilla project.
//!
//! Today it has one subcommand, `run`, which runs one Wasm module under
//! memory/CPU/time limits like `wasmtime run`. Exit codes are documented on
//! [`run::exit_code`].

mod run;

use clap::{Parser, Subcommand};

/// Flotilla: WebAssembly workloads under Wasm-native limits.
#[derive(Parser)]
#[command(name = "flotilla", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one Wasm module (core module, component or .wat) to completion under limits.
    Run(run::RunArgs),
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOTILLA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let code = match cli.command {
        Command::Run(args) => run::main(args),
    };
    std::process::exit(code);
}
