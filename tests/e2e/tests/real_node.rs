//! Siesta as its users run it: the image built from the Dockerfile, under the
//! Helm chart's defaults, on a real kubelet + containerd node, with traffic
//! through the activator's Service. The same code drives kind
//! (`make kind-e2e`): nothing here knows which cluster it talks to.
//!
//! Run by `make test` against the real node (`make real-up`), or by hand:
//!
//! ```sh
//! KUBECONFIG=.cluster-real/control-plane/kubeconfig \
//!   cargo test -p siesta-e2e --test real_node -- --include-ignored --nocapture
//! ```
//!
//! Environment: `SIESTA_E2E_ACCESS` = `clusterip` (default: the host reaches
//! ClusterIPs, as on the real node here) or `nodeport` (kind: the activator
//! Service becomes a NodePort on the node's InternalIP).
//!
//! The steps share one install, so they run in order, in one test:
//! the README's quickstart exactly as written, `helm upgrade --wait` with
//! the chart's defaults (2 controllers, 2 activators, leader election), a
//! Function woken from zero through the Service, warm traffic, scale out
//! and back to zero, `kubectl rollout restart` of the activators under
//! load, deleting the leader controller under load, a Function whose name
//! collides with a foreign Deployment, and `helm uninstall`.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};
use siesta_api::Function;
use siesta_e2e::load::Load;
use siesta_e2e::{repo_root, run, tool};
use siesta_testkit::{TestNamespace, client, http_get, wait_for_state};

const RELEASE: &str = "siesta";
const SYSTEM_NS: &str = "siesta-system";
const ACTIVATOR: &str = "siesta-activator";
const CONTROLLER: &str = "siesta-controller";
const HELLO_IMAGE: &str = "siesta.dev/examples/hello:0.1.0";

#[tokio::test]
#[ignore = "needs a real node: make real-up (make test runs it)"]
async fn real_node_chart_e2e() {
    let client = client().await;
    let _uninstall = Uninstall;

    step("the README's quickstart, exactly as written");
    readme_quickstart();

    step("helm upgrade --wait with the chart's defaults");
    upgrade_with_defaults(&client).await;
    let addr = activator_address(&client).await;
    println!("    activator Service at {addr}");

    let ns = TestNamespace::create(&client, "e2e-real").await;
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        serve_from_zero(&client, &ns.name, &addr).await;
        rollout_restart_under_load(&client, &ns.name, &addr).await;
        leader_failover_under_load(&client, &ns.name, &addr).await;
        foreign_deployment_is_left_alone(&client, &ns.name, &addr).await;
    }))
    .await;
    if let Err(panic) = outcome {
        dump(&ns.name);
        std::panic::resume_unwind(panic);
    }
    drop(ns);

    step("helm uninstall leaves nothing behind");
    uninstall_cleanly(&client).await;
}

fn step(what: &str) {
    println!("\n==> {what}");
}

/// The README's "Install on a real cluster" block, run by bash as a user
/// would paste it (from the repository root, kubectl and helm on PATH).
fn readme_quickstart() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let block = readme
        .split("## Install on a real cluster")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("README.md has a ```sh block under \"## Install on a real cluster\"");
    // The block leaves `kubectl port-forward` in the background: it is
    // stopped when the script ends.
    let script = format!("set -e\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n{block}");
    let tools = tool("kubectl").parent().map(|p| p.display().to_string());
    let path = match (tools, std::env::var("PATH")) {
        (Some(t), Ok(p)) => format!("{t}:{p}"),
        (_, Ok(p)) => p,
        (Some(t), Err(_)) => t,
        (None, Err(_)) => String::new(),
    };
    let out = std::process::Command::new("timeout")
        .args(["180", "bash", "-c", &script])
        .current_dir(repo_root())
        .env("PATH", path)
        .output()
        .expect("running bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the README's quickstart failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let answers = stdout.matches("hello from ").count();
    assert_eq!(
        answers, 2,
        "both curls of the quickstart (by Host, by path) are answered by hello:\n{stdout}\n{stderr}"
    );
}

