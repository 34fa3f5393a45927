//! One pod on the dev node: give it an address, resolve each container's
//! command and environment, run the containers, report status, and on
//! graceful deletion stop them before removing the pod (as the kubelet does).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::container::{self, Launch, PodState};
use crate::env::{container_env, expand_refs};
use crate::images::ImageMap;
use crate::ipam::PodIps;
use crate::kubeconfig::write_for_service_account;
use crate::probe::readiness_plan;
use crate::status::{ContainerRecord, RunState, from_time, pod_status};

/// What every pod worker shares: the node's view of the world.
pub struct NodeContext {
    pub client: Client,
    pub node_name: String,
    pub images: ImageMap,
    pub state_dir: PathBuf,
    /// The apiserver URL written into ServiceAccount kubeconfigs.
    pub api_server: String,
    pub ips: Mutex<PodIps>,
}

/// How a pod worker is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StopRequest {
    /// Graceful deletion: stop with this grace, then delete the pod object.
    Delete { grace: Duration },
    /// The pod object is gone or the node is shutting down: stop with this
    /// grace and leave the API alone.
    Abandon { grace: Duration },
}

impl StopRequest {
    fn grace(self) -> Duration {
        match self {
            StopRequest::Delete { grace } | StopRequest::Abandon { grace } => grace,
        }
    }
}

pub type StopSender = watch::Sender<Option<StopRequest>>;

/// The directory of one pod's logs and process-group files.
pub fn pod_dir(ctx: &NodeContext, pod: &Pod) -> PathBuf {
    let ns = pod.namespace().unwrap_or_default();
    let uid = pod.uid().unwrap_or_default();
    ctx.state_dir
        .join("pods")
        .join(format!("{ns}_{}_{uid}", pod.name_any()))
}

/// Runs a pod until it is stopped (or, under restartPolicy Never/OnFailure,
/// all its containers are done).
pub async fn run(ctx: Arc<NodeContext>, pod: Pod, mut stop: watch::Receiver<Option<StopRequest>>) {
    let name = pod.name_any();
    let namespace = pod.namespace().unwrap_or_else(|| "default".into());
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(ip) = assign_ip(&ctx, &pod) else {
        tracing::error!(pod = %name, %namespace, "no free pod address left on this node");
        return;
    };
    let ip_text = ip.to_string();
    let dir = pod_dir(&ctx, &pod);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(pod = %name, "cannot create {}: {e}", dir.display());
    }
    let restart_policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into());
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let start_time = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(from_time)
        .unwrap_or_else(Utc::now);
    let state = Arc::new(PodState::default());
    if let Ok(mut records) = state.containers.lock() {
        *records = containers
            .iter()
            .map(|c| ContainerRecord::new(&c.name, c.image.as_deref().unwrap_or_default()))
            .collect();
    }
    let reporter = StatusReporter {
        api: api.clone(),
        name: name.clone(),
        restart_policy: restart_policy.clone(),
        pod_ip: ip_text.clone(),
        start_time,
        last: pod.status.clone(),
    };
    tracing::info!(pod = %name, %namespace, ip = %ip_text, "starting pod");

    let mut reporter = reporter;
    reporter.report(&state).await;

    let extra_env = service_account_env(&ctx, &pod, &namespace, &dir).await;
    let (container_stop_tx, container_stop_rx) = watch::channel(None);
    let mut runners = JoinSet::new();
    for (index, c) in containers.iter().enumerate() {
        match resolve_launch(
            &ctx,
            &pod,
            c,
            index,
            &ip_text,
            &dir,
            &restart_policy,
            &extra_env,
        )
        .await
        {
            Ok(launch) => {
                runners.spawn(container::run(
                    launch,
                    state.clone(),
                    container_stop_rx.clone(),
                ));
            }
            Err((reason, message)) => {
                tracing::warn!(pod = %name, container = %c.name, %reason, "{message}");
                state.update(index, |r| {
                    r.state = RunState::Waiting {
                        reason: reason.clone(),
                        message: Some(message.clone()),
                    };
                });
            }
        }
    }

    // Report every change until the containers end or a stop is asked for.
    let stop_request = loop {
        if let Some(request) = *stop.borrow_and_update() {
            break Some(request);
        }
        tokio::select! {
            _ = state.changed.notified() => reporter.report(&state).await,
            joined = runners.join_next(), if !runners.is_empty() => {
                if joined.is_none() {
                    continue;
                }
            }
            changed = stop.changed() => {
                if changed.is_err() {
                    break Some(StopRequest::Abandon { grace: Duration::from_secs(2) });
                }
            }
        }
        if runners.is_empty() && all_done(&state) {
            reporter.report(&state).await;
            break None;
        }
    };

    if let Some(request) = stop_request {
        tracing::info!(pod = %name, grace = ?request.grace(), "stopping pod");
        let _ = container_stop_tx.send(Some(request.grace()));
        while runners.join_next().await.is_some() {}
        if let StopRequest::Delete { .. } = request {
            reporter.report(&state).await;
            delete_pod_object(&api, &pod).await;
        }
    } else {
        // Wait for a stop so that deletion of a finished pod is still handled.
        let request = loop {
            if let Some(request) = *stop.borrow_and_update() {
                break request;
            }
            if stop.changed().await.is_err() {
                break StopRequest::Abandon {
                    grace: Duration::ZERO,
                };
            }
        };
        if let StopRequest::Delete { .. } = request {
            delete_pod_object(&api, &pod).await;
        }
    }
    if let Ok(mut ips) = ctx.ips.lock() {
        ips.release(ip);
    }
    tracing::info!(pod = %name, %namespace, "pod stopped");
}

