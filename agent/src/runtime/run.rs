//! Running a loaded module once: build its sandbox (WASI context with only
//! what the spec grants), instantiate from the `InstancePre`, call its entry
//! point under its limits, and classify the end.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::cpu::{CpuMeter, Metered};
use super::module::{LoadedModule, Prepared};
use super::outcome::{Ending, Outcome};
use super::output::{AppendStream, Stdio};
use super::state::{ComponentState, CoreState, InstanceLimits, Limited};
use super::RuntimeError;

/// The limits one run is held to. `None` means unlimited.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Bytes over all linear memories and tables.
    pub memory_bytes: Option<u64>,
    /// CPU quota in millicores (1000 = one core).
    pub cpu_millis: Option<u64>,
    /// Wall-clock deadline from the start of instantiation.
    pub timeout: Option<Duration>,
}

/// A host directory granted to the guest.
#[derive(Debug, Clone)]
pub struct Preopen {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the guest sees it (e.g. `/data`).
    pub guest: String,
    /// Whether the guest may only read.
    pub read_only: bool,
}

/// Everything one run needs besides the module.
#[derive(Clone, Default)]
pub struct RunSpec {
    /// `argv[0]` as the guest sees it; the module's name when empty.
    pub program_name: String,
    /// Arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Environment variables; the guest sees nothing else of the host's.
    pub env: Vec<(String, String)>,
    /// Directories granted; the guest sees no other file.
    pub dirs: Vec<Preopen>,
    /// Memory, CPU and time limits.
    pub limits: Limits,
    /// Where the guest's stdout goes.
    pub stdout: Stdio,
    /// Where the guest's stderr goes.
    pub stderr: Stdio,
    /// Its host-api capabilities: what it was granted (a guest importing
    /// another one does not start), its watchdog, its config values.
    pub host: flotilla_host_api::HostCtx,
    /// What the guest reads on stdin (nothing when `None`).
    pub stdin: Option<super::Stdin>,
    /// Where its CPU time, throttling and memory are added up across runs
    /// (the node's metrics), if anywhere.
    pub usage: Option<std::sync::Arc<super::Usage>>,
}

/// Names the environment's variables, never their values (they may be
/// secrets).
impl std::fmt::Debug for RunSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("RunSpec")
            .field("program_name", &self.program_name)
            .field("args", &self.args.len())
            .field("env", &env)
            .field("dirs", &self.dirs)
            .field("limits", &self.limits)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// Why a run stopped before its entry point returned normally.
pub(super) enum Failure {
    /// Instantiation failed (out of memory at start, a trapping start function…).
    Instantiate(wasmtime::Error),
    /// The entry point failed (trap, `proc_exit`, host error).
    Run(wasmtime::Error),
}

impl LoadedModule {
    /// Runs the module's entry point once under `spec`, to the end.
    ///
    /// An `Err` means the run could not start (a directory cannot be granted,
    /// no entry point); everything that happens once the guest runs — exit
    /// codes, traps, limits — is an [`Outcome`].
    pub async fn run(&self, spec: RunSpec) -> Result<Outcome, RuntimeError> {
        let started = Instant::now();
        if let Prepared::Core(pre) = &self.prepared {
            if pre.module().get_export("_start").is_none() {
                return Err(RuntimeError::NoEntryPoint {
                    name: self.name.clone(),
                });
            }
        }
        self.check_grants(&spec.host.granted)?;
        let mut wasi = self.wasi_builder(&spec)?;
        let _running = self.runtime.ticker.enter();
        let limits = InstanceLimits::new(
            spec.limits.memory_bytes,
            spec.limits.cpu_millis,
            spec.usage.clone(),
        );
        let meter = limits.cpu.clone();
        let engine = &self.runtime.engine;
        let timeout = spec.limits.timeout;
        Ok(match &self.prepared {
            Prepared::Core(pre) => {
                let mut store = CoreState::new_store(engine, &mut wasi, limits);
                store.data_mut().host = spec.host.clone();
                let result = drive(run_core(pre, &mut store), &meter, timeout).await;
                finish(&mut store, result, &meter, started, timeout)
            }
            Prepared::Component(pre) => {
                let mut store = ComponentState::new_store(engine, &mut wasi, limits);
                store.data_mut().host = spec.host.clone();
                let result = drive(run_component(pre, &mut store), &meter, timeout).await;
                finish(&mut store, result, &meter, started, timeout)
            }
            Prepared::Proxy(_) => {
                return Err(RuntimeError::HttpHandler {
                    name: self.name.clone(),
                })
            }
        })
    }

    /// Instantiates the module under `limits` and drops the instance without
    /// calling its entry point: checks that it starts within its memory limit
    /// and measures what instantiation alone costs.
    pub async fn instantiate_and_drop(&self, limits: &Limits) -> Result<(), String> {
        let engine = &self.runtime.engine;
        // A start function may loop: keep epochs advancing.
        let _running = self.runtime.ticker.enter();
        let mut wasi = WasiCtxBuilder::new();
        let instance_limits = InstanceLimits::new(limits.memory_bytes, limits.cpu_millis, None);
        let result = match &self.prepared {
            Prepared::Core(pre) => {
                let mut store = CoreState::new_store(engine, &mut wasi, instance_limits);
                pre.instantiate_async(&mut store).await.map(drop)
            }
            Prepared::Component(pre) => {
                let mut store = ComponentState::new_store(engine, &mut wasi, instance_limits);
                pre.instantiate_async(&mut store).await.map(drop)
            }
            Prepared::Proxy(pre) => {
                let mut store = ComponentState::new_store(engine, &mut wasi, instance_limits);
                pre.instantiate_async(&mut store).await.map(drop)
            }
        };
        result.map_err(|e| format!("{e:#}"))
    }

