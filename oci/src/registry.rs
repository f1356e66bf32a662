//! Talking to a registry (`oci-client`): resolve a reference to the digest
//! of its manifest, pull the module it holds — its digest checked, resumed
//! from where it stopped when a connection drops — and push one.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use sha2::{Digest, Sha256};

use crate::bundle::BundledModule;
use crate::layout::{self, WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE};
use crate::signature::{self, PrivateKey, PublicKey, Signed, SIGNATURE_MEDIA_TYPE};
use crate::{Credentials, ModuleRef, OciError};

/// Attempts at a transfer before giving up (each failure waits longer).
const ATTEMPTS: u32 = 6;
/// Longest registry message kept in an error.
const MAX_MESSAGE: usize = 1024;
/// The first wait after a failure; doubled each time.
const FIRST_RETRY: Duration = Duration::from_millis(200);

/// What a reference resolved to.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The manifest's digest (`sha256:…`): what the tag pointed at.
    pub manifest_digest: String,
    /// The module's layer.
    pub layer: OciDescriptor,
    /// The manifest's annotations (source, version, creation time…).
    pub annotations: BTreeMap<String, String>,
}

impl Resolved {
    /// The module's sha256, hex (the blob store's key).
    pub fn sha256(&self) -> &str {
        self.layer
            .digest
            .strip_prefix("sha256:")
            .unwrap_or(&self.layer.digest)
    }

    /// The module's size in bytes.
    pub fn size(&self) -> u64 {
        u64::try_from(self.layer.size).unwrap_or_default()
    }
}

/// A pulled module.
#[derive(Debug)]
pub struct Pulled {
    /// Its bytes, their digest checked.
    pub bytes: Vec<u8>,
    /// How many times the transfer was taken up again.
    pub resumed: u32,
}

/// Where a pull writes a module as it arrives: memory, or a file (so a
/// large module is never held whole).
#[allow(async_fn_in_trait)] // used with concrete sinks only
pub trait Sink {
    /// Drops what was written (the registry sent the module whole again).
    async fn restart(&mut self) -> std::io::Result<()>;
    /// Writes the next bytes.
    async fn append(&mut self, bytes: &[u8]) -> std::io::Result<()>;
}

impl Sink for Vec<u8> {
    async fn restart(&mut self) -> std::io::Result<()> {
        self.clear();
        Ok(())
    }

    async fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

impl Sink for tokio::fs::File {
    async fn restart(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncSeekExt;
        self.set_len(0).await?;
        self.seek(std::io::SeekFrom::Start(0)).await.map(drop)
    }

    async fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        tokio::io::AsyncWriteExt::write_all(self, bytes).await
    }
}

/// One registry, as one reference names it.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    reference: ModuleRef,
}

impl Registry {
    /// A client for `reference`'s registry: plain HTTP on loopback or when
    /// the registry is in `insecure` (`host:port`), HTTPS otherwise.
    pub fn new(
        reference: &ModuleRef,
        credentials: Option<Credentials>,
        insecure: &[String],
    ) -> Result<Self, OciError> {
        let registry = reference.registry().to_string();
        let protocol = if reference.is_loopback() || insecure.contains(&registry) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let client = Client::try_from(ClientConfig {
            protocol,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            ..ClientConfig::default()
        })
        .map_err(|e| OciError::Registry {
            reference: reference.to_string(),
            message: format!("cannot make an HTTP client: {e}"),
        })?;
        let auth = credentials.map_or(RegistryAuth::Anonymous, |c| {
            RegistryAuth::Basic(c.username, c.password)
        });
        Ok(Self {
            client,
            auth,
            reference: reference.clone(),
        })
    }

