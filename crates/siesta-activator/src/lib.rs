//! The Siesta activator: the request path. Routes by Host or path, parks
//! requests while a function is at zero, wakes it, and balances warm traffic.
#![deny(rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod route;

/// Command-line configuration of `siesta activator`.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {}

/// Runs the activator until SIGTERM/SIGINT, then drains.
pub async fn run(_config: Config) -> anyhow::Result<()> {
    anyhow::bail!("the activator is not built yet")
}
