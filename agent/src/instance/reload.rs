//! `reload: live`: an http replica's Config and Secret values read again
//! every [`RELOAD_EVERY`] while it serves; a changed environment or
//! `wasi:config` values go into the spec later requests take, changed files
//! are replaced where the guest reads them. No restart, no rollout.

use std::sync::Arc;
use std::time::Duration;

use flotilla_spec::event::ObjectRef;
use flotilla_spec::instance::Instance;

use super::NodeContext;
use crate::config_refs::{InstanceValues, Unresolved};
use crate::endpoints::SharedSpec;
use crate::report::Severity;

/// How often a `reload: live` replica reads its values again.
const RELOAD_EVERY: Duration = Duration::from_millis(500);

/// Aborts its task when dropped.
pub(crate) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads the values of `instance` again, forever, from `values` (those it
/// started with); stops when the result is dropped.
pub(crate) fn start(
    ctx: Arc<NodeContext>,
    instance: Instance,
    folder: String,
    shared: SharedSpec,
    mut values: InstanceValues,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut said = String::new();
        loop {
            tokio::time::sleep(RELOAD_EVERY).await;
            // A control plane that does not answer is waited for on the
            // next turn, not forever.
            let turn = reload(&ctx, &instance, &folder, &shared, &mut values, &mut said);
            let _ = tokio::time::timeout(RELOAD_EVERY * 4, turn).await;
        }
    }))
}

/// One reading: a value that cannot be
/// read now keeps the last one (and says so in the agent's log).
async fn reload(
    ctx: &NodeContext,
    instance: &Instance,
    folder: &str,
    shared: &SharedSpec,
    values: &mut crate::config_refs::InstanceValues,
    said: &mut String,
) {
    let ns = &instance.metadata.namespace;
    let template = &instance.spec.template;
    let read = crate::config_refs::Resolver::new(&ctx.client, ns)
        .all(template)
        .await;
    let fresh = match read {
        Ok(read) => read,
        Err(Unresolved::Missing(why) | Unresolved::TooLarge(why)) => {
            // Said once per cause: the replica keeps serving its last values.
            if *said != why {
                let about = ObjectRef {
                    kind: "Instance".into(),
                    namespace: ns.clone(),
                    name: instance.metadata.name.clone(),
                };
                ctx.reporter.event(
                    &about,
                    Severity::Warning,
                    "ConfigMissing",
                    format!("{why}; it keeps serving its last values"),
                );
                *said = why;
            }
            return;
        }
        Err(Unresolved::Unreachable(why)) => {
            tracing::debug!("instance {ns}/{}: {why}", instance.metadata.name);
            return;
        }
    };
    said.clear();
    if fresh.env != values.env || fresh.config != values.config {
        let mut next = (*shared.get()).clone();
        next.env = fresh.env.clone();
        next.host.config = Arc::new(fresh.config.iter().cloned().collect());
        shared.set(next);
        values.env = fresh.env;
        values.config = fresh.config;
    }
    if fresh.mounts != values.mounts {
        match ctx.files.refresh(ns, folder, &fresh.mounts) {
            Ok(()) => values.mounts = fresh.mounts,
            Err(e) => tracing::warn!("instance {ns}/{}: {e}", instance.metadata.name),
        }
    }
}
