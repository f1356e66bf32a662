//! Every kind the API serves, in one table: its `kind` name, its URL
//! plural, the short names users type (`wl`, `inst`…) and its scope.
//!
//! The API server routes by it and the CLI parses, lists and documents
//! kinds from it, so a kind added here is served, typed and shown in
//! `flotilla get --help` at once.

use std::fmt;

/// A kind the API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Verbs × resources in one namespace ([`rbac`](crate::rbac)).
    Role,
    /// A role granted to tokens in one namespace.
    RoleBinding,
    /// Caps on what one namespace consumes ([`quota`](crate::quota);
    /// admins write).
    ResourceQuota,
    /// Default and bounded requests and limits in one namespace (admins
    /// write).
    LimitRange,
    /// Work that runs to completion ([`job`](crate::job)).
    Job,
    /// How many selected instances evictions and rollouts may take down
    /// at once ([`disruption`](crate::disruption)).
    DisruptionBudget,
    /// A certificate issued to a node, and whether it was revoked
    /// (cluster-scoped; written by the server).
    NodeCertificate,
}

/// What the table says of one kind.
#[derive(Debug)]
pub struct KindInfo {
    pub kind: Kind,
    /// The `kind` field's value (`Workload`).
    pub name: &'static str,
    /// The URL plural (`workloads`).
    pub plural: &'static str,
    /// Short names a user may type besides the singular and the plural.
    pub short: &'static [&'static str],
    /// Whether objects live in namespaces.
    pub namespaced: bool,
}

/// The table, in the order `flotilla get --help` lists kinds.
pub const KINDS: &[KindInfo] = &[
    KindInfo {
        kind: Kind::Workload,
        name: "Workload",
        plural: "workloads",
        short: &["wl"],
        namespaced: true,
    },
    KindInfo {
        kind: Kind::Instance,
        name: "Instance",
        plural: "instances",
        short: &["inst"],
        namespaced: true,
    },
    KindInfo {
        kind: Kind::Node,
        name: "Node",
        plural: "nodes",
        short: &["no"],
        namespaced: false,
    },
    KindInfo {
        kind: Kind::Event,
        name: "Event",
        plural: "events",
        short: &["ev"],
        namespaced: true,
    },
    KindInfo {
        kind: Kind::Revision,
        name: "Revision",
        plural: "revisions",
        short: &["rev"],
        namespaced: true,
    },
    KindInfo {
        kind: Kind::Config,
        name: "Config",
        plural: "configs",
        short: &["cfg"],
        namespaced: true,
    },
    KindInfo {
        kind: Kind::Secret,
        name: "Secret",
        plural: "secrets",
        short: &[],
        namespaced: true,
    },
    KindInfo {
        kind: Kind::Volume,
        name: "Volume",
        plural: "volumes",
        short: &["vol"],
        namespaced: true,
    },
    KindInfo {
        kind: Kind::ModulePolicy,
        name: "ModulePolicy",
        plural: "modulepolicies",
        short: &["mp"],
        namespaced: false,
    },
    KindInfo {
        kind: Kind::ImportedModule,
        name: "ImportedModule",
        plural: "importedmodules",
        short: &["im"],
        namespaced: false,
    },
    KindInfo {
        kind: Kind::Role,
        name: "Role",
        plural: "roles",
        short: &[],
        namespaced: true,
    },
    KindInfo {
        kind: Kind::RoleBinding,
        name: "RoleBinding",
        plural: "rolebindings",
        short: &["rb"],
        namespaced: true,
    },
    KindInfo {
        kind: Kind::ResourceQuota,
        name: "ResourceQuota",
        plural: "resourcequotas",
        short: &["quota"],
        namespaced: true,
    },
    KindInfo {
        kind: Kind::LimitRange,
        name: "LimitRange",
        plural: "limitranges",
        short: &["limits"],
        namespaced: true,
    },
    KindInfo {
        kind: Kind::Job,
        name: "Job",
        plural: "jobs",
        short: &[],
        namespaced: true,
    },
    KindInfo {
        kind: Kind::DisruptionBudget,
        name: "DisruptionBudget",
        plural: "disruptionbudgets",
        short: &["pdb", "budget"],
        namespaced: true,
    },
    KindInfo {
        kind: Kind::NodeCertificate,
        name: "NodeCertificate",
        plural: "nodecertificates",
        short: &["nodecert"],
        namespaced: false,
    },
    KindInfo {
        kind: Kind::Token,
        name: "Token",
        plural: "tokens",
        short: &[],
        namespaced: false,
    },
];

