//! Cluster tests: run the controller in-process against the local control
//! plane (`KUBECONFIG`). Each test makes its own namespace, runs its own
//! controller restricted to it (lease in it too), and deletes it at the end;
//! on failure it prints what it saw there.
//!
//! Run: `KUBECONFIG=.cluster/kubeconfig cargo test -p siesta-controller -- --include-ignored`

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use siesta_api::Function;
use siesta_controller::Running;
use siesta_testkit::metrics_text::sample;
use siesta_testkit::stack::controller_config;
use siesta_testkit::{TestNamespace, ensure_function_crd};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------- harness

struct Env {
    client: Client,
    ns: String,
}

/// Runs `body` in a fresh namespace; dumps the namespace on failure; always deletes it.
async fn with_namespace<F, Fut>(prefix: &str, body: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    let client = siesta_testkit::client().await;
    ensure_function_crd(&client).await;
    let namespace = TestNamespace::create(&client, &format!("st-{prefix}")).await;
    let ns = namespace.name.clone();
    let env = Env {
        client: client.clone(),
        ns: ns.clone(),
    };
    let result = AssertUnwindSafe(body(env)).catch_unwind().await;
    if result.is_err() {
        dump(&client, &ns).await;
    }
    drop(namespace);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

async fn dump(client: &Client, ns: &str) {
    eprintln!("---- what namespace {ns} held when the test failed ----");
    if let Ok(list) = Api::<Function>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
    {
        for f in list {
            eprintln!(
                "Function {}: spec={} status={}",
                f.name_any(),
                serde_json::to_string(&f.spec).unwrap_or_default(),
                serde_json::to_string_pretty(&f.status).unwrap_or_default()
            );
        }
    }
    if let Ok(list) = Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
    {
        for d in list {
            eprintln!(
                "Deployment {}: replicas={:?} image={:?} status={}",
                d.name_any(),
                d.spec.as_ref().and_then(|s| s.replicas),
                image(&d),
                serde_json::to_string(&d.status).unwrap_or_default()
            );
        }
    }
    if let Ok(list) = Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
    {
        for e in list {
            eprintln!(
                "Event {:?} {:?} on {:?}: {:?}",
                e.type_,
                e.reason,
                e.regarding.as_ref().and_then(|r| r.name.clone()),
                e.note
            );
        }
    }
}

/// Polls `check` every 200 ms until it is `Ok`, or panics after `secs`
/// with the last thing it saw.
async fn eventually<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match check().await {
            Ok(v) => return v,
            Err(saw) if Instant::now() >= deadline => {
                panic!("timed out after {secs}s waiting for {what}; last saw: {saw}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn start(env: &Env, identity: &str) -> Running {
    siesta_controller::start(env.client.clone(), controller_config(&env.ns, identity))
        .await
        .expect("start the controller")
}

impl Env {
    fn functions(&self) -> Api<Function> {
        Api::namespaced(self.client.clone(), &self.ns)
    }
    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.ns)
    }
    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn create_function(&self, name: &str, spec: serde_json::Value) -> Function {
        let f = Function::new(name, serde_json::from_value(spec).expect("a FunctionSpec"));
        self.functions()
            .create(&PostParams::default(), &f)
            .await
            .expect("create the Function")
    }

    async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        self.functions()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": spec })),
            )
            .await
            .expect("patch the Function spec");
    }

    async fn deployment(
        &self,
        name: &str,
        secs: u64,
        what: &str,
        ok: impl Fn(&Deployment) -> bool,
    ) -> Deployment {
        eventually(what, secs, || async {
            match self.deployments().get_opt(name).await {
                Ok(Some(d)) if ok(&d) => Ok(d),
                Ok(Some(d)) => Err(format!(
                    "replicas={:?} image={:?} generation={:?}",
                    d.spec.as_ref().and_then(|s| s.replicas),
                    image(&d),
                    d.metadata.generation
                )),
                Ok(None) => Err("no Deployment".into()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    async fn status(
        &self,
        name: &str,
        what: &str,
        ok: impl Fn(&siesta_api::FunctionStatus) -> bool,
    ) -> Function {
        eventually(what, 30, || async {
            let f = self
                .functions()
                .get(name)
                .await
                .map_err(|e| e.to_string())?;
            match &f.status {
                Some(s) if ok(s) => Ok(f),
                other => Err(serde_json::to_string(other).unwrap_or_default()),
            }
        })
        .await
    }

    async fn event(&self, function: &str, reason: &str) -> Event {
        eventually(&format!("a {reason} event on {function}"), 30, || async {
            let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
            let list = events
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let seen: Vec<String> = list
                .iter()
                .map(|e| {
                    format!(
                        "{:?}/{:?}",
                        e.reason,
                        e.regarding.as_ref().and_then(|r| r.name.clone())
                    )
                })
                .collect();
            list.into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(function)
                })
                .ok_or_else(|| format!("{seen:?}"))
        })
        .await
    }

    /// `kubectl scale` as another writer would do it: a patch of the scale
    /// subresource (no read-modify-write, so a status update by
    /// kube-controller-manager in between cannot make it conflict).
    async fn set_scale(&self, name: &str, replicas: i32) {
        let pp = PatchParams {
            field_manager: Some("someone-else".into()),
            ..PatchParams::default()
        };
        self.deployments()
            .patch_scale(
                name,
                &pp,
                &Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}})),
            )
            .await
            .expect("write scale");
    }
}

