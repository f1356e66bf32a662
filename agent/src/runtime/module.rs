//! Loading: bytes → a validated, compiled, pre-linked module, cached twice —
//! in memory by digest (so a module loaded again costs a map lookup) and on
//! disk by digest + engine fingerprint (so a restart does not recompile).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use flotilla_host_api::Capability;

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
    /// The host capabilities it imports (from host-api).
    pub(crate) needs: Vec<&'static Capability>,
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

    /// The names of the host capabilities it imports.
    pub fn capabilities(&self) -> Vec<&'static str> {
        self.needs.iter().map(|c| c.name).collect()
    }

    /// Refuses to start when the module imports a capability `granted`
    /// (capability names) lacks, naming the grant to add.
    pub fn check_grants(&self, granted: &BTreeSet<String>) -> Result<(), RuntimeError> {
        flotilla_host_api::check_grants(&self.needs, granted).map_err(|denied| {
            RuntimeError::NotGranted {
                name: self.name.clone(),
                denied,
            }
        })
    }
}

impl Runtime {
    /// Loads a module from a `.wasm` (core module or component) or `.wat` file.
    pub fn load_file(self: &Arc<Self>, path: &Path) -> Result<Arc<LoadedModule>, RuntimeError> {
        let bytes = std::fs::read(path).map_err(|error| RuntimeError::ReadModule {
            path: path.to_path_buf(),
            error,
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
        let (prepared, from_disk_cache, needs) = if is_component {
            let (component, cached) = self.compile::<Component>(name, &digest, &binary)?;
            let imports: Vec<String> = component
                .component_type()
                .imports(&self.engine)
                .map(|(import, _)| import.to_string())
                .collect();
            let needs = flotilla_host_api::needed_by_component(imports.iter().map(String::as_str));
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
                        capabilities: flotilla_host_api::CAPABILITIES
                            .iter()
                            .map(|c| c.name)
                            .collect::<Vec<_>>()
                            .join(", "),
                    })?,
            };
            (prepared, cached, needs)
        } else {
            let (module, cached) = self.compile::<Module>(name, &digest, &binary)?;
            self.check_core_imports(name, &module)?;
            let needs = flotilla_host_api::needed_by_core(module.imports().map(|i| i.module()));
            let pre =
                self.core_linker
                    .instantiate_pre(&module)
                    .map_err(|e| RuntimeError::Invalid {
                        name: name.to_string(),
                        message: format!("{e:#}"),
                    })?;
            (Prepared::Core(pre), cached, needs)
        };
        let loaded = Arc::new(LoadedModule {
            name: name.to_string(),
            digest: digest.clone(),
            prepared,
            from_disk_cache,
            runtime: self.clone(),
            needs,
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
            return Ok(());
        }
        let provided: BTreeSet<String> = self
            .core_imports
            .iter()
            .map(|(module, _)| format!("`{module}`"))
            .collect();
        Err(RuntimeError::UnknownImports {
            name: name.to_string(),
            imports: missing.join(", "),
            provided: provided.into_iter().collect::<Vec<_>>().join(", "),
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{RunSpec, RuntimeConfig, Watchdog};

    fn runtime() -> Arc<Runtime> {
        Runtime::new(RuntimeConfig {
            max_instances: 2,
            max_memory_bytes: 1 << 24,
            ..RuntimeConfig::default()
        })
        .expect("engine")
    }

    /// A core module that kicks through `module::name`.
    fn kicker(module: &str, name: &str) -> String {
        format!(
            r#"(module
                (import "{module}" "{name}" (func $kick))
                (memory (export "memory") 1)
                (func (export "_start") call $kick))"#
        )
    }

    #[tokio::test]
    async fn a_core_module_kicks_its_watchdog_through_either_import() {
        let runtime = runtime();
        for (module, name) in [
            ("flotilla", "watchdog_kick"),
            ("flotilla:host/watchdog@0.1.0", "kick"),
        ] {
            let wat = kicker(module, name);
            let loaded = runtime.load_bytes("kicker.wat", wat.as_bytes()).unwrap();
            assert_eq!(loaded.capabilities(), ["flotilla:host/watchdog"]);
            let watchdog = Watchdog::new();
            let spec = RunSpec {
                host: flotilla_host_api::HostCtx {
                    watchdog: Some(watchdog.clone()),
                    ..Default::default()
                },
                ..RunSpec::default()
            };
            let outcome = loaded.run(spec).await.unwrap();
            assert_eq!(outcome.reason, crate::runtime::ExitReason::Completed);
            assert!(
                watchdog.silence().is_some(),
                "{module}::{name} did not kick"
            );
        }
    }

    #[test]
    fn an_unknown_core_import_names_what_the_linker_provides() {
        let wat = r#"(module (import "env" "nope" (func)) (func (export "_start")))"#;
        let err = runtime()
            .load_bytes("odd.wat", wat.as_bytes())
            .err()
            .unwrap();
        let message = err.to_string();
        assert!(message.contains("`env::nope`"), "{message}");
        for provided in ["`wasi_snapshot_preview1`", "`flotilla:host/watchdog@0.1.0`"] {
            assert!(message.contains(provided), "{message}");
        }
    }

    #[test]
    fn every_capability_a_workload_can_grant_is_one_host_api_implements() {
        let mut spec = flotilla_spec::workload::WorkloadSpec {
            config: Some(Default::default()),
            ..Default::default()
        };
        spec.grants.key_value = vec![Default::default()];
        let granted = spec.capabilities();
        assert_eq!(granted.len(), 2, "{granted:?}");
        for name in granted {
            let known = flotilla_host_api::CAPABILITIES
                .iter()
                .any(|c| c.name == name);
            assert!(known, "{name} is granted by the spec but not in host-api");
        }
    }
}
