//! `oci://REGISTRY/REPO:TAG` and `oci://REGISTRY/REPO@sha256:HEX`: a
//! module's place in a registry, as `spec.module.source` names it.

use std::fmt;

use oci_client::Reference;

use crate::OciError;

/// The scheme of module sources in registries.
pub const SCHEME: &str = "oci://";

/// A parsed `oci://` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleRef(pub(crate) Reference);

impl ModuleRef {
    /// Parses `oci://…`. The registry must be named (`localhost:5000/app`,
    /// `ghcr.io/org/app`): a bare `app:1` would silently mean Docker Hub.
    pub fn parse(source: &str) -> Result<Self, OciError> {
        let Some(rest) = source.strip_prefix(SCHEME) else {
            return Err(OciError::BadReference(format!(
                "{source:?} is not an oci:// reference (oci://REGISTRY/REPOSITORY:TAG or oci://REGISTRY/REPOSITORY@sha256:DIGEST)"
            )));
        };
        let first = rest.split('/').next().unwrap_or_default();
        let names_registry = rest.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost");
        if !names_registry {
            return Err(OciError::BadReference(format!(
                "{source:?} names no registry: write oci://REGISTRY/REPOSITORY:TAG (e.g. oci://localhost:5000/{rest})"
            )));
        }
        let reference = Reference::try_from(rest).map_err(|e| {
            OciError::BadReference(format!("{source:?} is not a valid OCI reference: {e}"))
        })?;
        if let Some(digest) = reference.digest() {
            let hex = digest.strip_prefix("sha256:").unwrap_or_default();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(OciError::BadReference(format!(
                    "{source:?}: only sha256 digests are accepted (@sha256: and 64 hex digits)"
                )));
            }
        }
        Ok(Self(reference))
    }

    /// Whether `source` is meant for a registry at all.
    pub fn is_oci(source: &str) -> bool {
        source.starts_with(SCHEME)
    }

    /// `host[:port]`, as connected to (`docker.io` is `index.docker.io`).
    pub fn registry(&self) -> &str {
        self.0.resolve_registry()
    }

    /// `host[:port]`, as the reference names it (what policies match).
    pub fn named_registry(&self) -> &str {
        self.0.registry()
    }

    /// The repository within the registry.
    pub fn repository(&self) -> &str {
        self.0.repository()
    }

    /// The tag, if it names one.
    pub fn tag(&self) -> Option<&str> {
        self.0.tag()
    }

    /// `sha256:…`, if it names one.
    pub fn digest(&self) -> Option<&str> {
        self.0.digest()
    }

    /// The same repository at manifest `digest`, the tag kept for display:
    /// what a stored workload names once its tag is resolved.
    pub fn pinned(&self, digest: &str) -> Self {
        Self(match self.0.tag() {
            Some(tag) => Reference::with_tag_and_digest(
                self.0.registry().to_string(),
                self.0.repository().to_string(),
                tag.to_string(),
                digest.to_string(),
            ),
            None => self.0.clone_with_digest(digest.to_string()),
        })
    }

    /// The same repository at manifest `digest`, with no tag.
    pub fn at_digest(&self, digest: &str) -> Self {
        Self(Reference::with_digest(
            self.0.registry().to_string(),
            self.0.repository().to_string(),
            digest.to_string(),
        ))
    }

    /// Whether the registry is on this machine (spoken to over plain HTTP).
    pub fn is_loopback(&self) -> bool {
        // (References cannot name IPv6 literals.)
        let host = self.registry();
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for ModuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}", self.0.whole())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_with_a_registry_and_refuse_without() {
        let tagged = ModuleRef::parse("oci://localhost:5000/apps/hello:v1").unwrap();
        assert_eq!(tagged.registry(), "localhost:5000");
        assert_eq!(tagged.repository(), "apps/hello");
        assert_eq!(tagged.tag(), Some("v1"));
        assert!(tagged.is_loopback());
        assert_eq!(tagged.to_string(), "oci://localhost:5000/apps/hello:v1");
        let digest = format!("sha256:{}", "a".repeat(64));
        let pinned = tagged.pinned(&digest);
        assert_eq!(
            pinned.to_string(),
            format!("oci://localhost:5000/apps/hello:v1@{digest}")
        );
        assert_eq!(pinned.digest(), Some(digest.as_str()));
        assert!(!ModuleRef::parse("oci://ghcr.io/org/app:1")
            .unwrap()
            .is_loopback());
        assert!(ModuleRef::parse("oci://127.0.0.1:5000/app:1")
            .unwrap()
            .is_loopback());
        for bad in [
            "file:hello.wasm",
            "oci://hello:v1",
            "oci://app/hello:v1",
            "oci://localhost:5000/UPPER:v1",
            "oci://localhost:5000/app@sha256:abc",
        ] {
            let e = ModuleRef::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }
}
