//! Startup: binding the admin server, building the shared context, and
//! running until a shutdown; what runs while leading is in `leader`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use kube::Client;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::context::{Activation, Context};
use crate::{autoscaler, events, leader, metrics};

/// Runs the controller until SIGTERM/SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("could not configure a Kubernetes client: set KUBECONFIG, or run in a pod with a service account")?;
    run_with(client, config, siesta_api::lifecycle::shutdown_signal()).await
}

/// Runs the controller until `shutdown` resolves (then stops reconciling,
/// releases the lease and returns `Ok`), or until it fails (a watch ended).
pub async fn run_with(
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    start(client, config).await?.run_until(shutdown).await
}

/// A started controller.
pub struct Running {
    admin_addr: SocketAddr,
    ctx: Arc<Context>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// Set once `task` has been awaited to completion (it must not be polled again).
    ended: bool,
}

impl Running {
    /// Where the admin server listens (useful with port 0).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Whether this replica holds the leader lease now.
    pub fn is_leader(&self) -> bool {
        self.ctx.is_leader()
    }

    /// Leadership changes.
    pub fn leader(&self) -> watch::Receiver<bool> {
        self.ctx.leader.clone()
    }

    /// Accepted activations, for the autoscaler.
    pub fn activations(&self) -> broadcast::Receiver<Activation> {
        self.ctx.activations.subscribe()
    }

    /// Waits until the controller ends by itself (an error: e.g. a watch ended).
    pub async fn until_stopped(&mut self) -> anyhow::Result<()> {
        if self.ended {
            anyhow::bail!("the controller has already stopped");
        }
        let result = (&mut self.task).await;
        self.ended = true;
        result.context("the controller task panicked or was cancelled")?
    }

    /// Stops reconciling, releases the lease, stops the admin server.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.cancel();
        if self.ended {
            return Ok(());
        }
        self.task
            .await
            .context("the controller task panicked or was cancelled")?
    }

    /// Ends at once, without releasing anything: as if the process was killed.
    pub fn abort(self) {
        self.task.abort();
    }

    /// Runs until `shutdown` resolves or the controller fails.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::select! {
            result = self.until_stopped() => result,
            () = shutdown => self.shutdown().await,
        }
    }
}

/// Binds the admin server and starts the controller in the background.
pub async fn start(client: Client, config: Config) -> anyhow::Result<Running> {
    autoscaler::check(&config.autoscaler)?;
    let listener = TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("could not listen on --admin-addr {}", config.admin_addr))?;
    let admin_addr = listener.local_addr()?;
    let identity = config.identity();
    let metrics = metrics::Metrics::new().context("could not register metrics")?;
    let (leader_tx, leader_rx) = watch::channel(false);
    let ctx = Arc::new(Context::new(
        client.clone(),
        config.domain.clone(),
        config.watch_namespace.clone(),
        metrics,
        events::Events::new(client, &identity),
        leader_rx,
    ));
    let _ = ctx
        .lease
        .set((config.namespace.clone(), config.lease_name.clone()));
    let stop = CancellationToken::new();
    tracing::info!(%admin_addr, %identity, lease = %format!("{}/{}", config.namespace, config.lease_name), "controller starting");
    let task = tokio::spawn(leader::main_task(
        ctx.clone(),
        config,
        identity,
        listener,
        leader_tx,
        stop.clone(),
    ));
    Ok(Running {
        admin_addr,
        ctx,
        stop,
        task,
        ended: false,
    })
}
