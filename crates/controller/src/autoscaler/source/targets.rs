//! Which activators the `scrape` source reads: fixed URLs, or the ready pods
//! of the activator selector, watched.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

/// An activator to scrape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// Stable identity: the pod UID, or the URL for static targets.
    pub id: String,
    pub url: String,
}

/// Where the activators are.
pub enum Targets {
    /// `--activator-url`: fixed metrics URLs (tests, or activators outside the cluster).
    Static(Vec<String>),
    /// Activator pods found by a watch: ready, with a pod IP.
    Pods { store: Store<Pod>, port: u16 },
}

impl Targets {
    /// Watches pods matching `selector` in all namespaces (the chart grants
    /// the controller a cluster-wide pod watch). The returned task feeds the
    /// store; abort it to stop watching.
    pub fn watch(
        client: kube::Client,
        selector: &str,
        port: u16,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (store, writer) = reflector::store();
        let api: Api<Pod> = Api::all(client);
        let stream = reflector::reflector(
            writer,
            watcher(api, watcher::Config::default().labels(selector)),
        )
        .backoff(siesta_api::watch_backoff::WatchBackoff::default())
        .touched_objects();
        let selector = selector.to_string();
        let task = tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    tracing::warn!(error = %e, %selector, "watching activator pods failed; retrying (check the controller may list and watch pods)");
                }
            }
        });
        (Targets::Pods { store, port }, task)
    }

    pub(super) fn list(&self) -> Vec<Target> {
        match self {
            Targets::Static(urls) => urls
                .iter()
                .map(|u| Target {
                    id: u.clone(),
                    url: u.clone(),
                })
                .collect(),
            Targets::Pods { store, port } => store
                .state()
                .iter()
                .filter(|p| pod_ready(p) && p.metadata.deletion_timestamp.is_none())
                .filter_map(|p| {
                    let ip = p.status.as_ref()?.pod_ip.as_deref()?;
                    let host = if ip.contains(':') {
                        format!("[{ip}]")
                    } else {
                        ip.to_string()
                    };
                    Some(Target {
                        id: p.uid().unwrap_or_else(|| p.name_any()),
                        url: format!("http://{host}:{port}/metrics"),
                    })
                })
                .collect(),
        }
    }
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
