//! Errors that stop a module from starting. Each message names the problem
//! and, where there is one, the fix: they are printed straight to users.
//!
//! How a module *ends* once started (exit codes, traps, limits) is not an
//! error: see [`Outcome`](super::Outcome).

use std::path::PathBuf;

/// Why a module could not be loaded or started.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The module file does not exist or cannot be read.
    #[error("cannot read module {path}: {error}")]
    ReadModule {
        /// The path given by the user.
        path: PathBuf,
        /// What the OS said (in the message, so not also a `source`).
        error: std::io::Error,
    },
    /// The bytes are not WebAssembly at all.
    #[error("{name} is not a WebAssembly module: it does not start with the `\\0asm` magic bytes (found {found}); pass a .wasm file (built for wasm32-wasip1, or a WASI preview-2 component) or a .wat text file")]
    NotWasm {
        /// File name or label.
        name: String,
        /// The first bytes found, in hex.
        found: String,
    },
    /// WebAssembly text that does not parse.
    #[error("{name} is not valid WebAssembly text: {message}")]
    BadWat {
        /// File name or label.
        name: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// Binary that fails to decode, validate or compile (truncated, corrupt…).
    #[error("{name} is not a valid WebAssembly module: {message}")]
    Invalid {
        /// File name or label.
        name: String,
        /// The validator's message.
        message: String,
    },
    /// A core module imports something the host does not provide.
    #[error("{name} imports {imports}, which Flotilla does not provide: a core module may import only from {provided} (a component may also import the capabilities of host-api/wit)")]
    UnknownImports {
        /// File name or label.
        name: String,
        /// The missing imports, as `module::name`.
        imports: String,
        /// The import modules the core linker defines.
        provided: String,
    },
    /// A component imports an interface the host does not provide.
    #[error("{name} cannot be linked: {message} (Flotilla provides the WASI preview 2 `wasi:cli` command world, `wasi:http/proxy` for `execution: http` workloads, and {capabilities})")]
    ComponentLink {
        /// File name or label.
        name: String,
        /// wasmtime's message, which names the import.
        message: String,
        /// Flotilla's own capabilities, from host-api.
        capabilities: String,
    },
    /// The guest imports a capability its workload was not granted.
    #[error("{name} {denied}")]
    NotGranted {
        /// The module's label.
        name: String,
        /// Which capability, and how to grant it.
        denied: flotilla_host_api::NotGranted,
    },
    /// A core module without the `_start` entry point of a command.
    #[error("{name} is a wasi:http handler (it exports wasi:http/incoming-handler, not wasi:cli/run): it runs per request, as a Workload with `execution: http`, not as a program")]
    HttpHandler {
        /// The module's label.
        name: String,
    },
    #[error("{name} has no `_start` export: only command modules (a program with `main`) can be run; build it as a binary, not a library")]
    NoEntryPoint {
        /// File name or label.
        name: String,
    },
    /// A directory to preopen does not exist or cannot be opened.
    #[error("cannot grant directory {path}: {message} (check the host path of --dir)")]
    Preopen {
        /// Host path.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The engine could not be set up (pool reservation, bad configuration).
    #[error("module {name} has sha256 {actual}, expected {expected}: it was corrupted in transit or on disk; it will be fetched again")]
    DigestMismatch {
        /// The module's label.
        name: String,
        /// The digest the workload names.
        expected: String,
        /// The digest of the bytes.
        actual: String,
    },
    #[error("cannot start the Wasm engine: {0}")]
    Engine(String),
    /// The compile cache could not be written or read.
    #[error("compile cache {path}: {message}")]
    Cache {
        /// Cache file or folder.
        path: PathBuf,
        /// Why.
        message: String,
    },
}
