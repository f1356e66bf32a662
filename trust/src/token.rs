//! Join tokens: `FL10<sha256 of the CA certificate>::<secret>`, after k3s's
//! `K10…::…`. The hash lets a joining agent check the server before it
//! sends the secret; the secret is good for joining only.

use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use crate::TrustError;

const PREFIX: &str = "FL10";

/// The sha256 (hex) of a certificate, as tokens pin it.
pub fn ca_hash(certificate: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(certificate.as_ref()))
}

/// The one certificate of a CA file: an error if there is none, or more
/// than one (a bundle could smuggle a second, unpinned CA in beside the
/// pinned one).
pub fn single_certificate(ca_pem: &str) -> Result<CertificateDer<'static>, TrustError> {
    use rustls::pki_types::pem::PemObject;
    let certificates: Vec<_> = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TrustError::cert("the CA certificate", e))?;
    match <[_; 1]>::try_from(certificates) {
        Ok([certificate]) => Ok(certificate),
        Err(found) => Err(TrustError::Certificate(format!(
            "a CA file must hold exactly one certificate, this one holds {}",
            found.len()
        ))),
    }
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// sha256 (hex) of the CA certificate the server must present.
    pub ca_hash: String,
    /// The secret sent once the server is verified.
    pub secret: String,
}

impl std::fmt::Debug for JoinToken {
    // Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_hash", &self.ca_hash)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}{}::{}", self.ca_hash, self.secret)
    }
}

impl std::str::FromStr for JoinToken {
    type Err = TrustError;

    fn from_str(text: &str) -> Result<Self, TrustError> {
        let shape = || {
            TrustError::Token(
                "the join token is not FL10<CA sha256>::<secret> (take it from `flotilla token create`, or the server's <data-dir>/join-token)".into(),
            )
        };
        let rest = text.trim().strip_prefix(PREFIX).ok_or_else(shape)?;
        let (hash, secret) = rest.split_once("::").ok_or_else(shape)?;
        let hex_hash = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex_hash || secret.is_empty() || secret.contains(char::is_whitespace) {
            return Err(shape());
        }
        Ok(Self {
            ca_hash: hash.to_ascii_lowercase(),
            secret: secret.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_bundle_is_not_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        let a = crate::Authority::load_or_create(&dir.path().join("a")).unwrap();
        let b = crate::Authority::load_or_create(&dir.path().join("b")).unwrap();
        let one = single_certificate(a.certificate_pem()).unwrap();
        assert_eq!(ca_hash(&one), a.hash());
        let bundle = format!("{}{}", a.certificate_pem(), b.certificate_pem());
        let err = single_certificate(&bundle).unwrap_err().to_string();
        assert!(
            err.contains("exactly one certificate, this one holds 2"),
            "{err}"
        );
        assert!(single_certificate("").is_err());
    }

    #[test]
    fn tokens_round_trip_and_bad_shapes_are_named() {
        let token = JoinToken {
            ca_hash: "a".repeat(64),
            secret: "abc.def".into(),
        };
        let parsed: JoinToken = token.to_string().parse().unwrap();
        assert_eq!(parsed, token);
        assert!(
            !format!("{parsed:?}").contains("def"),
            "Debug hides the secret"
        );
        for bad in [
            "",
            "abc",
            "FL10abc::x",
            &format!("FL10{}::", "a".repeat(64)),
            &format!("FL10{}x", "a".repeat(64)),
        ] {
            let err = bad.parse::<JoinToken>().unwrap_err().to_string();
            assert!(err.contains("FL10<CA sha256>::<secret>"), "{bad}: {err}");
        }
    }
}
