//! Shared pieces of the reliability tests: a steady client stream that
//! records every request's fate ([`Load`]) and cluster helpers (scale, pods,
//! pod processes). The in-process controller and activator ([`Stack`],
//! [`ActivatorRun`]) come from siesta-testkit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{Client as HttpClient, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use siesta_api::Function;
use siesta_testkit::{wait_for, wait_for_state};

/// The image the node agent maps to `examples/hello`.
pub const HELLO_IMAGE: &str = "siesta.dev/examples/hello:latest";

pub use siesta_testkit::metrics_text::metric_sum;
pub use siesta_testkit::stack::{ActivatorRun, Stack, controller_config, scrape_activator};
pub mod backend;
pub mod nginx;

/// A hello Function; `extra` is merged into `spec`.
pub fn hello(name: &str, extra: serde_json::Value) -> Function {
    let mut spec = json!({
        "image": HELLO_IMAGE,
        "port": 8080,
        "timeoutSeconds": 120,
        "queue": {"maxRequests": 1000, "timeoutSeconds": 90},
        "scale": {"minReplicas": 0, "maxReplicas": 5, "scaleToZeroAfterSeconds": 3600},
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "siesta.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("function literal")
}

/// Creates the Function and waits for its Deployment.
pub async fn create_function(client: &Client, ns: &str, f: &Function) {
    let name = f.metadata.name.clone().unwrap_or_default();
    Api::<Function>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), f)
        .await
        .unwrap_or_else(|e| panic!("create function {name}: {e}"));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("deployment {name}"),
        Duration::from_secs(30),
        || async { deployments.get(&name).await.ok().map(|_| ()) },
    )
    .await;
}

/// Writes `deployments/scale` directly.
pub async fn scale(client: &Client, ns: &str, name: &str, replicas: i32) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deployments
        .patch_scale(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .unwrap_or_else(|e| panic!("scaling {ns}/{name} to {replicas}: {e}"));
}

/// Pods of a function (by the Deployment's name prefix), not terminating.
pub async fn live_pods(client: &Client, ns: &str, name: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            p.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&format!("{name}-")))
                && p.metadata.deletion_timestamp.is_none()
        })
        .collect()
}

pub fn is_ready(p: &Pod) -> bool {
    siesta_activator::discovery::ready_ip(p).is_some()
}

/// Waits until exactly `n` pods exist, all ready (and no others linger).
/// On timeout the panic describes the pods last seen, so a CI log says
/// whether they were missing, pending, unready or restarting.
pub async fn wait_ready(client: &Client, ns: &str, name: &str, n: usize, timeout: Duration) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let prefix = format!("{name}-");
    wait_for_state(
        &format!("{ns}/{name} to have exactly {n} ready pods"),
        timeout,
        || async {
            let list = pods
                .list(&ListParams::default())
                .await
                .map_err(|e| format!("(pods not listed: {e})"))?;
            let mine: Vec<&Pod> = list
                .items
                .iter()
                .filter(|p| p.name_any().starts_with(&prefix))
                .collect();
            if mine.len() == n && mine.iter().all(|p| is_ready(p)) {
                return Ok(());
            }
            let seen: Vec<String> = mine.iter().map(|p| describe_pod(p)).collect();
            Err(format!("[{}]", seen.join("; ")))
        },
    )
    .await;
}

/// `name phase ready=… restarts=… ip=… deleting` for a failure message.
fn describe_pod(p: &Pod) -> String {
    let status = p.status.as_ref();
    let restarts: i32 = status
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0);
    format!(
        "{} {} ready={} restarts={} ip={}{}",
        p.metadata.name.as_deref().unwrap_or("?"),
        status.and_then(|s| s.phase.as_deref()).unwrap_or("-"),
        is_ready(p),
        restarts,
        status.and_then(|s| s.pod_ip.as_deref()).unwrap_or("-"),
        if p.metadata.deletion_timestamp.is_some() {
            " deleting"
        } else {
            ""
        },
    )
}

