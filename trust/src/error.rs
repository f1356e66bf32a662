//! What can go wrong with certificates, keys and tokens.

use std::path::PathBuf;

/// A failure of the trust layer; every message names what to do.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A certificate, key or request could not be made or read.
    #[error("{0}")]
    Certificate(String),
    /// A join token is not in the expected shape.
    #[error("{0}")]
    Token(String),
    /// rustls refused a configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

impl TrustError {
    pub(crate) fn cert(context: &str, e: impl std::fmt::Display) -> Self {
        TrustError::Certificate(format!("{context}: {e}"))
    }
}
