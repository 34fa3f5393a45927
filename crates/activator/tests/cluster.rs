//! End to end on the local cluster: a Function at zero, a request through a
//! real activator, the real controller wakes it, the node agent starts the
//! pod, and the parked request is answered. Needs `make cluster-up node-up`
//! (done by `make test`).

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use siesta_api::Function;
use siesta_testkit::metrics_text::metric_sum;
use siesta_testkit::stack::Stack;
use siesta_testkit::{
    TestNamespace, client, ensure_function_crd, http_get, wait_for, wait_for_state,
};

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
        metric_sum(
            &metrics,
            "siesta_activator_cold_start_duration_seconds_count",
            &labels
        ),
        1.0
    );
    assert_eq!(
        metric_sum(&metrics, "siesta_activator_requests_total", &labels),
        2.0
    );

    // The record of that cold start: on the status, phase by phase, adding
    // up to what this client waited (less the connect and the bytes on the
    // wire, which the activator cannot see).
    let functions: Api<Function> = Api::namespaced(client.clone(), &ns.name);
    let record = wait_for(
        "status.lastColdStart written",
        Duration::from_secs(15),
        || async { functions.get("hello").await.ok()?.status?.last_cold_start },
    )
    .await;
    eprintln!("status.lastColdStart: {record:?}");
    let parse = |s: &str| siesta_api::cold_start::parse_duration(s).expect(s);
    let total = parse(&record.total);
    let sum: Duration = record.phases().iter().map(|(_, d)| parse(d)).sum();
    assert_eq!(sum, total, "the phases add up to the total");
    assert!(
        total <= cold && cold - total < Duration::from_millis(20),
        "recorded {total:?} vs measured {cold:?}"
    );
    assert_eq!(record.pod.as_deref(), Some(pod.as_str()));
    assert!(parse(&record.container_start) + parse(&record.ready) > Duration::ZERO);
    // One observation per phase in the controller's histogram, and an
    // event that names the slowest phase.
    let controller = stack.controller.as_ref().expect("controller").admin_addr();
    let (_, cmetrics) = http_get(&controller.to_string(), "/metrics", "admin")
        .await
        .expect("controller metrics");
    for phase in siesta_api::cold_start::Phase::ALL {
        let l = format!(
            "function=\"hello\",namespace=\"{}\",phase=\"{}\"",
            ns.name,
            phase.name()
        );
        assert_eq!(
            metric_sum(
                &cmetrics,
                "siesta_controller_cold_start_phase_seconds_count",
                &l
            ),
            1.0,
            "{l}"
        );
    }
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), &ns.name);
    let note = wait_for("a ColdStart event", Duration::from_secs(10), || async {
        events
            .list(&Default::default())
            .await
            .ok()?
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("ColdStart"))?
            .note
    })
    .await;
    assert!(
        note.contains(&format!("slowest phase: {}", record.slowest)),
        "{note}"
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
        metric_sum(&metrics, "siesta_activator_requests_total", &labels),
        50.0
    );
    assert_eq!(
        metric_sum(&metrics, "siesta_activator_queued_requests", &labels),
        0.0
    );
    stack.stop().await;
}

/// A Deployment Siesta does not own, at zero replicas, as
/// `kubectl create deployment NAME --image=x --replicas=0` makes it, with
/// `labels` on it and its pods.
fn foreign_deployment(name: &str, labels: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "x", "image": "x"}]},
            },
        },
    }))
    .expect("deployment literal")
}

/// What the test asserts about a foreign Deployment: still at zero, and no
/// field of it written by Siesta's field managers.
fn untouched(d: &Deployment) -> Result<(), String> {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas);
    let siesta_writers: Vec<&str> = d
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.as_deref())
        .filter(|m| m.starts_with("siesta-"))
        .collect();
    if replicas == Some(0) && siesta_writers.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "spec.replicas={replicas:?}, written by {siesta_writers:?}"
        ))
    }
}

/// Ok when condition `type_` of `f` is False with `reason` (DeploymentConflict
/// or ServiceConflict) and a message containing `says`; else what the
/// conditions are.
fn conflict_reported(f: &Function, type_: &str, reason: &str, says: &str) -> Result<(), String> {
    let conditions = f
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    conditions
        .iter()
        .any(|c| {
            c.type_ == type_
                && c.status == "False"
                && c.reason == reason
                && c.message.contains(says)
        })
        .then_some(())
        .ok_or_else(|| format!("{conditions:?}"))
}

