//! Roles per namespace, a small faithful subset of Kubernetes RBAC:
//!
//! - the built-in roles [`view`, `edit`, `admin`](BuiltinRole), which a
//!   token holds in one namespace (`flotilla token create --role edit
//!   --namespace team-a`) or a [`RoleBinding`] grants (`roleRef: {kind:
//!   ClusterRole, name: edit}`), as Kubernetes' user-facing ClusterRoles;
//! - `Role` (namespaced): [`PolicyRule`]s of verbs × resources;
//! - `RoleBinding` (namespaced): a role → the tokens (by id) that hold it
//!   in the binding's namespace.
//!
//! What a request asks is a [`Request`] (verb, resource, namespace); a rule
//! allows it when both its verb and its resource are listed (or `*`).
//! Nothing is allowed that no rule allows.

use serde::{Deserialize, Serialize};

use crate::kinds::{Kind, KINDS};
use crate::meta::Resource;

/// A Role resource.
pub type Role = Resource<RoleSpec, ()>;
/// A RoleBinding resource.
pub type RoleBinding = Resource<RoleBindingSpec, ()>;

/// The verbs of the API, as Kubernetes names them.
pub const VERBS: &[&str] = &[
    "get", "list", "watch", "create", "update", "patch", "delete",
];
/// Verbs that only read.
pub const READ_VERBS: &[&str] = &["get", "list", "watch"];

/// The resources rules may name besides the kinds' plurals: subresources
/// and the cluster key-value buckets.
pub const SUBRESOURCES: &[&str] = &[
    "instances/log",
    "instances/eviction",
    "workloads/usage",
    "workloads/status",
    "instances/status",
    "volumes/status",
    "buckets",
];

/// Most rules in a Role, and most subjects in a RoleBinding.
pub const MAX_ENTRIES: usize = 64;

/// What a Role allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleSpec {
    /// Each allows its verbs on its resources; the role allows their union.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
}

/// Verbs on resources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRule {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, or `*`.
    pub verbs: Vec<String>,
    /// Plurals of namespaced kinds (`workloads`), subresources
    /// (`instances/log`), `buckets`, or `*`.
    pub resources: Vec<String>,
}

impl PolicyRule {
    fn new(verbs: &[&str], resources: &[&str]) -> Self {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        Self {
            verbs: owned(verbs),
            resources: owned(resources),
        }
    }

    /// Whether it allows `verb` on `resource`.
    pub fn allows(&self, verb: &str, resource: &str) -> bool {
        let listed = |list: &[String], item: &str| list.iter().any(|x| x == "*" || x == item);
        listed(&self.verbs, verb) && listed(&self.resources, resource)
    }
}

/// Who holds a role where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleBindingSpec {
    /// The role granted.
    pub role_ref: RoleRef,
    /// The tokens granted it.
    #[serde(default)]
    pub subjects: Vec<Subject>,
}

/// A Role of the binding's namespace, or a built-in role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleRef {
    /// `Role` or `ClusterRole` (the built-in `view`, `edit`, `admin`).
    pub kind: String,
    /// The role's name.
    pub name: String,
}

/// A token, by its id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subject {
    /// `Token`.
    pub kind: String,
    /// The token's id (the part of `ID.SECRET` before the dot).
    pub name: String,
}

/// The built-in roles a token may hold in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuiltinRole {
    /// Read everything in the namespace but Secrets and buckets (their
    /// values may be secrets), and read instances' logs.
    View,
    /// `view`, and write workloads, configs, secrets and buckets, delete
    /// volumes, read secrets; not roles or bindings.
    Edit,
    /// `edit`, and roles and role bindings in the namespace.
    Admin,
}

impl BuiltinRole {
    /// From its name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "view" => Some(Self::View),
            "edit" => Some(Self::Edit),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Edit => "edit",
            Self::Admin => "admin",
        }
    }

    /// What it allows, as rules.
    pub fn rules(self) -> Vec<PolicyRule> {
        let readable: Vec<&str> = KINDS
            .iter()
            .filter(|k| {
                k.namespaced && !matches!(k.kind, Kind::Secret | Kind::Role | Kind::RoleBinding)
            })
            .map(|k| k.plural)
            .chain(["instances/log", "workloads/usage"])
            .collect();
        let mut rules = vec![PolicyRule::new(READ_VERBS, &readable)];
        if self == Self::View {
            return rules;
        }
        rules.push(PolicyRule::new(READ_VERBS, &["secrets"]));
        rules.push(PolicyRule::new(
            &["create", "update", "patch", "delete"],
            &[
                "workloads",
                "configs",
                "secrets",
                "disruptionbudgets",
                "jobs",
            ],
        ));
        rules.push(PolicyRule::new(&["create"], &["instances/eviction"]));
        rules.push(PolicyRule::new(&["delete"], &["volumes"]));
        rules.push(PolicyRule::new(&["*"], &["buckets"]));
        if self == Self::Admin {
            rules.push(PolicyRule::new(&["*"], &["roles", "rolebindings"]));
        }
        rules
    }
}

/// Whether `resource` is one a rule may name.
pub fn is_resource(resource: &str) -> bool {
    resource == "*"
        || SUBRESOURCES.contains(&resource)
        || KINDS.iter().any(|k| k.namespaced && k.plural == resource)
}

