//! `flotilla run MODULE [--memory 64Mi] [--cpu 500m] [--timeout 5s]
//! [--env K=V]... [--config K=V]... [--dir HOST[::GUEST][:ro]]... [-o json] [-- ARGS...]`

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::collections::BTreeSet;
use std::sync::Arc;

use flotilla_agent::runtime::host_api::{self, HostCtx};
use flotilla_agent::runtime::{
    CaptureBuffer, ExitReason, Limits, Outcome, Preopen, RunSpec, Runtime, RuntimeConfig, Stdio,
};

/// Process exit codes of `flotilla run`.
///
/// A guest that exits on its own passes its code through (low 8 bits, as on
/// any Unix process). The abnormal ends get codes shells and Kubernetes users
/// already know; a guest could also exit with one of them on purpose: use
/// `-o json` to tell them apart.
pub mod exit_code {
    /// `DeadlineExceeded`: as `timeout(1)`.
    pub const DEADLINE_EXCEEDED: i32 = 124;
    /// Flotilla itself failed: bad arguments, unreadable or invalid module (as `docker run`).
    pub const FLOTILLA_ERROR: i32 = 125;
    /// `Trap`: 128 + SIGABRT, as `wasmtime run`.
    pub const TRAP: i32 = 134;
    /// `OOMKilled`: 128 + SIGKILL, as Kubernetes reports an OOM-killed container.
    pub const OOM_KILLED: i32 = 137;
}

/// Bytes of each guest stream kept for `-o json`.
const JSON_CAPTURE_CAP: usize = 1 << 20;

#[derive(Args)]
pub struct RunArgs {
    /// The module: a .wasm core module (WASI preview 1), a component (WASI preview 2) or a .wat file.
    module: PathBuf,
    /// Memory limit over all linear memories and tables (64Mi, 1Gi, 500M, or bytes).
    #[arg(long, value_parser = parse_memory)]
    memory: Option<u64>,
    /// CPU limit (250m = a quarter of one core, 1 or 1000m = one core).
    #[arg(long, value_parser = parse_cpu)]
    cpu: Option<u64>,
    /// Wall-clock limit (500ms, 5s, 1m).
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// An environment variable for the guest, KEY=VALUE (repeatable). The guest sees no other.
    #[arg(long = "env", short = 'e', value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// A value the guest reads through wasi:config/store, KEY=VALUE
    /// (repeatable); giving one grants the import.
    #[arg(long = "config", value_parser = parse_env)]
    config: Vec<(String, String)>,
    /// Grant a host directory: HOST[::GUEST][:ro] (repeatable). GUEST defaults to HOST.
    #[arg(long = "dir", value_parser = parse_dir)]
    dirs: Vec<Preopen>,
    /// Output format: the guest's own output (default), or one JSON object describing the run.
    #[arg(short = 'o', long = "output", value_enum)]
    output: Option<OutputFormat>,
    /// Folder of the compile cache (default: $XDG_CACHE_HOME/flotilla or ~/.cache/flotilla).
    #[arg(long, env = "FLOTILLA_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile in memory every time, without the on-disk cache.
    #[arg(long)]
    no_cache: bool,
    /// Arguments for the guest, after `--`.
    #[arg(last = true)]
    args: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Json,
}

/// Runs the command and returns the process exit code.
pub fn main(args: RunArgs) -> i32 {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_code::FLOTILLA_ERROR
        }
    }
}

