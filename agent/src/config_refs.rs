//! The values an instance reads from Configs and Secrets (`env[].valueFrom`,
//! `envFrom`, `files`, `config.from`), fetched from the control plane when the instance starts. A node may read
//! only the objects its instances name (the API's node authorizer), and
//! keeps the values in memory only: never in its journal or on disk.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use flotilla_client::{collection_path, Client, ClientError};
use flotilla_spec::config::values_of;
use flotilla_spec::workload::WorkloadSpec;

/// Why the values could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// An object or key that does not exist (and is not `optional`): the
    /// instance waits for it, `ConfigMissing`.
    Missing(String),
    /// The control plane could not be asked: tried again.
    Unreachable(String),
    /// More than [`MAX_RESOLVED_BYTES`] to hold: the instance fails.
    TooLarge(String),
}

/// One object's values, by key.
type Values = BTreeMap<String, Vec<u8>>;

/// The values of one object, by key, or `None` if it does not exist.
async fn values(
    client: &Client,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Result<Option<Values>, Unresolved> {
    let plural = if kind == "Secret" {
        "secrets"
    } else {
        "configs"
    };
    let path = format!("{}/{name}", collection_path(plural, Some(namespace)));
    match client.get(&path).await {
        Ok(object) => {
            // Not the decoder's message: it may quote a value.
            values_of(kind, object).map(Some).ok_or_else(|| {
                Unresolved::Unreachable(format!(
                    "{kind} {namespace}/{name} does not decode (do the agent's and the server's versions match?)"
                ))
            })
        }
        Err(ClientError::Api { code: 404, .. }) => Ok(None),
        Err(e) => Err(Unresolved::Unreachable(format!(
            "reading {kind} {namespace}/{name}: {e}"
        ))),
    }
}

/// Reads the Configs and Secrets one instance names, each object once.
pub struct Resolver<'a> {
    client: &'a Client,
    namespace: &'a str,
    fetched: BTreeMap<(&'static str, String), Option<Arc<Values>>>,
    /// Bytes of env, files and config values made so far, up to
    /// [`MAX_RESOLVED_BYTES`].
    bytes: usize,
}

/// Most bytes (keys and values) of Configs and Secrets one instance reads:
/// each object is at most 1 MiB, but a template may name many, and the
/// agent holds them in memory for as long as the instance runs.
pub const MAX_RESOLVED_BYTES: usize = 16 << 20;

/// One `files` mount, read: where, whether its values are secret, and
/// the files (relative path, contents).
#[derive(Clone, PartialEq, Eq)]
pub struct MountValues {
    /// Where the guest sees it.
    pub guest_path: String,
    /// Whether they come from a Secret (kept in memory only).
    pub secret: bool,
    /// Relative path and contents of each file.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Everything an instance reads from Configs and Secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct InstanceValues {
    /// Its environment (literal values too).
    pub env: Vec<(String, String)>,
    /// Its `files` mounts.
    pub mounts: Vec<MountValues>,
    /// What `wasi:config/store` answers.
    pub config: Vec<(String, String)>,
}

/// Names keys and sizes, never a value (they may be secrets).
impl std::fmt::Debug for MountValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files: Vec<(&str, usize)> = self
            .files
            .iter()
            .map(|(p, v)| (p.as_str(), v.len()))
            .collect();
        f.debug_struct("MountValues")
            .field("guest_path", &self.guest_path)
            .field("secret", &self.secret)
            .field("files", &files)
            .finish()
    }
}

/// Names variables and keys, never a value (they may be secrets).
impl std::fmt::Debug for InstanceValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |pairs: &[(String, String)]| -> Vec<String> {
            pairs.iter().map(|(n, _)| n.clone()).collect()
        };
        f.debug_struct("InstanceValues")
            .field("env", &names(&self.env))
            .field("mounts", &self.mounts)
            .field("config", &names(&self.config))
            .finish()
    }
}