impl RoleSpec {
    /// Problems, with field paths.
    pub fn validate(&self) -> Result<(), String> {
        if self.rules.len() > MAX_ENTRIES {
            return Err(format!("spec.rules: at most {MAX_ENTRIES}"));
        }
        for (n, rule) in self.rules.iter().enumerate() {
            if rule.verbs.is_empty() || rule.resources.is_empty() {
                return Err(format!(
                    "spec.rules[{n}]: a rule needs at least one verb and one resource"
                ));
            }
            if rule.verbs.len() > MAX_ENTRIES || rule.resources.len() > MAX_ENTRIES {
                return Err(format!(
                    "spec.rules[{n}]: at most {MAX_ENTRIES} verbs and resources"
                ));
            }
            for verb in &rule.verbs {
                if verb != "*" && !VERBS.contains(&verb.as_str()) {
                    return Err(format!(
                        "spec.rules[{n}].verbs: {verb:?} is not a verb (the verbs are {}, or *)",
                        VERBS.join(", ")
                    ));
                }
            }
            for resource in &rule.resources {
                if !is_resource(resource) {
                    return Err(format!(
                        "spec.rules[{n}].resources: {resource:?} is not a namespaced resource (the plurals of namespaced kinds, {}, or *; cluster-scoped kinds cannot be granted in a namespace)",
                        SUBRESOURCES.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }
}

impl RoleBindingSpec {
    /// Problems, with field paths.
    pub fn validate(&self) -> Result<(), String> {
        match self.role_ref.kind.as_str() {
            "Role" => crate::validate::check_object_name(&self.role_ref.name)
                .map_err(|e| format!("spec.roleRef.name: {e}"))?,
            "ClusterRole" if BuiltinRole::parse(&self.role_ref.name).is_some() => {}
            "ClusterRole" => {
                return Err(format!(
                    "spec.roleRef.name: {:?} is not a built-in role (view, edit or admin)",
                    self.role_ref.name
                ))
            }
            other => {
                return Err(format!(
                    "spec.roleRef.kind: {other:?} must be Role (of this namespace) or ClusterRole (view, edit or admin)"
                ))
            }
        }
        if self.subjects.len() > MAX_ENTRIES {
            return Err(format!("spec.subjects: at most {MAX_ENTRIES}"));
        }
        for (n, subject) in self.subjects.iter().enumerate() {
            if subject.kind != "Token" {
                return Err(format!(
                    "spec.subjects[{n}].kind: {:?} must be Token (subjects are tokens, by id)",
                    subject.kind
                ));
            }
            let id = &subject.name;
            if !crate::token::is_token_id(id) {
                return Err(format!(
                    "spec.subjects[{n}].name: {id:?} is not a token id (6 of a-z, 0-9: `flotilla token list` shows them)"
                ));
            }
        }
        Ok(())
    }

    /// Whether it names token `id`.
    pub fn binds(&self, id: &str) -> bool {
        self.subjects
            .iter()
            .any(|s| s.kind == "Token" && s.name == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(role: BuiltinRole, verb: &str, resource: &str) -> bool {
        role.rules().iter().any(|r| r.allows(verb, resource))
    }

    #[test]
    fn the_built_in_roles_nest_and_view_reads_no_secrets() {
        use BuiltinRole::*;
        assert!(allowed(View, "list", "workloads"));
        assert!(allowed(View, "get", "instances/log"));
        assert!(!allowed(View, "get", "secrets"));
        assert!(!allowed(View, "get", "buckets"));
        assert!(!allowed(View, "create", "workloads"));
        assert!(allowed(Edit, "get", "secrets"));
        assert!(allowed(Edit, "patch", "workloads"));
        assert!(allowed(Edit, "create", "instances/eviction"));
        assert!(allowed(Edit, "create", "disruptionbudgets"));
        assert!(!allowed(View, "create", "instances/eviction"));
        assert!(allowed(View, "get", "disruptionbudgets"));
        assert!(allowed(Edit, "update", "buckets"));
        assert!(!allowed(Edit, "create", "rolebindings"));
        assert!(!allowed(Edit, "update", "workloads/status"));
        assert!(allowed(Admin, "create", "rolebindings"));
        assert!(!allowed(Admin, "create", "revisions"));
        for verb in VERBS {
            for kind in KINDS {
                for role in [View, Edit, Admin] {
                    if allowed(role, verb, kind.plural) {
                        assert!(kind.namespaced, "{role:?} {verb} {}", kind.plural);
                    }
                }
            }
        }
    }

    #[test]
    fn rules_and_bindings_are_checked_with_their_paths() {
        let role = |verbs: &[&str], resources: &[&str]| RoleSpec {
            rules: vec![PolicyRule::new(verbs, resources)],
        };
        assert!(role(&["get", "*"], &["workloads", "instances/log"])
            .validate()
            .is_ok());
        let e = role(&["escalate"], &["workloads"]).validate().unwrap_err();
        assert!(
            e.contains("spec.rules[0].verbs") && e.contains("escalate"),
            "{e}"
        );
        let e = role(&["get"], &["nodes"]).validate().unwrap_err();
        assert!(e.contains("cluster-scoped"), "{e}");
        let e = role(&[], &["workloads"]).validate().unwrap_err();
        assert!(e.contains("at least one verb"), "{e}");
        let binding = |kind: &str, name: &str, subject: &str| RoleBindingSpec {
            role_ref: RoleRef {
                kind: kind.into(),
                name: name.into(),
            },
            subjects: vec![Subject {
                kind: "Token".into(),
                name: subject.into(),
            }],
        };
        assert!(binding("ClusterRole", "edit", "abc123").validate().is_ok());
        assert!(binding("Role", "deployer", "abc123").validate().is_ok());
        let e = binding("ClusterRole", "cluster-admin", "abc123")
            .validate()
            .unwrap_err();
        assert!(e.contains("view, edit or admin"), "{e}");
        let e = binding("Role", "r", "Alice").validate().unwrap_err();
        assert!(e.contains("spec.subjects[0].name"), "{e}");
        assert!(binding("Role", "r", "abc123").binds("abc123"));
        assert!(!binding("Role", "r", "abc123").binds("abc124"));
    }
}
