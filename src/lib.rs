//! The `siesta` package's library part: the `kubectl siesta` plugin, shared
//! by the `kubectl-siesta` binary (and testable without a cluster).

pub mod plugin;
