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

use super::{ApiError, Role};
use crate::store::Store;

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

    /// The role of `token`, `None` if it is unknown, expired or revoked.
    pub fn role_of(&self, store: &dyn Store, token: &str) -> Result<Option<Role>, ApiError> {
        // Every bootstrap token is compared, whichever matches: no early exit.
        let mut found = None;
        for (known, role) in &self.bootstrap {
            if bool::from(known.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(*role);
            }
        }
        if found.is_some() {
            return Ok(found);
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
        let spec = &stored["spec"];
        let want = spec["secretSha256"].as_str().unwrap_or_default();
        let have = hex::encode(Sha256::digest(secret.as_bytes()));
        if !bool::from(want.as_bytes().ct_eq(have.as_bytes())) {
            return Ok(None);
        }
        if let Some(expires) = spec["expires"].as_str().filter(|e| !e.is_empty()) {
            let expired = parse_rfc3339(expires).is_none_or(|t| t <= std::time::SystemTime::now());
            if expired {
                return Ok(None);
            }
        }
        Ok(match spec["role"].as_str() {
            Some("admin") => Some(Role::Admin),
            Some("view") => Some(Role::View),
            Some("join") => Some(Role::Join),
            _ => None,
        })
    }
}

/// Whether `id` has a token id's shape: 6 of `[a-z0-9]`.
pub fn is_token_id(id: &str) -> bool {
    id.len() == 6
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}