    fn error(&self, e: OciDistributionError) -> OciError {
        let reference = self.reference.to_string();
        // A registry's error bodies are its to choose: kept short.
        let mut message = e.to_string();
        if message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        match e {
            OciDistributionError::AuthenticationFailure(_)
            | OciDistributionError::UnauthorizedError { .. } => {
                OciError::Unauthorized { reference, message }
            }
            OciDistributionError::ImageManifestNotFoundError(_) => {
                OciError::NotFound { reference, message }
            }
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => OciError::Unauthorized { reference, message },
            OciDistributionError::ServerError { code: 404, .. } => {
                OciError::NotFound { reference, message }
            }
            OciDistributionError::RegistryError { ref envelope, .. }
                if envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        oci_client::errors::OciErrorCode::Unauthorized
                            | oci_client::errors::OciErrorCode::Denied
                    )
                }) =>
            {
                OciError::Unauthorized { reference, message }
            }
            OciDistributionError::RegistryError { ref envelope, .. }
                if envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        oci_client::errors::OciErrorCode::ManifestUnknown
                            | oci_client::errors::OciErrorCode::NameUnknown
                            | oci_client::errors::OciErrorCode::BlobUnknown
                    )
                }) =>
            {
                OciError::NotFound { reference, message }
            }
            // Worth another try: the network, a registry failing for now.
            OciDistributionError::RequestError(_)
            | OciDistributionError::IoError(_)
            | OciDistributionError::ServerError {
                code: 429 | 500..=599,
                ..
            } => OciError::Registry { reference, message },
            OciDistributionError::RegistryError { ref envelope, .. }
                if envelope.errors.iter().any(|e| {
                    matches!(e.code, oci_client::errors::OciErrorCode::Toomanyrequests)
                }) =>
            {
                OciError::Registry { reference, message }
            }
            _ => OciError::Unusable { reference, message },
        }
    }

    /// The manifest `reference` names now (a tag resolved to its digest),
    /// checked to be a Wasm module of at most `max_bytes`.
    pub async fn resolve(&self, max_bytes: u64) -> Result<Resolved, OciError> {
        let (manifest, digest) = self
            .retrying(|| {
                self.client
                    .pull_image_manifest(&self.reference.0, &self.auth)
            })
            .await?;
        if let Some(wanted) = self.reference.digest() {
            if wanted != digest {
                return Err(OciError::DigestMismatch {
                    reference: self.reference.to_string(),
                    expected: wanted.to_string(),
                    actual: digest.trim_start_matches("sha256:").to_string(),
                });
            }
        }
        let layer = layout::module_layer(&self.reference, &manifest, max_bytes)?;
        Ok(Resolved {
            manifest_digest: digest,
            layer,
            annotations: manifest.annotations.unwrap_or_default(),
        })
    }

    /// Runs `call` until it succeeds, fails for good (refused, not found)
    /// or has failed [`ATTEMPTS`] times.
    async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T, OciError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
    {
        let mut wait = FIRST_RETRY;
        let mut attempt = 1;
        loop {
            match call().await.map_err(|e| self.error(e)) {
                Ok(value) => return Ok(value),
                Err(e @ OciError::Registry { .. }) if attempt < ATTEMPTS => {
                    tracing::info!("{e}; trying again in {wait:?}");
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
            attempt += 1;
        }
    }

    /// The module `resolved` names, in memory (see [`Registry::pull_to`]).
    pub async fn pull(
        &self,
        resolved: &Resolved,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<Pulled, OciError> {
        let mut bytes: Vec<u8> =
            Vec::with_capacity(usize::try_from(resolved.size().min(64 << 20)).unwrap_or(0));
        let resumed = self.pull_to(resolved, &mut bytes, progress).await?;
        Ok(Pulled { bytes, resumed })
    }

    /// Writes the module `resolved` names into `sink` as it arrives,
    /// hashing it on the way, `progress(done, total)` told as bytes arrive.
    /// A dropped connection is taken up again from the byte it stopped at
    /// (a Range request); the whole is checked against the manifest's
    /// digest before this returns. How many times it was taken up again.
    pub async fn pull_to<S: Sink>(
        &self,
        resolved: &Resolved,
        sink: &mut S,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<u32, OciError> {
        let total = resolved.size();
        let sink_failed = |e: std::io::Error| OciError::Registry {
            reference: self.reference.to_string(),
            message: format!("cannot keep the module as it arrives: {e}"),
        };
        let mut hasher = Sha256::new();
        let mut done = 0u64;
        let mut resumed = 0;
        let mut wait = FIRST_RETRY;
        let mut failures = 0;
        loop {
            let offset = done;
            let failure = match self
                .client
                .pull_blob_stream_partial(&self.reference.0, &resolved.layer, offset, None)
                .await
            {
                Ok(response) => {
                    let stream = match response {
                        BlobResponse::Partial(stream) => stream,
                        // The registry sent it all again: start over.
                        BlobResponse::Full(stream) => {
                            sink.restart().await.map_err(sink_failed)?;
                            hasher = Sha256::new();
                            done = 0;
                            stream
                        }
                    };
                    let mut stream = stream.stream;
                    let mut failure = None;
                    while let Some(chunk) = stream.next().await {
                        match chunk {
                            Ok(chunk) => {
                                if done + chunk.len() as u64 > total {
                                    // More than the manifest says: not the module it names.
                                    return Err(OciError::DigestMismatch {
                                        reference: self.reference.to_string(),
                                        expected: resolved.layer.digest.clone(),
                                        actual: hex::encode(
                                            hasher.clone().chain_update(&chunk).finalize(),
                                        ),
                                    });
                                }
                                sink.append(&chunk).await.map_err(sink_failed)?;
                                hasher.update(&chunk);
                                done += chunk.len() as u64;
                                progress(done, total);
                            }
                            Err(e) => {
                                failure = Some(e.to_string());
                                break;
                            }
                        }
                    }
                    match failure {
                        // A verifying stream objects at the end: ours decides.
                        _ if done == total => break,
                        Some(failure) => failure,
                        None => format!("the transfer ended at byte {done} of {total}"),
                    }
                }
                Err(e) => match self.error(e) {
                    e @ OciError::Registry { .. } => e.to_string(),
                    e => return Err(e),
                },
            };
            // Progress made since the last failure earns fresh attempts.
            if done > offset {
                failures = 0;
                wait = FIRST_RETRY;
            }
            failures += 1;
            if failures >= ATTEMPTS {
                return Err(OciError::Registry {
                    reference: self.reference.to_string(),
                    message: format!(
                        "pulling the module failed {ATTEMPTS} times in a row at byte {done} of {total}: {failure}"
                    ),
                });
            }
            tracing::info!(
                "{}: {failure}; taking it up again from byte {done} in {wait:?}",
                self.reference,
            );
            resumed += 1;
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        let actual = hex::encode(hasher.finalize());
        if actual != resolved.sha256() {
            return Err(OciError::DigestMismatch {
                reference: self.reference.to_string(),
                expected: resolved.layer.digest.clone(),
                actual,
            });
        }
        Ok(resumed)
    }

    /// Pushes `bytes` as a Wasm module artifact with `annotations` (a push
    /// that fails for now is tried again whole); the digest of the manifest
    /// the tag then names.
    pub async fn push(
        &self,
        bytes: &[u8],
        mut annotations: BTreeMap<String, String>,
        created: &str,
    ) -> Result<String, OciError> {
        if !bytes.starts_with(b"\0asm") {
            return Err(OciError::NotWasm {
                reference: self.reference.to_string(),
                why: "the file does not start with the \\0asm magic bytes".into(),
            });
        }
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        let config =
            serde_json::to_vec(&layout::config_for(bytes, &digest, created)).map_err(|e| {
                OciError::Registry {
                    reference: self.reference.to_string(),
                    message: e.to_string(),
                }
            })?;
        annotations
            .entry(layout::ANNOTATION_CREATED.to_string())
            .or_insert_with(|| created.to_string());
        let layers = vec![ImageLayer::new(
            bytes.to_vec(),
            WASM_LAYER_MEDIA_TYPE.to_string(),
            None,
        )];
        let config = Config::new(config, WASM_CONFIG_MEDIA_TYPE.to_string(), None);
        let manifest = OciImageManifest::build(&layers, &config, Some(annotations));
        self.retrying(|| {
            self.client.push(
                &self.reference.0,
                &layers,
                config.clone(),
                &self.auth,
                Some(manifest.clone()),
            )
        })
        .await?;
        let resolved = self.resolve(u64::MAX).await?;
        Ok(resolved.manifest_digest)
    }

    /// The reference of the signatures of manifest `digest`.
    fn signatures_of(&self, digest: &str) -> oci_client::Reference {
        oci_client::Reference::with_tag(
            self.reference.0.registry().to_string(),
            self.reference.repository().to_string(),
            signature::signature_tag(digest),
        )
    }

    /// Signs manifest `digest` with `key`: a layer added to its
    /// `sha256-….sig` manifest (signatures already there, by other keys or
    /// by cosign, are kept, as cosign keeps them); that tag.
    pub async fn push_signature(&self, digest: &str, key: &PrivateKey) -> Result<String, OciError> {
        let place = format!(
            "{}/{}",
            self.reference.named_registry(),
            self.reference.repository()
        );
        let signed = Signed::by(key, &place, digest);
        let layer = signed.layer();
        let target = self.signatures_of(digest);
        let mut layers = match self.signature_manifest(&target).await? {
            Some(manifest) => manifest.layers,
            None => Vec::new(),
        };
        // The payload is the same for every signer: the signature tells
        // them apart (ECDSA here is deterministic, RFC 6979, so signing
        // twice with one key adds nothing).
        layers.retain(|l| !(l.digest == layer.digest && l.annotations == layer.annotations));
        layers.push(layer.clone());
        let config = signature::manifest_config(&layers);
        let manifest = signature::manifest(layers, &config);
        self.retrying(|| {
            self.client
                .push_blob(&target, &signed.payload, &layer.digest)
        })
        .await?;
        self.retrying(|| {
            self.client
                .push_blob(&target, &config, &manifest.config.digest)
        })
        .await?;
        let manifest = oci_client::manifest::OciManifest::Image(manifest);
        self.retrying(|| self.client.push_manifest(&target, &manifest))
            .await?;
        Ok(target.tag().unwrap_or_default().to_string())
    }

    /// The signature manifest at `target`, if there is one.
    async fn signature_manifest(
        &self,
        target: &oci_client::Reference,
    ) -> Result<Option<OciImageManifest>, OciError> {
        match self
            .retrying(|| self.client.pull_image_manifest(target, &self.auth))
            .await
        {
            Ok((manifest, _)) => Ok(Some(manifest)),
            Err(OciError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The signatures of manifest `digest` in the registry (`None`: it has
    /// no signature manifest). A payload that cannot be read is one
    /// signature fewer.
    pub async fn signatures(&self, digest: &str) -> Result<Option<Vec<Signed>>, OciError> {
        let target = self.signatures_of(digest);
        let Some(manifest) = self.signature_manifest(&target).await? else {
            return Ok(None);
        };
        let mut payloads = Vec::new();
        for layer in manifest
            .layers
            .iter()
            .filter(|l| l.media_type == SIGNATURE_MEDIA_TYPE)
            .take(signature::MAX_SIGNATURES)
            .filter(|l| usize::try_from(l.size).is_ok_and(|n| n <= signature::MAX_PAYLOAD_BYTES))
        {
            if let Ok(payload) = self
                .small_blob(&target, layer, signature::MAX_PAYLOAD_BYTES)
                .await
            {
                payloads.push((layer.digest.clone(), payload));
            }
        }
        Ok(Some(signature::from_layers(&manifest.layers, |layer| {
            payloads
                .iter()
                .find(|(digest, _)| *digest == layer.digest)
                .map(|(_, payload)| payload.clone())
        })))
    }

    /// A blob of at most `max` bytes, read whole (no more than `max` is
    /// read, whatever is sent) and checked against its digest.
    async fn small_blob(
        &self,
        target: &oci_client::Reference,
        layer: &OciDescriptor,
        max: usize,
    ) -> Result<Vec<u8>, OciError> {
        let unusable = |message: String| OciError::Unusable {
            reference: self.reference.to_string(),
            message,
        };
        let mut stream = self
            .retrying(|| self.client.pull_blob_stream(target, layer))
            .await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| unusable(format!("reading blob {}: {e}", layer.digest)))?;
            if bytes.len() + chunk.len() > max {
                return Err(unusable(format!(
                    "blob {} is larger than the {max} bytes such a blob may be",
                    layer.digest
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        if format!("sha256:{}", hex::encode(Sha256::digest(&bytes))) != layer.digest {
            return Err(unusable(format!(
                "blob {} arrived with another digest: damaged or tampered with",
                layer.digest
            )));
        }
        Ok(bytes)
    }

    /// Checks that manifest `digest` carries a signature by one of `keys`
    /// (`policy` names who asks, for the refusal).
    pub async fn verify_signature(
        &self,
        digest: &str,
        keys: &[PublicKey],
        policy: &str,
    ) -> Result<(), OciError> {
        let signatures = self.signatures(digest).await?;
        signature::verify(
            &self.reference.to_string(),
            policy,
            digest,
            signatures.as_deref(),
            keys,
            None,
        )
    }

    /// Everything a bundle holds of the module `reference` names now: the
    /// manifest's exact bytes, its config, the module (at most
    /// `max_bytes`, its digest checked), and the manifest's signatures.
    pub async fn export(
        &self,
        max_bytes: u64,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<BundledModule, OciError> {
        let (manifest, _) = self
            .retrying(|| {
                self.client.pull_manifest_raw(
                    &self.reference.0,
                    &self.auth,
                    &[oci_client::manifest::OCI_IMAGE_MEDIA_TYPE],
                )
            })
            .await?;
        let parsed = layout::parse_manifest(&self.reference, &manifest, max_bytes)?;
        let resolved = Resolved {
            manifest_digest: parsed.digest.clone(),
            layer: parsed.layer.clone(),
            annotations: BTreeMap::new(),
        };
        let config = self
            .small_blob(&self.reference.0, &parsed.config, layout::MAX_CONFIG_BYTES)
            .await?;
        let module = self.pull(&resolved, progress).await?.bytes;
        let signatures = self.signatures(&parsed.digest).await?.unwrap_or_default();
        Ok(BundledModule {
            reference: self.reference.clone(),
            manifest,
            config,
            module,
            signatures,
        })
    }
}
