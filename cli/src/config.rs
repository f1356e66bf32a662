//! The client config: which server the CLI talks to, how it verifies it
//! (the cluster CA, as a kubeconfig's `certificate-authority-data`), and
//! with which token.
//! `flotilla up` writes it (mode 0600); every other command reads it from
//! `$FLOTILLA_CONFIG`, else `~/.config/flotilla/config.yaml`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The client config file's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientConfig {
    /// API server URL, e.g. `https://127.0.0.1:7443`.
    pub server: String,
    /// More servers of the same control plane (one on etcd): a request
    /// that cannot reach one goes to the next.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
    /// The cluster CA certificate (PEM): the only one trusted.
    #[serde(default)]
    pub certificate_authority: String,
    /// Bearer token.
    pub token: String,
}

/// Where the config lives.
pub fn path() -> PathBuf {
    if let Some(p) = std::env::var_os("FLOTILLA_CONFIG") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".config/flotilla/config.yaml")
}

/// Reads the config.
pub fn load() -> Result<ClientConfig> {
    let path = path();
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("no client config at {}: start a server with `flotilla up` (it writes one), or set FLOTILLA_CONFIG", path.display())
    })?;
    serde_yaml_ng::from_str(&text).with_context(|| {
        format!(
            "client config {} is not valid (expected server:, certificateAuthority: and token:)",
            path.display()
        )
    })
}

/// Writes the config, readable by its owner only.
pub fn save(config: &ClientConfig) -> Result<PathBuf> {
    let path = path();
    let text = serde_yaml_ng::to_string(config)?;
    write_private(&path, text.as_bytes())?;
    Ok(path)
}

/// Writes a file with mode 0600 (created so from the start, never briefly
/// readable), its folder 0700.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    Ok(flotilla_trust::write_private(path, bytes)?)
}

/// Every server the config names, comma-separated (`$FLOTILLA_SERVER`, a
/// comma-separated list, replaces them).
pub fn server_list(config: &ClientConfig) -> String {
    if let Ok(servers) = std::env::var("FLOTILLA_SERVER") {
        if !servers.trim().is_empty() {
            return servers;
        }
    }
    let mut all = vec![config.server.clone()];
    all.extend(
        config
            .servers
            .iter()
            .filter(|s| **s != config.server)
            .cloned(),
    );
    all.join(",")
}

/// The config a server writes on start: its own URL, keeping the other
/// servers of the same control plane an existing config lists (same CA and
/// token) when `shared` (several servers on one etcd).
pub fn for_server(url: &str, ca_pem: &str, token: &str, shared: bool) -> ClientConfig {
    let mut servers = Vec::new();
    if let Ok(old) = load() {
        if shared && old.certificate_authority == ca_pem && old.token == token {
            for server in std::iter::once(old.server).chain(old.servers) {
                if server != url && !servers.contains(&server) {
                    servers.push(server);
                }
            }
        }
    }
    ClientConfig {
        server: url.to_string(),
        servers,
        certificate_authority: ca_pem.to_string(),
        token: token.to_string(),
    }
}

/// A client for the configured server.
pub fn client() -> Result<flotilla_client::Client> {
    let config = load()?;
    if config.certificate_authority.trim().is_empty() {
        anyhow::bail!(
            "client config {} has no certificateAuthority, so the server cannot be verified: it was written by an older flotilla; start the server again (it rewrites the config) or copy <server data dir>/pki/ca.crt into it",
            path().display()
        );
    }
    Ok(flotilla_client::Client::new(
        &server_list(&config),
        flotilla_client::Credentials {
            ca_pem: config.certificate_authority,
            token: Some(config.token),
            identity: None,
        },
    )?)
}
