//! The autoscaler on the local cluster with real traffic: the controller
//! (in-process, `start`) scrapes a real activator (in-process, discovering
//! Functions and pods from the cluster, `--activator-url` pointing the
//! controller at its /metrics), the node agent runs the example image, and
//! slow requests (`/delay?ms=1000`) through the activator are the load.
//!
//! It checks: load raises replicas to ceil(load / target); a step in load is
//! followed; stopping the load returns the function to zero after the idle
//! period; a request arriving during the scale-down is answered; and a
//! request at zero wakes it again. It prints the measured latencies.
//!
//! Run: `KUBECONFIG=.cluster/kubeconfig cargo test -p siesta-controller --test autoscale_cluster -- --include-ignored --nocapture`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use siesta_api::Function;
use siesta_testkit::metrics_text::sample;
use siesta_testkit::stack::{Stack, scrape_activator};
use siesta_testkit::{
    TestNamespace, client, ensure_function_crd, http_get, wait_for, wait_for_state,
};

type Http = HttpClient<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn http() -> Http {
    HttpClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(5))
        .build_http()
}

/// GET `path` of `hello` through the activator; the status code.
async fn get(client: &Http, traffic: &str, host: &str, path: &str) -> Option<u16> {
    let req = Request::get(format!("http://{traffic}{path}"))
        .header("host", host)
        .body(Empty::new())
        .ok()?;
    let resp = client.request(req).await.ok()?;
    let code = resp.status().as_u16();
    resp.into_body().collect().await.ok()?;
    Some(code)
}

/// `clients` loops of 1 s requests until `stop`; counts non-200 answers.
struct Load {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicUsize>,
    ok: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn new() -> Self {
        Self {
            stop: Arc::new(AtomicBool::new(false)),
            failed: Arc::new(AtomicUsize::new(0)),
            ok: Arc::new(AtomicUsize::new(0)),
            tasks: Vec::new(),
        }
    }

