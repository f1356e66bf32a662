//! Bundles: modules and their signatures in one file, for control planes
//! that cannot reach a registry (air-gapped or metered sites).
//!
//! A bundle is an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/…`) in an uncompressed tar file, as `oras` and `skopeo`
//! read and write them. `index.json` names each module's manifest with its
//! whole reference (`io.containerd.image.name`: `REGISTRY/REPOSITORY:TAG`)
//! and its tag (`org.opencontainers.image.ref.name`); each module's cosign
//! signatures are a signature manifest tagged `sha256-HEX.sig`, as in a
//! registry.
//!
//! Reading checks every blob against its name before anything in it is
//! believed; a module is read again from the file only when it is wanted,
//! so a bundle of many modules is never held in memory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use oci_client::manifest::{OciDescriptor, OciImageManifest, OCI_IMAGE_MEDIA_TYPE};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::layout::{self, MAX_MANIFEST_BYTES};
use crate::signature::{self, Signed};
use crate::ModuleRef;

/// The annotation naming a manifest's tag (the OCI image layout's).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation naming a manifest's whole reference (containerd's).
pub const IMAGE_NAME: &str = "io.containerd.image.name";
/// Most entries a bundle may hold.
const MAX_ENTRIES: usize = 100_000;
/// Most manifests `index.json` may name.
const MAX_DESCRIPTORS: usize = 10_000;
/// Blobs up to this size (manifests, configs, signature payloads) are kept
/// in memory while a bundle is read; larger ones (modules) are read from
/// the file when wanted. What a manifest or config may be, no more.
const SMALL_BLOB: u64 = MAX_MANIFEST_BYTES as u64;
/// Most bytes of small blobs kept in memory in all.
const MAX_SMALL_BYTES: u64 = 64 << 20;

/// A bundle that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("bundle {path}: {why}")]
pub struct BundleError {
    /// The bundle's file.
    pub path: String,
    /// What is wrong, and what to do.
    pub why: String,
}

/// One module as a bundle holds it.
#[derive(Debug, Clone)]
pub struct BundledModule {
    /// What workloads name it as.
    pub reference: ModuleRef,
    /// The manifest's exact bytes.
    pub manifest: Vec<u8>,
    /// The config blob.
    pub config: Vec<u8>,
    /// The module.
    pub module: Vec<u8>,
    /// The manifest's signatures.
    pub signatures: Vec<Signed>,
}

/// Writes a bundle, module by module.
pub struct Writer<W: Write> {
    tar: tar::Builder<W>,
    written: HashSet<String>,
    /// The references (and signature manifests) in the index so far.
    named: HashSet<String>,
    index: Vec<Value>,
}

impl<W: Write> Writer<W> {
    /// A bundle written to `out`.
    pub fn new(out: W) -> Self {
        Self {
            tar: tar::Builder::new(out),
            written: HashSet::new(),
            named: HashSet::new(),
            index: Vec::new(),
        }
    }

