//! Kind names as users type them (`workloads`, `wl`, `instance`…).

use anyhow::{bail, Result};

/// A kind the CLI knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CliKind {
    Workload,
    Instance,
    Node,
    Event,
    Revision,
    Config,
    Secret,
    Volume,
    ModulePolicy,
    ImportedModule,
}

impl CliKind {
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text.to_lowercase().as_str() {
            "workload" | "workloads" | "wl" => CliKind::Workload,
            "instance" | "instances" | "inst" => CliKind::Instance,
            "node" | "nodes" | "no" => CliKind::Node,
            "event" | "events" | "ev" => CliKind::Event,
            "revision" | "revisions" | "rev" => CliKind::Revision,
            "config" | "configs" | "cfg" => CliKind::Config,
            "secret" | "secrets" => CliKind::Secret,
            "volume" | "volumes" | "vol" => CliKind::Volume,
            "modulepolicy" | "modulepolicies" | "mp" => CliKind::ModulePolicy,
            "importedmodule" | "importedmodules" | "im" => CliKind::ImportedModule,
            other => {
                bail!("unknown resource type {other:?} (use workloads, instances, nodes, events, revisions, configs, secrets, volumes, modulepolicies or importedmodules)")
            }
        })
    }

    /// The kind as objects name it (`Workload`).
    pub fn name(self) -> &'static str {
        match self {
            CliKind::Workload => "Workload",
            CliKind::Instance => "Instance",
            CliKind::Node => "Node",
            CliKind::Event => "Event",
            CliKind::Revision => "Revision",
            CliKind::Config => "Config",
            CliKind::Secret => "Secret",
            CliKind::Volume => "Volume",
            CliKind::ModulePolicy => "ModulePolicy",
            CliKind::ImportedModule => "ImportedModule",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            CliKind::Workload => "workloads",
            CliKind::Instance => "instances",
            CliKind::Node => "nodes",
            CliKind::Event => "events",
            CliKind::Revision => "revisions",
            CliKind::Config => "configs",
            CliKind::Secret => "secrets",
            CliKind::Volume => "volumes",
            CliKind::ModulePolicy => "modulepolicies",
            CliKind::ImportedModule => "importedmodules",
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            CliKind::Node | CliKind::ModulePolicy | CliKind::ImportedModule
        )
    }

    /// The collection path: one namespace, all (`None`), or cluster-scoped.
    pub fn collection(self, namespace: Option<&str>) -> String {
        flotilla_client::collection_path(
            self.plural(),
            if self.namespaced() { namespace } else { None },
        )
    }
}