fn all_done(state: &PodState) -> bool {
    state
        .snapshot()
        .iter()
        .all(|c| matches!(c.state, RunState::Terminated(_)))
}

/// The pod keeps its address across dev node restarts (it is in its status).
fn assign_ip(ctx: &NodeContext, pod: &Pod) -> Option<Ipv4Addr> {
    let mut ips = ctx.ips.lock().ok()?;
    let previous = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
    if let Some(ip) = previous
        && ips.reserve(ip)
    {
        return Some(ip);
    }
    ips.allocate()
}

/// A kubeconfig for the pod's ServiceAccount, so the process runs with
/// exactly the RBAC that account has. The token Secret is created by
/// kube-controller-manager shortly after the account, so wait a little.
async fn service_account_env(
    ctx: &NodeContext,
    pod: &Pod,
    namespace: &str,
    dir: &std::path::Path,
) -> Vec<(String, String)> {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.automount_service_account_token) == Some(false) {
        return Vec::new();
    }
    let account = spec
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let path = dir.join("kubeconfig");
    for attempt in 0..20 {
        match write_for_service_account(&ctx.client, &ctx.api_server, namespace, &account, &path)
            .await
        {
            Ok(()) => {
                return vec![("KUBECONFIG".into(), path.display().to_string())];
            }
            Err(e) if attempt == 19 => {
                tracing::warn!(pod = %pod.name_any(), "no kubeconfig for ServiceAccount {namespace}/{account}: {e}; running without API access");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    Vec::new()
}

#[allow(clippy::too_many_arguments)]
async fn resolve_launch(
    ctx: &NodeContext,
    pod: &Pod,
    c: &k8s_openapi::api::core::v1::Container,
    index: usize,
    ip: &str,
    dir: &std::path::Path,
    restart_policy: &str,
    extra_env: &[(String, String)],
) -> Result<Launch, (String, String)> {
    let image = c.image.clone().unwrap_or_default();
    let mut env = container_env(&ctx.client, pod, c, ip)
        .await
        .map_err(|e| ("CreateContainerConfigError".to_string(), e.to_string()))?;
    for (k, v) in extra_env {
        if !env.iter().any(|(name, _)| name == k) {
            env.push((k.clone(), v.clone()));
        }
    }
    let command: Vec<String> = c
        .command
        .iter()
        .flatten()
        .map(|s| expand_refs(s, &env))
        .collect();
    let args: Vec<String> = c
        .args
        .iter()
        .flatten()
        .map(|s| expand_refs(s, &env))
        .collect();
    let argv = ctx
        .images
        .argv(&image, &command, &args, &|name| std::env::var(name).ok())
        .map_err(|e| ("ErrImagePull".to_string(), e.to_string()))?;
    let readiness = readiness_plan(
        c,
        std::net::IpAddr::V4(ip.parse().unwrap_or(Ipv4Addr::LOCALHOST)),
    )
    .unwrap_or_else(|e| {
        tracing::warn!(pod = %pod.name_any(), container = %c.name, "readiness probe ignored: {e}");
        None
    });
    Ok(Launch {
        pod: pod.name_any(),
        index,
        name: c.name.clone(),
        argv,
        env,
        workdir: dir.to_path_buf(),
        log_path: dir.join(format!("{}.log", c.name)),
        pgid_path: dir.join(format!("{}.pgid", c.name)),
        readiness,
        restart_policy: restart_policy.to_string(),
    })
}

/// Writes the pod's status when it changes (merge patch on the subresource).
struct StatusReporter {
    api: Api<Pod>,
    name: String,
    restart_policy: String,
    pod_ip: String,
    start_time: DateTime<Utc>,
    last: Option<PodStatus>,
}

impl StatusReporter {
    async fn report(&mut self, state: &PodState) {
        let records = state.snapshot();
        let status = pod_status(
            &records,
            &self.restart_policy,
            &self.pod_ip,
            self.start_time,
            self.last.as_ref(),
            Utc::now(),
        );
        if self.last.as_ref() == Some(&status) {
            return;
        }
        let patch = json!({ "status": status });
        match self
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => self.last = Some(status),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(pod = %self.name, "status update failed: {e}"),
        }
    }
}

/// The last step of graceful deletion: remove the object, but only the one
/// this worker ran (a new pod of the same name has another uid).
async fn delete_pod_object(api: &Api<Pod>, pod: &Pod) {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(pod = %pod.name_any(), "final delete failed: {e}"),
    }
}