    fn add(&mut self, clients: usize, traffic: &str, host: &str) {
        for _ in 0..clients {
            let (stop, failed, ok) = (self.stop.clone(), self.failed.clone(), self.ok.clone());
            let (traffic, host) = (traffic.to_string(), host.to_string());
            self.tasks.push(tokio::spawn(async move {
                let client = http();
                while !stop.load(Ordering::Relaxed) {
                    match get(&client, &traffic, &host, "/delay?ms=1000").await {
                        Some(200) => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
    }

    /// Stops and waits for the last requests; returns when they ended.
    async fn stop(self) -> Instant {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        Instant::now()
    }
}

async fn replicas(deployments: &Api<Deployment>, name: &str) -> Option<i32> {
    deployments.get(name).await.ok()?.spec?.replicas
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the local cluster: make test"]
async fn load_scales_out_to_load_over_target_and_idle_returns_to_zero() {
    let client = client().await;
    ensure_function_crd(&client).await;
    let ns = TestNamespace::create(&client, "autoscale").await;
    let stack = Stack::start_with(&client, &ns.name, scrape_activator).await;
    let functions: Api<Function> = Api::namespaced(client.clone(), &ns.name);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let function: Function = serde_json::from_value(json!({
        "apiVersion": "siesta.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": "hello"},
        "spec": {
            "image": "siesta.dev/examples/hello:latest",
            "port": 8080,
            "queue": {"maxRequests": 100, "timeoutSeconds": 60},
            "scale": {
                "minReplicas": 0, "maxReplicas": 10,
                "metric": "concurrency", "target": 1,
                "stableWindowSeconds": 6, "panicWindowPercent": 50,
                "scaleToZeroAfterSeconds": 6,
            },
        },
    }))
    .expect("function literal");
    functions
        .create(&PostParams::default(), &function)
        .await
        .expect("create the Function");
    wait_for("hello at zero", Duration::from_secs(30), || async {
        (replicas(&deployments, "hello").await == Some(0)).then_some(())
    })
    .await;
    stack.activator.wait_known(&ns.name, "hello").await;
    let host = format!("hello.{}.siesta.local", ns.name);

    // Decided at zero and never called: the autoscaler wrote its status,
    // and its decision gauges for the Function do not exist yet.
    let controller_admin = stack
        .controller
        .as_ref()
        .expect("the stack's controller")
        .admin_addr()
        .to_string();
    let desired_series = format!(
        r#"siesta_controller_desired_replicas{{function="hello",namespace="{}"}}"#,
        ns.name
    );
    let desired_gauge = || async {
        let (_, page) = http_get(&controller_admin, "/metrics", "admin")
            .await
            .expect("the controller's /metrics");
        sample(&page, &desired_series)
    };
    wait_for("a decision at zero", Duration::from_secs(30), || async {
        functions
            .get("hello")
            .await
            .ok()?
            .status?
            .autoscaler
            .map(|_| ())
    })
    .await;
    assert_eq!(
        desired_gauge().await,
        None,
        "no gauges for an idle Function"
    );

    // 4 concurrent 1 s requests from zero: the activation wakes it, and the
    // parked requests are the demand: 4 pods at target 1.
    let mut load = Load::new();
    let t0 = Instant::now();
    load.add(4, &stack.activator.traffic.to_string(), &host);
    wait_for(
        "4 replicas for 4 in flight",
        Duration::from_secs(60),
        || async { (replicas(&deployments, "hello").await == Some(4)).then_some(()) },
    )
    .await;
    let cold_to_4 = t0.elapsed();
    // Settled: it stays at ceil(4 / 1) = 4 (give or take one), out of panic,
    // and the status reports that count and about 4 in flight. The status
    // is rewritten on a change (or every 10 s), so wait for it rather than
    // read it once at a guessed moment.
    let (settled, f) = wait_for_state(
        "settled at 4 replicas, stable, status observing ~4 in flight",
        Duration::from_secs(60),
        || async {
            let r = replicas(&deployments, "hello").await.ok_or("no replicas")?;
            let f = functions.get("hello").await.map_err(|e| e.to_string())?;
            let status = f.status.clone().ok_or("no status")?;
            let a = status.autoscaler.clone().ok_or("no status.autoscaler")?;
            if (4..=5).contains(&r)
                && status.desired_replicas == r
                && a.mode == "stable"
                && (a.observed_concurrency - 4.0).abs() < 1.0
            {
                Ok((r, f))
            } else {
                Err(format!(
                    "replicas {r}, desired {}, mode {}, concurrency {:.2}",
                    status.desired_replicas, a.mode, a.observed_concurrency
                ))
            }
        },
    )
    .await;
    // One writer per field: desiredReplicas and autoscaler belong to the
    // autoscaler's field manager only.
    let owners: Vec<&str> = f
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:status"))
                .is_some_and(|s| s.get("f:desiredReplicas").is_some())
        })
        .filter_map(|m| m.manager.as_deref())
        .collect();
    assert_eq!(owners, vec![siesta_controller::scale::AUTOSCALER_MANAGER]);
    // Decisions with replicas to show set the gauges.
    assert!(
        desired_gauge().await.is_some_and(|v| v >= 1.0),
        "the desired-replicas gauge once scaled out: {:?}",
        desired_gauge().await
    );

    // A step from 4 to 8 in flight.
    let t1 = Instant::now();
    load.add(4, &stack.activator.traffic.to_string(), &host);
    wait_for(
        "8 replicas for 8 in flight",
        Duration::from_secs(30),
        || async { (replicas(&deployments, "hello").await.unwrap_or(0) >= 8).then_some(()) },
    )
    .await;
    let step_4_to_8 = t1.elapsed();
    let at8 = wait_for_state(
        "8 replicas for 8 in flight, reported as desired",
        Duration::from_secs(30),
        || async {
            let r = replicas(&deployments, "hello").await.ok_or("no replicas")?;
            let f = functions.get("hello").await.map_err(|e| e.to_string())?;
            let desired = f.status.map(|s| s.desired_replicas).unwrap_or(-1);
            if (8..=9).contains(&r) && desired == r {
                Ok(r)
            } else {
                Err(format!("replicas {r}, desired {desired}"))
            }
        },
    )
    .await;

    let failed = load.failed.load(Ordering::Relaxed);
    let ok = load.ok.load(Ordering::Relaxed);
    let load_ended = load.stop().await;
    assert_eq!(failed, 0, "{failed} requests failed under load ({ok} ok)");

    // Scale-down begins; a request arriving meanwhile is answered.
    wait_for(
        "the scale-down to begin",
        Duration::from_secs(60),
        || async {
            let r = replicas(&deployments, "hello").await?;
            (r < at8).then_some(r)
        },
    )
    .await;
    let probe = http();
    assert_eq!(
        get(&probe, &stack.activator.traffic.to_string(), &host, "/").await,
        Some(200),
        "a request during the scale-down"
    );
    let last_request = Instant::now();
    let spec_zero = wait_for(
        "replicas 0 after idling",
        Duration::from_secs(90),
        || async { (replicas(&deployments, "hello").await == Some(0)).then(Instant::now) },
    )
    .await;
    let no_pods = wait_for("no pods left", Duration::from_secs(90), || async {
        let list = pods
            .list(&ListParams::default().labels(&format!("{}=hello", siesta_api::FUNCTION_LABEL)))
            .await
            .ok()?;
        list.items.is_empty().then(Instant::now)
    })
    .await;
    let f = functions.get("hello").await.expect("read Function");
    let status = f.status.expect("a status");
    assert_eq!(status.desired_replicas, 0);
    assert!(
        status
            .autoscaler
            .as_ref()
            .is_some_and(|a| a.reason.starts_with("idle")),
        "{:?}",
        status.autoscaler
    );

    // At zero, a request wakes it and is answered.
    assert_eq!(
        get(&probe, &stack.activator.traffic.to_string(), &host, "/").await,
        Some(200),
        "a request at zero"
    );

    println!(
        "MEASURED cold start with 4 in flight -> 4 replicas: {:.1}s (settled at {settled}); step 4 -> 8 in flight -> 8 replicas: {:.1}s; \
         last request -> replicas 0: {:.1}s; -> no pods: {:.1}s (load ended {:.1}s before the last request; \
         scaleToZeroAfterSeconds 6, stableWindowSeconds 6, autoscale interval 2s)",
        cold_to_4.as_secs_f64(),
        step_4_to_8.as_secs_f64(),
        spec_zero.duration_since(last_request).as_secs_f64(),
        no_pods.duration_since(last_request).as_secs_f64(),
        last_request.duration_since(load_ended).as_secs_f64(),
    );
    stack.stop().await;
}

/// An activation taken by a controller replica that is not the leader: the
/// standby scales 0 -> 1 itself, and the leader's autoscaler, which has seen
/// no request for that function, must count the wake as demand instead of
/// putting it straight back to zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the local cluster: make test"]
async fn a_wake_by_the_standby_is_not_undone_by_the_leader() {
    let client = client().await;
    ensure_function_crd(&client).await;
    let ns = TestNamespace::create(&client, "standby-wake").await;
    // The leader scrapes the (idle) activator: complete metrics, no demand.
    let stack = Stack::start_with(&client, &ns.name, scrape_activator).await;
    let leader = stack.controller.as_ref().expect("controller");
    wait_for("the leader", Duration::from_secs(20), || async {
        leader.is_leader().then_some(())
    })
    .await;
    let standby = siesta_controller::start(
        client.clone(),
        siesta_testkit::stack::controller_config(&ns.name, "standby"),
    )
    .await
    .expect("start the standby");
    let functions: Api<Function> = Api::namespaced(client.clone(), &ns.name);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    const IDLE: u64 = 12;
    for name in ["control", "woken"] {
        let f: Function = serde_json::from_value(json!({
            "apiVersion": "siesta.dev/v1alpha1", "kind": "Function",
            "metadata": {"name": name},
            "spec": {
                "image": "siesta.dev/examples/hello:latest",
                "scale": {"minReplicas": 0, "stableWindowSeconds": 6, "scaleToZeroAfterSeconds": IDLE},
            },
        }))
        .expect("function literal");
        functions
            .create(&PostParams::default(), &f)
            .await
            .expect("create the Function");
    }
    for name in ["control", "woken"] {
        wait_for(
            &format!("{name} at zero"),
            Duration::from_secs(30),
            || async { (replicas(&deployments, name).await == Some(0)).then_some(()) },
        )
        .await;
    }
    // Precondition: the leader does scale an idle function to zero. The
    // control function, raised by hand, goes back once idle for IDLE s.
    deployments
        .patch_scale(
            "control",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .expect("scale control to 1");
    wait_for(
        "the leader to scale the idle control function to zero",
        Duration::from_secs(60),
        || async { (replicas(&deployments, "control").await == Some(0)).then_some(()) },
    )
    .await;

    // The activation goes to the standby, which wakes the function itself.
    let req = Request::post(format!(
        "http://{}/v1/activate/{}/woken",
        standby.admin_addr(),
        ns.name
    ))
    .body(Empty::new())
    .expect("request");
    let resp = http().request(req).await.expect("activation");
    assert_eq!(
        resp.status().as_u16(),
        202,
        "the standby took the activation"
    );
    let woke = Instant::now();
    assert!(!standby.is_leader());
    assert_eq!(replicas(&deployments, "woken").await, Some(1));
    // The leader decides every 2 s: over several decisions it keeps it up.
    while woke.elapsed() < Duration::from_secs(IDLE / 2) {
        assert_eq!(
            replicas(&deployments, "woken").await,
            Some(1),
            "the leader undid the standby's wake after {:?}",
            woke.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // ... and scales it to zero only once it has been idle long enough.
    let zero = wait_for(
        "woken back at zero after its idle time",
        Duration::from_secs(60),
        || async { (replicas(&deployments, "woken").await == Some(0)).then(Instant::now) },
    )
    .await;
    let up_for = zero.duration_since(woke);
    assert!(
        up_for >= Duration::from_secs(IDLE),
        "at zero {up_for:?} after the wake, before scaleToZeroAfterSeconds {IDLE}"
    );
    println!("MEASURED standby wake kept up for {up_for:?} (scaleToZeroAfterSeconds {IDLE})");
    let _ = standby.shutdown().await;
    stack.stop().await;
}
