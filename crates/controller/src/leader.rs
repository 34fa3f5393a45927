//! Leadership: the controller task that serves activations on every
//! replica, stands by until elected, reconciles and autoscales while leading,
//! and releases the lease on the way out.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use kube::runtime::{Controller, watcher};
use siesta_api::Function;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::config::Config;
use crate::context::Context;
use crate::{admin, autoscaler, lease, reconcile};

pub(crate) async fn main_task(
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
                    () = crate::usage::run(ctx.clone()) => return,
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
