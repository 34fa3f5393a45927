//! The Siesta controller: reconciles each `Function` into a Deployment and a
//! Service, keeps its status honest, and takes activation signals.
//!
//! Every replica serves the admin endpoints (metrics, health, activations);
//! only the holder of the leader Lease reconciles and autoscales.

pub mod activation;
mod admin;
pub mod autoscaler;
pub mod cold_start;
mod context;
pub mod decisions;
mod error;
pub mod events;
pub mod lease;
pub mod metrics;
mod reconcile;
pub mod resources;
pub mod scale;
pub mod status;
pub mod usage;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, ListParams};
use kube::runtime::{Controller, watcher};
use siesta_api::Function;
use siesta_api::duration;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

pub use activation::FunctionKey;
pub use error::{Error, Result};

use context::Context;

/// Command-line configuration of `siesta controller`.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// Domain of function URLs: a Function answers on http://NAME.NAMESPACE.DOMAIN.
    #[arg(long, env = "SIESTA_DOMAIN", default_value = "siesta.local")]
    pub domain: String,
    /// Address of the admin server (/metrics, /healthz, /readyz, /v1/activate).
    #[arg(long, env = "SIESTA_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    pub admin_addr: SocketAddr,
    /// Namespace of the leader Lease: the controller's own namespace (the
    /// Helm chart passes it as POD_NAMESPACE through the downward API).
    #[arg(long = "namespace", env = "POD_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "siesta-controller")]
    pub lease_name: String,
    /// How long a leader's lease lasts without renewal before a standby takes
    /// over (e.g. 15s, 500ms). The leader itself stops at 2/3 of it.
    #[arg(long, default_value = "15s", value_parser = duration::parse_positive)]
    pub lease_duration: Duration,
    /// How often the leader renews (and a standby checks) the lease.
    #[arg(long, default_value = "2s", value_parser = duration::parse_positive)]
    pub renew_period: Duration,
    /// This replica's name in the lease and in events; defaults to POD_NAME,
    /// else HOSTNAME-PID.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Serve only Functions in this namespace (default: all namespaces).
    #[arg(long, env = "SIESTA_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Most Functions reconciled at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u16,
    #[command(flatten)]
    pub autoscaler: autoscaler::Settings,
}

impl Config {
    /// Defaults as on the command line, for embedding (tests).
    pub fn defaults() -> Self {
        Self {
            domain: "siesta.local".into(),
            admin_addr: SocketAddr::from(([0, 0, 0, 0], 9090)),
            namespace: "default".into(),
            lease_name: "siesta-controller".into(),
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(2),
            identity: None,
            watch_namespace: None,
            concurrency: 16,
            autoscaler: autoscaler::Settings::defaults(),
        }
    }

    fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| {
                    std::fs::read_to_string("/proc/sys/kernel/hostname")
                        .ok()
                        .map(|h| h.trim().to_string())
                })
                .unwrap_or_else(|| "siesta-controller".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

/// Runs the controller until SIGTERM/SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("could not configure a Kubernetes client: set KUBECONFIG, or run in a pod with a service account")?;
    run_with(client, config, shutdown_signal()).await
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

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the controller");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        () = term => tracing::info!("SIGTERM: shutting down"),
    }
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
    pub fn activations(&self) -> broadcast::Receiver<FunctionKey> {
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
    let task = tokio::spawn(main_task(
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

async fn main_task(
    ctx: Arc<Context>,
    config: Config,
    identity: String,
    listener: TcpListener,
    leader_tx: watch::Sender<bool>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    // Dropping the set (on return, or when this task is aborted) aborts
    // every sub-task, so nothing outlives the controller.
    let mut tasks = JoinSet::new();
    let admin_stop = CancellationToken::new();
    tasks.spawn(admin::serve(listener, ctx.clone(), admin_stop.clone()));

    tokio::select! {
        () = wait_for_crd(&ctx) => ctx.set_crd_installed(),
        () = stop.cancelled() => {
            admin_stop.cancel();
            while tasks.join_next().await.is_some() {}
            return Ok(());
        }
    }

    let elector_stop = CancellationToken::new();
    // Aborted when dropped: when the controller task is aborted (a simulated
    // kill), the elector must stop renewing with it.
    let mut elector = AbortOnDropHandle::new(tokio::spawn(lease::run(
        ctx.client.clone(),
        lease::LeaseConfig {
            namespace: config.namespace.clone(),
            name: config.lease_name.clone(),
            lease_duration: config.lease_duration,
            renew_period: config.renew_period,
        },
        lease::Elector::new(identity, config.lease_duration),
        leader_tx,
        ctx.metrics.clone(),
        elector_stop.clone(),
    )));
    let mut leader = ctx.leader.clone();

    let outcome = tokio::select! {
        result = &mut elector => Err(elector_outcome(result)),
        () = stop.cancelled() => Ok(()),
        result = async {
            // Stand by until elected, then reconcile and autoscale while
            // leading (the autoscaler never ends by itself); when the lease
            // is lost, stop both and stand by again.
            loop {
                if leader.wait_for(|l| *l).await.is_err() {
                    return;
                }
                tokio::select! {
                    () = run_controller(ctx.clone(), &config) => return,
                    () = autoscaler::run(ctx.clone(), config.autoscaler.clone()) => return,
                    () = usage::run(ctx.clone()) => return,
                    _ = leader.wait_for(|l| !*l) => ctx.set_cache_synced(false),
                }
            }
        } => { let () = result; Err(anyhow::anyhow!("the Function watch ended unexpectedly")) }
    };
    // Shutdown order: reconciles stop (the select above dropped them), then
    // the lease is released, then the admin server stops.
    ctx.set_cache_synced(false);
    elector_stop.cancel();
    if !elector.is_finished() || outcome.is_ok() {
        match tokio::time::timeout(Duration::from_secs(10), &mut elector).await {
            Ok(Ok(())) | Err(_) => {}
            Ok(result) => {
                tracing::warn!(error = %elector_outcome(result), "leader election ended with an error")
            }
        }
    }
    admin_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    outcome
}

fn elector_outcome(result: std::result::Result<(), tokio::task::JoinError>) -> anyhow::Error {
    match result {
        Ok(()) => anyhow::anyhow!("leader election stopped"),
        Err(e) => anyhow::anyhow!("leader election task failed: {e}"),
    }
}

/// Runs the kube-runtime Controller (leader only). Returns only if the
/// watch stream ends, which it does not while the apiserver answers.
async fn run_controller(ctx: Arc<Context>, config: &Config) {
    let client = ctx.client.clone();
    let (functions, deployments, services) = match &config.watch_namespace {
        Some(ns) => (
            Api::<Function>::namespaced(client.clone(), ns),
            Api::<Deployment>::namespaced(client.clone(), ns),
            Api::<Service>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::<Function>::all(client.clone()),
            Api::<Deployment>::all(client.clone()),
            Api::<Service>::all(client.clone()),
        ),
    };
    // Only children we labelled are watched: less memory in big clusters.
    let children = watcher::Config::default().labels("app.kubernetes.io/managed-by=siesta");
    let controller = Controller::new(functions, watcher::Config::default())
        .owns(deployments, children.clone())
        .owns(services, children)
        .trigger_backoff(siesta_api::watch_backoff::WatchBackoff::default())
        .with_config(kube::runtime::controller::Config::default().concurrency(config.concurrency));
    let store = controller.store();
    let synced = {
        let ctx = ctx.clone();
        async move {
            if store.wait_until_ready().await.is_ok() {
                tracing::info!("Function cache synced; reconciling");
                ctx.set_cache_synced(true);
            }
            std::future::pending::<()>().await
        }
    };
    let run = controller
        .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(function = %object, "reconciled"),
                Err(kube::runtime::controller::Error::ReconcilerFailed(_, _)) => {
                    // Already logged by error_policy.
                }
                Err(e) => tracing::warn!(error = %e, "controller stream error"),
            }
        });
    tokio::select! {
        () = run => {}
        () = synced => {}
    }
}

/// Lists Functions once; while the CRD is missing, says how to install it
/// and retries, instead of crash-looping.
async fn wait_for_crd(ctx: &Context) {
    let api: Api<Function> = match &ctx.watch_namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let mut delay = Duration::from_secs(1);
    loop {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.is_not_found() => tracing::error!(
                "the Function CRD (functions.siesta.dev) is not installed; install it with \
                 `kubectl apply -f crds/function.yaml` (or `helm install siesta charts/siesta`); \
                 retrying in {delay:?}"
            ),
            Err(e) => tracing::error!(
                error = %e,
                "cannot list Functions; check the apiserver is reachable and the controller's RBAC allows listing functions.siesta.dev; retrying in {delay:?}"
            ),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}