    fn file(&mut self, path: &str, bytes: &[u8]) -> std::io::Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        self.tar.append_data(&mut header, path, bytes)
    }

    /// Writes `bytes` under `blobs/sha256/`, once; their digest.
    fn blob(&mut self, bytes: &[u8]) -> std::io::Result<String> {
        let hex = hex::encode(Sha256::digest(bytes));
        if self.written.insert(hex.clone()) {
            self.file(&format!("blobs/sha256/{hex}"), bytes)?;
        }
        Ok(format!("sha256:{hex}"))
    }

    /// Names `manifest` in the index as `name` (`REGISTRY/REPO:TAG` or
    /// `…@DIGEST`), with its `tag` if it has one.
    fn entry(&mut self, manifest: &[u8], digest: String, name: String, tag: Option<&str>) {
        let mut annotations = json!({IMAGE_NAME: name});
        if let Some(tag) = tag {
            annotations[REF_NAME] = tag.into();
        }
        self.named.insert(name);
        self.index.push(json!({
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "digest": digest,
            "size": manifest.len(),
            "annotations": annotations,
        }));
    }

    /// Adds `module`, and a signature manifest if it has signatures (one
    /// per manifest: two tags of one manifest share it).
    pub fn add(&mut self, module: &BundledModule) -> std::io::Result<()> {
        let reference = &module.reference;
        let place = format!("{}/{}", reference.named_registry(), reference.repository());
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&module.manifest)));
        let name = match reference.tag() {
            Some(tag) => format!("{place}:{tag}"),
            None => format!("{place}@{digest}"),
        };
        if self.named.contains(&name) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{reference} is in the bundle already"),
            ));
        }
        self.blob(&module.config)?;
        self.blob(&module.module)?;
        self.blob(&module.manifest)?;
        self.entry(&module.manifest, digest.clone(), name, reference.tag());
        let tag = signature::signature_tag(&digest);
        let signatures_name = format!("{place}:{tag}");
        if module.signatures.is_empty() || self.named.contains(&signatures_name) {
            return Ok(());
        }
        let mut layers = Vec::new();
        for signed in &module.signatures {
            self.blob(&signed.payload)?;
            layers.push(signed.layer());
        }
        let config = signature::manifest_config(&layers);
        self.blob(&config)?;
        let manifest = serde_json::to_vec(&signature::manifest(layers, &config))?;
        let manifest_digest = self.blob(&manifest)?;
        self.entry(&manifest, manifest_digest, signatures_name, Some(&tag));
        Ok(())
    }

    /// Writes the layout's `index.json` and `oci-layout`; the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        let index = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": self.index,
        }))?;
        self.file("index.json", &index)?;
        self.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        self.tar.into_inner()
    }
}

/// A bundle written beside the file it is to become.
pub type FileWriter = Writer<std::io::BufWriter<tempfile::NamedTempFile>>;

impl FileWriter {
    /// A bundle for `path`, written beside it until [`FileWriter::persist`].
    pub fn beside(path: &Path) -> std::io::Result<Self> {
        let folder = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Ok(Self::new(std::io::BufWriter::new(
            tempfile::NamedTempFile::new_in(folder)?,
        )))
    }

    /// Finishes the bundle and puts it in place of `path`, durable and
    /// whole (on failure `path` is left as it was).
    pub fn persist(self, path: &Path) -> std::io::Result<()> {
        let out = self.finish()?.into_inner().map_err(|e| e.into_error())?;
        out.as_file().sync_all()?;
        out.persist(path).map(drop).map_err(|e| e.error)
    }
}

/// One module found in a bundle, checked.
#[derive(Debug, Clone)]
pub struct Entry {
    /// What workloads name it as.
    pub reference: ModuleRef,
    /// The manifest's exact bytes.
    pub manifest: Vec<u8>,
    /// `sha256:…` of the manifest.
    pub manifest_digest: String,
    /// The config blob.
    pub config: Vec<u8>,
    /// The module's layer.
    pub layer: OciDescriptor,
    /// The manifest's signatures.
    pub signatures: Vec<Signed>,
}

/// Where a large blob lies in the file.
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: u64,
    size: u64,
}

/// A bundle opened for reading: its blobs checked, its modules listed.
pub struct Bundle {
    path: PathBuf,
    file: File,
    small: HashMap<String, Vec<u8>>,
    large: HashMap<String, Span>,
    /// The modules, in the order of `index.json`.
    pub entries: Vec<Entry>,
}

