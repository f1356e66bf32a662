//! A registry's credentials, and reading them from a Docker `config.json`
//! (`{"auths": {"REGISTRY": {"username", "password"} | {"auth": base64}}}`),
//! which is what a `kubernetes.io/dockerconfigjson` Secret holds.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A user name and password for a registry (basic auth, or the token
/// exchange a registry asks for). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
}

/// The registry part of an `auths` key: `https://host:port/v1/` → `host:port`.
fn host_of(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

impl Credentials {
    /// The credentials `config` (a Docker `config.json`) holds for
    /// `registry` (`host[:port]`), if any. The error names what is wrong,
    /// never a value.
    pub fn from_docker_config(config: &[u8], registry: &str) -> Result<Option<Self>, String> {
        let config: DockerConfig = serde_json::from_slice(config).map_err(|e| {
            format!(
                "is not a Docker config.json ({{\"auths\": …}}): {}",
                e.classify_name()
            )
        })?;
        let Some(entry) = config
            .auths
            .iter()
            .find(|(key, _)| host_of(key) == registry)
            .map(|(_, entry)| entry)
        else {
            return Ok(None);
        };
        if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
            return Ok(Some(Self {
                username: username.clone(),
                password: password.clone(),
            }));
        }
        let auth = entry.auth.as_deref().ok_or_else(|| {
            format!("its entry for {registry} has neither username/password nor auth")
        })?;
        let decoded = flotilla_spec::config::base64_decode(auth)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| format!("its auth for {registry} is not base64 of user:password"))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| format!("its auth for {registry} is not base64 of user:password"))?;
        Ok(Some(Self {
            username: username.to_string(),
            password: password.to_string(),
        }))
    }

    /// A Docker `config.json` holding these credentials for `registry`.
    pub fn to_docker_config(&self, registry: &str) -> String {
        let auth = flotilla_spec::config::base64_encode(
            format!("{}:{}", self.username, self.password).as_bytes(),
        );
        serde_json::json!({"auths": {registry: {
            "username": self.username, "password": self.password, "auth": auth,
        }}})
        .to_string()
    }
}

trait Classify {
    fn classify_name(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    /// Which kind of error, without the text (which may quote the input).
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "wrong shape",
            serde_json::error::Category::Eof => "cut short",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_either_form_and_never_show() {
        let made = Credentials {
            username: "ci".into(),
            password: "s3cret".into(),
        };
        let config = made.to_docker_config("localhost:5000");
        assert_eq!(
            Credentials::from_docker_config(config.as_bytes(), "localhost:5000").unwrap(),
            Some(made.clone())
        );
        assert_eq!(
            Credentials::from_docker_config(config.as_bytes(), "ghcr.io").unwrap(),
            None
        );
        let encoded = r#"{"auths": {"https://localhost:5000/v1/": {"auth": "Y2k6czNjcmV0"}}}"#;
        assert_eq!(
            Credentials::from_docker_config(encoded.as_bytes(), "localhost:5000").unwrap(),
            Some(made.clone())
        );
        assert!(!format!("{made:?}").contains("s3cret"));
        let e = Credentials::from_docker_config(b"{\"auths\": \"s3cret\"", "x").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
    }
}