/// The node agent's state directory of the cluster in KUBECONFIG (the
/// kubeconfig sits in the state dir).
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SIESTA_STATE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(k) = std::env::var_os("KUBECONFIG")
        && let Some(parent) = PathBuf::from(k).parent()
    {
        return parent.to_path_buf();
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cluster")
}

/// The process group the node agent runs a pod's container in.
pub fn pod_pgid(p: &Pod, container: &str) -> Option<i32> {
    let ns = p.metadata.namespace.as_deref()?;
    let name = p.metadata.name.as_deref()?;
    let uid = p.metadata.uid.as_deref()?;
    let dir = state_dir()
        .join("devnode/pods")
        .join(format!("{ns}_{name}_{uid}"));
    std::fs::read_to_string(dir.join(format!("{container}.pgid")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// One request of a [`Load`].
#[derive(Clone, Debug)]
pub struct Outcome {
    pub worker: usize,
    pub sent: Duration,
    pub done: Duration,
    /// Status and body, or the transport error.
    pub result: Result<(u16, String), String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        matches!(&self.result, Ok((code, _)) if (200..300).contains(code))
    }
}

/// A steady client stream: `workers` loops, each sending one request at a
/// time over a keep-alive connection to the activator, until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub started: Instant,
    tasks: Vec<tokio::task::JoinHandle<Vec<Outcome>>>,
}

pub fn http_client() -> HttpClient<HttpConnector, Empty<Bytes>> {
    HttpClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(HttpConnector::new())
}

impl Load {
    pub fn start(
        addr: SocketAddr,
        host: &str,
        path: &str,
        workers: usize,
        pause: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let tasks = (0..workers)
            .map(|worker| {
                let stop = stop.clone();
                let host = host.to_string();
                let uri = format!("http://{addr}{path}");
                tokio::spawn(async move {
                    let client = http_client();
                    let mut out = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let sent = started.elapsed();
                        let result = one(&client, &uri, &host).await;
                        out.push(Outcome {
                            worker,
                            sent,
                            done: started.elapsed(),
                            result,
                        });
                        tokio::time::sleep(pause).await;
                    }
                    out
                })
            })
            .collect();
        Load {
            stop,
            started,
            tasks,
        }
    }

    /// Stops sending, waits for the requests in flight, returns everything.
    pub async fn stop(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut outcomes = Vec::new();
        for t in self.tasks {
            outcomes.extend(t.await.unwrap_or_default());
        }
        outcomes.sort_by_key(|o| o.sent);
        Report { outcomes }
    }
}

async fn one(
    client: &HttpClient<HttpConnector, Empty<Bytes>>,
    uri: &str,
    host: &str,
) -> Result<(u16, String), String> {
    let req = http::Request::get(uri)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let fut = async {
        let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
        let code = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((code, String::from_utf8_lossy(&body).trim().to_string()))
    };
    tokio::time::timeout(Duration::from_secs(150), fut)
        .await
        .unwrap_or_else(|_| Err("no answer within 150 s".into()))
}

/// What a [`Load`] saw.
pub struct Report {
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub fn sent(&self) -> usize {
        self.outcomes.len()
    }
    pub fn answered(&self) -> usize {
        self.outcomes.iter().filter(|o| o.ok()).count()
    }
    pub fn failures(&self) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| !o.ok()).collect()
    }

    /// Prints `RELIABILITY <scenario> sent=.. answered=.. failed=..` and the
    /// first failures, and returns the failed count.
    pub fn print(&self, scenario: &str, extra: &str) -> usize {
        let failed = self.failures();
        eprintln!(
            "RELIABILITY {scenario} sent={} answered={} failed={}{}{extra}",
            self.sent(),
            self.answered(),
            failed.len(),
            if extra.is_empty() { "" } else { " " },
        );
        for f in failed.iter().take(10) {
            eprintln!(
                "  failure: worker {} sent at {:?}, ended at {:?}: {:?}",
                f.worker, f.sent, f.done, f.result
            );
        }
        failed.len()
    }
}