/// A name no kind answers to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no resource type {name:?} (the kinds are {})", plurals())]
pub struct UnknownKind {
    pub name: String,
}

/// Every plural, comma-separated: what an error or a help text lists.
pub fn plurals() -> String {
    KINDS
        .iter()
        .map(|k| k.plural)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Kind {
    /// This kind's row of the table.
    pub fn info(self) -> &'static KindInfo {
        // Every variant has a row (the test below checks).
        KINDS.iter().find(|k| k.kind == self).unwrap_or(&KINDS[0])
    }

    /// The `kind` field's value.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The URL plural.
    pub fn plural(self) -> &'static str {
        self.info().plural
    }

    /// Whether objects live in namespaces.
    pub fn namespaced(self) -> bool {
        self.info().namespaced
    }

    /// From the plural in a URL (exactly).
    pub fn from_plural(plural: &str) -> Result<Self, UnknownKind> {
        KINDS
            .iter()
            .find(|k| k.plural == plural)
            .map(|k| k.kind)
            .ok_or_else(|| UnknownKind {
                name: plural.to_string(),
            })
    }

    /// From what a user types: the plural, the singular (the `kind` name in
    /// any case) or a short name.
    pub fn parse(text: &str) -> Result<Self, UnknownKind> {
        let lower = text.to_lowercase();
        KINDS
            .iter()
            .find(|k| {
                k.plural == lower || k.name.to_lowercase() == lower || k.short.contains(&&*lower)
            })
            .map(|k| k.kind)
            .ok_or_else(|| UnknownKind {
                name: text.to_string(),
            })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_row_and_every_name_one_kind() {
        let all = [
            Kind::Workload,
            Kind::Instance,
            Kind::Event,
            Kind::Node,
            Kind::Token,
            Kind::Revision,
            Kind::Config,
            Kind::Secret,
            Kind::Volume,
            Kind::ModulePolicy,
            Kind::ImportedModule,
            Kind::Role,
            Kind::RoleBinding,
            Kind::ResourceQuota,
            Kind::LimitRange,
            Kind::Job,
            Kind::DisruptionBudget,
            Kind::NodeCertificate,
        ];
        assert_eq!(all.len(), KINDS.len());
        for kind in all {
            assert_eq!(KINDS.iter().filter(|k| k.kind == kind).count(), 1);
            assert_eq!(kind.info().kind, kind);
            assert_eq!(Kind::from_plural(kind.plural()), Ok(kind));
            assert_eq!(Kind::parse(kind.name()), Ok(kind));
            assert_eq!(Kind::parse(&kind.plural().to_uppercase()), Ok(kind));
        }
        let mut typed: Vec<String> = KINDS
            .iter()
            .flat_map(|k| {
                [k.plural.to_string(), k.name.to_lowercase()]
                    .into_iter()
                    .chain(k.short.iter().map(|s| s.to_string()))
            })
            .collect();
        let count = typed.len();
        typed.sort();
        typed.dedup();
        assert_eq!(typed.len(), count, "a name that two kinds answer to");
    }

    #[test]
    fn unknown_names_list_the_kinds() {
        let e = Kind::parse("pods").unwrap_err();
        assert!(e.to_string().contains("\"pods\""));
        assert!(e.to_string().contains("importedmodules"));
        assert!(Kind::from_plural("Workloads").is_err());
        assert!(Kind::from_plural("workload").is_err());
    }
}