async fn upgrade_with_defaults(client: &Client) {
    let chart = repo_root().join("charts/siesta").display().to_string();
    let mut args = vec![
        "upgrade",
        RELEASE,
        &chart,
        "--namespace",
        SYSTEM_NS,
        "--wait",
        "--timeout",
        "180s",
    ];
    if access() == Access::NodePort {
        args.extend(["--set", "activator.service.type=NodePort"]);
    }
    let began = Instant::now();
    run("helm", &args, None).ok();
    println!(
        "    helm upgrade --wait: {:.1} s",
        began.elapsed().as_secs_f64()
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), SYSTEM_NS);
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/instance=siesta"))
        .await
        .expect("listing Siesta's pods");
    let ready = |component: &str| {
        list.items
            .iter()
            .filter(|p| {
                p.labels()
                    .get("app.kubernetes.io/component")
                    .map(String::as_str)
                    == Some(component)
                    && is_ready(p)
                    && p.metadata.deletion_timestamp.is_none()
            })
            .count()
    };
    assert_eq!(
        ready("controller"),
        2,
        "2 controllers Ready (chart default)"
    );
    assert_eq!(ready("activator"), 2, "2 activators Ready (chart default)");
    // Pods of an earlier release may still be terminating (the kubelet is slow to report them gone).
    for pod in list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        assert_runs_hardened(pod);
    }
    let holder = leader(client).await;
    println!("    leader: {holder}");
}

/// The chart's securityContext, as the kubelet ran it: uid 65532, read-only
/// root, no capabilities, and the container actually running.
fn assert_runs_hardened(pod: &Pod) {
    let spec = pod.spec.as_ref().expect("pod spec");
    for c in &spec.containers {
        let sc = c
            .security_context
            .as_ref()
            .expect("container securityContext");
        assert_eq!(sc.run_as_user, Some(65532), "{}: uid 65532", pod.name_any());
        assert_eq!(
            sc.read_only_root_filesystem,
            Some(true),
            "{}: read-only root",
            pod.name_any()
        );
        let drop = sc
            .capabilities
            .as_ref()
            .and_then(|c| c.drop.clone())
            .unwrap_or_default();
        assert_eq!(
            drop,
            ["ALL"],
            "{}: all capabilities dropped",
            pod.name_any()
        );
    }
    let running = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        });
    assert!(running, "{}: every container running", pod.name_any());
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    ClusterIp,
    NodePort,
}

fn access() -> Access {
    match std::env::var("SIESTA_E2E_ACCESS").as_deref() {
        Ok("nodeport") => Access::NodePort,
        Ok("clusterip") | Err(_) => Access::ClusterIp,
        Ok(other) => panic!("SIESTA_E2E_ACCESS={other}: use clusterip or nodeport"),
    }
}

/// host:port of the activator Service, as this cluster lets the host reach it.
async fn activator_address(client: &Client) -> String {
    let services: Api<Service> = Api::namespaced(client.clone(), SYSTEM_NS);
    let svc = services
        .get(ACTIVATOR)
        .await
        .expect("the activator Service");
    let spec = svc.spec.expect("Service spec");
    let port = spec
        .ports
        .as_ref()
        .and_then(|p| p.first())
        .expect("a Service port");
    match access() {
        Access::ClusterIp => format!("{}:{}", spec.cluster_ip.expect("a ClusterIP"), port.port),
        Access::NodePort => {
            let nodes: Api<Node> = Api::all(client.clone());
            let node = nodes
                .list(&ListParams::default())
                .await
                .expect("nodes")
                .items;
            let ip = node
                .iter()
                .flat_map(|n| n.status.iter().flat_map(|s| s.addresses.iter().flatten()))
                .find(|a| a.type_ == "InternalIP")
                .map(|a| a.address.clone())
                .expect("a node InternalIP");
            format!("{ip}:{}", port.node_port.expect("a nodePort"))
        }
    }
}

