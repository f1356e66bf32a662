//! Loading: bytes → a validated, compiled, pre-linked module, cached twice —
//! in memory by digest (so a module loaded again costs a map lookup) and on
//! disk by digest + engine fingerprint (so a restart does not recompile).

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::wasmparser::Parser;
use wasmtime::{Engine, InstancePre, Module};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::state::{ComponentState, CoreState};
use super::{Runtime, RuntimeError};

/// The two shapes of guest the runtime runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// A WASI preview-1 core module with a `_start` export.
    Core,
    /// A WASI preview-2 component exporting `wasi:cli/run`.
    Component,
    /// A `wasi:http/proxy` component: a handler, instantiated per request.
    HttpComponent,
}

pub(crate) enum Prepared {
    Core(InstancePre<CoreState>),
    Component(CommandPre<ComponentState>),
    Proxy(ProxyPre<ComponentState>),
}

/// A module ready to instantiate: compiled, linked, pre-instantiated.
pub struct LoadedModule {
    pub(crate) name: String,
    pub(crate) digest: String,
    pub(crate) prepared: Prepared,
    pub(crate) from_disk_cache: bool,
    pub(crate) runtime: Arc<Runtime>,
}

impl LoadedModule {
    /// A label for messages: the file name the module was loaded from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sha256 of the module's binary, in hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Core module or component.
    pub fn kind(&self) -> ModuleKind {
        match self.prepared {
            Prepared::Core(_) => ModuleKind::Core,
            Prepared::Component(_) => ModuleKind::Component,
            Prepared::Proxy(_) => ModuleKind::HttpComponent,
        }
    }

    /// Whether the compiled code came from the on-disk cache rather than a
    /// fresh compilation.
    pub fn from_disk_cache(&self) -> bool {
        self.from_disk_cache
    }
}

