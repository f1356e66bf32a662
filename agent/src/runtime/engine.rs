//! The [`Runtime`]: one wasmtime engine per process, configured once.
//!
//! - **Pooling allocator**: instance memories, tables and fiber stacks come
//!   from slots reserved up front, so instantiation is a few µs of bookkeeping
//!   instead of `mmap`/`munmap` calls.
//! - **Epoch interruption**: a ticker thread advances the engine's epoch every
//!   [`RuntimeConfig::epoch_tick`] while any guest runs (it parks when none
//!   does); each running instance is called back at its
//!   next tick to charge CPU and yield (see `cpu` and `state`).
//! - **Async**: guests run on fibers driven by tokio, so thousands of them share
//!   a few threads and a sleeping or throttled guest costs no thread.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, Linker, PoolingAllocationConfig};

use super::cache::CompileCache;
use super::state::{ComponentState, CoreState};
use super::RuntimeError;

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Instances that may exist at once (pool slots).
    pub max_instances: u32,
    /// Largest linear memory an instance may have (pool slot size).
    pub max_memory_bytes: u64,
    /// How often running instances are interrupted to account CPU and yield.
    pub epoch_tick: Duration,
    /// Where precompiled artefacts are cached; `None` compiles in memory.
    pub cache_dir: Option<PathBuf>,
    /// Modules loaded (read, hashed, compiled) at once by
    /// [`Runtime::load_bytes_in_background`].
    pub parallel_loads: usize,
    /// Loaded modules no instance uses that stay in memory (least recently
    /// used out first).
    pub max_idle_modules: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_instances: 1000,
            max_memory_bytes: 4 << 30,
            epoch_tick: Duration::from_millis(2),
            cache_dir: None,
            parallel_loads: 1,
            max_idle_modules: 64,
        }
    }
}

/// The Wasm runtime of one process: engine, linkers, loaded modules.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) core_linker: Linker<CoreState>,
    pub(crate) component_linker: wasmtime::component::Linker<ComponentState>,
    pub(crate) http_linker: wasmtime::component::Linker<ComponentState>,
    /// Every `(module, name)` the core linker defines, to name missing imports.
    pub(crate) core_imports: HashSet<(String, String)>,
    pub(crate) cache: Option<CompileCache>,
    pub(crate) loaded: super::loaded::LoadedModules,
    pub(crate) ticker: Arc<EpochTicker>,
    /// Bounds background loads (see [`Runtime::load_bytes_in_background`]).
    pub(crate) load_slots: tokio::sync::Semaphore,
}

impl Runtime {
    /// Builds the engine and starts its epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Arc<Self>, RuntimeError> {
        let engine_error = |e: wasmtime::Error| RuntimeError::Engine(format!("{e:#}"));
        let slots = config.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        // A component (a module wrapped with the WASI adapter) is several core
        // instances; size the pool so `max_instances` components fit.
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(4))
            .total_memories(slots.saturating_mul(2))
            .total_tables(slots.saturating_mul(4))
            .total_stacks(slots)
            .table_elements(super::memory::TABLE_ELEMENTS_CAP)
            .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX));
        let mut wasm = Config::new();
        wasm.epoch_interruption(true)
            .wasm_component_model(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(engine_error)?;

        let mut core_linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut core_linker, |s: &mut CoreState| &mut s.wasi)
            .map_err(engine_error)?;
        flotilla_host_api::add_to_core_linker(&mut core_linker).map_err(engine_error)?;
        let mut component_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component_linker).map_err(engine_error)?;
        flotilla_host_api::add_to_linker(&mut component_linker).map_err(engine_error)?;
        // HTTP handlers: the wasi:http/proxy world (WASI p2 plus wasi:http).
        let mut http_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut http_linker).map_err(engine_error)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut http_linker)
            .map_err(engine_error)?;
        flotilla_host_api::add_to_linker(&mut http_linker).map_err(engine_error)?;
        let core_imports = defined_imports(&engine, &core_linker);

        let cache = match &config.cache_dir {
            Some(dir) => Some(CompileCache::open(dir, &engine)?),
            None => None,
        };
        let ticker = EpochTicker::start(&engine, config.epoch_tick)?;
        background_compile_threads();
        Ok(Arc::new(Self {
            engine,
            core_linker,
            component_linker,
            http_linker,
            core_imports,
            cache,
            loaded: super::loaded::LoadedModules::new(config.max_idle_modules),
            ticker,
            load_slots: tokio::sync::Semaphore::new(config.parallel_loads.max(1)),
        }))
    }

    /// The engine, for embedders that need it (benchmarks, tests).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Runs compilation at background priority: wasmtime compiles a module's