/// A Function at zero, woken through the Service, warm traffic, scale out
/// under load, and back to zero.
async fn serve_from_zero(client: &Client, ns: &str, addr: &str) {
    step("a Function at zero woken through the activator Service");
    apply_function(
        ns,
        "hello",
        "minReplicas: 0, maxReplicas: 4, metric: concurrency, target: 2, stableWindowSeconds: 10, scaleToZeroAfterSeconds: 10",
        4,
    );
    wait_function_ready(client, ns, "hello").await;
    assert_eq!(
        spec_replicas(client, ns, "hello").await,
        0,
        "hello starts at zero"
    );
    let host = format!("hello.{ns}.siesta.local");
    let began = Instant::now();
    let (status, body) = http_get(addr, "/", &host).await.expect("cold request");
    let cold = began.elapsed();
    assert_eq!(status, 200, "cold request answered: {body}");
    println!(
        "    cold request: {status} in {:.0} ms",
        cold.as_secs_f64() * 1e3
    );
    // The activator's record of it, written by the controller.
    let functions: Api<Function> = Api::namespaced(client.clone(), ns);
    let record = siesta_testkit::wait_for(
        "status.lastColdStart written",
        Duration::from_secs(30),
        || async { functions.get("hello").await.ok()?.status?.last_cold_start },
    )
    .await;
    let phases: Vec<String> = record
        .phases()
        .iter()
        .map(|(p, d)| format!("{} {d}", p.name()))
        .collect();
    println!(
        "    recorded: total {} = {}; slowest {}",
        record.total,
        phases.join(" + "),
        record.slowest
    );
    let parse = |s: &str| siesta_api::cold_start::parse_duration(s).expect(s);
    let total = parse(&record.total);
    let sum: Duration = record.phases().iter().map(|(_, d)| parse(d)).sum();
    assert_eq!(sum, total, "the phases add up to the total");
    assert!(
        total <= cold + Duration::from_millis(1),
        "the record ({total:?}) is within what the client waited ({cold:?})"
    );

    step("warm traffic");
    let mut warm = Vec::new();
    for _ in 0..200 {
        let began = Instant::now();
        let (status, body) = http_get(addr, "/", &host).await.expect("warm request");
        assert_eq!(status, 200, "warm request answered: {body}");
        warm.push(began.elapsed());
    }
    warm.sort();
    println!(
        "    200 warm requests, new connection each: median {:.2} ms, p90 {:.2} ms",
        warm[100].as_secs_f64() * 1e3,
        warm[180].as_secs_f64() * 1e3
    );

    step("kubectl siesta through the real apiserver and kubelet");
    // invoke: the apiserver's service proxy to the activator; explain: the
    // pod proxy to the leading controller; logs: the kubelet.
    let out = run(
        "kubectl",
        &["siesta", "invoke", "hello", "-n", ns, "/"],
        None,
    )
    .ok();
    println!(
        "    kubectl siesta invoke hello: {}",
        out.lines().last().unwrap_or("")
    );
    assert!(out.contains("200") && out.contains("(warm)"), "{out}");
    // The leader decides every --autoscale-interval (2 s) once it leads; a
    // leader elected during the helm upgrade may not have decided for the
    // Function yet ("has not decided"). Its first decision is waited for:
    // this step flaked without the wait.
    let explain = || run("kubectl", &["siesta", "explain", "hello", "-n", ns], None).ok();
    let mut out = explain();
    let asked = Instant::now();
    while out.contains("has not decided") && asked.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        out = explain();
    }
    println!(
        "    kubectl siesta explain hello: decision history after {:.1} s",
        asked.elapsed().as_secs_f64()
    );
    assert!(out.contains("hello has 1 replica"), "{out}");
    assert!(
        out.contains("slowest"),
        "the last cold start is explained: {out}"
    );
    assert!(
        !out.contains("not reachable") && !out.contains("has not decided"),
        "the leader's decision history was read: {out}"
    );
    let out = run(
        "kubectl",
        &["siesta", "logs", "hello", "-n", ns, "--tail", "3"],
        None,
    )
    .ok();
    assert!(out.lines().any(|l| l.starts_with("[hello-")), "{out}");
    let out = run("kubectl", &["siesta", "list", "-n", ns, "-o", "json"], None).ok();
    let list: serde_json::Value = serde_json::from_str(&out).expect("list -o json");
    assert!(
        list["items"].as_array().is_some_and(|i| !i.is_empty()),
        "{out}"
    );

    step("scale out under load, then back to zero");
    let load = Load::start(addr, &host, "/delay?ms=300", 12);
    let began = Instant::now();
    let replicas = wait_ready_replicas(client, ns, "hello", 3).await;
    println!(
        "    {replicas} pods Ready {:.1} s after the load began",
        began.elapsed().as_secs_f64()
    );
    let counts = load.stop().await;
    println!("    under load: {}", counts.summary());
    assert_eq!(
        counts.failed, 0,
        "no request fails while scaling out: {:?}",
        counts.failures
    );
    let stopped = Instant::now();
    wait_settled(client, ns, "hello", 0, Duration::from_secs(120)).await;
    println!(
        "    at zero {:.1} s after the load stopped",
        stopped.elapsed().as_secs_f64()
    );
}

