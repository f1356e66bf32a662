//! Flotilla's resource vocabulary.
//!
//! This crate holds the types every other crate agrees on: for now the
//! Kubernetes-style quantities used for memory, CPU and time limits
//! ([`quantity`]). It performs no I/O.

pub mod quantity;

pub use quantity::{parse_cpu_millis, parse_duration, parse_memory_bytes, QuantityError};
