//! What each instance's `Store` holds: its WASI context and its limits, and
//! the store set-up that wires the limits into wasmtime.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use flotilla_host_api::{HostCtx, HostView};

use super::cpu::{CpuMeter, CpuQuota};
use super::memory::MemoryLimiter;

/// The limits an instance runs under and what it has used of them.
pub(crate) struct InstanceLimits {
    pub memory: MemoryLimiter,
    pub cpu: Arc<CpuMeter>,
    pub quota: Option<CpuQuota>,
    /// Where the run's usage is published (metrics).
    pub usage: Option<Arc<super::Usage>>,
}

impl InstanceLimits {
    /// Limits of `memory_bytes` and `cpu_millis`; what the run uses is
    /// added to `usage` as well.
    pub(crate) fn new(
        memory_bytes: Option<u64>,
        cpu_millis: Option<u64>,
        usage: Option<Arc<super::Usage>>,
    ) -> Self {
        Self {
            memory: MemoryLimiter::new(memory_bytes, usage.clone()),
            cpu: Arc::new(CpuMeter::counting_into(usage.clone())),
            quota: cpu_millis.map(CpuQuota::new),
            usage,
        }
    }
}

/// Store data with limits.
pub(crate) trait Limited: Send + 'static {
    fn limits(&mut self) -> &mut InstanceLimits;
}

/// Store data for a WASI preview-1 core module.
pub(crate) struct CoreState {
    pub wasi: WasiP1Ctx,
    pub limits: InstanceLimits,
    /// Its host-api capabilities.
    pub host: HostCtx,
}

impl HostView for CoreState {
    fn host(&self) -> &HostCtx {
        &self.host
    }
    fn host_mut(&mut self) -> &mut HostCtx {
        &mut self.host
    }
}

impl CoreState {
    /// A store for one instance: the sandbox `wasi` grants, under `limits`.
    pub(crate) fn new_store(
        engine: &Engine,
        wasi: &mut WasiCtxBuilder,
        limits: InstanceLimits,
    ) -> Store<Self> {
        let mut store = Store::new(
            engine,
            Self {
                wasi: wasi.build_p1(),
                limits,
                host: HostCtx::default(),
            },
        );
        apply_limits(&mut store);
        store
    }
}

impl Limited for CoreState {
    fn limits(&mut self) -> &mut InstanceLimits {
        &mut self.limits
    }
}

/// Store data for a WASI preview-2 component: a command, or an HTTP
/// handler (whose linker also provides `wasi:http`).
pub(crate) struct ComponentState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: InstanceLimits,
    pub http: wasmtime_wasi_http::WasiHttpCtx,
    /// Its host-api capabilities (a handler's outgoing-request hook too).
    pub host: HostCtx,
}

impl HostView for ComponentState {
    fn host(&self) -> &HostCtx {
        &self.host
    }
    fn host_mut(&mut self) -> &mut HostCtx {
        &mut self.host
    }
}

impl ComponentState {
    /// A store for one instance: the sandbox `wasi` grants, under `limits`.
    pub(crate) fn new_store(
        engine: &Engine,
        wasi: &mut WasiCtxBuilder,
        limits: InstanceLimits,
    ) -> Store<Self> {
        let state = Self {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits,
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            host: HostCtx::default(),
        };
        let mut store = Store::new(engine, state);
        apply_limits(&mut store);
        store
    }
}

impl Limited for ComponentState {
    fn limits(&mut self) -> &mut InstanceLimits {
        &mut self.limits
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Wires an instance's limits into its store: the memory limiter, and an
/// epoch callback that charges CPU time, sleeps the instance when it is over
/// its quota, and otherwise yields so other instances (and timers) get the
/// thread.
fn apply_limits<T: Limited>(store: &mut Store<T>) {
    store.limiter(|state| &mut state.limits().memory);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        let limits = ctx.data_mut().limits();
        let used = limits.cpu.used_ns();
        let pause = limits.quota.as_mut().and_then(|quota| quota.charge(used));
        if let (Some(pause), Some(usage)) = (pause, &limits.usage) {
            usage.add_throttled(pause);
        }
        Ok(match pause {
            Some(pause) => UpdateDeadline::YieldCustom(1, Box::pin(tokio::time::sleep(pause))),
            None => UpdateDeadline::Yield(1),
        })
    });
}