/// `kubectl rollout restart` of the activators while clients keep sending:
/// the old pods keep serving through the shutdown delay (Service endpoints
/// catch up), drain, and no request fails.
async fn rollout_restart_under_load(client: &Client, ns: &str, addr: &str) {
    step("kubectl rollout restart of the activators under steady load");
    apply_function(
        ns,
        "steady",
        "minReplicas: 1, maxReplicas: 4, metric: concurrency, target: 2.5, stableWindowSeconds: 60, scaleToZeroAfterSeconds: 30",
        0,
    );
    wait_function_ready(client, ns, "steady").await;
    wait_ready_replicas(client, ns, "steady", 1).await;
    let host = format!("steady.{ns}.siesta.local");
    let load = Load::start(addr, &host, "/", 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let began = Instant::now();
    run(
        "kubectl",
        &[
            "-n",
            SYSTEM_NS,
            "rollout",
            "restart",
            &format!("deploy/{ACTIVATOR}"),
        ],
        None,
    )
    .ok();
    run(
        "kubectl",
        &[
            "-n",
            SYSTEM_NS,
            "rollout",
            "status",
            &format!("deploy/{ACTIVATOR}"),
            "--timeout=180s",
        ],
        None,
    )
    .ok();
    println!(
        "    rollout finished in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    // Old pods still drain after the rollout says done; keep sending past it.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let counts = load.stop().await;
    println!("    during the rollout: {}", counts.summary());
    assert!(counts.ok > 100, "the load really ran: {}", counts.summary());
    assert_eq!(
        counts.failed, 0,
        "no request fails during a rollout restart: {:?}",
        counts.failures
    );
}

/// The leader controller's pod is deleted under load: a standby takes the
/// Lease, and the replica count never drops on lost history.
async fn leader_failover_under_load(client: &Client, ns: &str, addr: &str) {
    step("deleting the leader controller under load");
    let host = format!("steady.{ns}.siesta.local");
    // 6 clients of 300 ms requests, target 2.5 in flight per pod: 3 pods
    // (any measured concurrency in (5, 7.5] gives 3).
    let load = Load::start(addr, &host, "/delay?ms=300", 6);
    let before = 3;
    wait_settled(client, ns, "steady", before, Duration::from_secs(120)).await;
    let old = leader(client).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), SYSTEM_NS);
    // The identity is the pod's name (HOSTNAME), or that and "-PID".
    let pod = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=controller"))
        .await
        .expect("listing controller pods")
        .items
        .into_iter()
        .map(|p| p.name_any())
        .find(|name| old == *name || old.starts_with(&format!("{name}-")))
        .unwrap_or_else(|| panic!("no controller pod holds the Lease (holder {old})"));
    let began = Instant::now();
    pods.delete(&pod, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("deleting leader pod {pod}: {e}"));
    let mut lowest = before;
    let new = loop {
        lowest = lowest.min(spec_replicas(client, ns, "steady").await);
        let holder = leader(client).await;
        if holder != old && !holder.is_empty() {
            break holder;
        }
        assert!(
            began.elapsed() < Duration::from_secs(90),
            "no new leader 90 s after deleting {pod}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let failover = began.elapsed();
    // The new leader has no history: it must not scale down for a window.
    let watch_until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < watch_until {
        lowest = lowest.min(spec_replicas(client, ns, "steady").await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let counts = load.stop().await;
    println!(
        "    leader {old} -> {new} in {:.1} s; replicas {before} before, lowest {lowest} after",
        failover.as_secs_f64()
    );
    println!("    during the failover: {}", counts.summary());
    assert!(
        lowest >= before,
        "no scale-down on lost history: {before} -> {lowest}"
    );
    assert_eq!(
        counts.failed, 0,
        "no request fails during a failover: {:?}",
        counts.failures
    );
}

/// A Function named like a Deployment that Siesta does not own: reported as
/// a conflict, and a request never scales that Deployment.
async fn foreign_deployment_is_left_alone(client: &Client, ns: &str, addr: &str) {
    step("a Function whose name collides with a foreign Deployment");
    run(
        "kubectl",
        &[
            "-n",
            ns,
            "create",
            "deployment",
            "conflict",
            "--image",
            HELLO_IMAGE,
            "--replicas=0",
        ],
        None,
    )
    .ok();
    apply_function(ns, "conflict", "minReplicas: 0, maxReplicas: 2", 0);
    wait_ready_condition(client, ns, "conflict", "False", Some("DeploymentConflict")).await;
    let (status, body) = http_get(addr, "/", &format!("conflict.{ns}.siesta.local"))
        .await
        .expect("request for conflict");
    println!("    request for it: {status} {}", body.trim());
    // Refused at once with the reason, not parked until the queue timeout.
    assert_eq!(status, 503, "a refused wake-up is answered 503: {body}");
    assert!(
        body.contains("is not controlled by Function"),
        "the answer says why: {body}"
    );
    // Long enough for the activator's retries and two autoscaler ticks.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        spec_replicas(client, ns, "conflict").await,
        0,
        "the foreign Deployment stays at 0"
    );
}

async fn uninstall_cleanly(client: &Client) {
    let functions: Api<Function> = Api::namespaced(client.clone(), "default");
    let _ = functions.delete("hello", &DeleteParams::default()).await;
    run(
        "helm",
        &[
            "uninstall",
            RELEASE,
            "--namespace",
            SYSTEM_NS,
            "--wait",
            "--timeout",
            "120s",
        ],
        None,
    )
    .ok();
    let selector = format!("app.kubernetes.io/instance={RELEASE}");
    // Namespaced kinds in the release namespace, and the cluster-scoped RBAC.
    let kinds = "deploy,rs,svc,sa,role,rolebinding,lease,pdb,configmap,secret,clusterrole,clusterrolebinding";
    // A Deployment's ReplicaSets are the garbage collector's to delete,
    // after it (helm deletes in the background): `--wait` does not wait for
    // them. Anything else of the release left after a minute is a leak.
    wait_for_state(
        "helm uninstall to leave nothing behind",
        Duration::from_secs(60),
        || async {
            let left = run(
                "kubectl",
                &["get", kinds, "-n", SYSTEM_NS, "-l", &selector, "-o", "name"],
                None,
            )
            .ok();
            if left.trim().is_empty() {
                Ok(())
            } else {
                Err(format!("left:\n{left}"))
            }
        },
    )
    .await;
    // Pods of the release go too (the kubelet is slow to report them gone).
    let pods: Api<Pod> = Api::namespaced(client.clone(), SYSTEM_NS);
    wait_for_state(
        "Siesta's pods to be gone",
        Duration::from_secs(120),
        || async {
            let n = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            if n == 0 {
                Ok(())
            } else {
                Err(format!("{n} pods"))
            }
        },
    )
    .await;
    println!("    nothing of release {RELEASE} is left (the CRD stays, as Helm keeps CRDs)");
}

/// Uninstalls the release if the test ends early.
struct Uninstall;

impl Drop for Uninstall {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = run(
                "kubectl",
                &[
                    "delete",
                    "function",
                    "hello",
                    "-n",
                    "default",
                    "--ignore-not-found",
                ],
                None,
            );
            let _ = run(
                "helm",
                &["uninstall", RELEASE, "--namespace", SYSTEM_NS],
                None,
            );
        }
    }
}

fn apply_function(ns: &str, name: &str, scale: &str, container_concurrency: i64) {
    let manifest = format!(
        "apiVersion: siesta.dev/v1alpha1\nkind: Function\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  image: {HELLO_IMAGE}\n  port: 8080\n  containerConcurrency: {container_concurrency}\n  scale: {{{scale}}}\n"
    );
    run("kubectl", &["apply", "-f", "-"], Some(&manifest)).ok();
}

async fn wait_function_ready(client: &Client, ns: &str, name: &str) {
    wait_ready_condition(client, ns, name, "True", None).await;
}

/// Waits until the Function's Ready condition has `status` (and `reason`).
async fn wait_ready_condition(
    client: &Client,
    ns: &str,
    name: &str,
    status: &str,
    reason: Option<&str>,
) {
    let functions: Api<Function> = Api::namespaced(client.clone(), ns);
    let what = format!(
        "Function {ns}/{name} Ready={status} {}",
        reason.unwrap_or("")
    );
    wait_for_state(&what, Duration::from_secs(60), || async {
        let f = functions.get(name).await.map_err(|e| e.to_string())?;
        let ready = f
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned());
        match ready {
            Some(c) if c.status == status && reason.is_none_or(|r| c.reason == r) => Ok(()),
            other => Err(format!("Ready condition {other:?}")),
        }
    })
    .await;
}

