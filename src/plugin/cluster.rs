//! The plugin's IO: the kubeconfig, the apiserver, and the two proxies it
//! goes through (service proxy to the activator, pod proxy to the leading
//! controller).

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use siesta_api::Function;
use siesta_api::decisions::DecisionHistory;

use super::Global;

/// Labels the chart puts on everything it installs.
const SIESTA_LABELS: &str = "app.kubernetes.io/name=siesta";

pub struct Cluster {
    pub client: Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
}

/// A raw answer through a proxy.
pub struct Answer {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Cluster {
    pub async fn connect(g: &Global) -> anyhow::Result<Cluster> {
        let options = KubeConfigOptions {
            context: g.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match &g.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path)
                    .with_context(|| format!("could not read --kubeconfig {}", path.display()))?;
                Config::from_custom_kubeconfig(kc, &options).await
            }
            None => Config::from_kubeconfig(&options).await,
        }
        .map_err(|e| anyhow!("no usable kubeconfig ({e}); set KUBECONFIG or pass --kubeconfig"))?;
        let namespace = g
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).context("could not build an apiserver client")?;
        Ok(Cluster { client, namespace })
    }

    /// One Function, or an error saying it is not there.
    pub async fn function(&self, ns: &str, name: &str) -> anyhow::Result<Function> {
        let api: Api<Function> = Api::namespaced(self.client.clone(), ns);
        api.get_opt(name)
            .await
            .map_err(|e| anyhow!("could not read Function {ns}/{name}: {e}"))?
            .ok_or_else(|| {
                anyhow!("Function {ns}/{name} not found (kubectl siesta list -A shows them all)")
            })
    }

    /// The replicas the Function's Deployment asks for now (`None` when it
    /// cannot be read: absent, or not allowed to this user).
    pub async fn deployment_replicas(&self, ns: &str, name: &str) -> Option<i32> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        let d = api.get_opt(name).await.ok()??;
        // The apiserver defaults an absent spec.replicas to 1.
        Some(d.spec.and_then(|s| s.replicas).unwrap_or(1))
    }

    /// `METHOD path` on the apiserver, whatever the status.
    pub async fn raw(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> anyhow::Result<Answer> {
        let mut req = http::Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(kube::client::Body::from(body))
            .map_err(|e| anyhow!("could not build the request to {path}: {e}"))?;
        let resp = self
            .client
            .send(req)
            .await
            .map_err(|e| anyhow!("the apiserver did not answer {path}: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| anyhow!("reading the answer of {path}: {e}"))?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// The activator's traffic Service: (namespace, name). Found by the
    /// chart's labels (the one with an `http` port; the `-metrics` one has
    /// only `admin`), in `--siesta-namespace` or anywhere.
    pub async fn activator_service(&self, g: &Global) -> anyhow::Result<(String, String)> {
        let selector = format!("{SIESTA_LABELS},app.kubernetes.io/component=activator");
        let api: Api<Service> = match &g.siesta_namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let list = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| anyhow!("could not list the activator Services ({selector}): {e}"))?;
        let found: Vec<(String, String)> = list
            .items
            .iter()
            .filter(|s| {
                s.spec
                    .as_ref()
                    .and_then(|s| s.ports.as_ref())
                    .is_some_and(|ports| ports.iter().any(|p| p.name.as_deref() == Some("http")))
            })
            .map(|s| {
                (
                    s.metadata.namespace.clone().unwrap_or_default(),
                    s.metadata.name.clone().unwrap_or_default(),
                )
            })
            .collect();
        match found.as_slice() {
            [one] => Ok(one.clone()),
            [] => bail!(
                "no activator Service ({selector}, port http){}: is Siesta installed (helm install siesta charts/siesta)?",
                g.siesta_namespace
                    .as_ref()
                    .map(|n| format!(" in namespace {n}"))
                    .unwrap_or_default()
            ),
            many => bail!(
                "{} activator Services found ({}): pick one with --siesta-namespace",
                many.len(),
                many.iter()
                    .map(|(n, s)| format!("{n}/{s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The leading controller's decision history of `ns/name`. `Ok(None)`
    /// when the leader has none for it (404); an error names what failed.
    pub async fn decisions(
        &self,
        g: &Global,
        ns: &str,
        name: &str,
    ) -> anyhow::Result<Option<DecisionHistory>> {
        let tail = format!("v1/decisions/{ns}/{name}");
        let (status, body, via) = match &g.controller_url {
            Some(url) => {
                let url = format!("{}/{tail}", url.trim_end_matches('/'));
                let (s, b) = plain_get(&url).await?;
                (s, b, url)
            }
            None => {
                let (pod_ns, pod, port) = self.leader(g).await?;
                let path = format!("/api/v1/namespaces/{pod_ns}/pods/{pod}:{port}/proxy/{tail}");
                let a = self.raw(http::Method::GET, &path, &[], Vec::new()).await?;
                (a.status, a.body, format!("controller pod {pod_ns}/{pod}"))
            }
        };
        if status == http::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            if let Some(hint) = proxy_hint(&body, "--controller-url http://POD_IP:9090") {
                bail!("{via} could not be reached: {hint}");
            }
            bail!(
                "{via} answered {status} for the decision history: {}",
                String::from_utf8_lossy(&body).trim()
            );
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| anyhow!("{via} sent a decision history that does not parse: {e}"))
    }

    /// The leading controller: (namespace, pod, admin port), from the
    /// chart's Lease (`holderIdentity` is the pod's name).
    async fn leader(&self, g: &Global) -> anyhow::Result<(String, String, u16)> {
        let selector = format!("{SIESTA_LABELS},app.kubernetes.io/component=controller");
        let api: Api<Lease> = match &g.siesta_namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let leases = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| anyhow!("could not list the controller's Lease ({selector}): {e}"))?;
        let lease = match leases.items.as_slice() {
            [one] => one,
            [] => bail!(
                "no controller Lease ({selector}): is Siesta installed? (or pass --controller-url)"
            ),
            _ => bail!(
                "several Siesta installs (controller Leases) found: pick one with --siesta-namespace"
            ),
        };
        let ns = lease.metadata.namespace.clone().unwrap_or_default();
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                anyhow!("the controller Lease in {ns} has no holder: no controller leads right now")
            })?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let pod = pods
            .get_opt(&holder)
            .await
            .map_err(|e| anyhow!("could not read the leader pod {ns}/{holder}: {e}"))?
            .ok_or_else(|| {
                anyhow!("the Lease names {holder} as leader, but there is no such pod in {ns}")
            })?;
        let port = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some("admin"))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .unwrap_or(9090);
        Ok((ns, holder, port))
    }
}

/// A GET over plain HTTP (for `--controller-url`).
async fn plain_get(url: &str) -> anyhow::Result<(http::StatusCode, Bytes)> {
    let a = plain_request(
        http::Method::GET,
        url,
        &[],
        Vec::new(),
        std::time::Duration::from_secs(10),
    )
    .await?;
    Ok((a.status, a.body))
}

/// One request over plain HTTP (for `--controller-url`, `--activator-url`).
pub async fn plain_request(
    method: http::Method,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
    timeout: std::time::Duration,
) -> anyhow::Result<Answer> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| anyhow!("{url:?} is not a URL: {e}"))?;
    let mut req = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| anyhow!("could not build the request to {url}: {e}"))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let resp = tokio::time::timeout(timeout, client.request(req))
        .await
        .map_err(|_| anyhow!("{url} did not answer in {} s", timeout.as_secs()))?
        .map_err(|e| anyhow!("could not reach {url}: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| anyhow!("reading {url}: {e}"))?
        .to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// A hint for the apiserver's refusals that mean "this cluster's pod IPs
/// cannot be proxied" (loopback pod IPs, as on the local dev cluster).
pub fn proxy_hint(body: &[u8], flag: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    (text.contains("address not allowed") || text.contains("no endpoints available")).then(|| {
        format!(
            "the apiserver cannot proxy to this pod ({}); on a cluster whose pod IPs are loopback addresses (the local dev cluster) pass {flag}",
            if text.contains("address not allowed") { "address not allowed" } else { "no endpoints available" }
        )
    })
}
