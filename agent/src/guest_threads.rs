//! The threads daemon instances run their guest code on.
//!
//! Every instance used to be a task on the agent's one async runtime, next to
//! the ingress, the heartbeats and (under `flotilla up`) the API. Fifty
//! CPU-bound daemons then put an http request in line behind fifty epoch
//! slices at every step it took: p99 went from 3 ms to over 100 ms. Daemon
//! runs now execute on a runtime of their own whose threads have nice 10, so
//! the kernel's scheduler — not tokio's queue — decides who gets a core, and
//! it lets a woken request handler or heartbeat preempt guest code at once.
//! Daemons still get every core nobody else wants; what they lose is only
//! the race against latency-sensitive work (at nice 10 the kernel weighs
//! them about 1:9 against it while both want the CPU). Their per-instance
//! millicore limits apply as before.

use std::future::Future;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio_util::task::AbortOnDropHandle;

/// The daemon guests' runtime (shut down, without waiting, when dropped).
pub struct GuestThreads {
    runtime: Option<Runtime>,
}

impl GuestThreads {
    /// Starts one niced worker thread per core.
    pub fn start() -> std::io::Result<Self> {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let runtime = Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("flotilla-guest")
            .on_thread_start(crate::runtime::lower_thread_priority)
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Where to spawn guest runs.
    pub fn handle(&self) -> Option<Handle> {
        self.runtime.as_ref().map(|r| r.handle().clone())
    }
}

impl Drop for GuestThreads {
    fn drop(&mut self) {
        // A runtime may not be dropped (which waits) inside another's task.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs `run` on `guests` (or here, without them), and stops it when the
/// returned future is dropped, as an awaited future would be.
pub async fn run_on<F>(guests: Option<&Handle>, run: F) -> Result<F::Output, String>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match guests {
        Some(guests) => AbortOnDropHandle::new(guests.spawn(run))
            .await
            .map_err(|e| e.to_string()),
        None => Ok(run.await),
    }
}
