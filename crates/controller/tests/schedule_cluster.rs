//! `scale.schedules` on the local cluster: the controller (in-process)
//! reconciles and autoscales, the node agent runs the example image.
//!
//! It checks: a window that opens about a minute after the Function is
//! created has its pods Ready at the window's start (started ahead by the
//! cold-start lead, not at creation); `status.autoscaler` names the window;
//! editing the schedule afterwards leaves the running pods alone (same
//! names and uids, same Deployment generation); and what is wrong with a
//! schedule is refused by the apiserver (schema) or reported as
//! `InvalidSpec` naming the field.
//!
//! Run: `KUBECONFIG=.cluster/kubeconfig cargo test -p siesta-controller --test schedule_cluster -- --include-ignored --nocapture`

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use siesta_api::{FUNCTION_LABEL, Function};
use siesta_testkit::stack::controller_config;
use siesta_testkit::{TestNamespace, client, ensure_function_crd, wait_for_state};

/// The cold start the controller assumes before it has measured one; the
/// lead is then 10 s + 2.5 s + one 2 s decision interval = 14.5 s.
const DEFAULT_COLD_START: Duration = Duration::from_secs(10);
const LEAD: Duration = Duration::from_millis(14_500);
/// A zone with a half-hour offset and no daylight saving time: its minute
/// boundaries are UTC's, its hours are not.
const TIME_ZONE: &str = "Asia/Kolkata";

async fn start_controller(client: &Client, ns: &str) -> siesta_controller::Running {
    let mut config = controller_config(ns, &format!("test-{ns}"));
    config.autoscaler.default_cold_start = DEFAULT_COLD_START;
    siesta_controller::start(client.clone(), config)
        .await
        .expect("start the controller")
}