/// Waits for at least `n` Ready pods; returns how many there are.
async fn wait_ready_replicas(client: &Client, ns: &str, name: &str, n: i32) -> i32 {
    wait_for_state(
        &format!("{ns}/{name} to have {n} Ready pods"),
        Duration::from_secs(90),
        || async {
            let ready = ready_replicas(client, ns, name).await;
            if ready >= n {
                Ok(ready)
            } else {
                Err(format!("{ready} Ready"))
            }
        },
    )
    .await
}

/// Waits until the Deployment asks for exactly `n` replicas and has `n` Ready.
async fn wait_settled(client: &Client, ns: &str, name: &str, n: i32, timeout: Duration) {
    wait_for_state(
        &format!("{ns}/{name} to settle at {n} Ready pods"),
        timeout,
        || async {
            let spec = spec_replicas(client, ns, name).await;
            let ready = ready_replicas(client, ns, name).await;
            if spec == n && ready == n {
                Ok(())
            } else {
                Err(format!("spec {spec}, ready {ready}"))
            }
        },
    )
    .await;
}

async fn deployment(client: &Client, ns: &str, name: &str) -> Option<Deployment> {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()
}

async fn spec_replicas(client: &Client, ns: &str, name: &str) -> i32 {
    deployment(client, ns, name)
        .await
        .and_then(|d| d.spec.and_then(|s| s.replicas))
        .unwrap_or(-1)
}

