//! The Wasm runtime: load a module once, run it many times under limits.
//!
//! ```text
//! Runtime::new(config)            engine + linkers + epoch ticker, once per process
//!   └─ load_file / load_bytes     → LoadedModule (compiled, cached, InstancePre)
//!        └─ run(RunSpec)          → Outcome { reason, exit code, cpu, memory… }
//! ```

mod cache;
mod cpu;
mod engine;
mod error;
mod handler;
mod http;
mod loaded;
mod memory;
mod module;
mod outcome;
mod output;
mod proxy;
mod run;
mod state;
mod stdin;
mod usage;
mod wagi;

pub use engine::{lower_thread_priority, Runtime, RuntimeConfig};
pub use error::RuntimeError;
pub use flotilla_host_api as host_api;
pub use flotilla_host_api::outgoing_http::{Outbound, OutboundResult};
pub use flotilla_host_api::watchdog::Watchdog;
pub use handler::{plain_response, HandlerSpec, ResponseBody, Served};
pub use module::{LoadedModule, ModuleKind};
pub use outcome::{ExitReason, Outcome};
pub use output::{CaptureBuffer, LogWriter, Stdio};
pub use run::{Limits, Preopen, RunSpec};
pub use stdin::Stdin;
pub use usage::Usage;
