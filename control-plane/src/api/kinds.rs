//! The kinds the API serves and their URL names.

use super::ApiError;

/// A served kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Workloads (namespaced).
    Workload,
    /// Instances (namespaced).
    Instance,
    /// Events (namespaced).
    Event,
    /// Nodes (cluster-scoped).
    Node,
    /// Bearer tokens (cluster-scoped; admins only).
    Token,
    /// Workload revisions (namespaced; written by the workload controller
    /// only).
    Revision,
    /// Configuration values (namespaced).
    Config,
    /// Secret values (namespaced; sealed at rest; admins only, and nodes
    /// for what their instances use).
    Secret,
    /// Persistent volumes of stateful replicas (namespaced; made by the
    /// binder; their nodes report usage; admins may delete them).
    Volume,
    /// Which modules workloads may run (cluster-scoped; admins write).
    ModulePolicy,
    /// Modules imported from bundles, by reference (cluster-scoped; admins
    /// write).
    ImportedModule,
}

impl Kind {
    /// From the plural in a URL.
    pub fn from_plural(plural: &str) -> Result<Self, ApiError> {
        Ok(match plural {
            "workloads" => Kind::Workload,
            "instances" => Kind::Instance,
            "events" => Kind::Event,
            "nodes" => Kind::Node,
            "tokens" => Kind::Token,
            "revisions" => Kind::Revision,
            "configs" => Kind::Config,
            "secrets" => Kind::Secret,
            "volumes" => Kind::Volume,
            "modulepolicies" => Kind::ModulePolicy,
            "importedmodules" => Kind::ImportedModule,
            other => {
                return Err(ApiError::not_found(format!(
                    "the server has no resource type {other:?} (it serves workloads, instances, events, nodes, tokens, revisions, configs, secrets, volumes, modulepolicies, importedmodules)"
                )))
            }
        })
    }

    /// The `kind` field's value.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Workload => "Workload",
            Kind::Instance => "Instance",
            Kind::Event => "Event",
            Kind::Node => "Node",
            Kind::Token => "Token",
            Kind::Revision => "Revision",
            Kind::Config => "Config",
            Kind::Secret => "Secret",
            Kind::Volume => "Volume",
            Kind::ModulePolicy => "ModulePolicy",
            Kind::ImportedModule => super::imported::KIND,
        }
    }

    /// The URL plural.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Workload => "workloads",
            Kind::Instance => "instances",
            Kind::Event => "events",
            Kind::Node => "nodes",
            Kind::Token => "tokens",
            Kind::Revision => "revisions",
            Kind::Config => "configs",
            Kind::Secret => "secrets",
            Kind::Volume => "volumes",
            Kind::ModulePolicy => "modulepolicies",
            Kind::ImportedModule => "importedmodules",
        }
    }

    /// Whether objects live in namespaces.
    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            Kind::Node | Kind::Token | Kind::ModulePolicy | Kind::ImportedModule
        )
    }
}
