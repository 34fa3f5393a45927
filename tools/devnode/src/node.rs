//! The node: registers itself, binds pending pods to itself, and keeps one
//! pod worker per pod it runs, driven by a watch of all pods.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use nix::sys::signal::Signal;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::container::signal_group;
use crate::pod::{self, NodeContext, StopRequest, StopSender};

/// How long pods get to stop when the dev node itself shuts down.
const SHUTDOWN_GRACE_CAP: Duration = Duration::from_secs(10);
const HEARTBEAT: Duration = Duration::from_secs(10);

struct Worker {
    stop: StopSender,
    deleting: bool,
    grace: Duration,
}

/// Runs the node until `shutdown` resolves; then stops every pod.
pub async fn run(ctx: Arc<NodeContext>, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    kill_orphans(&ctx.state_dir);
    register(&ctx).await?;
    let heartbeat = tokio::spawn(heartbeat(ctx.clone()));

    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let mut events = watcher::watcher(pods, watcher::Config::default()).boxed();
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut tasks: JoinSet<String> = JoinSet::new();
    let mut listed: Option<HashSet<String>> = None;
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(uid) = done {
                    workers.remove(&uid);
                }
            }
            event = events.next() => match event {
                Some(Ok(Event::Init)) => listed = Some(HashSet::new()),
                Some(Ok(Event::InitApply(pod))) => {
                    if let (Some(seen), Some(uid)) = (listed.as_mut(), pod.uid()) {
                        seen.insert(uid);
                    }
                    handle_pod(&ctx, pod, &mut workers, &mut tasks);
                }
                Some(Ok(Event::InitDone)) => {
                    // Pods deleted while the watch was down: stop their processes.
                    if let Some(seen) = listed.take() {
                        for (uid, worker) in &workers {
                            if !seen.contains(uid) {
                                let _ = worker.stop.send(Some(StopRequest::Abandon { grace: worker.grace }));
                            }
                        }
                    }
                }
                Some(Ok(Event::Apply(pod))) => handle_pod(&ctx, pod, &mut workers, &mut tasks),
                Some(Ok(Event::Delete(pod))) => {
                    if let Some(worker) = pod.uid().and_then(|uid| workers.get(&uid)) {
                        let _ = worker.stop.send(Some(StopRequest::Abandon { grace: worker.grace }));
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!("pod watch error (retrying): {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                None => anyhow::bail!("the pod watch ended"),
            },
        }
    }

    tracing::info!(pods = workers.len(), "shutting down: stopping every pod");
    for worker in workers.values() {
        let grace = worker.grace.min(SHUTDOWN_GRACE_CAP);
        let _ = worker.stop.send(Some(StopRequest::Abandon { grace }));
    }
    while tasks.join_next().await.is_some() {}
    heartbeat.abort();
    set_ready(&ctx, false).await;
    Ok(())
}

fn handle_pod(
    ctx: &Arc<NodeContext>,
    pod: Pod,
    workers: &mut HashMap<String, Worker>,
    tasks: &mut JoinSet<String>,
) {
    let Some(uid) = pod.uid() else { return };
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let deleting = pod.metadata.deletion_timestamp.is_some();
    match node_name {
        None if !deleting => {
            tokio::spawn(bind(ctx.clone(), pod));
            return;
        }
        Some(n) if n == ctx.node_name => {}
        _ => return,
    }
    let grace = Duration::from_secs(
        pod.metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30)
            .max(0) as u64,
    );
    if deleting {
        match workers.get_mut(&uid) {
            Some(worker) if !worker.deleting => {
                worker.deleting = true;
                let _ = worker.stop.send(Some(StopRequest::Delete { grace }));
            }
            Some(_) => {}
            None => {
                tokio::spawn(delete_now(ctx.clone(), pod));
            }
        }
        return;
    }
    if workers.contains_key(&uid) {
        return;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded") | Some("Failed")) {
        return;
    }
    let (stop, stop_rx) = watch::channel(None);
    workers.insert(
        uid.clone(),
        Worker {
            stop,
            deleting: false,
            grace,
        },
    );
    let ctx = ctx.clone();
    tasks.spawn(async move {
        pod::run(ctx, pod, stop_rx).await;
        uid
    });
}