impl Runtime {
    /// Loads a module from a `.wasm` (core module or component) or `.wat` file.
    pub fn load_file(self: &Arc<Self>, path: &Path) -> Result<Arc<LoadedModule>, RuntimeError> {
        let bytes = std::fs::read(path).map_err(|source| RuntimeError::ReadModule {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        self.load_bytes(&name, &bytes)
    }

    /// Loads a module from memory; `name` labels it in messages.
    pub fn load_bytes(
        self: &Arc<Self>,
        name: &str,
        bytes: &[u8],
    ) -> Result<Arc<LoadedModule>, RuntimeError> {
        self.load_hashed(name, bytes, None)
    }

    /// [`Runtime::load_bytes`], with the sha256 of `bytes` when the caller
    /// computed it already (a binary module is keyed by that same digest, so
    /// a large module is hashed once).
    fn load_hashed(
        self: &Arc<Self>,
        name: &str,
        bytes: &[u8],
        bytes_digest: Option<String>,
    ) -> Result<Arc<LoadedModule>, RuntimeError> {
        let binary = to_binary(name, bytes)?;
        // A binary module is its bytes as they are (text is converted first).
        let digest = match bytes_digest {
            Some(digest) if bytes.starts_with(b"\0asm") => digest,
            _ => hex::encode(Sha256::digest(&binary)),
        };
        if let Some(loaded) = self.loaded.get(&digest) {
            return Ok(loaded);
        }
        let is_component = Parser::is_component(&binary);
        let (prepared, from_disk_cache) = if is_component {
            let (component, cached) = self.compile::<Component>(name, &digest, &binary)?;
            let command = self
                .component_linker
                .instantiate_pre(&component)
                .and_then(CommandPre::new);
            let prepared = match command {
                Ok(pre) => Prepared::Component(pre),
                // Not a command: perhaps an HTTP handler.
                Err(command_error) => self
                    .http_linker
                    .instantiate_pre(&component)
                    .and_then(ProxyPre::new)
                    .map(Prepared::Proxy)
                    .map_err(|_| RuntimeError::ComponentLink {
                        name: name.to_string(),
                        message: format!("{command_error:#}"),
                    })?,
            };
            (prepared, cached)
        } else {
            let (module, cached) = self.compile::<Module>(name, &digest, &binary)?;
            self.check_core_imports(name, &module)?;
            let pre =
                self.core_linker
                    .instantiate_pre(&module)
                    .map_err(|e| RuntimeError::Invalid {
                        name: name.to_string(),
                        message: format!("{e:#}"),
                    })?;
            (Prepared::Core(pre), cached)
        };
        let loaded = Arc::new(LoadedModule {
            name: name.to_string(),
            digest: digest.clone(),
            prepared,
            from_disk_cache,
            runtime: self.clone(),
        });
        Ok(self.loaded.insert(digest, loaded))
    }

    /// [`Runtime::load_bytes`] off the async runtime's threads, at most
    /// `parallel_loads` at a time, at background priority: reading, hashing,
    /// compiling and caching a large module takes seconds of CPU that the
    /// node's heartbeats, API and guests must not wait behind. `verify`, if
    /// given, is the sha256 the bytes must have (checked on the same thread).
    pub async fn load_bytes_in_background(
        self: &Arc<Self>,
        name: &str,
        bytes: Vec<u8>,
        verify: Option<&str>,
    ) -> Result<Arc<LoadedModule>, RuntimeError> {
        let _slot = self
            .load_slots
            .acquire()
            .await
            .map_err(|e| RuntimeError::Engine(format!("module loading stopped: {e}")))?;
        if let Some(loaded) = verify.and_then(|digest| self.loaded(digest)) {
            // Loaded by another instance while this one waited for the slot.
            return Ok(loaded);
        }
        let runtime = self.clone();
        let name = name.to_string();
        let verify = verify.map(str::to_string);
        // A thread of its own (not the blocking pool, whose threads are
        // reused for journal and file work): its lowered priority dies with it.
        let (done, result) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("flotilla-load".into())
            .spawn(move || {
                super::engine::lower_thread_priority();
                let loaded = match verify {
                    Some(expected) => {
                        let actual = hex::encode(Sha256::digest(&bytes));
                        if actual == expected {
                            runtime.load_hashed(&name, &bytes, Some(actual))
                        } else {
                            Err(RuntimeError::DigestMismatch {
                                name: name.clone(),
                                expected,
                                actual,
                            })
                        }
                    }
                    None => runtime.load_bytes(&name, &bytes),
                };
                let _ = done.send(loaded);
            })
            .map_err(|e| RuntimeError::Engine(format!("cannot start a loader thread: {e}")))?;
        result
            .await
            .map_err(|e| RuntimeError::Engine(format!("loading a module failed: {e}")))?
    }

    /// The module loaded earlier whose binary has sha256 `digest`, if any:
    /// lets a caller that knows the digest skip reading and hashing the bytes.
    pub fn loaded(&self, digest: &str) -> Option<Arc<LoadedModule>> {
        self.loaded.get(digest)
    }

    /// Forgets a module loaded earlier (its compiled code is freed when the
    /// last run using it ends; the disk cache keeps the artefact).
    pub fn unload(&self, digest: &str) {
        self.loaded.remove(digest);
    }

    /// Whether the module with this digest is loaded and held by a run, a
    /// replica or a caller (not merely kept idle in memory).
    pub fn in_use(&self, digest: &str) -> bool {
        self.loaded.in_use(digest)
    }

    /// How many modules are loaded in memory (in use or kept idle).
    pub fn loaded_count(&self) -> usize {
        self.loaded.len()
    }

    /// Compiles, through the disk cache when there is one. Returns the
    /// compiled code and whether it came from the cache.
    fn compile<A: Artefact>(
        &self,
        name: &str,
        digest: &str,
        binary: &[u8],
    ) -> Result<(A, bool), RuntimeError> {
        let invalid = |e: wasmtime::Error| RuntimeError::Invalid {
            name: name.to_string(),
            message: format!("{e:#}"),
        };
        let Some(cache) = &self.cache else {
            return A::compile(&self.engine, binary)
                .map(|c| (c, false))
                .map_err(invalid);
        };
        match cache.load(digest) {
            Ok(Some(artefact)) => {
                // SAFETY: these are the exact bytes whose keyed digest was
                // checked: an artefact produced by `precompile_*` of an engine
                // with this fingerprint (part of the file name); wasmtime still
                // checks its header and version before use.
                match unsafe { A::deserialize(&self.engine, &artefact) } {
                    Ok(compiled) => return Ok((compiled, true)),
                    Err(e) => tracing::warn!("recompiling {name}: cached artefact unusable: {e:#}"),
                }
            }
            Ok(None) => {}
            Err(why) => tracing::warn!("recompiling {name}: {why}"),
        }
        let artefact = A::precompile(&self.engine, binary).map_err(invalid)?;
        cache.store(digest, &artefact)?;
        // SAFETY: as above; the artefact was just produced by this engine.
        let compiled = unsafe { A::deserialize(&self.engine, &artefact) }.map_err(invalid)?;
        Ok((compiled, false))
    }

    /// Names every import of a core module the host does not define, all at
    /// once, instead of failing on the first.
    fn check_core_imports(&self, name: &str, module: &Module) -> Result<(), RuntimeError> {
        let missing: Vec<String> = module
            .imports()
            .filter(|i| {
                !self
                    .core_imports
                    .contains(&(i.module().to_string(), i.name().to_string()))
            })
            .map(|i| format!("`{}::{}`", i.module(), i.name()))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(RuntimeError::UnknownImports {
                name: name.to_string(),
                imports: missing.join(", "),
            })
        }
    }
}

/// Compiled code of either shape, with the three ways to obtain it.
trait Artefact: Sized {
    fn compile(engine: &Engine, binary: &[u8]) -> wasmtime::Result<Self>;
    fn precompile(engine: &Engine, binary: &[u8]) -> wasmtime::Result<Vec<u8>>;
    /// # Safety
    /// `bytes` must be an artefact produced by `precompile` of a compatible engine.
    unsafe fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self>;
}

impl Artefact for Module {
    fn compile(engine: &Engine, binary: &[u8]) -> wasmtime::Result<Self> {
        Module::new(engine, binary)
    }
    fn precompile(engine: &Engine, binary: &[u8]) -> wasmtime::Result<Vec<u8>> {
        engine.precompile_module(binary)
    }
    unsafe fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self> {
        // SAFETY: forwarded to the caller.
        unsafe { Module::deserialize(engine, bytes) }
    }
}

impl Artefact for Component {
    fn compile(engine: &Engine, binary: &[u8]) -> wasmtime::Result<Self> {
        Component::new(engine, binary)
    }
    fn precompile(engine: &Engine, binary: &[u8]) -> wasmtime::Result<Vec<u8>> {
        engine.precompile_component(binary)
    }
    unsafe fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self> {
        // SAFETY: forwarded to the caller.
        unsafe { Component::deserialize(engine, bytes) }
    }
}

/// The binary form of a module: `.wasm` as is, WebAssembly text parsed.
fn to_binary(name: &str, bytes: &[u8]) -> Result<Vec<u8>, RuntimeError> {
    if bytes.starts_with(b"\0asm") {
        return Ok(bytes.to_vec());
    }
    let looks_like_text = std::str::from_utf8(bytes)
        .map(|t| {
            let t = t.trim_start();
            t.starts_with('(') || t.starts_with(";;")
        })
        .unwrap_or(false);
    if looks_like_text {
        return wat::parse_bytes(bytes)
            .map(|b| b.into_owned())
            .map_err(|e| RuntimeError::BadWat {
                name: name.to_string(),
                message: e.to_string(),
            });
    }
    let found = if bytes.is_empty() {
        "an empty file".to_string()
    } else {
        let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!("bytes {}", head.join(" "))
    };
    Err(RuntimeError::NotWasm {
        name: name.to_string(),
        found,
    })
}
