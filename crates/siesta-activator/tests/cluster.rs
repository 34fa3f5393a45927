//! End to end on the local cluster: a Function at zero, a request through a
//! real activator, the real controller wakes it, the node agent starts the
//! pod, and the parked request is answered. Needs `make cluster-up node-up`
//! (done by `make test`).

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use siesta_api::Function;
use siesta_testkit::stack::Stack;
use siesta_testkit::{TestNamespace, client, ensure_function_crd, http_get, wait_for};

fn function(name: &str) -> Function {
    serde_json::from_value(json!({
        "apiVersion": "siesta.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": name},
        "spec": {
            "image": "siesta.dev/examples/hello:latest",
            "port": 8080,
            "queue": {"maxRequests": 100, "timeoutSeconds": 60},
            "scale": {"minReplicas": 0, "maxReplicas": 3, "scaleToZeroAfterSeconds": 300},
        },
    }))
    .expect("function literal")
}

async fn at_zero(client: &Client, ns: &str, name: &str) {
    let functions: Api<Function> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    functions
        .create(&PostParams::default(), &function(name))
        .await
        .expect("create function");
    wait_for(
        &format!("{name} deployed at zero"),
        Duration::from_secs(30),
        || async {
            let d = deployments.get(name).await.ok()?;
            (d.spec?.replicas == Some(0)).then_some(())
        },
    )
    .await;
}

fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_function_at_zero_wakes_on_the_first_request_and_answers() {
    let client = client().await;
    ensure_function_crd(&client).await;
    let ns = TestNamespace::create(&client, "wake").await;
    let stack = Stack::start(&client, &ns.name).await;
    at_zero(&client, &ns.name, "hello").await;
    stack.activator.wait_known(&ns.name, "hello").await;

    let host = format!("hello.{}.siesta.local", ns.name);
    let started = Instant::now();
    let (code, body) = http_get(&stack.activator.traffic.to_string(), "/pod", &host)
        .await
        .expect("cold request");
    let cold = started.elapsed();
    assert_eq!(code, 200, "cold request answered, body {body:?}");
    let pod = body.trim().to_string();
    assert!(
        pod.starts_with("hello-"),
        "answered by a pod of the function: {pod:?}"
    );
    eprintln!("cold request answered in {cold:?} by {pod}");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let replicas = deployments
        .get("hello")
        .await
        .expect("deployment")
        .spec
        .and_then(|s| s.replicas);
    assert_eq!(
        replicas,
        Some(1),
        "the controller scaled 0 -> 1 on the activation signal"
    );

    // Warm, by path prefix this time.
    let (code, body) = http_get(
        &stack.activator.traffic.to_string(),
        &format!("/fn/{}/hello/pod", ns.name),
        "anything",
    )
    .await
    .expect("warm");
    assert_eq!((code, body.trim()), (200, pod.as_str()));

    let (_, metrics) = http_get(&stack.activator.admin.to_string(), "/metrics", "admin")
        .await
        .expect("metrics");
    let labels = format!("function=\"hello\",namespace=\"{}\"", ns.name);
    assert_eq!(
        metric(
            &metrics,
            "siesta_activator_cold_start_duration_seconds_count",
            &labels
        ),
        1.0
    );
    assert_eq!(
        metric(&metrics, "siesta_activator_requests_total", &labels),
        2.0
    );
    stack.stop().await;
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_burst_parked_at_zero_is_answered_in_full() {
    let client = client().await;
    ensure_function_crd(&client).await;
    let ns = TestNamespace::create(&client, "burst").await;
    let stack = Stack::start(&client, &ns.name).await;
    at_zero(&client, &ns.name, "burst").await;
    stack.activator.wait_known(&ns.name, "burst").await;

    let host = format!("burst.{}.siesta.local", ns.name);
    let requests: Vec<_> = (0..50)
        .map(|i| {
            let addr = stack.activator.traffic.to_string();
            let host = host.clone();
            tokio::spawn(async move { http_get(&addr, &format!("/?i={i}"), &host).await })
        })
        .collect();
    let mut ok = 0;
    for r in requests {
        match r.await.expect("join") {
            Ok((200, _)) => ok += 1,
            other => panic!("a parked request was not answered 200: {other:?}"),
        }
    }
    assert_eq!(ok, 50);
    let (_, metrics) = http_get(&stack.activator.admin.to_string(), "/metrics", "admin")
        .await
        .expect("metrics");
    let labels = format!("function=\"burst\",namespace=\"{}\"", ns.name);
    assert_eq!(
        metric(&metrics, "siesta_activator_requests_total", &labels),
        50.0
    );
    assert_eq!(
        metric(&metrics, "siesta_activator_queued_requests", &labels),
        0.0
    );
    stack.stop().await;
}
