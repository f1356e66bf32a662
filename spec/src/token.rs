//! `Token`: a bearer token created with `flotilla token create` (cluster-
//! scoped, named by the token's id). The store keeps the secret's sha256,
//! never the secret: the token is `<id>.<secret>`, shown once.

use serde::{Deserialize, Serialize};

use crate::meta::Resource;

/// A Token resource.
pub type Token = Resource<TokenSpec, TokenStatus>;

/// What the server counts of a token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenStatus {
    /// Node certificates a join token got (since it was made or rotated).
    #[serde(default)]
    pub used: u32,
    /// When it last got one (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_used: String,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenRole {
    /// Join a node (then the node uses its own certificate).
    #[default]
    Join,
    /// Read everything but tokens (in `namespace` only, if it names one:
    /// the built-in namespaced `view`).
    View,
    /// Write workloads, configs, secrets and buckets of `namespace` (which
    /// it must name).
    Edit,
    /// Everything (in `namespace` only, if it names one: the built-in
    /// namespaced `admin`, which also manages its roles and bindings).
    Admin,
    /// Nothing but what RoleBindings grant it.
    None,
}

impl TokenRole {
    /// Its name, as `--role` takes it.
    pub fn name(self) -> &'static str {
        match self {
            TokenRole::Join => "join",
            TokenRole::View => "view",
            TokenRole::Edit => "edit",
            TokenRole::Admin => "admin",
            TokenRole::None => "none",
        }
    }
}

/// Whether `id` has a token id's shape: 6 of `[a-z0-9]`.
pub fn is_token_id(id: &str) -> bool {
    id.len() == 6
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A token's record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenSpec {
    /// What it may do.
    pub role: TokenRole,
    /// The one namespace `role` holds in (view, edit, admin); the whole
    /// cluster when empty (view, admin).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Hex sha256 of the secret part.
    pub secret_sha256: String,
    /// When it stops working (RFC 3339); never if empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expires: String,
    /// How many node certificates a join token may get (`--uses`);
    /// unlimited if absent. `status.used` counts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<u32>,
    /// What it is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl TokenSpec {
    /// Problems, with field paths.
    pub fn validate(&self) -> Result<(), String> {
        let hex = self.secret_sha256.len() == 64
            && self.secret_sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex {
            return Err(
                "spec.secretSha256: must be the 64 hex digits of the secret's sha256".into(),
            );
        }
        match (self.role, self.namespace.is_empty()) {
            (TokenRole::Edit, true) => {
                return Err("spec.namespace: the edit role holds in one namespace: name it (--namespace)".into())
            }
            (TokenRole::Join | TokenRole::None, false) => {
                return Err(format!(
                    "spec.namespace: a {} token holds no role in a namespace (RoleBindings grant a `none` token its roles)",
                    self.role.name()
                ))
            }
            _ => {}
        }
        match self.uses {
            Some(_) if self.role != TokenRole::Join => {
                return Err(format!(
                    "spec.uses: only join tokens are counted (each node certificate one use); a {} token is limited by its role and --ttl",
                    self.role.name()
                ))
            }
            Some(0) => return Err("spec.uses: must be at least 1 (leave it out for no limit)".into()),
            _ => {}
        }
        if !self.namespace.is_empty() {
            crate::validate::check_name(&self.namespace)
                .map_err(|e| format!("spec.namespace: {e}"))?;
        }
        if !self.expires.is_empty() && crate::meta::parse_rfc3339(&self.expires).is_none() {
            return Err(format!(
                "spec.expires: {:?} is not an RFC 3339 time (e.g. 2026-12-01T00:00:00Z)",
                self.expires
            ));
        }
        Ok(())
    }
}