/// Waits for a Warning event with `reason` about each of the Functions
/// `names` (what `kubectl describe fn` shows).
async fn wait_warning_event(client: &Client, ns: &str, reason: &str, names: &[&str]) {
    use k8s_openapi::api::events::v1::Event;
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("a {reason} Warning event on each of {names:?}"),
        Duration::from_secs(10),
        || async {
            let list = events.list(&Default::default()).await.ok()?;
            names
                .iter()
                .all(|name| {
                    list.iter().any(|e| {
                        e.reason.as_deref() == Some(reason)
                            && e.type_.as_deref() == Some("Warning")
                            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(*name)
                    })
                })
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_deployment_siesta_does_not_own_is_never_woken_or_scaled() {
    use siesta_testkit::stack::scrape_activator;

    let client = client().await;
    ensure_function_crd(&client).await;
    let ns = TestNamespace::create(&client, "conflict").await;
    // The autoscaler reads this activator's metrics: the refused requests
    // are demand it sees, and would act on if it scaled what is not Siesta's.
    let stack = Stack::start_with(&client, &ns.name, scrape_activator).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let functions: Api<Function> = Api::namespaced(client.clone(), &ns.name);

    // `conflict`: made by hand (`kubectl create deployment`). `lookalike`:
    // carries Siesta's labels, as `kubectl delete fn --cascade=orphan`
    // leaves one behind, so the autoscaler's watch of Siesta's Deployments
    // sees it too.
    let cases = [
        ("conflict", json!({"app": "conflict"})),
        (
            "lookalike",
            json!({
                siesta_api::FUNCTION_LABEL: "lookalike",
                "app.kubernetes.io/managed-by": "siesta",
            }),
        ),
    ];
    for (name, labels) in &cases {
        deployments
            .create(
                &PostParams::default(),
                &foreign_deployment(name, labels.clone()),
            )
            .await
            .expect("create the foreign Deployment");
        functions
            .create(&PostParams::default(), &function(name))
            .await
            .expect("create the Function");
    }
    for (name, _) in &cases {
        wait_for_state(
            &format!("{name}: Ready=False with reason DeploymentConflict"),
            Duration::from_secs(30),
            || async {
                let f = functions.get(name).await.map_err(|e| e.to_string())?;
                conflict_reported(
                    &f,
                    "Ready",
                    "DeploymentConflict",
                    "not controlled by this Function",
                )
            },
        )
        .await;
        stack.activator.wait_known(&ns.name, name).await;
    }

    // A request through the activator: answered 503 with the reason at
    // once, not after its 60 s queue timeout, and nothing is scaled.
    let traffic = stack.activator.traffic.to_string();
    for (name, _) in &cases {
        let host = format!("{name}.{}.siesta.local", ns.name);
        let started = Instant::now();
        let answer =
            tokio::time::timeout(Duration::from_secs(10), http_get(&traffic, "/", &host)).await;
        let took = started.elapsed();
        let d = deployments.get(name).await.expect("read the Deployment");
        if let Err(seen) = untouched(&d) {
            panic!(
                "one request through the activator made Siesta change the foreign Deployment {name}: {seen}"
            );
        }
        let (code, body) = answer
            .unwrap_or_else(|_| panic!("{name}: no answer within 10 s (its queue timeout is 60 s)"))
            .expect("request");
        assert_eq!(code, 503, "{name}: {body}");
        for says in [
            format!("function {}/{name} cannot be started", ns.name),
            format!(
                "Deployment {0}/{name} is not controlled by Function {0}/{name}",
                ns.name
            ),
            "Delete or rename that Deployment".to_string(),
        ] {
            assert!(body.contains(&says), "{name}: {body:?} should say {says:?}");
        }
        assert!(
            took < Duration::from_secs(10),
            "{name}: answered in {took:?}, not at once"
        );
    }

    // For 7 s (three autoscaler decisions of 2 s, each with those requests
    // in its metrics), keep asking: the foreign Deployments stay at zero and
    // no Siesta field manager ever writes them.
    let until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < until {
        for (name, _) in &cases {
            let host = format!("{name}.{}.siesta.local", ns.name);
            let (code, body) = http_get(&traffic, "/", &host).await.expect("request");
            assert_eq!(code, 503, "{name}: {body}");
            let d = deployments.get(name).await.expect("read the Deployment");
            if let Err(seen) = untouched(&d) {
                panic!("Siesta changed the foreign Deployment {name}: {seen}");
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (name, _) in &cases {
        let d = deployments.get(name).await.expect("read the Deployment");
        assert_eq!(untouched(&d), Ok(()), "{name} after the autoscaler ticks");
    }

    // Active says the same: no pods of its own, and no "the next request
    // wakes it".
    for (name, _) in &cases {
        let f = functions.get(name).await.expect("read the Function");
        if let Err(seen) =
            conflict_reported(&f, "Active", "DeploymentConflict", "not this Function's")
        {
            panic!("{name}: Active should say DeploymentConflict: {seen}");
        }
    }

    // `kubectl describe fn` shows why, as a Warning event.
    let names: Vec<&str> = cases.iter().map(|(name, _)| *name).collect();
    wait_warning_event(&client, &ns.name, "DeploymentConflict", &names).await;
    let metrics = stack.activator.metrics().await;
    for (name, _) in &cases {
        let labels = format!(
            "function=\"{name}\",namespace=\"{}\",reason=\"activation_refused\"",
            ns.name
        );
        assert!(
            metric_sum(
                &metrics,
                "siesta_activator_rejected_requests_total",
                &labels
            ) >= 1.0,
            "{metrics}"
        );
    }
    stack.stop().await;
}

/// A Service Siesta does not own, as `kubectl create service clusterip
/// NAME --tcp=80:8080` makes it (and with that field manager).
async fn create_foreign_service(services: &Api<Service>, name: &str) -> Service {
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": name},
            "ports": [{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}],
        },
    }))
    .expect("service literal");
    let params = PostParams {
        field_manager: Some("kubectl-create".to_string()),
        ..PostParams::default()
    };
    services
        .create(&params, &service)
        .await
        .expect("create the foreign Service")
}

/// Ok when `now` is the Service `before` was, as far as an owner could
/// have changed it: same object, same selector, no owner references, and
/// the same field managers with the same fields (a write by anyone, Siesta
/// included, would add an entry or move a timestamp).
fn service_untouched(before: &Service, now: &Service) -> Result<(), String> {
    let selector = |s: &Service| s.spec.as_ref().and_then(|s| s.selector.clone());
    let seen = format!(
        "uid {:?}, selector {:?}, ownerReferences {:?}, managedFields {:?}",
        now.metadata.uid,
        selector(now),
        now.metadata.owner_references,
        now.metadata.managed_fields
    );
    let same = now.metadata.uid == before.metadata.uid
        && selector(now) == selector(before)
        && now.metadata.owner_references.iter().flatten().count() == 0
        && now.metadata.managed_fields == before.metadata.managed_fields;
    same.then_some(()).ok_or(seen)
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_service_siesta_does_not_own_is_never_patched_nor_garbage_collected() {
    use kube::api::DeleteParams;

    let client = client().await;
    ensure_function_crd(&client).await;
    let ns = TestNamespace::create(&client, "svc-conflict").await;
    let stack = Stack::start(&client, &ns.name).await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let functions: Api<Function> = Api::namespaced(client.clone(), &ns.name);
    let name = "svcx";

    // The user's Service first, then a Function of its name (no Deployment
    // of that name exists, so only the Service is in the way).
    let before = create_foreign_service(&services, name).await;
    functions
        .create(&PostParams::default(), &function(name))
        .await
        .expect("create the Function");
    wait_for_state(
        "Ready=False with reason ServiceConflict",
        Duration::from_secs(30),
        || async {
            let f = functions.get(name).await.map_err(|e| e.to_string())?;
            conflict_reported(
                &f,
                "Ready",
                "ServiceConflict",
                &format!(
                    "Service {}/{name} exists and is not controlled by this Function",
                    ns.name
                ),
            )
        },
    )
    .await;
    stack.activator.wait_known(&ns.name, name).await;

    // A request through the activator: 503 with the reason at once (not
    // "no Deployment yet" until its 60 s queue timeout).
    let traffic = stack.activator.traffic.to_string();
    let host = format!("{name}.{}.siesta.local", ns.name);
    let started = Instant::now();
    let (code, body) =
        tokio::time::timeout(Duration::from_secs(10), http_get(&traffic, "/", &host))
            .await
            .expect("an answer within 10 s (the queue timeout is 60 s)")
            .expect("request");
    let took = started.elapsed();
    assert_eq!(code, 503, "{body}");
    for says in [
        format!("function {}/{name} cannot be started", ns.name),
        format!(
            "Service {0}/{name} is not controlled by Function {0}/{name}",
            ns.name
        ),
        "Delete or rename that Service".to_string(),
    ] {
        assert!(body.contains(&says), "{body:?} should say {says:?}");
    }
    assert!(took < Duration::from_secs(10), "answered in {took:?}");

    // For 6 s the controller (and the activator's retries) may act: the
    // Service stays the user's, and no Deployment is made for the Function.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let now = services.get(name).await.expect("read the Service");
        if let Err(seen) = service_untouched(&before, &now) {
            panic!("Siesta changed the foreign Service {name}: {seen}");
        }
        let d = deployments
            .get_opt(name)
            .await
            .expect("read the Deployment");
        assert!(
            d.is_none(),
            "a Deployment was written for a Function whose Service is not its own"
        );
        let (code, body) = http_get(&traffic, "/", &host).await.expect("request");
        assert_eq!(code, 503, "{body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let f = functions.get(name).await.expect("read the Function");
    if let Err(seen) = conflict_reported(&f, "Active", "ServiceConflict", "Service of its name") {
        panic!("Active should say ServiceConflict: {seen}");
    }
    wait_warning_event(&client, &ns.name, "ServiceConflict", &[name]).await;

    // Deleting the Function leaves the user's Service in place: it was
    // never given an owner reference for the garbage collector to follow.
    functions
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete the Function");
    wait_for(
        "the Function to be gone",
        Duration::from_secs(30),
        || async { matches!(functions.get_opt(name).await, Ok(None)).then_some(()) },
    )
    .await;
    // The garbage collector acts within a second or two of the owner's
    // deletion; give it five.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let now = services
        .get_opt(name)
        .await
        .expect("read the Service")
        .expect("the foreign Service survives the Function's deletion");
    assert_eq!(service_untouched(&before, &now), Ok(()));
    stack.stop().await;
}
