//! The node agent on the real local control plane: pods of a Deployment run
//! as processes on their own addresses, follow scale, restart on crash,
//! finish in-flight requests on graceful deletion, and run under their
//! ServiceAccount's RBAC. Needs `make cluster-up node-up` (done by `make test`).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use siesta_testkit::{TestNamespace, client, http_get, wait_for, wait_for_service_account_token};

const HELLO: &str = "siesta.dev/examples/hello:latest";

fn hello_deployment(name: &str, replicas: i32, env: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{
                        "name": "hello", "image": HELLO,
                        "ports": [{"containerPort": 8080, "name": "http"}],
                        "env": env,
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
                    }],
                },
            },
        },
    }))
    .expect("deployment literal")
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref().and_then(|s| s.pod_ip.clone())
}

async fn ready_pods(client: &Client, ns: &str, app: &str, count: usize) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = format!("app={app}");
    wait_for(
        &format!("{count} ready pods of {app}"),
        Duration::from_secs(60),
        || async {
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            let ready: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| is_ready(p) && p.metadata.deletion_timestamp.is_none())
                .collect();
            (ready.len() == count).then_some(ready)
        },
    )
    .await
}

async fn pod_count(client: &Client, ns: &str, app: &str) -> usize {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| l.items.len())
        .unwrap_or(usize::MAX)
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn deployment_pods_run_on_distinct_loopback_addresses_and_follow_scale() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "devnode-scale").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    deployments
        .create(
            &PostParams::default(),
            &hello_deployment("hello", 2, json!([])),
        )
        .await
        .expect("create deployment");

    let pods = ready_pods(&client, &ns.name, "hello", 2).await;
    let mut ips = Vec::new();
    for pod in &pods {
        let ip = pod_ip(pod).expect("ready pod has an IP");
        assert!(ip.starts_with("127."), "pod IP {ip} is loopback");
        let status = pod.status.as_ref().expect("status");
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(status.start_time.is_some(), "startTime is reported");
        let cs = &status
            .container_statuses
            .as_ref()
            .expect("container statuses")[0];
        assert!(cs.ready && cs.state.as_ref().and_then(|s| s.running.as_ref()).is_some());
        let (code, body) = http_get(&format!("{ip}:8080"), "/pod", "hello")
            .await
            .expect("GET /pod");
        assert_eq!(
            (code, body.trim()),
            (200, pod.name_any().as_str()),
            "the pod answers with its own name"
        );
        ips.push(ip);
    }
    assert_ne!(ips[0], ips[1], "each pod has its own address");

    deployments
        .patch(
            "hello",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .expect("scale to 0");
    wait_for(
        "pods gone after scale to 0",
        Duration::from_secs(30),
        || async { (pod_count(&client, &ns.name, "hello").await == 0).then_some(()) },
    )
    .await;
    for ip in &ips {
        assert!(
            http_get(&format!("{ip}:8080"), "/", "hello").await.is_err(),
            "the process on {ip} is stopped"
        );
    }
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn readiness_waits_for_the_process_to_listen() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "devnode-ready").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let env = json!([{"name": "HELLO_START_DELAY_MS", "value": "5000"}]);
    deployments
        .create(&PostParams::default(), &hello_deployment("slow", 1, env))
        .await
        .expect("create deployment");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let running = wait_for("a running pod", Duration::from_secs(30), || async {
        let list = pods
            .list(&ListParams::default().labels("app=slow"))
            .await
            .ok()?;
        list.items
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    })
    .await;
    let ip = pod_ip(&running).expect("pod IP");
    // The process listens 5 s after it started, which is after the pod's
    // startTime: within 4 s of that it cannot be listening yet.
    let started = running
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .expect("startTime")
        .0
        .as_second();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    if !is_ready(&running) && now - started < 4 {
        assert!(
            http_get(&format!("{ip}:8080"), "/", "slow").await.is_err(),
            "a pod reported not ready is indeed not listening yet"
        );
    }
    let ready = ready_pods(&client, &ns.name, "slow", 1).await;
    let (code, _) = http_get(&format!("{ip}:8080"), "/", "slow")
        .await
        .expect("GET");
    assert_eq!(code, 200);
    assert_eq!(pod_ip(&ready[0]), Some(ip));
    // Ready came only once the process listened, 5 s after it started (the
    // API's times have whole seconds: at least 4 s apart).
    let status = ready[0].status.as_ref().expect("status");
    let started = status.start_time.as_ref().expect("startTime").0;
    let ready_at = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .and_then(|c| c.last_transition_time.as_ref())
        .expect("Ready lastTransitionTime")
        .0;
    let waited = ready_at.as_second() - started.as_second();
    assert!(
        waited >= 4,
        "Ready {waited} s after the start, before the process listened"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_crashed_container_is_restarted_and_counted() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "devnode-crash").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let env = json!([{"name": "HELLO_FAIL_AFTER_REQUESTS", "value": "1"}]);
    deployments
        .create(&PostParams::default(), &hello_deployment("crashy", 1, env))
        .await
        .expect("create deployment");
    let pod = ready_pods(&client, &ns.name, "crashy", 1).await.remove(0);
    let ip = pod_ip(&pod).expect("pod IP");
    let (code, _) = http_get(&format!("{ip}:8080"), "/", "crashy")
        .await
        .expect("first request");
    assert_eq!(code, 200);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let name = pod.name_any();
    let restarted = wait_for(
        "restartCount 1 and ready again",
        Duration::from_secs(30),
        || async {
            let pod = pods.get(&name).await.ok()?;
            let cs = pod
                .status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .first()?
                .clone();
            (cs.restart_count == 1 && cs.ready).then_some(cs)
        },
    )
    .await;
    let last = restarted
        .last_state
        .and_then(|s| s.terminated)
        .expect("lastState.terminated");
    assert_ne!(last.exit_code, 0, "the crash's exit code is kept");
    let (code, _) = http_get(&format!("{ip}:8080"), "/", "crashy")
        .await
        .expect("after restart");
    assert_eq!(
        code, 200,
        "the restarted process serves on the same address"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn graceful_deletion_lets_an_in_flight_request_finish() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "devnode-grace").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    deployments
        .create(
            &PostParams::default(),
            &hello_deployment("graceful", 1, json!([])),
        )
        .await
        .expect("create deployment");
    let pod = ready_pods(&client, &ns.name, "graceful", 1).await.remove(0);
    let ip = pod_ip(&pod).expect("pod IP");
    let slow = tokio::spawn({
        let addr = format!("{ip}:8080");
        async move { http_get(&addr, "/delay?ms=2500", "graceful").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    pods.delete(&pod.name_any(), &DeleteParams::default())
        .await
        .expect("delete pod");
    let (code, _) = slow
        .await
        .expect("join")
        .expect("the in-flight request is answered");
    assert_eq!(code, 200);
    let name = pod.name_any();
    wait_for(
        "the pod object removed after its process stopped",
        Duration::from_secs(20),
        || async {
            matches!(pods.get(&name).await, Err(kube::Error::Api(e)) if e.code == 404).then_some(())
        },
    )
    .await;
    assert!(
        http_get(&format!("{ip}:8080"), "/", "graceful")
            .await
            .is_err()
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_pod_runs_with_its_service_account_rbac() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "devnode-rbac").await;
    let apply = |value: serde_json::Value| {
        let client = client.clone();
        let ns = ns.name.clone();
        async move {
            let obj: kube::api::DynamicObject = serde_json::from_value(value).expect("literal");
            let gvk = kube::api::GroupVersionKind::try_from(obj.types.as_ref().expect("types"))
                .expect("gvk");
            let (ar, _) = kube::discovery::pinned_kind(&client, &gvk)
                .await
                .expect("discovery");
            let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client, &ns, &ar);
            // The ServiceAccount admission reads the token from the
            // apiserver's own cache, which can trail the token we waited for
            // by a moment: "No API token found" is retried, nothing else.
            let mut tries = 0;
            loop {
                match api.create(&PostParams::default(), &obj).await {
                    Ok(_) => break,
                    Err(kube::Error::Api(e))
                        if e.message.to_lowercase().contains("no api token") && tries < 10 =>
                    {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => panic!("create: {e}"),
                }
            }
        }
    };
    apply(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}}))
        .await;
    apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "read-pods"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]})).await;
    apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-pods"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns.name}]})).await;
    wait_for_service_account_token(&client, &ns.name, "reader").await;

    // `kubectl auth can-i` exits 0 for yes and 1 for no.
    let run = |name: &'static str, verb: &'static str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"serviceAccountName": "reader", "restartPolicy": "Never",
                "containers": [{"name": "kubectl", "image": "siesta.dev/tools/kubectl:latest",
                    "args": ["auth", "can-i", verb, "pods"]}]}})
    };
    apply(run("can-list", "list")).await;
    apply(run("cannot-delete", "delete")).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    for (name, phase) in [("can-list", "Succeeded"), ("cannot-delete", "Failed")] {
        wait_for(
            &format!("pod {name} to end {phase}"),
            Duration::from_secs(60),
            || async {
                let pod = pods.get(name).await.ok()?;
                (pod.status?.phase.as_deref() == Some(phase)).then_some(())
            },
        )
        .await;
    }
}
