//! Bearer tokens: the two a server makes on its first start (kept in its
//! data folder: the admin token, and the join token's secret) and the ones
//! created with `flotilla token create`, stored as `Token` objects —
//! `<id>.<secret>`, of which the store keeps only the id and the secret's
//! sha256, with a role and an optional expiry (as Kubernetes' bootstrap
//! tokens). Deleting a Token revokes it; nodes already joined keep their
//! own certificates.

use flotilla_spec::meta::parse_rfc3339;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use flotilla_spec::rbac::BuiltinRole;
use flotilla_spec::token::TokenSpec;

use super::authz::Caller;
use super::rbac::Member;
use super::{ApiError, Role};
use crate::store::Store;

/// Who a token is: the caller it makes, and its id if it is a stored one
/// (the server's own two tokens have none).
pub struct Bearer {
    /// What it may do.
    pub caller: Caller,
    /// Its id (`Token` name), for the audit log.
    pub id: Option<String>,
}

/// The tokens a server accepts.
#[derive(Default)]
pub struct Tokens {
    bootstrap: Vec<(String, Role)>,
}

impl Tokens {
    /// The tokens from the data folder.
    pub fn new(bootstrap: Vec<(String, Role)>) -> Self {
        Self { bootstrap }
    }

    /// Who `token` is, `None` if it is unknown, expired or revoked.
    pub fn bearer_of(&self, store: &dyn Store, token: &str) -> Result<Option<Bearer>, ApiError> {
        // Every bootstrap token is compared, whichever matches: no early exit.
        let mut found = None;
        for (known, role) in &self.bootstrap {
            if bool::from(known.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(*role);
            }
        }
        if let Some(role) = found {
            return Ok(Some(Bearer {
                caller: role.caller(),
                id: None,
            }));
        }
        let Some((id, secret)) = token.split_once('.') else {
            return Ok(None);
        };
        if !is_token_id(id) {
            return Ok(None);
        }
        let Some(stored) = store.get("Token", "", id)? else {
            return Ok(None);
        };
        let Ok(spec) = serde_json::from_value::<TokenSpec>(stored["spec"].clone()) else {
            return Ok(None);
        };
        let want = spec.secret_sha256.as_str();
        let have = hex::encode(Sha256::digest(secret.as_bytes()));
        if !bool::from(want.as_bytes().ct_eq(have.as_bytes())) {
            return Ok(None);
        }
        if !spec.expires.is_empty() {
            let expired =
                parse_rfc3339(&spec.expires).is_none_or(|t| t <= std::time::SystemTime::now());
            if expired {
                return Ok(None);
            }
        }
        Ok(Some(Bearer {
            caller: caller_of(id, &spec),
            id: Some(id.to_string()),
        }))
    }
}

/// The caller a stored token makes: a cluster role, or a member of the
/// namespaces its own role and RoleBindings give it.
fn caller_of(id: &str, spec: &TokenSpec) -> Caller {
    use flotilla_spec::token::TokenRole;
    let member = |own: Option<BuiltinRole>| {
        Caller::Member(Member {
            token: id.to_string(),
            own: own.map(|role| (role, spec.namespace.clone())),
        })
    };
    match (spec.role, spec.namespace.is_empty()) {
        (TokenRole::Join, _) => Caller::Joiner,
        (TokenRole::Admin, true) => Caller::Admin,
        (TokenRole::View, true) => Caller::View,
        (TokenRole::Admin, false) => member(Some(BuiltinRole::Admin)),
        (TokenRole::View, false) => member(Some(BuiltinRole::View)),
        (TokenRole::Edit, false) => member(Some(BuiltinRole::Edit)),
        (TokenRole::Edit, true) | (TokenRole::None, _) => member(None),
    }
}

pub use flotilla_spec::token::is_token_id;
