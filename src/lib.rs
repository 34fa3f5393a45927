//! The `siesta` package's library part: the `kubectl siesta` plugin, shared
//! by the `kubectl-siesta` binary (and testable without a cluster).
#![deny(rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod plugin;