/// (name, uid, Ready) of the Function's pods that are not being deleted.
async fn pods_of(pods: &Api<Pod>, function: &str) -> Vec<(String, String, bool)> {
    let list = pods
        .list(&ListParams::default().labels(&format!("{FUNCTION_LABEL}={function}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut seen: Vec<_> = list
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            (p.name_any(), p.uid().unwrap_or_default(), ready)
        })
        .collect();
    seen.sort();
    seen
}

fn replicas(d: &Deployment) -> (Option<i32>, i32) {
    (
        d.spec.as_ref().and_then(|s| s.replicas),
        d.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
    )
}

/// The first whole minute at least `margin` after `now`, and the cron
/// expression that matches it (daily) in [`TIME_ZONE`].
fn next_minute_after(now: Timestamp, margin: Duration) -> (Timestamp, String) {
    let earliest = now + SignedDuration::try_from(margin).expect("a small duration");
    let secs = earliest.as_second();
    let open = Timestamp::from_second(secs + (60 - secs.rem_euclid(60)) % 60).expect("in range");
    let local = open.in_tz(TIME_ZONE).expect("the zone is compiled in");
    (open, format!("{} {} * * *", local.minute(), local.hour()))
}

fn until_wall(t: Timestamp) -> Duration {
    let left = t.duration_since(Timestamp::now());
    Duration::try_from(left).unwrap_or(Duration::ZERO)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make test"]
async fn a_window_has_its_pods_ready_when_it_opens_and_editing_it_restarts_none() {
    let client = client().await;
    ensure_function_crd(&client).await;
    let ns = TestNamespace::create(&client, "schedule").await;
    let controller = start_controller(&client, &ns.name).await;
    let functions: Api<Function> = Api::namespaced(client.clone(), &ns.name);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);

    // The window opens at the first minute boundary at least 25 s away:
    // time to create the Function and see it at zero before the lead.
    let (open, cron) = next_minute_after(Timestamp::now(), Duration::from_secs(25));
    let function: Function = serde_json::from_value(json!({
        "apiVersion": "siesta.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": "hello"},
        "spec": {
            "image": "siesta.dev/examples/hello:latest",
            "scale": {
                "minReplicas": 0, "maxReplicas": 3, "scaleToZeroAfterSeconds": 5,
                "schedules": [{"cron": cron, "timeZone": TIME_ZONE, "duration": "2m", "minReplicas": 2}],
            },
        },
    }))
    .expect("function literal");
    functions
        .create(&PostParams::default(), &function)
        .await
        .expect("create the Function");
    println!(
        "window {cron:?} {TIME_ZONE} opens at {open} UTC, in {:.1}s",
        until_wall(open).as_secs_f64()
    );

    // At zero until the lead: nothing is started at creation.
    let ahead = open - SignedDuration::try_from(LEAD).expect("small");
    let settle = ahead - SignedDuration::from_secs(3);
    let mut scaled_at = None;
    let mut ready_at = None;
    let started = Instant::now();
    while Timestamp::now() < open + SignedDuration::from_secs(1) {
        let d = deployments.get_opt("hello").await.ok().flatten();
        let (spec, ready) = d.as_ref().map(replicas).unwrap_or((None, 0));
        let now = Timestamp::now();
        if now < settle {
            assert!(
                spec.unwrap_or(0) == 0,
                "scaled to {spec:?} at {now}, before the lead began at {ahead}"
            );
        }
        if scaled_at.is_none() && spec.unwrap_or(0) >= 2 {
            scaled_at = Some(now);
        }
        if ready_at.is_none() && ready >= 2 {
            ready_at = Some(now);
        }
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "the window never came"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let scaled_at = scaled_at.expect("scaled up for the window");
    let ready_at = ready_at.expect("2 pods ready by the window's start");
    println!(
        "scaled to 2 at open - {:.1}s, both Ready at open - {:.1}s",
        open.duration_since(scaled_at).as_secs_f64(),
        open.duration_since(ready_at).as_secs_f64()
    );
    assert!(
        scaled_at >= settle,
        "scaled at {scaled_at}, before {settle}"
    );
    assert!(
        ready_at <= open,
        "Ready at {ready_at}, after the opening {open}"
    );

    // At the window's start: two pods, both Ready.
    let at_open = pods_of(&pods, "hello").await;
    assert_eq!(at_open.len(), 2, "{at_open:?}");
    assert!(at_open.iter().all(|(_, _, ready)| *ready), "{at_open:?}");

    // The status names the window, and the reason says where the floor came from.
    let head = format!("schedules[0] {cron:?} {TIME_ZONE}");
    let f = wait_for_state(
        "status.autoscaler to name the window",
        Duration::from_secs(15),
        || async {
            let f = functions.get("hello").await.map_err(|e| e.to_string())?;
            let a = f
                .status
                .as_ref()
                .and_then(|s| s.autoscaler.clone())
                .ok_or("no autoscaler status")?;
            match &a.active_schedule {
                Some(w) if w.starts_with(&format!("{head} until")) => Ok(f),
                _ => Err(format!("{a:?}")),
            }
        },
    )
    .await;
    let generation = f.metadata.generation;
    let deployment_generation = deployments
        .get("hello")
        .await
        .expect("the Deployment")
        .metadata
        .generation;

    // Edit the schedule: a longer window and a second one. The Function's
    // generation moves; the Deployment's does not, and no pod is replaced.
    let edited_until = open + SignedDuration::from_mins(3);
    // As the controller writes it: the end's local time, and its date too
    // when the window ends past midnight there (a run at 23:57 local).
    let open_day = open.in_tz(TIME_ZONE).expect("zone").date();
    let edited_until_zoned = edited_until.in_tz(TIME_ZONE).expect("zone");
    let edited_until_local = if edited_until_zoned.date() == open_day {
        edited_until_zoned.strftime("%H:%M").to_string()
    } else {
        edited_until_zoned.strftime("%Y-%m-%d %H:%M").to_string()
    };
    functions
        .patch(
            "hello",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"scale": {"schedules": [
                {"cron": cron, "timeZone": TIME_ZONE, "duration": "3m", "minReplicas": 2},
                {"cron": "0 0 1 1 *", "duration": "1h", "minReplicas": 1},
            ]}}})),
        )
        .await
        .expect("edit the schedule");
    wait_for_state(
        "the edit to be reconciled and seen by the autoscaler",
        Duration::from_secs(20),
        || async {
            let f = functions.get("hello").await.map_err(|e| e.to_string())?;
            let s = f.status.as_ref().ok_or("no status")?;
            let window = s
                .autoscaler
                .as_ref()
                .and_then(|a| a.active_schedule.clone());
            let want = format!("{head} until {edited_until_local}");
            if f.metadata.generation > generation
                && s.observed_generation == f.metadata.generation
                && window.as_deref() == Some(want.as_str())
            {
                Ok(())
            } else {
                Err(format!(
                    "generation {:?}, observed {:?}, activeSchedule {window:?}, want {want:?}",
                    f.metadata.generation, s.observed_generation
                ))
            }
        },
    )
    .await;
    // A few decisions later, still the very same pods.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after_edit = pods_of(&pods, "hello").await;
    assert_eq!(after_edit, at_open, "the edit replaced pods");
    let d = deployments.get("hello").await.expect("the Deployment");
    assert_eq!(
        d.metadata.generation, deployment_generation,
        "the edit changed the Deployment"
    );
    assert_eq!(replicas(&d), (Some(2), 2));

    controller.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster: make test"]