impl Bundle {
    /// Opens the bundle at `path`, whose modules may have at most
    /// `max_module_bytes`. `repository` (`oci://REGISTRY/REPO`) names the
    /// modules of a layout whose `index.json` gives tags only (as `oras
    /// copy --to-oci-layout` writes for one repository).
    pub fn open(
        path: &Path,
        repository: Option<&str>,
        max_module_bytes: u64,
    ) -> Result<Self, BundleError> {
        let bad = |why: String| BundleError {
            path: path.display().to_string(),
            why,
        };
        let io = |e: std::io::Error| bad(format!("cannot be read: {e}"));
        let mut archive = tar::Archive::new(File::open(path).map_err(io)?);
        let mut small: HashMap<String, Vec<u8>> = HashMap::new();
        let mut small_bytes = 0;
        let mut large = HashMap::new();
        let (mut index, mut layout_file) = (None, None);
        // Raw: extension headers (long names, pax) are entries like any
        // other, never read whole; a layout's names are short.
        for (n, entry) in archive.entries().map_err(io)?.raw(true).enumerate() {
            if n >= MAX_ENTRIES {
                return Err(bad(format!(
                    "more than {MAX_ENTRIES} entries: not a bundle of modules"
                )));
            }
            let mut entry = entry.map_err(|e| bad(format!("is not a tar file: {e}")))?;
            let name = entry
                .path()
                .map_err(|e| bad(format!("an entry's name cannot be read: {e}")))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            let size = entry.size();
            let kind = entry.header().entry_type();
            // Extension headers (pax, as `tar --format=posix` and bsdtar
            // write them; GNU long names) come as entries of their own, named
            // after the file they describe: not blobs, and not read.
            if kind.is_pax_local_extensions()
                || kind.is_pax_global_extensions()
                || kind.is_gnu_longname()
                || kind.is_gnu_longlink()
            {
                continue;
            }
            let regular = kind.is_file();
            match name.as_str() {
                "index.json" | "oci-layout" if regular => {
                    if size > SMALL_BLOB {
                        return Err(bad(format!("{name} is {size} bytes: too large")));
                    }
                    let mut bytes = Vec::new();
                    entry.read_to_end(&mut bytes).map_err(io)?;
                    if name == "index.json" {
                        index = Some(bytes);
                    } else {
                        layout_file = Some(bytes);
                    }
                }
                _ => {
                    let Some(hex) = name.strip_prefix("blobs/sha256/") else {
                        continue; // other algorithms, folders: not looked at
                    };
                    if hex.is_empty() {
                        continue;
                    }
                    if !regular || hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(bad(format!(
                            "{name} is not a blob (a regular file named by its sha256)"
                        )));
                    }
                    let offset = entry.raw_file_position();
                    let keep = size <= SMALL_BLOB;
                    if keep && small_bytes + size > MAX_SMALL_BYTES {
                        return Err(bad(format!(
                            "holds more than {MAX_SMALL_BYTES} bytes of manifests, configs and signatures: not a bundle of modules"
                        )));
                    }
                    let mut hasher = Sha256::new();
                    let mut kept = Vec::new();
                    let mut buffer = vec![0; 64 * 1024];
                    loop {
                        let read = entry.read(&mut buffer).map_err(io)?;
                        if read == 0 {
                            break;
                        }
                        hasher.update(&buffer[..read]);
                        if keep {
                            kept.extend_from_slice(&buffer[..read]);
                        }
                    }
                    let actual = hex::encode(hasher.finalize());
                    if actual != hex.to_ascii_lowercase() {
                        return Err(bad(format!(
                            "blob {hex} holds bytes whose sha256 is {actual}: the bundle was damaged or tampered with; export it again"
                        )));
                    }
                    if keep {
                        small_bytes += size;
                        small.insert(actual, kept);
                    } else {
                        large.insert(actual, Span { offset, size });
                    }
                }
            }
        }
        let layout_file = layout_file.ok_or_else(|| {
            bad("has no oci-layout file: not an OCI image layout (flotilla bundle export makes one)".into())
        })?;
        let version = serde_json::from_slice::<Value>(&layout_file)
            .ok()
            .and_then(|v| v["imageLayoutVersion"].as_str().map(str::to_string));
        if version.as_deref() != Some("1.0.0") {
            return Err(bad(format!(
                "its oci-layout names image layout version {version:?}; only 1.0.0 is read"
            )));
        }
        let index = index.ok_or_else(|| bad("has no index.json".into()))?;
        let index: Value = serde_json::from_slice(&index)
            .map_err(|e| bad(format!("its index.json is not JSON: {e}")))?;
        let entries = entries(&index, &small, &large, repository, max_module_bytes).map_err(bad)?;
        Ok(Self {
            path: path.to_path_buf(),
            file: File::open(path).map_err(io)?,
            small,
            large,
            entries,
        })
    }

    /// The module of `entry`, read from the file and checked again.
    pub fn module(&mut self, entry: &Entry) -> Result<Vec<u8>, BundleError> {
        let bad = |why: String| BundleError {
            path: self.path.display().to_string(),
            why,
        };
        let hex = entry.layer.digest.trim_start_matches("sha256:");
        if let Some(bytes) = self.small.get(hex) {
            return Ok(bytes.clone());
        }
        let Some(span) = self.large.get(hex).copied() else {
            return Err(bad(format!("has no blob {hex}")));
        };
        let mut bytes = Vec::new();
        self.file
            .seek(SeekFrom::Start(span.offset))
            .and_then(|_| (&self.file).take(span.size).read_to_end(&mut bytes))
            .map_err(|e| bad(format!("cannot be read: {e}")))?;
        if hex::encode(Sha256::digest(&bytes)) != hex {
            return Err(bad(format!(
                "blob {hex} changed while it was being read; is something writing the bundle?"
            )));
        }
        Ok(bytes)
    }
}

