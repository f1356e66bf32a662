//! HTTPS at the ingress: the certificates of the workloads' `spec.tls`
//! (Secrets of type `flotilla.dev/tls`), picked by SNI. Every node's
//! ingress terminates TLS for every workload, so each node reads these
//! Secrets (the API lets a node read a TLS Secret that a workload's
//! `spec.tls` names, nothing more) and keeps them in memory only.
//!
//! Kept current by [`Certificates::follow`]: a Secret newly named is read
//! within a second, and every one is read again every
//! [`REREAD_EVERY`], so a renewed certificate is served without a restart.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use flotilla_client::{collection_path, Client, ClientError};
use flotilla_spec::config::{values_of, TLS_CERT_KEY, TLS_KEY_KEY};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::cluster_view::ClusterView;

/// How often every TLS Secret is read again (a renewal shows within this).
pub const REREAD_EVERY: Duration = Duration::from_secs(5);

/// Most TLS Secrets one node keeps (more are left out, with a warning).
pub const MAX_SECRETS: usize = 1024;

/// One Secret's certificate, as last read.
struct Loaded {
    /// `metadata.resourceVersion` it was read at (unchanged: not parsed again).
    version: String,
    key: Option<Arc<CertifiedKey>>,
    read_at: Instant,
}

/// The certificates by host, for the TLS listener.
#[derive(Default)]
pub struct Certificates {
    by_host: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosts = self.by_host.read().map(|m| m.len()).unwrap_or_default();
        write!(f, "Certificates({hosts} hosts)")
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?.to_ascii_lowercase();
        self.by_host.read().ok()?.get(&name).cloned()
    }
}

/// A certificate chain and key from PEM, or what is wrong with them.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{TLS_CERT_KEY} is not a PEM certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{TLS_CERT_KEY} holds no PEM certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("{TLS_KEY_KEY} is not a PEM private key: {e}"))?;
    let provider = flotilla_trust::tls::provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| format!("{TLS_KEY_KEY} does not go with {TLS_CERT_KEY}: {e}"))?;
    Ok(certified)
}

impl Certificates {
    /// Keeps the certificates current from the workloads `view` shows,
    /// reading their Secrets through `client`, until the process ends.
    pub fn follow(self: Arc<Self>, client: Client, view: ClusterView) {
        tokio::spawn(async move {
            let mut loaded: HashMap<(String, String), Loaded> = HashMap::new();
            // What was said about each Secret, so a broken one is logged once.
            let mut said: HashMap<(String, String), String> = HashMap::new();
            loop {
                let mut wanted = view.tls_secrets();
                if wanted.len() > MAX_SECRETS {
                    tracing::warn!(
                        "{} TLS secrets named by workloads; this node serves the first {MAX_SECRETS}",
                        wanted.len()
                    );
                    wanted.truncate(MAX_SECRETS);
                }
                loaded.retain(|id, _| wanted.iter().any(|(w, _)| w == id));
                said.retain(|id, _| wanted.iter().any(|(w, _)| w == id));
                for (id, _) in &wanted {
                    let due = loaded
                        .get(id)
                        .is_none_or(|l| l.read_at.elapsed() >= REREAD_EVERY);
                    if !due {
                        continue;
                    }
                    match read(&client, id, loaded.get(id)).await {
                        Ok(Some(fresh)) => {
                            if let Some(why) = &fresh.1 {
                                if said.get(id) != Some(why) {
                                    tracing::warn!("TLS secret {}/{}: {why}", id.0, id.1);
                                    said.insert(id.clone(), why.clone());
                                }
                            } else {
                                said.remove(id);
                            }
                            loaded.insert(id.clone(), fresh.0);
                        }
                        Ok(None) => {
                            if let Some(l) = loaded.get_mut(id) {
                                l.read_at = Instant::now();
                            }
                        }
                        Err(e) => {
                            // Kept as it was, and asked again only when due.
                            tracing::debug!("TLS secret {}/{}: {e}", id.0, id.1);
                            let entry = loaded.entry(id.clone()).or_insert_with(|| Loaded {
                                version: String::new(),
                                key: None,
                                read_at: Instant::now(),
                            });
                            entry.read_at = Instant::now();
                        }
                    }
                }
                let mut by_host = HashMap::new();
                for (id, hosts) in &wanted {
                    let Some(key) = loaded.get(id).and_then(|l| l.key.clone()) else {
                        continue;
                    };
                    for host in hosts {
                        by_host.entry(host.clone()).or_insert_with(|| key.clone());
                    }
                }
                if let Ok(mut current) = self.by_host.write() {
                    *current = by_host;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

/// Reads one Secret: `Ok(None)` when it is unchanged since `last`; else
/// its certificate (or `None` with why it is unusable).
async fn read(
    client: &Client,
    (namespace, name): &(String, String),
    last: Option<&Loaded>,
) -> Result<Option<(Loaded, Option<String>)>, ClientError> {
    let path = format!("{}/{name}", collection_path("secrets", Some(namespace)));
    let object = match client.get(&path).await {
        Ok(object) => object,
        Err(ClientError::Api {
            code: code @ (403 | 404),
            ..
        }) => {
            // Gone, or no longer a TLS secret a workload names: not served.
            let missing = Loaded {
                version: String::new(),
                key: None,
                read_at: Instant::now(),
            };
            let why = if code == 404 {
                "does not exist: create it (flotilla create secret tls NAME --cert FILE --key FILE)"
            } else {
                "cannot be read by this node: is it of type flotilla.dev/tls?"
            };
            return Ok(Some((missing, Some(why.to_string()))));
        }
        Err(e) => return Err(e),
    };
    let version = object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if last.is_some_and(|l| l.version == version && !version.is_empty()) {
        return Ok(None);
    }
    let values = values_of("Secret", object).unwrap_or_default();
    let parsed = match (values.get(TLS_CERT_KEY), values.get(TLS_KEY_KEY)) {
        (Some(cert), Some(key)) => certified_key(cert, key),
        _ => Err(format!(
            "has no {TLS_CERT_KEY} and {TLS_KEY_KEY}: make it with flotilla create secret tls"
        )),
    };
    let (key, why) = match parsed {
        Ok(key) => (Some(Arc::new(key)), None),
        Err(why) => (None, Some(why)),
    };
    let loaded = Loaded {
        version,
        key,
        read_at: Instant::now(),
    };
    Ok(Some((loaded, why)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_and_its_key_load_and_mismatches_are_named() {
        let one = rcgen::generate_simple_self_signed(vec!["a.local".into()]).unwrap();
        let two = rcgen::generate_simple_self_signed(vec!["b.local".into()]).unwrap();
        let cert = one.cert.pem();
        let key = one.signing_key.serialize_pem();
        assert!(certified_key(cert.as_bytes(), key.as_bytes()).is_ok());
        let other_key = two.signing_key.serialize_pem();
        let e = certified_key(cert.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert!(e.contains("does not go with"), "{e}");
        let e = certified_key(b"nope", key.as_bytes()).unwrap_err();
        assert!(e.contains(TLS_CERT_KEY), "{e}");
        let e = certified_key(cert.as_bytes(), b"nope").unwrap_err();
        assert!(e.contains(TLS_KEY_KEY), "{e}");
    }
}
