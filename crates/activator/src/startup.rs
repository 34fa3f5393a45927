//! Startup: binding the ports, building the shared state, and serving until
//! the shutdown signal, then draining.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Health};
use crate::config::Config;
use crate::index::{FunctionConfig, Index};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::route::FunctionKey;
use crate::trust::TrustedProxies;
use crate::wake::WakeClient;
use crate::{discovery, park_budget, probe, server, serving, shutdown_signal};

/// Feeds the activator what it knows about functions and pods: the watches
/// use it, and tests use it directly instead of a cluster.
#[derive(Clone)]
pub struct Control {
    index: Arc<Index>,
    wake_client: Arc<WakeClient>,
    health: Arc<Health>,
    probe_timeout: Duration,
}

impl Control {
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    pub fn apply_function(&self, key: FunctionKey, config: FunctionConfig) {
        self.index.apply(key, config);
    }

    pub fn delete_function(&self, key: &FunctionKey) {
        self.index.delete(key);
    }

    /// Sets a function's ready pod addresses. New ones are probed before
    /// requests go to them.
    pub fn set_endpoints(&self, key: &FunctionKey, addrs: &[SocketAddr]) {
        let Some(entry) = self.index.get(key) else {
            return;
        };
        for addr in entry.set_ready(addrs) {
            tokio::spawn(probe::probe_and_admit(
                entry.clone(),
                addr,
                self.probe_timeout,
            ));
        }
    }

    pub fn set_controllers(&self, urls: Vec<String>) {
        self.wake_client.set_targets(urls);
    }

    /// The initial state is loaded: /readyz may say ready.
    pub fn mark_synced(&self) {
        self.health.set_synced();
    }
}

/// A bound activator, ready to serve.
pub struct Activator {
    config: Config,
    /// The traffic port, one listener per serving thread.
    listeners: Vec<std::net::TcpListener>,
    admin: TcpListener,
    control: Control,
}

impl Activator {
    /// Binds both ports and builds the (empty) state.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        let threads = serving::threads(config.serving_threads);
        let listeners = serving::bind(config.listen, threads)
            .with_context(|| format!("binding the traffic port {}", config.listen))?;
        let admin = TcpListener::bind(config.admin_addr)
            .await
            .with_context(|| format!("binding the admin port {}", config.admin_addr))?;
        let index = Arc::new(Index::new(
            Metrics::new()?,
            park_budget::Limits {
                requests: config.max_parked_requests,
                bytes: config.max_parked_bytes,
            },
        ));
        let wake_client = Arc::new(WakeClient::new(
            config.controller_url.clone(),
            config.wake_interval,
        ));
        let control = Control {
            index,
            wake_client,
            health: Arc::new(Health::default()),
            probe_timeout: config.probe_timeout,
        };
        Ok(Self {
            config,
            listeners,
            admin,
            control,
        })
    }

    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listeners[0].local_addr()?)
    }

    /// The request path's state for one serving thread: its own upstream
    /// pools, the shared index and wake-up client.
    fn proxy(&self) -> impl Fn() -> Proxy + use<> {
        let index = self.control.index.clone();
        let wake_client = self.control.wake_client.clone();
        let domain = self.config.domain.clone();
        let max_header_bytes = self.config.max_header_bytes;
        let max_response_headers = self.config.max_response_headers.into();
        let trusted = TrustedProxies::new(self.config.trusted_proxies.clone());
        move || {
            Proxy::new(
                index.clone(),
                wake_client.clone(),
                domain.clone(),
                max_header_bytes,
                max_response_headers,
            )
            .with_trusted_proxies(trusted.clone())
        }
    }

    pub fn admin_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.admin.local_addr()?)
    }

    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Serves until `shutdown` resolves, then turns not-ready, stops
    /// accepting, drains in-flight requests (bounded by the drain timeout)
    /// and returns. The admin port answers until the drain ends.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let health = self.control.health.clone();
        let make_proxy = self.proxy();
        let admin = tokio::spawn(admin::serve(
            self.admin,
            self.control.index.clone(),
            health.clone(),
        ));
        let limits = server::Limits {
            header_read_timeout: self.config.header_read_timeout,
            max_header_bytes: self.config.max_header_bytes,
            max_request_headers: self.config.max_request_headers.into(),
        };
        let delay = self.config.shutdown_delay;
        let shutdown = async move {
            shutdown.await;
            health.set_draining();
            if !delay.is_zero() {
                tracing::info!(
                    ?delay,
                    "not ready; still serving until the shutdown delay ends"
                );
                tokio::time::sleep(delay).await;
            }
        };
        let stop = CancellationToken::new();
        let serving = serving::serve(
            self.listeners,
            make_proxy,
            limits,
            stop.clone(),
            self.config.drain_timeout,
        );
        tokio::pin!(serving);
        tokio::select! {
            // Only when every serving thread failed to start.
            () = &mut serving => {}
            () = shutdown => {
                stop.cancel();
                serving.await;
            }
        }
        admin.abort();
        Ok(())
    }
}

/// Runs the activator against the cluster until SIGTERM/SIGINT, then drains.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let watch_controllers = config.controller_url.is_empty();
    let controller_port = config.controller_port;
    let activator = Activator::bind(config).await?;
    tracing::info!(
        listen = %activator.listen_addr()?,
        admin = %activator.admin_addr()?,
        "activator listening"
    );
    let discovery = tokio::spawn(discovery::run(
        client,
        activator.control(),
        watch_controllers.then_some(controller_port),
    ));
    let result = activator.serve(shutdown_signal()).await;
    discovery.abort();
    result
}