    /// The guest's WASI context: exactly the args, env, dirs and streams the
    /// spec grants, nothing inherited from the host.
    fn wasi_builder(&self, spec: &RunSpec) -> Result<WasiCtxBuilder, RuntimeError> {
        let mut wasi = WasiCtxBuilder::new();
        let program = if spec.program_name.is_empty() {
            self.name()
        } else {
            &spec.program_name
        };
        wasi.arg(program).args(&spec.args).envs(&spec.env);
        for dir in &spec.dirs {
            let preopen_error = |message: String| RuntimeError::Preopen {
                path: dir.host.clone(),
                message,
            };
            if !dir.host.is_dir() {
                return Err(preopen_error("no such directory".into()));
            }
            if let Some(cache) = &self.runtime.cache {
                let (granted, cache) = (dir.host.canonicalize(), cache.dir().canonicalize());
                if let (Ok(granted), Ok(cache)) = (granted, cache) {
                    if granted.starts_with(&cache) || cache.starts_with(&granted) {
                        return Err(preopen_error(format!(
                            "it holds flotilla's compiled-code cache {} (native code the host runs): grant another directory",
                            cache.display()
                        )));
                    }
                }
            }
            let perms = if dir.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            wasi.preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| preopen_error(format!("{e:#}")))?;
        }
        if let Some(stdin) = &spec.stdin {
            wasi.stdin(stdin.clone());
        }
        match &spec.stdout {
            Stdio::Inherit => drop(wasi.inherit_stdout()),
            Stdio::Null => {}
            Stdio::Capture(buffer) => drop(wasi.stdout(AppendStream(buffer.clone()))),
            Stdio::Log(log) => drop(wasi.stdout(AppendStream(log.clone()))),
        }
        match &spec.stderr {
            Stdio::Inherit => drop(wasi.inherit_stderr()),
            Stdio::Null => {}
            Stdio::Capture(buffer) => drop(wasi.stderr(AppendStream(buffer.clone()))),
            Stdio::Log(log) => drop(wasi.stderr(AppendStream(log.clone()))),
        }
        Ok(wasi)
    }
}

async fn run_core(
    pre: &wasmtime::InstancePre<CoreState>,
    store: &mut Store<CoreState>,
) -> Result<i32, Failure> {
    let instance = pre
        .instantiate_async(&mut *store)
        .await
        .map_err(Failure::Instantiate)?;
    let start = instance
        .get_typed_func::<(), ()>(&mut *store, "_start")
        .map_err(Failure::Instantiate)?;
    start
        .call_async(&mut *store, ())
        .await
        .map_err(Failure::Run)?;
    Ok(0)
}

async fn run_component(
    pre: &wasmtime_wasi::p2::bindings::CommandPre<ComponentState>,
    store: &mut Store<ComponentState>,
) -> Result<i32, Failure> {
    let command = pre
        .instantiate_async(&mut *store)
        .await
        .map_err(Failure::Instantiate)?;
    match command.wasi_cli_run().call_run(&mut *store).await {
        Ok(Ok(())) => Ok(0),
        Ok(Err(())) => Ok(1),
        Err(e) => Err(Failure::Run(e)),
    }
}

/// Polls a run to its end under CPU metering and the deadline. `None` means
/// the deadline passed (the run's future, and with it the guest, is dropped).
pub(super) async fn drive<F>(
    run: F,
    meter: &Arc<CpuMeter>,
    timeout: Option<Duration>,
) -> Option<Result<i32, Failure>>
where
    F: Future<Output = Result<i32, Failure>>,
{
    let metered = Metered::new(run, meter.clone());
    match timeout {
        Some(limit) => tokio::time::timeout(limit, metered).await.ok(),
        None => Some(metered.await),
    }
}

pub(super) fn finish<T: Limited>(
    store: &mut Store<T>,
    result: Option<Result<i32, Failure>>,
    meter: &CpuMeter,
    started: Instant,
    timeout: Option<Duration>,
) -> Outcome {
    let memory = &store.data_mut().limits().memory;
    let refusal = memory.refusal();
    let ending = match result {
        None => Ending::deadline(timeout.unwrap_or_default()),
        Some(Ok(code)) => Ending::exited(code),
        Some(Err(Failure::Instantiate(e))) if refusal.is_some() => Ending::oom_at_start(&e),
        Some(Err(Failure::Instantiate(e) | Failure::Run(e))) => Ending::classify(Err(e), refusal),
    };
    Outcome {
        reason: ending.reason,
        exit_code: ending.exit_code,
        trap: ending.trap,
        message: ending.message,
        wall_seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: meter.used_seconds(),
        peak_memory_bytes: memory.peak(),
    }
}