/// Adds `key`'s signature to every module in the bundle at `path` (the
/// file is replaced whole, or not at all; modules of at most
/// `max_module_bytes`); how many modules it signed.
pub fn sign(
    path: &Path,
    key: &signature::PrivateKey,
    max_module_bytes: u64,
) -> Result<usize, BundleError> {
    let mut bundle = Bundle::open(path, None, max_module_bytes)?;
    let bad = |why: String| BundleError {
        path: path.display().to_string(),
        why,
    };
    let mut writer =
        FileWriter::beside(path).map_err(|e| bad(format!("cannot write beside it: {e}")))?;
    let entries = std::mem::take(&mut bundle.entries);
    for entry in &entries {
        let reference = &entry.reference;
        let place = format!("{}/{}", reference.named_registry(), reference.repository());
        let mut signatures = entry.signatures.clone();
        let signed = Signed::by(key, &place, &entry.manifest_digest);
        if !signatures.contains(&signed) {
            signatures.push(signed);
        }
        let module = BundledModule {
            reference: reference.clone(),
            manifest: entry.manifest.clone(),
            config: entry.config.clone(),
            module: bundle.module(entry)?,
            signatures,
        };
        writer
            .add(&module)
            .map_err(|e| bad(format!("cannot be written: {e}")))?;
    }
    writer
        .persist(path)
        .map_err(|e| bad(format!("cannot be written: {e}")))?;
    Ok(entries.len())
}

/// The reference an `index.json` entry names, if any.
fn named(descriptor: &Value, repository: Option<&str>) -> Result<Option<ModuleRef>, String> {
    let annotations = &descriptor["annotations"];
    let whole = annotations[IMAGE_NAME]
        .as_str()
        .or_else(|| annotations[REF_NAME].as_str().filter(|r| r.contains('/')));
    let text = match (whole, annotations[REF_NAME].as_str(), repository) {
        (Some(whole), _, _) => format!("{}{whole}", crate::reference::SCHEME),
        (None, Some(tag), Some(repository)) => format!("{}:{tag}", repository.trim_end_matches('/')),
        (None, Some(tag), None) => {
            return Err(format!(
                "index.json names a manifest by its tag {tag:?} only: say which repository it is (--repository oci://REGISTRY/REPOSITORY)"
            ))
        }
        (None, None, _) => return Ok(None),
    };
    ModuleRef::parse(&text).map(Some).map_err(|e| e.to_string())
}