fn image(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .clone()
}

fn replicas(d: &Deployment) -> Option<i32> {
    d.spec.as_ref()?.replicas
}

fn condition<'a>(s: &'a siesta_api::FunctionStatus, t: &str) -> Option<(&'a str, &'a str)> {
    s.conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status.as_str(), c.reason.as_str()))
}

/// A plain HTTP/1.1 request to the admin server on loopback; (status, body).
async fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the admin server");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(req.as_bytes())
        .await
        .expect("send request");
    let mut resp = String::new();
    stream
        .read_to_string(&mut resp)
        .await
        .expect("read response");
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {resp:?}"));
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of `series` (0 when the text has none).
fn metric(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or(0.0)
}

async fn wait_leader(c: &Running) {
    let mut leader = c.leader();
    tokio::time::timeout(Duration::from_secs(15), leader.wait_for(|l| *l))
        .await
        .expect("the controller to become leader within 15 s")
        .expect("leader channel open");
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make test"]
async fn create_then_update_image() {
    with_namespace("create", |env| async move {
        let c = start(&env, "c1").await;
        wait_leader(&c).await;
        let f = env.create_function("hello", serde_json::json!({"image": "hello:1", "timeoutSeconds": 30, "queue": {"timeoutSeconds": 10}})).await;
        let uid = f.uid().expect("uid");

        // The first apply creates it with replicas under the controller's
        // manager; the same reconcile then hands replicas to the autoscaler's.
        let d = env
            .deployment("hello", 30, "the Deployment with replicas handed to siesta-autoscaler", |d| {
                siesta_controller::scale::owns_replicas(&d.metadata, siesta_controller::scale::AUTOSCALER_MANAGER)
                    && !siesta_controller::scale::owns_replicas(&d.metadata, siesta_api::FIELD_MANAGER)
            })
            .await;
        let owner = &d.metadata.owner_references.as_ref().expect("owner refs")[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("Function", uid.as_str(), Some(true)));
        let labels = d.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["siesta.dev/function"], "hello");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "siesta");
        assert_eq!(replicas(&d), Some(0), "minReplicas 0 starts at zero, without a pod");
        let pod = d.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec");
        assert_eq!(pod.termination_grace_period_seconds, Some(35));
        let c0 = &pod.containers[0];
        let probe = c0.readiness_probe.as_ref().expect("readiness probe");
        assert_eq!(probe.period_seconds, Some(1));
        assert!(probe.tcp_socket.is_some());
        assert!(c0.env.iter().flatten().any(|e| e.name == "PORT" && e.value.as_deref() == Some("8080")));
        assert!(
            !siesta_controller::scale::owns_replicas(&d.metadata, siesta_api::FIELD_MANAGER),
            "the controller's field manager must not own spec.replicas: {:?}",
            d.metadata.managed_fields
        );

        let svc = eventually("the Service", 30, || async {
            env.services().get_opt("hello").await.map_err(|e| e.to_string())?.ok_or("no Service".to_string())
        })
        .await;
        assert_eq!(svc.metadata.owner_references.as_ref().expect("owner refs")[0].uid, uid);

        let f = env
            .status("hello", "status Ready=True ScaledToZero", |s| {
                condition(s, "Ready") == Some(("True", "ScaledToZero"))
            })
            .await;
        let s = f.status.as_ref().expect("status");
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(s.url.as_deref(), Some(format!("http://hello.{}.siesta.local", env.ns).as_str()));
        assert_eq!(condition(s, "Active"), Some(("False", "ScaledToZero")));
        env.event("hello", "Created").await;

        env.patch_spec("hello", serde_json::json!({"image": "hello:2"})).await;
        let d = env.deployment("hello", 30, "the new image", |d| image(d).as_deref() == Some("hello:2")).await;
        assert_eq!(replicas(&d), Some(0), "an update must not touch replicas");
        env.status("hello", "observedGeneration 2", |s| s.observed_generation == Some(2)).await;
        env.event("hello", "Updated").await;

        // Settled: no hot loop of reconciles. kube-controller-manager's own
        // status writes to the Deployment each cause one; wait them out.
        env.deployment("hello", 30, "the Deployment's status caught up", |d| {
            d.status.as_ref().and_then(|s| s.observed_generation) == d.metadata.generation
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (_, m1) = http(c.admin_addr(), "GET", "/metrics").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (_, m2) = http(c.admin_addr(), "GET", "/metrics").await;
        let series = "siesta_controller_reconcile_total{result=\"success\"}";
        assert!(metric(&m1, series) >= 2.0, "{m1}");
        assert!(metric(&m2, series) - metric(&m1, series) <= 2.0, "reconciles kept running while nothing changed:\n{m1}\n{m2}");
        c.shutdown().await.expect("clean shutdown");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make test"]
async fn the_same_event_again_is_a_series_on_the_first() {
    with_namespace("events", |env| async move {
        let f = env
            .create_function("hello", serde_json::json!({"image": "hello:1"}))
            .await;
        let events = siesta_controller::events::Events::new(env.client.clone(), "test");
        let note = |text: &str| siesta_controller::events::Note::normal("Scaled", text);
        events.publish(&f, note("scaled to 2")).await;
        events.publish(&f, note("scaled to 2")).await;
        events.publish(&f, note("scaled to 2")).await;
        events.publish(&f, note("scaled to 3")).await;
        let api: Api<Event> = Api::namespaced(env.client.clone(), &env.ns);
        let mut scaled: Vec<Event> = api
            .list(&Default::default())
            .await
            .expect("list events")
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("Scaled"))
            .collect();
        scaled.sort_by_key(|e| e.note.clone());
        let seen: Vec<_> = scaled
            .iter()
            .map(|e| (e.note.clone(), e.series.as_ref().map(|s| s.count)))
            .collect();
        assert_eq!(
            seen,
            vec![
                (Some("scaled to 2".into()), Some(3)),
                (Some("scaled to 3".into()), None)
            ],
            "the same note three times is one Event counted 3; another note is its own"
        );
        let first = &scaled[0];
        assert_eq!(
            first.reporting_controller.as_deref(),
            Some(siesta_controller::events::REPORTER)
        );
        assert_eq!(
            first.regarding.as_ref().and_then(|r| r.uid.clone()),
            f.metadata.uid
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make test"]
async fn drift_is_repaired() {
    with_namespace("drift", |env| async move {
        let c = start(&env, "c1").await;
        env.create_function("hello", serde_json::json!({"image": "hello:1"})).await;
        let d = env.deployment("hello", 30, "the Deployment", |_| true).await;
        env.status("hello", "a first status", |s| s.observed_generation == Some(1)).await;

        // Someone edits the image by hand.
        let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "function", "image": "evil:1"}]}}}});
        env.deployments()
            .patch("hello", &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .expect("edit the Deployment");
        env.deployment("hello", 30, "the image restored", |d| image(d).as_deref() == Some("hello:1")).await;
        env.event("hello", "DriftCorrected").await;

        // Someone deletes it.
        env.deployments().delete("hello", &DeleteParams::default()).await.expect("delete the Deployment");
        let old_uid = d.uid();
        let d = env.deployment("hello", 30, "a new Deployment", |d| d.uid() != old_uid && d.metadata.deletion_timestamp.is_none()).await;
        assert_eq!(image(&d).as_deref(), Some("hello:1"));
        c.shutdown().await.expect("clean shutdown");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make test"]
async fn replicas_written_by_others_survive_and_min_raises_them() {
    with_namespace("replicas", |env| async move {
        let c = start(&env, "c1").await;
        env.create_function("hello", serde_json::json!({"image": "hello:1"}))
            .await;
        env.deployment("hello", 30, "the Deployment at 0", |d| {
            replicas(d) == Some(0)
        })
        .await;
        env.status("hello", "a first status", |s| {
            s.observed_generation == Some(1)
        })
        .await;

        env.set_scale("hello", 3).await;
        // The autoscaler adopts a count set by someone else (it has no
        // metrics here, so it scales nothing down) and reports it.
        env.status("hello", "desiredReplicas 3", |s| s.desired_replicas == 3)
            .await;
        // A spec change makes the controller apply again: replicas stay.
        env.patch_spec("hello", serde_json::json!({"image": "hello:2"}))
            .await;
        let d = env
            .deployment("hello", 30, "the new image", |d| {
                image(d).as_deref() == Some("hello:2")
            })
            .await;
        assert_eq!(replicas(&d), Some(3));
        env.status("hello", "observedGeneration 2", |s| {
            s.observed_generation == Some(2)
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let d = env
            .deployments()
            .get("hello")
            .await
            .expect("read Deployment");
        assert_eq!(
            replicas(&d),
            Some(3),
            "the controller fought the scale subresource"
        );
        assert!(!siesta_controller::scale::owns_replicas(
            &d.metadata,
            siesta_api::FIELD_MANAGER
        ));

        // minReplicas above the current count raises it.
        env.patch_spec("hello", serde_json::json!({"scale": {"minReplicas": 5}}))
            .await;
        env.deployment("hello", 30, "replicas raised to minReplicas 5", |d| {
            replicas(d) == Some(5)
        })
        .await;
        env.event("hello", "Scaled").await;
        // ... and lowering it again leaves the count to the autoscaler.
        env.patch_spec("hello", serde_json::json!({"scale": {"minReplicas": 0}}))
            .await;
        env.status("hello", "observedGeneration 4", |s| {
            s.observed_generation == Some(4)
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let d = env
            .deployments()
            .get("hello")
            .await
            .expect("read Deployment");
        assert_eq!(replicas(&d), Some(5));
        c.shutdown().await.expect("clean shutdown");
    })
    .await;
}

/// The hand-over of `spec.replicas` right after a Deployment is created
/// must not put back the count it was created with when someone scaled in
/// between (a wake-up, or `kubectl scale` right after `kubectl apply`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make test"]
async fn handing_over_replicas_keeps_a_scale_written_in_between() {
    with_namespace("handover", |env| async move {
        // Created as the controller creates it: replicas under its manager.
        let created: Deployment = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "d"}},
                "template": {
                    "metadata": {"labels": {"app": "d"}},
                    "spec": {"containers": [{"name": "c", "image": "nothing:1"}]},
                },
            },
        }))
        .expect("deployment literal");
        let seen = env
            .deployments()
            .patch(
                "d",
                &PatchParams::apply(siesta_api::FIELD_MANAGER).force(),
                &Patch::Apply(&created),
            )
            .await
            .expect("create the Deployment");
        env.set_scale("d", 2).await;

        let adopted = siesta_controller::scale::adopt_replicas(&env.client, &seen.clone().into())
            .await
            .expect("hand replicas over");
        assert_eq!(
            adopted.spec.as_ref().and_then(|s| s.replicas),
            Some(2),
            "the hand-over undid a scale write"
        );
        assert!(siesta_controller::scale::owns_replicas(
            &adopted.metadata,
            siesta_controller::scale::AUTOSCALER_MANAGER
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make test"]
async fn deleting_the_function_garbage_collects_children() {
    with_namespace("gc", |env| async move {
        let c = start(&env, "c1").await;
        env.create_function("hello", serde_json::json!({"image": "hello:1"}))
            .await;
        env.deployment("hello", 30, "the Deployment", |_| true)
            .await;
        eventually("the Service", 30, || async {
            env.services()
                .get_opt("hello")
                .await
                .map_err(|e| e.to_string())?
                .ok_or("no Service".to_string())
        })
        .await;
        env.functions()
            .delete("hello", &DeleteParams::default())
            .await
            .expect("delete the Function");
        eventually(
            "the Deployment and Service to be garbage-collected",
            45,
            || async {
                let d = env
                    .deployments()
                    .get_opt("hello")
                    .await
                    .map_err(|e| e.to_string())?;
                let s = env
                    .services()
                    .get_opt("hello")
                    .await
                    .map_err(|e| e.to_string())?;
                if d.is_none() && s.is_none() {
                    Ok(())
                } else {
                    Err(format!(
                        "deployment present: {}, service present: {}",
                        d.is_some(),
                        s.is_some()
                    ))
                }
            },
        )
        .await;
        c.shutdown().await.expect("clean shutdown");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make test"]
async fn invalid_spec_is_reported_and_does_not_stop_others() {
    with_namespace("invalid", |env| async move {
        let c = start(&env, "c1").await;
        env.create_function(
            "bad",
            serde_json::json!({"image": "hello:1", "scale": {"minReplicas": 3, "maxReplicas": 1}}),
        )
        .await;
        env.create_function("good", serde_json::json!({"image": "hello:1"}))
            .await;
        let f = env
            .status("bad", "Ready=False InvalidSpec", |s| {
                condition(s, "Ready") == Some(("False", "InvalidSpec"))
            })
            .await;
        let ready = f
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .expect("Ready");
        assert!(
            ready
                .message
                .contains("minReplicas (3) is greater than spec.scale.maxReplicas (1)"),
            "{}",
            ready.message
        );
        env.event("bad", "InvalidSpec").await;
        env.deployment("good", 30, "the valid Function's Deployment", |_| true)
            .await;
        env.status("good", "the valid Function's status", |s| {
            s.observed_generation == Some(1)
        })
        .await;
        assert!(
            env.deployments()
                .get_opt("bad")
                .await
                .expect("read")
                .is_none(),
            "an invalid spec must not be deployed"
        );

        // Fixing it deploys it, at minReplicas.
        env.patch_spec("bad", serde_json::json!({"scale": {"maxReplicas": 5}}))
            .await;
        env.deployment(
            "bad",
            30,
            "the fixed Function's Deployment at minReplicas",
            |d| replicas(d) == Some(3),
        )
        .await;
        env.status("bad", "not InvalidSpec any more", |s| {
            condition(s, "Ready").is_some_and(|(_, r)| r != "InvalidSpec")
                && s.observed_generation == Some(2)
        })
        .await;
        c.shutdown().await.expect("clean shutdown");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make test"]
async fn activation_wakes_a_function_at_zero() {
    with_namespace("activate", |env| async move {
        let c = start(&env, "c1").await;
        let addr = c.admin_addr();
        let mut activations = c.activations();
        env.create_function("hello", serde_json::json!({"image": "hello:1"}))
            .await;
        env.deployment("hello", 30, "the Deployment at 0", |d| {
            replicas(d) == Some(0)
        })
        .await;
        env.status("hello", "scaled to zero", |s| {
            condition(s, "Ready") == Some(("True", "ScaledToZero"))
        })
        .await;
        eventually("/readyz to answer 200", 15, || async {
            match http(addr, "GET", "/readyz").await {
                (200, _) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert_eq!(http(addr, "GET", "/healthz").await.0, 200);

        let path = format!("/v1/activate/{}/hello", env.ns);
        let (code, body) = http(addr, "POST", &path).await;
        assert_eq!(code, 202, "{body}");
        assert!(body.contains("from 0 to 1"), "{body}");
        env.deployment("hello", 10, "replicas 1 after the wake-up", |d| {
            replicas(d) == Some(1)
        })
        .await;
        env.event("hello", "WokeUp").await;
        let woke = tokio::time::timeout(Duration::from_secs(5), activations.recv())
            .await
            .expect("an activation notice")
            .expect("channel open");
        assert_eq!(
            (
                woke.key.namespace.as_str(),
                woke.key.name.as_str(),
                woke.replicas
            ),
            (env.ns.as_str(), "hello", 1)
        );
        // Again: idempotent.
        let (code, body) = http(addr, "POST", &path).await;
        assert_eq!(code, 202, "{body}");
        assert!(body.contains("already has 1"), "{body}");
        env.status("hello", "Active=True", |s| {
            condition(s, "Active") == Some(("True", "Serving")) && s.desired_replicas == 1
        })
        .await;
        // The reconcile that followed did not undo the wake-up.
        let d = env
            .deployments()
            .get("hello")
            .await
            .expect("read Deployment");
        assert_eq!(replicas(&d), Some(1));

        assert_eq!(
            http(addr, "POST", &format!("/v1/activate/{}/nope", env.ns))
                .await
                .0,
            404
        );
        assert_eq!(http(addr, "GET", &path).await.0, 405);
        assert_eq!(
            http(addr, "POST", "/v1/activate/only-one-part").await.0,
            400
        );
        assert_eq!(http(addr, "POST", "/v1/activate/Bad_NS/x").await.0, 400);
        assert_eq!(http(addr, "GET", "/nothing-here").await.0, 404);
        let (_, metrics) = http(addr, "GET", "/metrics").await;
        assert_eq!(
            metric(
                &metrics,
                "siesta_controller_activations_total{result=\"woke\"}"
            ),
            1.0,
            "{metrics}"
        );
        assert_eq!(
            metric(
                &metrics,
                "siesta_controller_activations_total{result=\"awake\"}"
            ),
            1.0,
            "{metrics}"
        );
        assert_eq!(
            metric(&metrics, "siesta_controller_leader"),
            1.0,
            "{metrics}"
        );
        c.shutdown().await.expect("clean shutdown");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make test"]
async fn one_leader_and_failover() {
    with_namespace("leader", |env| async move {
        // A lease long enough that one slow apiserver round trip on a busy
        // machine does not make the leader step down mid-test.
        const LEASE: Duration = Duration::from_secs(6);
        let start = |identity: &'static str| {
            let config = siesta_controller::Config {
                lease_duration: LEASE,
                renew_period: Duration::from_millis(500),
                ..controller_config(&env.ns, identity)
            };
            siesta_controller::start(env.client.clone(), config)
        };
        let a = start("replica-a").await.expect("start replica-a");
        let b = start("replica-b").await.expect("start replica-b");
        eventually("one leader", 15, || async {
            if a.is_leader() || b.is_leader() {
                Ok(())
            } else {
                Err("no leader".into())
            }
        })
        .await;
        // Exactly one, and it stays so.
        for _ in 0..10 {
            assert!(
                a.is_leader() != b.is_leader(),
                "a={} b={}",
                a.is_leader(),
                b.is_leader()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (leader, standby, leader_id, standby_id) = if a.is_leader() {
            (a, b, "replica-a", "replica-b")
        } else {
            (b, a, "replica-b", "replica-a")
        };
        let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.ns);
        let lease = leases.get("siesta-controller").await.expect("the Lease");
        assert_eq!(
            lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref()),
            Some(leader_id)
        );
        // The standby still answers activations.
        assert_eq!(
            http(
                standby.admin_addr(),
                "POST",
                &format!("/v1/activate/{}/nope", env.ns)
            )
            .await
            .0,
            404
        );

        env.create_function("one", serde_json::json!({"image": "hello:1"}))
            .await;
        env.deployment("one", 30, "a Deployment from the first leader", |_| true)
            .await;
        // Only the leader keeps decisions; the standby names it.
        let path = format!("/v1/decisions/{}/one", env.ns);
        let (code, body) = http(standby.admin_addr(), "GET", &path).await;
        assert_eq!(code, 503, "{body}");
        assert!(
            body.contains(leader_id),
            "the standby names the leader: {body}"
        );
        let history = eventually("the leader's decisions for one", 30, || async {
            let (code, body) = http(leader.admin_addr(), "GET", &path).await;
            if code != 200 {
                return Err(format!("{code}: {body}"));
            }
            let h: siesta_api::decisions::DecisionHistory =
                serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
            if h.decisions.is_empty() {
                Err(body)
            } else {
                Ok(h)
            }
        })
        .await;
        assert_eq!(history.name, "one");
        assert!(!history.decisions[0].reason.is_empty(), "{history:?}");

        // Kill the leader: no release; the standby takes over after the lease expires.
        let killed = Instant::now();
        leader.abort();
        let mut rx = standby.leader();
        tokio::time::timeout(LEASE + Duration::from_secs(10), rx.wait_for(|l| *l))
            .await
            .expect("the standby to take over within lease duration + 10 s")
            .expect("leader channel open");
        eprintln!("failover took {:?}", killed.elapsed());
        let lease = leases.get("siesta-controller").await.expect("the Lease");
        assert_eq!(
            lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref()),
            Some(standby_id)
        );
        env.create_function("two", serde_json::json!({"image": "hello:1"}))
            .await;
        env.deployment("two", 30, "a Deployment from the new leader", |_| true)
            .await;

        // A clean shutdown releases the lease.
        standby.shutdown().await.expect("clean shutdown");
        let lease = leases.get("siesta-controller").await.expect("the Lease");
        assert_eq!(
            lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref()),
            None
        );
    })
    .await;
}
