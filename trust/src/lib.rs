//! Flotilla's trust: who is who on a fleet's network.
//!
//! - [`Authority`]: the cluster CA a server creates on its first start
//!   (`<data-dir>/pki/`), which issues the server's certificate, each
//!   node's certificate (`system:node:<name>`, from the node's own key) and
//!   the control plane's client certificate.
//! - [`JoinToken`]: what an agent joins with — the CA's sha256 (so the first
//!   contact cannot be intercepted) and a secret good for joining only.
//! - [`tls`]: the rustls configurations of every listener and client, on
//!   one crypto provider (ring).
//! - [`names`]: the names certificates carry, and reading them back from a
//!   peer's certificate.
//!
//! Nothing here does network I/O: callers own their sockets.

mod authority;
pub mod connections;
mod error;
mod files;
mod identity;
pub mod names;
pub mod tls;
mod token;

pub use authority::{Authority, NODE_CERT_VALIDITY};
pub use error::TrustError;
pub use files::{read_private, write_private};
pub use identity::{Identity, NodeKey};
pub use token::{ca_hash, single_certificate, JoinToken};
