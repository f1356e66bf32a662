//! Wasm modules in OCI registries, in the CNCF Wasm artifact layout: a
//! manifest whose config is `application/vnd.wasm.config.v0+json` and whose
//! one layer is the module itself, `application/wasm` (what `wkg`,
//! `wash push` and `oras` write).
//!
//! - [`reference`]: `oci://REGISTRY/REPO:TAG` and `…@sha256:…` sources;
//! - [`credentials`]: a registry's user and password, from a Docker
//!   `config.json` (what a `kubernetes.io/dockerconfigjson` Secret holds);
//! - [`layout`]: the media types, the config, and checking a manifest;
//! - [`registry`]: resolving a tag to its digest, pulling a module (its
//!   digest verified, resumed after a dropped connection, with progress)
//!   and pushing one;
//! - [`signature`]: cosign-compatible signatures made with a key;
//! - [`bundle`]: modules and signatures in one file (an OCI image layout
//!   in a tar file), for control planes without a registry.
//!
//! Registries on loopback addresses, and those named as insecure, are
//! spoken to over plain HTTP (as Docker treats `localhost`); all others
//! over HTTPS.

pub mod bundle;
pub mod credentials;
pub mod layout;
pub mod reference;
pub mod registry;
pub mod signature;

pub use credentials::Credentials;
pub use reference::ModuleRef;
pub use registry::{Pulled, Registry, Resolved};

/// What can go wrong between Flotilla and a registry.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The source is not an `oci://` reference.
    #[error("{0}")]
    BadReference(String),
    /// The registry refused the credentials (or asked for some).
    #[error("{reference}: the registry refused access ({message}): give the workload an imagePullSecret of type kubernetes.io/dockerconfigjson for this registry (flotilla create secret docker-registry)")]
    Unauthorized {
        /// What was asked for.
        reference: String,
        /// The registry's words.
        message: String,
    },
    /// No such repository, tag or digest.
    #[error("{reference}: not found in the registry ({message}); check the repository and tag (flotilla push puts a module there)")]
    NotFound {
        /// What was asked for.
        reference: String,
        /// The registry's words.
        message: String,
    },
    /// The artifact is not a Wasm module in the standard layout.
    #[error("{reference}: not a Wasm module artifact: {why}")]
    NotWasm {
        /// What was asked for.
        reference: String,
        /// What is wrong with it.
        why: String,
    },
    /// A policy wants a signature and none holds.
    #[error("{reference}: refused by ModulePolicy {policy}: {why}")]
    Unsigned {
        /// What was asked for.
        reference: String,
        /// The policy that wants it signed.
        policy: String,
        /// What was (not) found.
        why: String,
    },
    /// The bytes that arrived are not those the manifest names.
    #[error("{reference}: the module arrived with digest sha256:{actual}, but its manifest names {expected}: the registry's copy is damaged or was tampered with, so it is refused")]
    DigestMismatch {
        /// What was asked for.
        reference: String,
        /// The manifest's digest of the layer.
        expected: String,
        /// The digest of what arrived (hex).
        actual: String,
    },
    /// The registry answered something that cannot be used (not a
    /// manifest, an unknown media type, a protocol error): trying again
    /// will not help.
    #[error("{reference}: the registry's answer cannot be used: {message}")]
    Unusable {
        /// What was asked for.
        reference: String,
        /// What was wrong.
        message: String,
    },
    /// The registry could not be reached, or failed for now (a network
    /// error, a 5xx, too many requests): worth trying again.
    #[error("{reference}: {message}")]
    Registry {
        /// What was asked for.
        reference: String,
        /// What happened.
        message: String,
    },
}