/// Plays the scheduler's part: every unbound pod goes to this node.
async fn bind(ctx: Arc<NodeContext>, pod: Pod) {
    let namespace = pod.namespace().unwrap_or_else(|| "default".into());
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace},
        "target": {"apiVersion": "v1", "kind": "Node", "name": ctx.node_name},
    });
    match api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => tracing::info!(pod = %name, %namespace, "bound to {}", ctx.node_name),
        // Already bound (a repeated event) or gone: nothing to do.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
        Err(e) => tracing::warn!(pod = %name, %namespace, "binding failed: {e}"),
    }
}

/// A pod marked for deletion that this node never started can go at once.
async fn delete_now(ctx: Arc<NodeContext>, pod: Pod) {
    let namespace = pod.namespace().unwrap_or_else(|| "default".into());
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    if let Err(e) = api.delete(&pod.name_any(), &params).await
        && !matches!(&e, kube::Error::Api(s) if s.code == 404)
    {
        tracing::warn!(pod = %pod.name_any(), "delete failed: {e}");
    }
}

/// Processes left by a previous run of the dev node (it was killed): their
/// pods are re-run from the API, so the old processes must go.
fn kill_orphans(state_dir: &Path) {
    let Ok(pod_dirs) = std::fs::read_dir(state_dir.join("pods")) else {
        return;
    };
    for dir in pod_dirs.flatten() {
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for file in files.flatten() {
            let path = file.path();
            if path.extension().is_some_and(|e| e == "pgid") {
                if let Some(pgid) = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.trim().parse::<u32>().ok())
                {
                    tracing::info!(pgid, file = %path.display(), "killing a process left by a previous run");
                    signal_group(pgid, Signal::SIGKILL);
                }
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

async fn register(ctx: &NodeContext) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": ctx.node_name,
            "labels": {
                "kubernetes.io/hostname": ctx.node_name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "siesta.dev/devnode": "true",
            },
        },
    });
    let node: Node = serde_json::from_value(node)?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %ctx.node_name, "registered node"),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            tracing::info!(node = %ctx.node_name, "node already registered")
        }
        Err(e) => {
            return Err(anyhow::anyhow!(
                "cannot register node {}: {e}; is KUBECONFIG an admin kubeconfig?",
                ctx.node_name
            ));
        }
    }
    set_ready(ctx, true).await;
    Ok(())
}

async fn heartbeat(ctx: Arc<NodeContext>) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        set_ready(&ctx, true).await;
    }
}

async fn set_ready(ctx: &NodeContext, ready: bool) {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (status, reason, message) = if ready {
        ("True", "DevNodeReady", "siesta-devnode is running pods")
    } else {
        ("False", "DevNodeStopped", "siesta-devnode has stopped")
    };
    let patch = json!({
        "status": {
            "conditions": [{
                "type": "Ready", "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": now,
            }],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": ctx.node_name},
            ],
            "capacity": {"cpu": "2", "memory": "24Gi", "pods": "1000"},
            "allocatable": {"cpu": "2", "memory": "24Gi", "pods": "1000"},
            "nodeInfo": {
                "kubeletVersion": "v1.20.2-siesta-devnode",
                "kubeProxyVersion": "",
                "containerRuntimeVersion": "siesta-devnode://local-processes",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "osImage": "local processes",
                "kernelVersion": "",
                "machineID": "", "systemUUID": "", "bootID": "",
            },
        }
    });
    if let Err(e) = nodes
        .patch_status(
            &ctx.node_name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::warn!(node = %ctx.node_name, "node status update failed: {e}");
    }
}
