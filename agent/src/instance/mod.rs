//! One Instance bound to this node, from its start to its end: one task
//! each ([`supervise`]); stopping an instance is aborting its task, and
//! dropping the run drops the guest.
//!
//! ```text
//! supervise ─ prepare (dirs, module, grants, values, files) ─┬─ daemon  (run, restart policy, watchdog probes)
//!                                                            └─ replica (registered with the ingress, httpGet probes,
//!                                                                        reload: live)
//! below both: context (NodeContext) · template (run spec, backoff, probe timing)
//!             probes (one probe state machine) · lifecycle (the status, changed in one place)
//! ```

mod context;
mod daemon;
mod lifecycle;
mod prepare;
mod probes;
mod reload;
mod replica;
mod template;

use std::sync::Arc;

use flotilla_spec::instance::Instance;
use flotilla_spec::workload::Execution;

pub use context::NodeContext;
pub use replica::DEFAULT_REQUEST_TIMEOUT;
pub use template::{should_restart, BackoffTimes};

/// Supervises one instance until it ends for good or the task is aborted.
pub async fn supervise(ctx: Arc<NodeContext>, instance: Instance) {
    let mut life = lifecycle::Lifecycle::new(ctx.clone(), instance);
    let Some(prepared) = prepare::prepare(&ctx, &mut life).await else {
        return;
    };
    if life.instance().spec.template.execution == Execution::Http {
        replica::serve(ctx, life, prepared).await
    } else {
        daemon::run(ctx, life, prepared).await
    }
}
