//! Helpers for cluster tests. The tests run against the local control plane
//! (`make cluster-up`, `KUBECONFIG` exported) and, where pods must run, the
//! node agent (`make node-up`); `make test` sets both up.
//!
//! Two modules serve every test tier, cluster or loopback: [`backend`], the
//! hyper server that stands in for a pod or an apiserver, and
//! [`metrics_text`], which reads samples out of a `/metrics` page.

pub mod backend;
pub mod metrics_text;
pub mod stack;

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The cluster-test marker text, so `cargo test` without a cluster skips them.
pub const NEEDS_CLUSTER: &str = "needs the local cluster: make test";

/// A client from `KUBECONFIG`, with a message that says what to do if absent.
pub async fn client() -> Client {
    match Client::try_default().await {
        Ok(client) => client,
        Err(e) => panic!("no cluster ({e}): run `make cluster-up node-up` and export KUBECONFIG"),
    }
}

/// A namespace of its own for one test, deleted when dropped.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    pub async fn create(client: &Client, prefix: &str) -> Self {
        let name = format!("{prefix}-{}", unique_suffix());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"siesta.dev/test": "true"}},
        }))
        .expect("namespace literal");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        Self { name }
    }
}

impl Drop for TestNamespace {
    /// Deletes the namespace (and so everything in it) even when the test
    /// panicked: on a thread of its own, because the test's runtime may be
    /// shutting down. Set SIESTA_KEEP_NAMESPACES=1 to keep it for debugging.
    fn drop(&mut self) {
        if std::env::var_os("SIESTA_KEEP_NAMESPACES").is_some() {
            eprintln!("keeping namespace {}", self.name);
            return;
        }
        let name = self.name.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async move {
                    // A client of this runtime: the test's client is driven by
                    // the test's runtime, which is blocked on this thread.
                    let Ok(client) = Client::try_default().await else {
                        return;
                    };
                    let api = Api::<Namespace>::all(client);
                    if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
                        eprintln!("could not delete test namespace {name}: {e}");
                    }
                });
            }
        });
        let _ = cleanup.join();
    }
}

/// Waits until the token controller has given ServiceAccount `name` its
/// token Secret. Until then the apiserver refuses pods that run under it
/// ("No API token found for service account"), which a Deployment retries
/// but a Pod created directly by a test does not.
pub async fn wait_for_service_account_token(client: &Client, namespace: &str, name: &str) {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    wait_for(
        &format!("a token for ServiceAccount {namespace}/{name}"),
        Duration::from_secs(30),
        || async {
            let account = accounts.get(name).await.ok()?;
            account
                .secrets
                .is_some_and(|secrets| !secrets.is_empty())
                .then_some(())
        },
    )
    .await;
}

/// Installs (server-side apply) the Function CRD generated from the types and
/// waits until the apiserver serves it.
pub async fn ensure_function_crd(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    use kube::api::{Patch, PatchParams};
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = siesta_api::Function::crd();
    let name = crd.metadata.name.clone().unwrap_or_default();
    crds.patch(
        &name,
        &PatchParams::apply("siesta-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap_or_else(|e| panic!("applying the Function CRD: {e}"));
    wait_for(
        "the Function CRD to be Established",
        Duration::from_secs(30),
        || async {
            let crd = crds.get(&name).await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        },
    )
    .await;
}

/// A short random-enough suffix for names (time and pid based).
pub fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", std::process::id() % 4096, nanos % 1_000_000)
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `check` until it returns `Ok`, or panics after `timeout` with
/// `what` and the last `Err` it gave, which describes the state seen, so a
/// failure in CI says what was there instead of only what was not.
pub async fn wait_for_state<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A minimal HTTP/1.1 GET over loopback: (status, body). Plain sockets, so
/// the test does not share code with what it tests.
pub async fn http_get(addr: &str, path: &str, host: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(head, body)| {
            if head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked")
            {
                dechunk(body)
            } else {
                body.to_string()
            }
        })
        .unwrap_or_default();
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn dechunks_chunked_bodies() {
        assert_eq!(super::dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}
