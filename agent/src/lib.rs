//! The Flotilla node agent.
//!
//! For now this crate is the agent's [`runtime`]: a wasmtime engine configured
//! once (pooling allocator, epoch interruption, async) that runs WASI
//! preview-1 core modules and preview-2 command components under Wasm-native
//! limits enforced in-process — memory through a `ResourceLimiter`, CPU through
//! per-instance CPU-time accounting and throttling at epoch yields, and a
//! wall-clock deadline — and classifies how each run ended.
//!
//! The runtime knows nothing about the API, the store or the scheduler.

pub mod runtime;
