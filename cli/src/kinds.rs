//! Kinds as the CLI addresses them: the shared table
//! (`flotilla_spec::kinds`) parses what users type (`workloads`, `wl`,
//! `instance`…); here each kind gets its collection's URL.

pub use flotilla_spec::kinds::Kind;

/// Where a kind's objects are listed.
pub trait Collection {
    /// The collection path: one namespace, all (`None`), or cluster-scoped.
    fn collection(self, namespace: Option<&str>) -> String;
}

impl Collection for Kind {
    fn collection(self, namespace: Option<&str>) -> String {
        flotilla_client::collection_path(
            self.plural(),
            if self.namespaced() { namespace } else { None },
        )
    }
}

/// What `--help` says of a KIND argument: every kind, from the table.
pub fn help() -> String {
    format!(
        "The kind: {} (singular and short names work too)",
        flotilla_spec::kinds::plurals()
    )
}
