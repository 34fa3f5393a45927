//! `kubectl siesta` against the local cluster (`make cluster-up node-up`,
//! KUBECONFIG exported): the chart installed in a namespace of its own
//! (its controller watching only that namespace), a Function at zero, then
//! the real `kubectl-siesta` binary, alone and as `kubectl siesta`.
//!
//! The local cluster's pods have loopback IPs, which the apiserver neither
//! proxies to (pods/proxy: "address not allowed") nor puts in Endpoints
//! (services/proxy: "no endpoints available"), and its node agent serves no
//! kubelet API (pods/log). So `invoke` and `explain` are given the pods'
//! addresses (`--activator-url`, `--controller-url`), and `logs` is not run
//! here; the apiserver paths are unit-tested for their shape.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use siesta_api::Function;
use siesta_testkit::{TestNamespace, client, unique_suffix, wait_for};

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-siesta");

/// The plugin's directory first (so kubectl finds `kubectl-siesta`), then
/// the cluster tools (kubectl, helm).
fn tools_path() -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    let bin_dir = std::path::Path::new(PLUGIN)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    format!(
        "{bin_dir}:{home}/.cache/siesta/tools/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Runs `program args`: (success, stdout, stderr).
fn run(program: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(program)
        .args(args)
        .env("PATH", tools_path())
        .output()
        .unwrap_or_else(|e| panic!("could not run {program}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the plugin; panics with its output unless it succeeded.
fn plugin(args: &[&str]) -> String {
    let (ok, out, err) = run(PLUGIN, args);
    assert!(ok, "kubectl-siesta {args:?} failed:\n{out}\n{err}");
    out
}

/// Uninstalls the release when dropped (its ClusterRoles outlive the namespace).
struct Release {
    name: String,
    namespace: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let (ok, _, err) = run(
            "helm",
            &[
                "uninstall",
                &self.name,
                "--namespace",
                &self.namespace,
                "--wait",
            ],
        );
        if !ok {
            eprintln!("helm uninstall {} failed: {err}", self.name);
        }
    }
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `http://POD_IP:PORT` of the Ready pod of `component`, port by name.
async fn pod_url(client: &Client, ns: &str, release: &str, component: &str, port: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector =
        format!("app.kubernetes.io/instance={release},app.kubernetes.io/component={component}");
    wait_for(
        &format!("the {component} pod to be Ready"),
        Duration::from_secs(120),
        || {
            let pods = pods.clone();
            let selector = selector.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .ok()?;
                let pod = list.items.into_iter().find(is_ready)?;
                let ip = pod.status.as_ref()?.pod_ip.clone()?;
                let number = pod
                    .spec
                    .as_ref()?
                    .containers
                    .iter()
                    .flat_map(|c| c.ports.iter().flatten())
                    .find(|p| p.name.as_deref() == Some(port))?
                    .container_port;
                Some(format!("http://{ip}:{number}"))
            }
        },
    )
    .await
}

/// The cell of `column` in the row of `name` of a `kubectl get`-style table.
fn cell(table: &str, name: &str, column: &str) -> String {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let start = header
        .find(column)
        .unwrap_or_else(|| panic!("no {column} in:\n{table}"));
    let row = lines
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in:\n{table}"));
    row[start..]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn kubectl_siesta_lists_explains_and_invokes_a_function_from_zero() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "plugin").await;
    let release = format!("plugin-{}", unique_suffix());
    let crd_present = Api::<CustomResourceDefinition>::all(client.clone())
        .get_opt("functions.siesta.dev")
        .await
        .unwrap_or_else(|e| panic!("reading CRD functions.siesta.dev: {e}"))
        .is_some();
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/siesta");
    let watch = format!("controller.watchNamespace={}", ns.name);
    let mut args = vec![
        "install",
        &release,
        chart,
        "--namespace",
        &ns.name,
        "--set",
        "activator.replicas=1",
        "--set",
        "controller.replicas=1",
        "--set",
        "image.repository=siesta.dev/siesta",
        "--set",
        "image.tag=latest",
        "--set",
        "listenOnPodIP=true",
        "--set",
        &watch,
    ];
    // The CRD is cluster-wide and other tests install it too.
    if crd_present {
        args.push("--skip-crds");
    }
    let (ok, out, err) = run("helm", &args);
    assert!(ok, "helm install failed:\n{out}\n{err}");
    let _release = Release {
        name: release.clone(),
        namespace: ns.name.clone(),
    };
    if !crd_present {
        siesta_testkit::ensure_function_crd(&client).await;
    }
    let activator = pod_url(&client, &ns.name, &release, "activator", "http").await;
    let controller = pod_url(&client, &ns.name, &release, "controller", "admin").await;

    let functions: Api<Function> = Api::namespaced(client.clone(), &ns.name);
    let f: Function = serde_json::from_value(serde_json::json!({
        "apiVersion": "siesta.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": "hello"},
        "spec": {
            "image": "siesta.dev/examples/hello:latest",
            "scale": {"stableWindowSeconds": 6, "scaleToZeroAfterSeconds": 600},
        },
    }))
    .expect("function literal");
    functions
        .create(&PostParams::default(), &f)
        .await
        .unwrap_or_else(|e| panic!("creating Function hello: {e}"));
    wait_for(
        "hello to be decided at zero",
        Duration::from_secs(60),
        || {
            let functions = functions.clone();
            async move {
                let s = functions.get("hello").await.ok()?.status?;
                (s.autoscaler.is_some() && s.desired_replicas == 0 && s.ready_replicas == 0)
                    .then_some(())
            }
        },
    )
    .await;

    // invoke: cold, 200 from the pod.
    let out = plugin(&[
        "-n",
        &ns.name,
        "invoke",
        "hello",
        "--activator-url",
        &activator,
    ]);
    assert!(out.starts_with("HTTP 200 OK\n"), "{out}");
    assert!(out.contains("hello from hello-"), "the pod's answer: {out}");
    assert!(out.contains("(cold: the function was at zero)"), "{out}");
    // The activator reports the cold start after the response.
    wait_for(
        "the cold start on the status",
        Duration::from_secs(30),
        || {
            let functions = functions.clone();
            async move {
                let s = functions.get("hello").await.ok()?.status?;
                (s.recent_cold_starts.len() == 1
                    && s.last_cold_start.is_some()
                    && s.ready_replicas == 1
                    && s.desired_replicas == 1)
                    .then_some(())
            }
        },
    )
    .await;

    // Again, with the pod Ready on the status: warm.
    let out = plugin(&[
        "-n",
        &ns.name,
        "invoke",
        "hello",
        "--activator-url",
        &activator,
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["status"], 200, "{out}");
    assert_eq!(v["cold"], false, "{out}");

    // What scaling to zero saved: the chart's controller, under the chart's
    // RBAC, records the running pod in status.usage.
    wait_for(
        "status.usage to record the running pod",
        Duration::from_secs(30),
        || {
            let functions = functions.clone();
            async move {
                let usage = functions.get("hello").await.ok()?.status?.usage?;
                usage.pods.iter().any(|p| p.end.is_none()).then_some(())
            }
        },
    )
    .await;

    // list, through kubectl: it finds the plugin on PATH.
    let (ok, table, err) = run("kubectl", &["siesta", "list", "-n", &ns.name]);
    assert!(ok, "kubectl siesta list failed: {table}\n{err}");
    assert_eq!(cell(&table, "hello", "COLD-1H"), "1", "{table}");
    assert_eq!(cell(&table, "hello", "READY"), "1/1", "{table}");
    assert!(
        cell(&table, "hello", "MEDIAN-COLD").ends_with('s'),
        "{table}"
    );
    assert!(cell(&table, "hello", "SAVED").ends_with('%'), "{table}");
    let (ok, all, _) = run("kubectl", &["siesta", "list", "-A"]);
    assert!(ok && all.starts_with("NAMESPACE "), "{all}");
    let json = plugin(&["list", "-n", &ns.name, "-o", "json"]);
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(v["items"][0]["name"], "hello", "{json}");
    assert_eq!(v["items"][0]["coldStartsLastHour"], 1, "{json}");

    // explain: the leader's decisions, Ready and why, the cold start.
    let text = plugin(&[
        "-n",
        &ns.name,
        "explain",
        "hello",
        "--controller-url",
        &controller,
    ]);
    assert!(
        text.starts_with("hello has 1 replica (1 ready) because "),
        "{text}"
    );
    assert!(
        text.contains("averaged over the 6s stable window"),
        "{text}"
    );
    // The wake itself is the activation's scale write; the autoscaler's
    // first decision after it keeps the one pod.
    assert!(text.contains("decisions (oldest first"), "{text}");
    assert!(text.contains(" 1 → 1 ("), "a decision at 1: {text}");
    assert!(text.contains("It is Ready (PodsReady)"), "{text}");
    assert!(
        text.contains("from when the request arrived until the controller's scale write returned;"),
        "{text}"
    );
    assert!(text.contains("The slowest phase was "), "{text}");
    assert!(
        text.contains("What scaling to zero saved over the last 24h"),
        "{text}"
    );
    let yaml = plugin(&[
        "-n",
        &ns.name,
        "explain",
        "hello",
        "--controller-url",
        &controller,
        "-o",
        "yaml",
    ]);
    let v: serde_yaml::Value =
        serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{e}: {yaml}"));
    assert!(
        v["decisions"].as_sequence().is_some_and(|d| !d.is_empty()),
        "{yaml}"
    );
    assert!(v["lastColdStart"]["total"].as_str().is_some(), "{yaml}");

    // Errors: one line, non-zero exit.
    let (ok, _, err) = run(PLUGIN, &["-n", &ns.name, "explain", "nope"]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("Function") && err.contains("nope") && err.contains("not found"),
        "{err}"
    );
}
