//! The client config: which server the CLI talks to, with which token.
//! `flotilla up` writes it (mode 0600); every other command reads it from
//! `$FLOTILLA_CONFIG`, else `~/.config/flotilla/config.yaml`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The client config file's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// API server URL, e.g. `http://127.0.0.1:7443`.
    pub server: String,
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
            "client config {} is not valid (expected server: and token:)",
            path.display()
        )
    })
}

/// Writes the config, readable by its owner only.
pub fn save(config: &ClientConfig) -> Result<PathBuf> {
    let path = path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_yaml_ng::to_string(config)?;
    write_private(&path, text.as_bytes())?;
    Ok(path)
}

/// Writes a file with mode 0600 (created so from the start, never briefly readable).
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::fs::PermissionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    Ok(())
}

/// A client for the configured server.
pub fn client() -> Result<flotilla_client::Client> {
    let config = load()?;
    Ok(flotilla_client::Client::new(&config.server, &config.token)?)
}