/// An environment being built: a name set again keeps its first place
/// and takes the new value (found through an index, not a scan).
#[derive(Default)]
struct Env {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Env {
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&at) => self.vars[at].1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }
}

/// A value as text, or the reason it cannot be one (naming the key, not
/// the value).
fn text(
    bytes: &[u8],
    kind: &str,
    object: &str,
    key: &str,
    use_: &str,
) -> Result<String, Unresolved> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        Unresolved::Missing(format!(
            "key {key:?} of {kind} {object} is not UTF-8 text, so it cannot be {use_}"
        ))
    })
}

impl<'a> Resolver<'a> {
    /// Everything `template` reads, read now.
    pub async fn all(&mut self, template: &WorkloadSpec) -> Result<InstanceValues, Unresolved> {
        Ok(InstanceValues {
            env: self.environment(template).await?,
            mounts: self.files(template).await?,
            config: self.config_store(template).await?,
        })
    }

    /// A whole object for `envFrom` or `config.from`: `None` if it is
    /// missing and `optional`.
    async fn whole(
        &mut self,
        kind: &'static str,
        name: &str,
        optional: bool,
        use_: &str,
    ) -> Result<Option<Arc<Values>>, Unresolved> {
        match self.object(kind, name).await? {
            Some(values) => Ok(Some(values)),
            None if optional => Ok(None),
            None => Err(Unresolved::Missing(format!(
                "{kind} {}/{name} does not exist ({use_}): create it, or mark the reference optional: true",
                self.namespace
            ))),
        }
    }

    /// What `wasi:config/store` answers: every key of every `config.from`
    /// source, a later source's winning.
    pub async fn config_store(
        &mut self,
        template: &WorkloadSpec,
    ) -> Result<Vec<(String, String)>, Unresolved> {
        let mut config = BTreeMap::new();
        let sources = template.config.iter().flat_map(|c| &c.from);
        for source in sources {
            let Some((kind, name)) = source.source() else {
                continue;
            };
            let Some(values) = self
                .whole(kind, name, source.optional, "config.from")
                .await?
            else {
                continue;
            };
            let object = format!("{}/{name}", self.namespace);
            for (key, value) in values.iter() {
                self.charge(key.len() + value.len(), &format!("config.from {object}"))?;
                let value = text(value, kind, &object, key, "read through wasi:config/store")?;
                config.insert(key.clone(), value);
            }
        }
        Ok(config.into_iter().collect())
    }

    /// A resolver for an instance in `namespace`.
    pub fn new(client: &'a Client, namespace: &'a str) -> Self {
        Self {
            client,
            namespace,
            fetched: BTreeMap::new(),
            bytes: 0,
        }
    }

    async fn object(
        &mut self,
        kind: &'static str,
        name: &str,
    ) -> Result<Option<Arc<Values>>, Unresolved> {
        let key = (kind, name.to_string());
        if let Some(object) = self.fetched.get(&key) {
            return Ok(object.clone());
        }
        let object = values(self.client, self.namespace, kind, name)
            .await?
            .map(Arc::new);
        self.fetched.insert(key, object.clone());
        Ok(object)
    }

    /// Counts `bytes` more of what the instance will hold (a value is
    /// counted each time it is used: an env var, a file, a config value).
    fn charge(&mut self, bytes: usize, at: &str) -> Result<(), Unresolved> {
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > MAX_RESOLVED_BYTES {
            return Err(Unresolved::TooLarge(format!(
                "its env, files and config values come to more than {} MiB (at {at}), more than an instance may hold: read fewer objects or keys",
                MAX_RESOLVED_BYTES >> 20
            )));
        }
        Ok(())
    }

