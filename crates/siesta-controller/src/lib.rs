//! The Siesta controller: reconciles each `Function` into a Deployment and a
//! Service, keeps its status honest, and takes activation signals.
#![deny(rust_2018_idioms)]
#![forbid(unsafe_code)]

mod error;
pub mod metrics;
pub mod resources;

pub use error::{Error, Result};

/// Command-line configuration of `siesta controller`.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {}

/// Runs the controller until SIGTERM/SIGINT.
pub async fn run(_config: Config) -> anyhow::Result<()> {
    anyhow::bail!("the controller is not built yet")
}
