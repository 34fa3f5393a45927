//! Leadership: the controller task that serves activations on every
//! replica, stands by until elected, reconciles and autoscales while leading,
//! and releases the lease on the way out.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ListParams};
use kube::runtime::Controller;
use siesta_api::Function;
use siesta_api::names::FunctionKey;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::children::Children;
use crate::config::Config;
use crate::context::Context;
use crate::watches::Watches;
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
                // One watch per kind for the three parts, made anew at each
                // election: a new leader starts from a fresh list.
                let w = Watches::new(&ctx);
                let (functions, deployments) = (w.functions.clone(), w.deployments.clone());
                tokio::select! {
                    () = run_controller(ctx.clone(), &config, w) => return,
                    () = autoscaler::run(ctx.clone(), config.autoscaler.clone(), functions.clone(), deployments) => return,
                    () = crate::usage::run(ctx.clone(), functions) => return,
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
async fn run_controller(ctx: Arc<Context>, config: &Config, w: Watches) {
    let store = w.functions.clone();
    let reconciling = Arc::new(reconcile::Reconciling {
        ctx: ctx.clone(),
        children: Children::new(w.deployments, w.services),
    });
    let controller = Controller::for_stream(w.function_events, w.functions)
        .owns_stream(w.deployment_events)
        .owns_stream(w.service_events)
        .trigger_backoff(siesta_api::watch_backoff::WatchBackoff::default())
        .with_config(kube::runtime::controller::Config::default().concurrency(config.concurrency));
    let synced = {
        let ctx = ctx.clone();
        let store = store.clone();
        async move {
            if store.wait_until_ready().await.is_ok() {
                tracing::info!("Function cache synced; reconciling");
                ctx.set_cache_synced(true);
            }
            std::future::pending::<()>().await
        }
    };
    // What was applied to Functions that are gone is forgotten now and then.
    let forget = {
        let reconciling = reconciling.clone();
        async move {
            let mut every = tokio::time::interval(MEMO_PRUNE);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let live: std::collections::HashSet<FunctionKey> =
                    store.state().iter().map(|f| FunctionKey::of(f)).collect();
                reconciling.children.memo().retain(|k| live.contains(k));
            }
        }
    };
    let run = controller
        .run(reconcile::reconcile, reconcile::error_policy, reconciling)
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
        () = forget => {}
    }
}

/// How often the memo of applied children drops Functions that are gone.
const MEMO_PRUNE: Duration = Duration::from_secs(60);

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
