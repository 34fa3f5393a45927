//! Siesta's two components in-process against the local cluster: an
//! activator that discovers Functions and pods by watch ([`ActivatorRun`])
//! and a controller for one test namespace that it signals ([`Stack`]).

use std::net::SocketAddr;
use std::time::Duration;

use kube::Client;
use siesta_activator::route::FunctionKey;
use siesta_activator::{Activator, Config as ActivatorConfig, Control, discovery};
use tokio::sync::oneshot;

use crate::{http_get, wait_for};

/// An activator on loopback ports of its own, discovering from the cluster
/// (or, without a client, from what the test feeds its `control`).
pub struct ActivatorRun {
    pub traffic: SocketAddr,
    pub admin: SocketAddr,
    pub control: Control,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    discovery: Option<tokio::task::JoinHandle<()>>,
}

impl ActivatorRun {
    /// Binds, starts serving and returns once `/readyz` answers 200.
    pub async fn start(
        client: Option<&Client>,
        config: ActivatorConfig,
    ) -> anyhow::Result<ActivatorRun> {
        let activator = Activator::bind(config).await?;
        let traffic = activator.listen_addr()?;
        let admin = activator.admin_addr()?;
        let control = activator.control();
        let discovery = match client {
            Some(client) => Some(tokio::spawn(discovery::run(
                client.clone(),
                activator.control(),
                None,
            ))),
            None => {
                control.mark_synced();
                None
            }
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(activator.serve(async move {
            let _ = stopped.await;
        }));
        let admin_s = admin.to_string();
        wait_for(
            "the activator to be ready",
            Duration::from_secs(30),
            || async {
                let (code, _) = http_get(&admin_s, "/readyz", "admin").await.ok()?;
                (code == 200).then_some(())
            },
        )
        .await;
        Ok(ActivatorRun {
            traffic,
            admin,
            control,
            stop: Some(stop),
            task,
            discovery,
        })
    }

    /// Asks for a drain (as SIGTERM does) without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Drains and waits until the activator has returned.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        let _ = (&mut self.task).await;
        if let Some(d) = self.discovery.take() {
            d.abort();
        }
    }

    /// Waits (up to 30 s) until the activator's watch has delivered the
    /// Function `ns/name`: before that, a request for it is a 404, as for
    /// any unknown function.
    pub async fn wait_known(&self, ns: &str, name: &str) {
        let key = FunctionKey::new(ns, name);
        let index = self.control.index().clone();
        wait_for(
            &format!("the activator to know the Function {ns}/{name}"),
            Duration::from_secs(30),
            || async { index.get(&key).map(|_| ()) },
        )
        .await;
    }

    /// Waits (up to `timeout`) until exactly `n` of the Function's pods are
    /// ready and probed in the activator, i.e. take requests.
    pub async fn wait_endpoints(&self, ns: &str, name: &str, n: usize, timeout: Duration) {
        let key = FunctionKey::new(ns, name);
        let index = self.control.index().clone();
        wait_for(
            &format!("the activator to have {n} endpoints for {ns}/{name}"),
            timeout,
            || async { (index.get(&key)?.endpoints() == n).then_some(()) },
        )
        .await;
    }

    /// The activator's `/metrics` text (empty if it cannot be read).
    pub async fn metrics(&self) -> String {
        http_get(&self.admin.to_string(), "/metrics", "admin")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default()
    }
}

/// Controller config for one test namespace with a fast lease. Its
/// autoscaler has no metrics unless the test gives it some: it scrapes no
/// activator pods (the default selector would find those of a Siesta
/// installed in the same cluster, e.g. by `make demo`, and their empty
/// metrics would let it scale the test's functions down).
pub fn controller_config(ns: &str, identity: &str) -> siesta_controller::Config {
    let defaults = siesta_controller::Config::defaults();
    siesta_controller::Config {
        admin_addr: "127.0.0.1:0".parse().expect("address literal"),
        namespace: ns.to_string(),
        watch_namespace: Some(ns.to_string()),
        identity: Some(identity.to_string()),
        lease_duration: Duration::from_secs(3),
        renew_period: Duration::from_millis(300),
        autoscaler: siesta_controller::autoscaler::Settings {
            activator_selector: "siesta.dev/test-scrapes-no-pod=true".into(),
            ..defaults.autoscaler
        },
        ..defaults
    }
}

/// For [`Stack::start_with`]: the controller's autoscaler reads the stack's
/// own activator's metrics (and no other activator's).
pub fn scrape_activator(config: &mut siesta_controller::Config, activator_admin: SocketAddr) {
    config.autoscaler.activator_url = vec![format!("http://{activator_admin}/metrics")];
}

/// A controller for one namespace and an activator that signals it.
pub struct Stack {
    pub controller: Option<siesta_controller::Running>,
    pub activator: ActivatorRun,
}

impl Stack {
    /// The controller as configured by [`controller_config`].
    pub async fn start(client: &Client, ns: &str) -> Stack {
        Self::start_with(client, ns, |_, _| {}).await
    }

    /// `configure` may change the controller's config before it starts,
    /// knowing the activator's admin address (e.g. to scrape its metrics).
    pub async fn start_with(
        client: &Client,
        ns: &str,
        configure: impl FnOnce(&mut siesta_controller::Config, SocketAddr),
    ) -> Stack {
        // Warnings of the activator and controller by default: the test
        // harness shows them only for a failing test, where they say why
        // (e.g. what an upstream error was). RUST_LOG=siesta_activator=debug
        // shows the request path's decisions.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("siesta_activator=warn,siesta_controller=warn")
        });
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
        let activator = ActivatorRun::start(Some(client), ActivatorConfig::loopback())
            .await
            .expect("start the activator");
        let mut config = controller_config(ns, &format!("test-{ns}"));
        configure(&mut config, activator.admin);
        let controller = siesta_controller::start(client.clone(), config)
            .await
            .expect("start the controller");
        activator
            .control
            .set_controllers(vec![format!("http://{}", controller.admin_addr())]);
        Stack {
            controller: Some(controller),
            activator,
        }
    }

    /// Stops the controller only (the test then drives replicas itself).
    pub async fn stop_controller(&mut self) {
        if let Some(c) = self.controller.take() {
            let _ = c.shutdown().await;
        }
    }

    pub async fn stop(mut self) {
        self.stop_controller().await;
        self.activator.stop().await;
    }
}
