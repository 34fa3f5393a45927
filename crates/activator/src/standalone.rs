//! The activator with one static route and no cluster: `siesta
//! bench-activator` (hidden). `make bench` measures it against nginx, and
//! hack/pgo/train.sh trains the release build's profile on it, so both work
//! on the binary users run rather than on a separate harness (a harness
//! resolves the workspace's features differently, so its functions get other
//! symbol names and a profile trained on it does not apply to `siesta`).
//!
//! Everything on the request path is the real one; only discovery is
//! replaced: the function's config and endpoint come from the flags.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use siesta_api::Protocol;
use tokio::signal::unix::{SignalKind, signal};

use crate::index::FunctionConfig;
use crate::route::FunctionKey;
use crate::{Activator, Config};

/// Flags of `siesta bench-activator`.
#[derive(Debug, Clone, clap::Args)]
pub struct StandaloneArgs {
    #[arg(long, default_value = "127.0.0.1:18080")]
    pub listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:19091")]
    pub admin: SocketAddr,
    /// NAMESPACE/NAME of the function (answers on NAME.NAMESPACE.siesta.local).
    #[arg(long, default_value = "bench/hello")]
    pub function: String,
    /// The backend (pod) address.
    #[arg(long)]
    pub backend: SocketAddr,
    /// Start with no endpoints; add the backend on SIGUSR1.
    #[arg(long)]
    pub at_zero: bool,
    #[arg(long, default_value_t = 1000)]
    pub queue_max: usize,
    #[arg(long, default_value_t = 60)]
    pub queue_timeout_secs: u64,
    /// containerConcurrency of the function (0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub container_concurrency: u32,
    /// The activator-wide budget of parked requests. High by default: the
    /// buffering bench measures what parked requests cost, and one function
    /// alone gets at most 90 % of the budget.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_parked_requests: u64,
    /// Speak h2c (HTTP/2 with prior knowledge) to the backend, as a Function
    /// with `protocol: H2c` does; HTTP/1.1 otherwise (the default).
    #[arg(long)]
    pub upstream_h2c: bool,
}

/// Serves until SIGTERM or SIGINT, as `siesta activator` does.
pub async fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    let StandaloneArgs {
        listen,
        admin,
        function,
        backend,
        at_zero,
        queue_max,
        queue_timeout_secs,
        container_concurrency,
        max_parked_requests,
        upstream_h2c,
    } = args;
    let Some((ns, name)) = function.split_once('/') else {
        bail!("--function must be NAMESPACE/NAME, got {function:?}");
    };
    let key = FunctionKey::new(ns, name);
    let activator = Activator::bind(Config {
        listen,
        admin_addr: admin,
        max_parked_requests,
        // One per CPU, as the real activator (loopback's 1 is for tests).
        serving_threads: 0,
        ..Config::loopback()
    })
    .await?;
    let control = activator.control();
    control.apply_function(
        key.clone(),
        FunctionConfig {
            port: backend.port(),
            protocol: if upstream_h2c {
                Protocol::H2c
            } else {
                Protocol::Http1
            },
            queue_max,
            queue_timeout: Duration::from_secs(queue_timeout_secs),
            container_concurrency,
            ..FunctionConfig::default()
        },
    );
    if at_zero {
        let control = control.clone();
        let key = key.clone();
        let mut usr1 = signal(SignalKind::user_defined1())?;
        tokio::spawn(async move {
            if usr1.recv().await.is_some() {
                control.set_endpoints(&key, &[backend]);
            }
        });
    } else {
        control.set_endpoints(&key, &[backend]);
    }
    control.mark_synced();
    eprintln!(
        "bench activator: {key} -> {backend} ({}) on {} (admin {}){}",
        if upstream_h2c { "h2c" } else { "HTTP/1.1" },
        activator.listen_addr()?,
        activator.admin_addr()?,
        if at_zero {
            ", at zero until SIGUSR1"
        } else {
            ""
        }
    );
    activator.serve(crate::shutdown_signal()).await
}