    /// The environment of `template`: literal values as they are,
    /// references read now. An optional reference that does not resolve is
    /// left out; a value that is not UTF-8 is refused (naming the key).
    pub async fn environment(
        &mut self,
        template: &WorkloadSpec,
    ) -> Result<Vec<(String, String)>, Unresolved> {
        let namespace = self.namespace;
        let mut env = Env::default();
        // envFrom first: env wins over it, as in Kubernetes.
        for source in &template.env_from {
            let Some((kind, name)) = source.source() else {
                continue;
            };
            let Some(values) = self.whole(kind, name, source.optional(), "envFrom").await? else {
                continue;
            };
            let object = format!("{namespace}/{name}");
            for (key, value) in values.iter() {
                let name = format!("{}{key}", source.prefix);
                self.charge(name.len() + value.len(), &format!("envFrom {object}"))?;
                let value = text(value, kind, &object, key, &format!("env {name}"))?;
                env.set(name, value);
            }
        }
        for var in &template.env {
            let Some((kind, reference)) = var.value_from.as_ref().and_then(|s| s.reference())
            else {
                self.charge(
                    var.name.len() + var.value.len(),
                    &format!("env {}", var.name),
                )?;
                env.set(var.name.clone(), var.value.clone());
                continue;
            };
            let object = self.object(kind, &reference.name).await?;
            let value = match &object {
                None => Err(format!(
                    "{kind} {namespace}/{} does not exist (env {}): create it, or mark the reference optional: true",
                    reference.name, var.name
                )),
                Some(values) => values.get(&reference.key).ok_or_else(|| {
                    format!(
                        "{kind} {namespace}/{} has no key {:?} (env {}): add it, or mark the reference optional: true",
                        reference.name, reference.key, var.name
                    )
                }),
            };
            match value {
                Ok(bytes) => {
                    let object = format!("{namespace}/{}", reference.name);
                    let use_ = format!("env {}", var.name);
                    self.charge(var.name.len() + bytes.len(), &use_)?;
                    let value = text(bytes, kind, &object, &reference.key, &use_)?;
                    env.set(var.name.clone(), value);
                }
                // Left out, as Kubernetes does: an envFrom value of that
                // name, if any, stays.
                Err(_) if reference.optional => {}
                Err(message) => return Err(Unresolved::Missing(message)),
            }
        }
        Ok(env.vars)
    }

    /// The files of `template`'s `files` mounts. An optional mount whose
    /// object is missing is an empty directory; a missing key of an
    /// optional mount is left out.
    pub async fn files(&mut self, template: &WorkloadSpec) -> Result<Vec<MountValues>, Unresolved> {
        let namespace = self.namespace;
        let mut mounts = Vec::with_capacity(template.files.len());
        for mount in &template.files {
            let Some((kind, name)) = mount.source() else {
                continue;
            };
            let object = self.object(kind, name).await?;
            let mut files = Vec::new();
            match &object {
                None if !mount.optional => {
                    return Err(Unresolved::Missing(format!(
                        "{kind} {namespace}/{name} does not exist (files at {}): create it, or mark the mount optional: true",
                        mount.guest_path
                    )))
                }
                None => {}
                Some(values) if mount.items.is_empty() => {
                    for (key, value) in values.iter() {
                        self.charge(key.len() + value.len(), &mount.guest_path)?;
                        files.push((key.clone(), value.clone()));
                    }
                }
                Some(values) => {
                    for item in &mount.items {
                        match values.get(&item.key) {
                            Some(value) => {
                                self.charge(item.path.len() + value.len(), &mount.guest_path)?;
                                files.push((item.path.clone(), value.clone()));
                            }
                            None if mount.optional => {}
                            None => {
                                return Err(Unresolved::Missing(format!(
                                    "{kind} {namespace}/{name} has no key {:?} (files at {}): add it, or mark the mount optional: true",
                                    item.key, mount.guest_path
                                )))
                            }
                        }
                    }
                }
            }
            mounts.push(MountValues {
                guest_path: mount.guest_path.clone(),
                secret: kind == "Secret",
                files,
            });
        }
        Ok(mounts)
    }
}