async fn a_bad_schedule_is_refused_by_the_schema_or_reported_as_invalid_spec() {
    let client = client().await;
    ensure_function_crd(&client).await;
    let ns = TestNamespace::create(&client, "schedule-bad").await;
    let controller = start_controller(&client, &ns.name).await;
    let functions: Api<Function> = Api::namespaced(client.clone(), &ns.name);
    let with = |name: &str, schedules: serde_json::Value| -> Function {
        serde_json::from_value(json!({
            "apiVersion": "siesta.dev/v1alpha1", "kind": "Function",
            "metadata": {"name": name},
            "spec": {"image": "siesta.dev/examples/hello:latest", "scale": {"schedules": schedules}},
        }))
        .expect("function literal")
    };

    // What the schema says: the apiserver refuses it at once.
    let untyped: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns.name,
        &ApiResource::erase::<Function>(&()),
    );
    let window = json!({"cron": "0 8 * * *", "duration": "1h", "minReplicas": 1});
    for (what, schedules) in [
        (
            "a duration in words",
            json!([{"cron": "0 8 * * *", "duration": "1 hour", "minReplicas": 1}]),
        ),
        (
            "minReplicas above 1000",
            json!([{"cron": "0 8 * * *", "duration": "1h", "minReplicas": 1001}]),
        ),
        ("no cron", json!([{"duration": "1h", "minReplicas": 1}])),
        ("21 windows", json!(vec![window.clone(); 21])),
    ] {
        // Untyped, since some of these cannot even be a `Function` value.
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "siesta.dev/v1alpha1", "kind": "Function",
            "metadata": {"name": "refused"},
            "spec": {"image": "siesta.dev/examples/hello:latest", "scale": {"schedules": schedules}},
        }))
        .expect("object literal");
        let e = untyped
            .create(&PostParams::default(), &object)
            .await
            .expect_err(what);
        assert!(
            matches!(&e, kube::Error::Api(s) if s.is_invalid()),
            "{what}: {e}"
        );
    }

    // What only the controller can tell: Ready=False, InvalidSpec, the field named.
    for (name, schedules, field) in [
        (
            "bad-cron",
            json!([window, {"cron": "0 8 * *", "duration": "1h", "minReplicas": 1}]),
            "spec.scale.schedules[1].cron is \"0 8 * *\"",
        ),
        (
            "bad-zone",
            json!([{"cron": "0 8 * * *", "timeZone": "Europe/Berln", "duration": "1h", "minReplicas": 1}]),
            "spec.scale.schedules[0].timeZone is \"Europe/Berln\"",
        ),
        (
            "above-max",
            json!([{"cron": "0 8 * * *", "duration": "1h", "minReplicas": 11}]),
            "spec.scale.schedules[0].minReplicas (11) is greater than spec.scale.maxReplicas (10)",
        ),
    ] {
        functions
            .create(&PostParams::default(), &with(name, schedules))
            .await
            .unwrap_or_else(|e| panic!("{name}: the schema lets it pass: {e}"));
        wait_for_state(
            &format!("{name}: Ready=False InvalidSpec naming {field}"),
            Duration::from_secs(30),
            || async {
                let f = functions.get(name).await.map_err(|e| e.to_string())?;
                let ready = f
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned())
                    .ok_or("no Ready condition")?;
                if ready.status == "False"
                    && ready.reason == "InvalidSpec"
                    && ready.message.contains(field)
                {
                    Ok(())
                } else {
                    Err(format!("{ready:?}"))
                }
            },
        )
        .await;
    }
    controller.shutdown().await.expect("clean shutdown");
}
