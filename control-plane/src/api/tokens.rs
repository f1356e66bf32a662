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

/// The stored token a request authenticated with (its id; `None` for a
/// server's own token or a node certificate), in the request's extensions:
/// a join token's certificates count against its uses.
#[derive(Debug, Clone, Default)]
pub struct TokenId(pub Option<String>);

/// How often counting a use is retried after losing a race with another
/// join (or server) on the same token.
const USE_RETRIES: usize = 16;

/// Counts one use of join token `id` — a node certificate it gets — in its
/// `status.used` (compare-and-swap: two joins on two servers both count);
/// refused once it has had `spec.uses`, with the fix.
pub fn use_join_token(store: &dyn Store, id: &str) -> Result<(), ApiError> {
    for _ in 0..USE_RETRIES {
        let Some(mut stored) = store.get("Token", "", id)? else {
            return Err(ApiError::unauthorized(format!(
                "join token {id} was deleted: create another (flotilla token create)"
            )));
        };
        let used = stored["status"]["used"].as_u64().unwrap_or(0);
        if let Some(uses) = stored["spec"]["uses"].as_u64() {
            if used >= uses {
                tracing::warn!("refused a join with token {id}: it had its {uses} uses");
                return Err(ApiError::unauthorized(format!(
                    "join token {id} has been used for all of its {uses} joins: create another (flotilla token create --uses N) or give it a new secret and count (flotilla token rotate {id})"
                )));
            }
        }
        let expected = crate::store::revision_of(&stored);
        stored["status"] = serde_json::json!({
            "used": used + 1,
            "lastUsed": flotilla_spec::meta::now_rfc3339(),
        });
        match store.update("Token", "", id, stored, expected) {
            Ok(_) => return Ok(()),
            Err(crate::store::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError {
        code: axum::http::StatusCode::CONFLICT,
        reason: "Conflict",
        message: format!("join token {id} is being used by many joins at once: try again"),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SqliteStore, Store};

    #[test]
    fn concurrent_joins_get_exactly_a_tokens_uses() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
        let token = serde_json::json!({"apiVersion": "flotilla.dev/v1", "kind": "Token",
            "metadata": {"name": "shop01"},
            "spec": {"role": "join", "secretSha256": "00", "uses": 5}});
        store.create("Token", "", "shop01", token).unwrap();
        // Only 5 writes ever succeed, so no caller loses more than 5 races:
        // under USE_RETRIES every refusal is "used up", never a conflict.
        let results: Vec<Result<(), ApiError>> = std::thread::scope(|s| {
            let joins: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        [
                            use_join_token(&store, "shop01"),
                            use_join_token(&store, "shop01"),
                        ]
                    })
                })
                .collect();
            joins.into_iter().flat_map(|j| j.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5);
        for refused in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(
                refused.code,
                axum::http::StatusCode::UNAUTHORIZED,
                "{}",
                refused.message
            );
            assert!(
                refused.message.contains("used for all of its 5 joins"),
                "{}",
                refused.message
            );
        }
        let stored = store.get("Token", "", "shop01").unwrap().unwrap();
        assert_eq!(stored["status"]["used"], 5);
        // A token without uses counts but never refuses.
        let open = serde_json::json!({"apiVersion": "flotilla.dev/v1", "kind": "Token",
            "metadata": {"name": "open01"}, "spec": {"role": "join", "secretSha256": "00"}});
        store.create("Token", "", "open01", open).unwrap();
        for _ in 0..3 {
            use_join_token(&store, "open01").unwrap();
        }
        assert_eq!(
            store.get("Token", "", "open01").unwrap().unwrap()["status"]["used"],
            3
        );
        assert_eq!(
            use_join_token(&store, "gone01").unwrap_err().code,
            axum::http::StatusCode::UNAUTHORIZED
        );
    }
}
