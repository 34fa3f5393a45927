//! The Siesta controller: reconciles each `Function` into a Deployment and a
//! Service, keeps its status honest, and takes activation signals.
//!
//! Every replica serves the admin endpoints (metrics, health, activations);
//! only the holder of the leader Lease reconciles and autoscales.

pub mod activation;
mod admin;
pub mod autoscaler;
pub mod children;
pub mod cold_start;
mod config;
mod context;
pub mod decisions;
pub mod deployment_view;
mod error;
pub mod events;
mod leader;
pub mod lease;
pub mod metrics;
mod reconcile;
pub mod resources;
pub mod scale;
mod startup;
pub mod status;
pub mod usage;
pub mod usage_series;
mod watches;

pub use config::Config;
pub use context::Activation;
pub use error::{Error, Result};
pub use siesta_api::names::FunctionKey;
pub use startup::{Running, run, run_with, start};