/// functions in parallel on rayon's global pool, whose threads would
/// otherwise compete as equals with the threads that heartbeat, serve the
/// API and run guests — a 15 MB component compiling on a busy node starved
/// its heartbeats past the node grace. The pool's threads get nice 10 when
/// they start (if the pool exists already, it is left as it is).
fn background_compile_threads() {
    let built = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("flotilla-compile-{i}"))
        .start_handler(|_| lower_thread_priority())
        .build_global();
    if let Err(e) = built {
        tracing::debug!("compile threads already configured: {e}");
    }
}

/// Gives the calling thread nice 10 (Linux: per thread). Failure is
/// harmless: the thread keeps its priority.
pub fn lower_thread_priority() {
    // SAFETY: gettid has no preconditions; setpriority takes plain integers
    // and only changes the scheduling priority of this thread.
    let result = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10)
    };
    if result != 0 {
        tracing::debug!(
            "cannot lower a background thread's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The `(module, name)` pairs a core linker defines.
fn defined_imports(engine: &Engine, linker: &Linker<CoreState>) -> HashSet<(String, String)> {
    let mut store = wasmtime::Store::new(
        engine,
        CoreState {
            wasi: wasmtime_wasi::WasiCtxBuilder::new().build_p1(),
            limits: super::state::InstanceLimits::new(None, None, None),
            host: Default::default(),
        },
    );
    linker
        .iter(&mut store)
        .map(|(module, name, _)| (module.to_string(), name.to_string()))
        .collect()
}

/// Advances the engine's epoch every tick while any guest runs, and parks
/// otherwise, so an idle node does not wake hundreds of times a second.
pub(crate) struct EpochTicker {
    running: AtomicUsize,
    thread: std::thread::Thread,
}

/// Held while a guest may execute; the ticker runs while any is held.
pub(crate) struct Running(Arc<EpochTicker>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EpochTicker {
    /// Starts the ticker thread for `engine`; it ends when the engine is dropped.
    fn start(engine: &Engine, tick: Duration) -> Result<Arc<Self>, RuntimeError> {
        let weak = engine.weak();
        let (tx, rx) = std::sync::mpsc::channel::<Arc<EpochTicker>>();
        let handle = std::thread::Builder::new()
            .name("flotilla-epoch".into())
            .spawn(move || {
                let Ok(ticker) = rx.recv() else { return };
                loop {
                    if ticker.running.load(Ordering::Relaxed) == 0 {
                        // Woken by `enter`; the timeout notices a dropped engine.
                        std::thread::park_timeout(Duration::from_secs(1));
                    } else {
                        std::thread::sleep(tick);
                    }
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .map_err(|e| {
                RuntimeError::Engine(format!("cannot start the epoch ticker thread: {e}"))
            })?;
        let ticker = Arc::new(Self {
            running: AtomicUsize::new(0),
            thread: handle.thread().clone(),
        });
        // The thread waits for this before its first look at `running`.
        let _ = tx.send(ticker.clone());
        Ok(ticker)
    }

    /// Marks a guest as possibly executing until the guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> Running {
        if self.running.fetch_add(1, Ordering::Relaxed) == 0 {
            self.thread.unpark();
        }
        Running(self.clone())
    }
}
