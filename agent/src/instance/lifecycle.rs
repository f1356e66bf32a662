//! An instance's status, changed in one place: every phase change,
//! readiness flip and restart count of an instance on this node goes
//! through its [`Lifecycle`], which reports it (and its Events).

use std::sync::Arc;

use flotilla_spec::event::ObjectRef;
use flotilla_spec::instance::{Instance, InstanceStatus, Phase, Termination};
use flotilla_spec::meta::now_rfc3339_millis;

use super::NodeContext;
use crate::report::Severity;

/// One instance's status, as this node last reported it.
pub(crate) struct Lifecycle {
    ctx: Arc<NodeContext>,
    instance: Instance,
    about: ObjectRef,
    status: InstanceStatus,
}

impl Lifecycle {
    /// Starts from the status the instance has.
    pub fn new(ctx: Arc<NodeContext>, instance: Instance) -> Self {
        let about = ObjectRef {
            kind: "Instance".into(),
            namespace: instance.metadata.namespace.clone(),
            name: instance.metadata.name.clone(),
        };
        let status = instance.status.clone().unwrap_or_default();
        Self {
            ctx,
            instance,
            about,
            status,
        }
    }

    /// The instance.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// What Events name it by.
    pub fn about(&self) -> &ObjectRef {
        &self.about
    }

    fn report(&self) {
        self.ctx
            .reporter
            .status(&self.instance, self.status.clone());
    }

    /// Records an Event about it.
    pub fn event(&self, severity: Severity, reason: &str, message: String) {
        self.ctx
            .reporter
            .event(&self.about, severity, reason, message);
    }

    /// Failed for good: it will never run here.
    pub fn fail(&mut self, reason: &str, message: String) {
        let Instance { metadata, .. } = &self.instance;
        tracing::warn!(
            "instance {}/{}: {message}",
            metadata.namespace,
            metadata.name
        );
        self.status.phase = Phase::Failed;
        self.status.set_ready(false);
        self.status.message = message.clone();
        self.report();
        self.event(Severity::Warning, reason, message);
    }

    /// Waiting to start, for the reason `message` gives.
    pub fn pending(&mut self, message: String) {
        self.status.phase = Phase::Pending;
        self.status.message = message;
        self.report();
    }

    /// Running (a daemon's run, or a replica serving), `ready` or not.
    pub fn running(&mut self, ready: bool) {
        self.status.phase = Phase::Running;
        self.status.set_ready(ready);
        self.status.started_at = Some(now_rfc3339_millis());
        self.status.message.clear();
        self.report();
    }

    /// Ready or not (reported when it changes); becoming ready clears a
    /// message about why it was not.
    pub fn set_ready(&mut self, ready: bool) {
        if self.status.ready != ready {
            self.status.set_ready(ready);
            if ready {
                self.status.message.clear();
            }
            self.report();
        }
    }

    /// A run ended this way (reported with what follows: a restart or
    /// the end).
    pub fn ended(&mut self, ended: Termination) {
        self.status.set_ready(false);
        self.status.last_termination = Some(ended);
    }

    /// It will be started again: one more restart.
    pub fn restarting(&mut self) {
        self.status.restarts += 1;
    }

    /// An http replica restarted in place (its probes failed): counted,
    /// not ready until its probes pass again.
    pub fn restarted(&mut self, message: String) {
        self.status.restarts += 1;
        self.status.set_ready(false);
        self.status.message = message;
        self.report();
    }

    /// Waiting before a restart (`CrashLoopBackOff`).
    pub fn back_off(&mut self, message: String) {
        self.status.phase = Phase::CrashLoopBackOff;
        self.status.message = message;
        self.report();
    }

    /// Ended for good: `Succeeded` if its last run completed, else `Failed`.
    pub fn finished(&mut self, completed: bool) {
        self.status.phase = if completed {
            Phase::Succeeded
        } else {
            Phase::Failed
        };
        self.report();
    }

    /// An http replica's request counts (reported when they change).
    pub fn counts(&mut self, requests: u64, server_errors: u64) {
        if (requests, server_errors) != (self.status.requests, self.status.server_errors) {
            self.status.requests = requests;
            self.status.server_errors = server_errors;
            self.report();
        }
    }
}
