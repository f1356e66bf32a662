//! The rustls configurations every Flotilla listener and client uses, all
//! on the ring provider, TLS 1.2 and 1.3.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::{Identity, TrustError};

/// The crypto provider of every configuration here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The roots: the CA certificate(s) in `ca_pem`.
pub fn roots(ca_pem: &str) -> Result<RootCertStore, TrustError> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let certificate = certificate.map_err(|e| TrustError::cert("the CA certificate", e))?;
        roots
            .add(certificate)
            .map_err(|e| TrustError::cert("the CA certificate", e))?;
    }
    if roots.is_empty() {
        return Err(TrustError::Certificate(
            "the CA file holds no certificate".into(),
        ));
    }
    Ok(roots)
}

/// Whom a listener asks for a client certificate.
pub enum ClientAuth<'a> {
    /// Nobody (bearer tokens only).
    None,
    /// Anyone may present one signed by this CA; others come in without.
    Optional(&'a str),
    /// Only clients with a certificate signed by this CA get in.
    Required(&'a str),
}

/// A listener's configuration, serving `identity`. `alpn` lists the
/// protocols offered, most preferred first.
pub fn server_config(
    identity: &Identity,
    client_auth: ClientAuth<'_>,
    alpn: &[&[u8]],
) -> Result<ServerConfig, TrustError> {
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional(ca) | ClientAuth::Required(ca) => {
            let optional = matches!(client_auth, ClientAuth::Optional(_));
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider());
            let verifier = if optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| TrustError::cert("the client verifier", e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(identity.chain()?, identity.key()?)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A client's configuration: trusts `ca_pem` only, and presents
/// `identity` when asked.
pub fn client_config(
    ca_pem: &str,
    identity: Option<&Identity>,
    alpn: &[&[u8]],
) -> Result<ClientConfig, TrustError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?);
    let mut config = match identity {
        Some(identity) => builder.with_client_auth_cert(identity.chain()?, identity.key()?)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The configuration of a joining agent's first contact: it accepts any
/// certificate, because the caller sends no secret over it and checks
/// what it fetched (the CA) against the hash its join token pins.
pub fn first_contact_config() -> Result<ClientConfig, TrustError> {
    let provider = provider();
    Ok(ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(FirstContact(provider)))
        .with_no_client_auth())
}

#[derive(Debug)]
struct FirstContact(Arc<CryptoProvider>);

impl ServerCertVerifier for FirstContact {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Whether the first bytes a client sent look like a TLS handshake (a
/// handshake record, 0x16); anything else on a TLS port is most likely
/// plain HTTP, answered with a hint rather than a handshake failure.
pub fn looks_like_tls(first_byte: u8) -> bool {
    first_byte == 0x16
}

/// The answer to a plain-HTTP request on a TLS port (as Go's
/// "Client sent an HTTP request to an HTTPS server").
pub const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: 82\r\n\r\nthis port speaks HTTPS only: use https:// (the flotilla client config has the CA)\n";

/// Longest a client may take to send its first bytes and finish the TLS
/// handshake.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why an accepted connection did not become a TLS session.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The client spoke plain HTTP (it was answered with a hint).
    #[error("a client spoke plain HTTP to a TLS port")]
    PlainHttp,
    /// The handshake failed or timed out.
    #[error("TLS handshake: {0}")]
    Handshake(String),
}

/// Completes the server side of a TLS connection on `stream`: a client
/// that speaks plain HTTP instead gets [`PLAIN_HTTP_ANSWER`]; one that
/// stalls is dropped after [`HANDSHAKE_TIMEOUT`]. Returns the session and
/// who the client certificate (if any, verified by the acceptor's
/// configuration) names.
pub async fn accept(
    acceptor: &tokio_rustls::TlsAcceptor,
    mut stream: tokio::net::TcpStream,
) -> Result<
    (
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        Option<crate::names::Presented>,
    ),
    AcceptError,
> {
    use tokio::io::AsyncWriteExt;
    let handshake = async {
        let mut first = [0u8; 1];
        let peeked = stream
            .peek(&mut first)
            .await
            .map_err(|e| AcceptError::Handshake(e.to_string()))?;
        if peeked == 1 && !looks_like_tls(first[0]) {
            let _ = stream.write_all(PLAIN_HTTP_ANSWER).await;
            let _ = stream.shutdown().await;
            return Err(AcceptError::PlainHttp);
        }
        acceptor
            .accept(stream)
            .await
            .map_err(|e| AcceptError::Handshake(e.to_string()))
    };
    let session = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| AcceptError::Handshake("timed out".into()))??;
    let peer = session
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(crate::names::presented);
    Ok((session, peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_http_answer_has_the_length_it_says() {
        let text = std::str::from_utf8(PLAIN_HTTP_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{}",
            body.len()
        );
    }
}