async fn ready_replicas(client: &Client, ns: &str, name: &str) -> i32 {
    deployment(client, ns, name)
        .await
        .and_then(|d| d.status.and_then(|s| s.ready_replicas))
        .unwrap_or(0)
}

/// The controller Lease's holder identity (`POD-PID`).
async fn leader(client: &Client) -> String {
    let leases: Api<Lease> = Api::namespaced(client.clone(), SYSTEM_NS);
    wait_for_state(
        "the controller Lease to have a holder",
        Duration::from_secs(60),
        || async {
            let lease = leases.get(CONTROLLER).await.map_err(|e| e.to_string())?;
            lease
                .spec
                .and_then(|s| s.holder_identity)
                .filter(|h| !h.is_empty())
                .ok_or_else(|| "no holder".to_string())
        },
    )
    .await
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What the cluster looked like, for a failure.
fn dump(ns: &str) {
    for args in [
        vec!["get", "all,functions,leases", "-n", ns, "-o", "wide"],
        vec!["get", "all,leases,endpoints", "-n", SYSTEM_NS, "-o", "wide"],
        vec!["get", "events", "-A", "--sort-by=.lastTimestamp"],
        vec![
            "logs",
            "-n",
            SYSTEM_NS,
            "-l",
            "app.kubernetes.io/instance=siesta",
            "--all-containers",
            "--prefix",
            "--tail=80",
        ],
    ] {
        let ran = run("kubectl", &args, None);
        eprintln!("$ {}\n{}{}", ran.line, ran.stdout, ran.stderr);
    }
}