fn run(args: RunArgs) -> Result<i32> {
    let cache_dir = if args.no_cache {
        None
    } else {
        Some(args.cache_dir.clone().unwrap_or_else(default_cache_dir))
    };
    let runtime = Runtime::new(RuntimeConfig {
        // One instance: reserve a small pool so start-up stays cheap.
        max_instances: 4,
        cache_dir,
        ..RuntimeConfig::default()
    })?;
    let module = runtime.load_file(&args.module)?;
    let json = matches!(args.output, Some(OutputFormat::Json));
    let (stdout, stderr) = if json {
        (
            CaptureBuffer::new(JSON_CAPTURE_CAP),
            CaptureBuffer::new(JSON_CAPTURE_CAP),
        )
    } else {
        (CaptureBuffer::default(), CaptureBuffer::default())
    };
    let stdio = |buffer: &CaptureBuffer| {
        if json {
            Stdio::Capture(buffer.clone())
        } else {
            Stdio::Inherit
        }
    };
    let spec = RunSpec {
        program_name: module.name().to_string(),
        args: args.args,
        env: args.env,
        dirs: args.dirs,
        limits: Limits {
            memory_bytes: args.memory,
            cpu_millis: args.cpu,
            timeout: args.timeout,
        },
        stdout: stdio(&stdout),
        stderr: stdio(&stderr),
        stdin: None,
        usage: None,
        host: HostCtx {
            granted: if args.config.is_empty() {
                Default::default()
            } else {
                BTreeSet::from([host_api::config::CAPABILITY.name.to_string()])
            },
            config: Arc::new(args.config.into_iter().collect()),
            ..HostCtx::default()
        },
    };
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = tokio.block_on(module.run(spec))?;
    if json {
        let mut value = serde_json::to_value(&outcome)?;
        value["stdout"] = stdout.text().into();
        value["stderr"] = stderr.text().into();
        value["compileCacheHit"] = module.from_disk_cache().into();
        println!("{value}");
    } else if !matches!(outcome.reason, ExitReason::Completed | ExitReason::Error) {
        eprintln!(
            "flotilla: {} ended with {}: {}",
            module.name(),
            outcome.reason,
            outcome.message.as_deref().unwrap_or("")
        );
    }
    Ok(process_exit_code(&outcome))
}

/// The process exit code for an outcome (see [`exit_code`]).
fn process_exit_code(outcome: &Outcome) -> i32 {
    match outcome.reason {
        ExitReason::Completed | ExitReason::Error => outcome.exit_code.unwrap_or(0) & 0xff,
        ExitReason::Trap => exit_code::TRAP,
        ExitReason::OomKilled => exit_code::OOM_KILLED,
        ExitReason::DeadlineExceeded => exit_code::DEADLINE_EXCEEDED,
    }
}

fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("flotilla").join("compiled")
}

fn parse_memory(text: &str) -> Result<u64, String> {
    flotilla_spec::parse_memory_bytes(text).map_err(|e| e.to_string())
}

fn parse_cpu(text: &str) -> Result<u64, String> {
    flotilla_spec::parse_cpu_millis(text).map_err(|e| e.to_string())
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    flotilla_spec::parse_duration(text).map_err(|e| e.to_string())
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// `HOST[::GUEST][:ro|:rw]`.
fn parse_dir(text: &str) -> Result<Preopen, String> {
    let (spec, read_only) = if let Some(rest) = text.strip_suffix(":ro") {
        (rest, true)
    } else {
        (text.strip_suffix(":rw").unwrap_or(text), false)
    };
    let (host, guest) = match spec.split_once("::") {
        Some((host, guest)) => (host, guest),
        None => (spec, spec),
    };
    if host.is_empty() || guest.is_empty() {
        return Err(format!(
            "{text:?} is not HOST[::GUEST][:ro] (e.g. ./data::/data:ro)"
        ));
    }
    Ok(Preopen {
        host: PathBuf::from(host),
        guest: guest.to_string(),
        read_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_forms() {
        let d = parse_dir("./data::/data:ro").unwrap();
        assert_eq!(
            (d.host.to_str().unwrap(), d.guest.as_str(), d.read_only),
            ("./data", "/data", true)
        );
        let d = parse_dir("/tmp/x").unwrap();
        assert_eq!((d.guest.as_str(), d.read_only), ("/tmp/x", false));
        assert!(parse_dir("::/data").is_err());
        assert!(parse_dir(":ro").is_err());
    }

    #[test]
    fn env_forms() {
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("novalue").is_err());
    }
}