/// The modules `index` names, each manifest checked and its blobs present.
fn entries(
    index: &Value,
    small: &HashMap<String, Vec<u8>>,
    large: &HashMap<String, Span>,
    repository: Option<&str>,
    max_module_bytes: u64,
) -> Result<Vec<Entry>, String> {
    let blob = |digest: &str| -> Result<&Vec<u8>, String> {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        small.get(hex).ok_or_else(|| {
            if large.contains_key(hex) {
                format!("blob {hex} is larger than a manifest, config or signature may be")
            } else {
                format!(
                    "index.json or a manifest names blob {digest}, which the bundle does not hold"
                )
            }
        })
    };
    let descriptors = index["manifests"]
        .as_array()
        .ok_or("its index.json lists no manifests")?;
    if descriptors.len() > MAX_DESCRIPTORS {
        return Err(format!(
            "its index.json names {} manifests, more than the {MAX_DESCRIPTORS} read",
            descriptors.len()
        ));
    }
    // Signature manifests by the repository and the manifest they sign.
    let mut signatures: BTreeMap<(String, String), Vec<Signed>> = BTreeMap::new();
    let mut modules = Vec::new();
    for descriptor in descriptors {
        let digest = descriptor["digest"].as_str().unwrap_or_default();
        let media_type = descriptor["mediaType"].as_str().unwrap_or_default();
        if media_type != OCI_IMAGE_MEDIA_TYPE {
            return Err(format!(
                "index.json names {digest} of type {media_type:?}; only image manifests ({OCI_IMAGE_MEDIA_TYPE}) are read, not nested indexes"
            ));
        }
        let Some(reference) = named(descriptor, repository)? else {
            continue; // named by nothing: nothing can ask for it
        };
        let bytes = blob(digest)?;
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(format!(
                "manifest {digest} is larger than {MAX_MANIFEST_BYTES} bytes"
            ));
        }
        let place = format!("{}/{}", reference.named_registry(), reference.repository());
        let signed = reference
            .tag()
            .and_then(|t| t.strip_prefix("sha256-"))
            .and_then(|t| t.strip_suffix(".sig"));
        if let Some(target) = signed {
            let manifest: OciImageManifest = serde_json::from_slice(bytes)
                .map_err(|e| format!("signature manifest {digest} does not decode: {e}"))?;
            let found =
                signature::from_layers(&manifest.layers, |layer| blob(&layer.digest).ok().cloned());
            let known = signatures
                .entry((place, format!("sha256:{target}")))
                .or_default();
            for signed in found {
                if known.len() < signature::MAX_SIGNATURES && !known.contains(&signed) {
                    known.push(signed);
                }
            }
            continue;
        }
        modules.push((reference, place, bytes.clone()));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (reference, place, manifest) in modules {
        if !seen.insert(reference.to_string()) {
            return Err(format!("index.json names {reference} twice"));
        }
        let parsed = layout::parse_manifest(&reference, &manifest, max_module_bytes)
            .map_err(|e| e.to_string())?;
        let config = blob(&parsed.config.digest)?.clone();
        let hex = parsed.layer.digest.trim_start_matches("sha256:");
        let held = large
            .get(hex)
            .map(|span| span.size)
            .or_else(|| small.get(hex).map(|b| b.len() as u64));
        match held {
            Some(size) if i64::try_from(size).ok() == Some(parsed.layer.size) => {}
            Some(size) => {
                return Err(format!(
                    "{reference}: its module is {size} bytes, but its manifest says {}",
                    parsed.layer.size
                ))
            }
            None => {
                return Err(format!(
                    "{reference}: the bundle does not hold its module (blob {hex})"
                ))
            }
        }
        let signatures = signatures
            .get(&(place, parsed.digest.clone()))
            .cloned()
            .unwrap_or_default();
        out.push(Entry {
            reference,
            manifest,
            manifest_digest: parsed.digest,
            config,
            layer: parsed.layer,
            signatures,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE};
    use crate::signature::PrivateKey;

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgaQeaT0aShM8KxsiP\noEWwROXp736PlV1d4jZwvlgBgFmhRANCAARniVRmNIIR/YUeo2zOvAxKtMUlqdME\n6UfDV7Yo7LWVb4lHt3js27y8HTtSjv0pxl6fnoAYsLJC1MjBXJFSK7sY\n-----END PRIVATE KEY-----\n";

    fn module(reference: &str, body: &[u8]) -> BundledModule {
        let config = br#"{"architecture":"wasm"}"#.to_vec();
        let mut manifest = OciImageManifest::default();
        manifest.config.media_type = WASM_CONFIG_MEDIA_TYPE.into();
        manifest.config.digest = format!("sha256:{}", hex::encode(Sha256::digest(&config)));
        manifest.config.size = config.len() as i64;
        manifest.layers.push(OciDescriptor {
            media_type: WASM_LAYER_MEDIA_TYPE.into(),
            digest: format!("sha256:{}", hex::encode(Sha256::digest(body))),
            size: body.len() as i64,
            ..Default::default()
        });
        BundledModule {
            reference: ModuleRef::parse(reference).unwrap(),
            manifest: serde_json::to_vec(&manifest).unwrap(),
            config,
            module: body.to_vec(),
            signatures: Vec::new(),
        }
    }

    /// One file of a bundle, read with tar's own reader.
    fn member(path: &Path, name: &str) -> Vec<u8> {
        let mut archive = tar::Archive::new(File::open(path).unwrap());
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.path().unwrap().to_str() == Some(name) {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                return bytes;
            }
        }
        panic!("no {name}")
    }

    fn write(path: &Path, modules: &[BundledModule]) {
        let mut writer = Writer::new(File::create(path).unwrap());
        for m in modules {
            writer.add(m).unwrap();
        }
        writer.finish().unwrap();
    }

    #[test]
    fn modules_and_signatures_come_back_as_written_and_signing_adds_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar");
        // One module above the in-memory size, one below.
        let big = [b"\0asm\x01\0\0\0".to_vec(), vec![7; 2 << 20]].concat();
        let small = module("oci://r.example/a:v1", b"\0asm\x01\0\0\0small");
        write(
            &path,
            &[small.clone(), module("oci://r.example/team/b:v2", &big)],
        );
        let mut bundle = Bundle::open(&path, None, u64::MAX).unwrap();
        assert_eq!(bundle.entries.len(), 2);
        let [a, b] = [bundle.entries[0].clone(), bundle.entries[1].clone()];
        assert_eq!(a.reference.to_string(), "oci://r.example/a:v1");
        assert_eq!(a.manifest, small.manifest);
        assert!(a.signatures.is_empty());
        assert_eq!(bundle.module(&a).unwrap(), small.module);
        assert_eq!(bundle.module(&b).unwrap(), big);

        let key = PrivateKey::from_pem(KEY).unwrap();
        assert_eq!(sign(&path, &key, u64::MAX).unwrap(), 2);
        assert_eq!(sign(&path, &key, u64::MAX).unwrap(), 2);
        let mut bundle = Bundle::open(&path, None, u64::MAX).unwrap();
        let b = bundle.entries[1].clone();
        // Signing again added nothing: one layer in each signature manifest.
        assert_eq!(bundle.entries[0].signatures.len(), 1);
        assert_eq!(b.signatures.len(), 1);
        let index: Value = serde_json::from_slice(&member(&path, "index.json")).unwrap();
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 4);
        for signatures in manifests.iter().filter(|m| {
            m["annotations"][REF_NAME]
                .as_str()
                .is_some_and(|t| t.ends_with(".sig"))
        }) {
            let digest = signatures["digest"].as_str().unwrap();
            let manifest: Value =
                serde_json::from_slice(&member(&path, &format!("blobs/sha256/{}", &digest[7..])))
                    .unwrap();
            assert_eq!(
                manifest["layers"].as_array().unwrap().len(),
                1,
                "{manifest}"
            );
        }
        let verify = |place: &str| {
            signature::verify(
                "b",
                "p",
                &b.manifest_digest,
                Some(&b.signatures),
                &[key.public()],
                Some(&[place.to_string()]),
            )
        };
        verify("r.example/team/b").unwrap();
        // A signature names the repository it was made for.
        let e = verify("r.example/other").unwrap_err().to_string();
        assert!(e.contains("names its repository (r.example/other)"), "{e}");
        assert!(signature::payload_names(
            &b.signatures[0].payload,
            &b.manifest_digest
        ));
        assert_eq!(bundle.module(&b).unwrap(), big);
    }

    #[test]
    fn a_changed_byte_a_missing_module_or_a_bare_tag_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar");
        let body = b"\0asm\x01\0\0\0module body";
        write(&path, &[module("oci://r.example/a:v1", body)]);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes
            .windows(b"module body".len())
            .position(|w| w == b"module body")
            .unwrap();
        bytes[at] ^= 1;
        let tampered = dir.path().join("t.tar");
        std::fs::write(&tampered, &bytes).unwrap();
        let e = Bundle::open(&tampered, None, u64::MAX)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("damaged or tampered with"), "{e}");

        // A layout made by hand with a tag only, and no module blob.
        let m = module("oci://r.example/a:v1", body);
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            tar.append_data(&mut h, name, data).unwrap();
        };
        let digest = hex::encode(Sha256::digest(&m.manifest));
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        add(&format!("blobs/sha256/{digest}"), &m.manifest);
        add(
            &format!("blobs/sha256/{}", hex::encode(Sha256::digest(&m.config))),
            &m.config,
        );
        let index = json!({"schemaVersion": 2, "manifests": [{
            "mediaType": OCI_IMAGE_MEDIA_TYPE, "digest": format!("sha256:{digest}"),
            "size": m.manifest.len(), "annotations": {REF_NAME: "v1"}}]});
        add("index.json", &serde_json::to_vec(&index).unwrap());
        let layout = dir.path().join("l.tar");
        std::fs::write(&layout, tar.into_inner().unwrap()).unwrap();
        let e = Bundle::open(&layout, None, u64::MAX)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--repository"), "{e}");
        let e = Bundle::open(&layout, Some("oci://r.example/a"), u64::MAX)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("does not hold its module"), "{e}");

        // Pax extension headers before a blob (tar --format=posix, bsdtar)
        // are passed over.
        let mut tar = tar::Builder::new(Vec::new());
        let m = module("oci://r.example/a:v1", body);
        let mut add = |name: &str, data: &[u8]| {
            // Named as GNU tar --format=posix names them: DIR/PaxHeaders/FILE.
            let (folder, file) = name.rsplit_once('/').unwrap_or((".", name));
            let record = b"13 mtime=1.5\n";
            let mut pax = tar::Header::new_ustar();
            pax.set_entry_type(tar::EntryType::XHeader);
            pax.set_size(record.len() as u64);
            tar.append_data(&mut pax, format!("{folder}/PaxHeaders/{file}"), &record[..])
                .unwrap();
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            tar.append_data(&mut h, name, data).unwrap();
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        for blob in [&m.manifest, &m.config, &m.module] {
            add(
                &format!("blobs/sha256/{}", hex::encode(Sha256::digest(blob))),
                blob,
            );
        }
        let index = json!({"schemaVersion": 2, "manifests": [{
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "digest": format!("sha256:{}", hex::encode(Sha256::digest(&m.manifest))),
            "size": m.manifest.len(), "annotations": {IMAGE_NAME: "r.example/a:v1"}}]});
        add("index.json", &serde_json::to_vec(&index).unwrap());
        let posix = dir.path().join("posix.tar");
        std::fs::write(&posix, tar.into_inner().unwrap()).unwrap();
        let mut bundle = Bundle::open(&posix, None, u64::MAX).unwrap();
        let entry = bundle.entries[0].clone();
        assert_eq!(bundle.module(&entry).unwrap(), body);

        let e = Bundle::open(&dir.path().join("none.tar"), None, u64::MAX)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("cannot be read"), "{e}");
    }
}
