//! Which capability an import belongs to, and whether a workload may use it.

use std::collections::BTreeSet;

/// One capability a guest may import.
#[derive(Debug, PartialEq, Eq)]
pub struct Capability {
    /// Its name, as workloads grant it (`wasi:config/store`): the WIT
    /// interface, without a version.
    pub name: &'static str,
    /// WIT interfaces (any version) a component imports it as.
    pub interfaces: &'static [&'static str],
    /// Core-module import modules that are this capability (a core module
    /// built with wit-bindgen imports `flotilla:host/watchdog@0.1.0`; an old
    /// one `flotilla`).
    pub core_modules: &'static [&'static str],
    /// What lets a workload use it.
    pub grant: Grant,
}

/// What lets a workload use a capability.
#[derive(Debug, PartialEq, Eq)]
pub enum Grant {
    /// Every workload may: the capability reaches nothing outside the guest.
    Always,
    /// Only a workload whose spec names it; the text says how (shown in
    /// the error of a guest that imports it without the grant).
    Spec(&'static str),
    /// Linked for every guest (a world it belongs to requires the import),
    /// and each use checked against the grant the text names.
    PerUse(&'static str),
}

/// Every capability Flotilla implements.
pub const CAPABILITIES: &[Capability] = &[
    crate::watchdog::CAPABILITY,
    crate::config::CAPABILITY,
    crate::keyvalue::CAPABILITY,
    crate::outgoing_http::CAPABILITY,
];

/// A guest imports a capability its workload was not granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("imports {interface}, which its workload is not granted: {how}")]
pub struct NotGranted {
    /// The capability.
    pub interface: &'static str,
    /// How to grant it.
    pub how: &'static str,
}

/// `wasi:config/store@0.2.0-rc.1` → `wasi:config/store`.
fn unversioned(import: &str) -> &str {
    import.split('@').next().unwrap_or(import)
}

/// The capabilities (with a grant other than [`Grant::Always`] or not)
/// that a component importing `imports` (instance names) uses.
pub fn needed_by_component<'a>(
    imports: impl IntoIterator<Item = &'a str>,
) -> Vec<&'static Capability> {
    let names: BTreeSet<&str> = imports.into_iter().map(unversioned).collect();
    CAPABILITIES
        .iter()
        .filter(|c| c.interfaces.iter().any(|i| names.contains(i)))
        .collect()
}

/// The capabilities a core module importing from `modules` uses.
pub fn needed_by_core<'a>(modules: impl IntoIterator<Item = &'a str>) -> Vec<&'static Capability> {
    let modules: BTreeSet<&str> = modules.into_iter().collect();
    CAPABILITIES
        .iter()
        .filter(|c| {
            c.core_modules
                .iter()
                .any(|m| modules.iter().any(|i| *i == *m || unversioned(i) == *m))
        })
        .collect()
}

/// Refuses the first of `needed` that `granted` (capability names) lacks.
pub fn check_grants(
    needed: &[&'static Capability],
    granted: &BTreeSet<String>,
) -> Result<(), NotGranted> {
    for capability in needed {
        if let Grant::Spec(how) = capability.grant {
            if !granted.contains(capability.name) {
                return Err(NotGranted {
                    interface: capability.name,
                    how,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_map_to_capabilities_whatever_their_version() {
        let needed = needed_by_component([
            "wasi:cli/environment@0.2.6",
            "wasi:config/store@0.2.0-rc.1",
            "flotilla:host/watchdog@0.1.0",
        ]);
        let names: Vec<&str> = needed.iter().map(|c| c.name).collect();
        assert_eq!(names, ["flotilla:host/watchdog", "wasi:config/store"]);
        let core = needed_by_core(["wasi_snapshot_preview1", "flotilla"]);
        assert_eq!(core.len(), 1);
        assert_eq!(core[0].name, "flotilla:host/watchdog");
        let core = needed_by_core(["flotilla:host/watchdog@0.1.0"]);
        assert_eq!(core[0].name, "flotilla:host/watchdog");
        assert!(needed_by_component(["wasi:cli/run@0.2.0"]).is_empty());
    }

    #[test]
    fn an_ungranted_capability_is_refused_naming_its_grant() {
        let needed = needed_by_component(["wasi:config/store@0.2.0-rc.1"]);
        let err = check_grants(&needed, &BTreeSet::new()).unwrap_err();
        assert_eq!(err.interface, "wasi:config/store");
        assert!(err.to_string().contains("spec.config.from"), "{err}");
        let granted = BTreeSet::from(["wasi:config/store".to_string()]);
        assert_eq!(check_grants(&needed, &granted), Ok(()));
        // Always-granted capabilities pass without a grant.
        let watchdog = needed_by_component(["flotilla:host/watchdog@0.1.0"]);
        assert_eq!(check_grants(&watchdog, &BTreeSet::new()), Ok(()));
    }

    #[test]
    fn capability_names_are_unique() {
        let names: BTreeSet<&str> = CAPABILITIES.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), CAPABILITIES.len());
    }
}
