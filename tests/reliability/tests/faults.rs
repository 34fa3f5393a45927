//! Scale cycles and faults under a steady client stream, on the local
//! cluster, through a real activator (in-process) with real pods run by the
//! node agent. Every scenario prints
//! `RELIABILITY <scenario> sent=.. answered=.. failed=..`.
//!
//! Replicas are driven by writing `deployments/scale` directly, with the
//! controller stopped once it has created the Deployment, so nothing here
//! depends on the autoscaler's timing. At zero, requests are parked by the
//! activator until the test scales up again.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::json;
use siesta_reliability::*;
use siesta_testkit::{TestNamespace, client, ensure_function_crd, wait_for};

const POD_START: Duration = Duration::from_secs(60);
const WORKERS: usize = 8;

/// A function with a Deployment, the controller stopped, at `replicas`.
async fn prepared(client: &Client, prefix: &str, replicas: i32) -> (TestNamespace, Stack) {
    ensure_function_crd(client).await;
    let ns = TestNamespace::create(client, prefix).await;
    let mut stack = Stack::start(client, &ns.name).await;
    create_function(client, &ns.name, &hello("f", json!({}))).await;
    stack.stop_controller().await;
    scale(client, &ns.name, "f", replicas).await;
    wait_ready(client, &ns.name, "f", replicas as usize, POD_START).await;
    wait_endpoints(&stack, &ns.name, replicas as usize).await;
    (ns, stack)
}

async fn wait_endpoints(stack: &Stack, ns: &str, n: usize) {
    stack.activator.wait_endpoints(ns, "f", n, POD_START).await;
}

fn host(ns: &str) -> String {
    format!("f.{ns}.siesta.local")
}

async fn cycles(label: &str, rounds: usize) {
    let client = client().await;
    let (ns, stack) = prepared(&client, "rel-cycles", 0).await;
    let load = Load::start(
        stack.activator.traffic,
        &host(&ns.name),
        "/delay?ms=20",
        WORKERS,
        Duration::from_millis(10),
    );
    let mut transitions = 0;
    // From each forced 1 -> 0 until its last pod was gone.
    let mut zero_windows = Vec::new();
    for round in 0..rounds {
        for (replicas, settle) in [(3, true), (1, false), (0, false), (3, true)] {
            let asked = load.started.elapsed();
            scale(&client, &ns.name, "f", replicas).await;
            transitions += 1;
            if settle {
                wait_ready(&client, &ns.name, "f", replicas as usize, POD_START).await;
            } else if replicas == 0 {
                // Gone, not only terminating: its shutdown is what races.
                let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
                wait_for("the last pod to be gone", POD_START, || async {
                    let list = pods.list(&Default::default()).await.ok()?;
                    (!list.items.iter().any(|p| {
                        p.metadata
                            .name
                            .as_deref()
                            .is_some_and(|n| n.starts_with("f-"))
                    }))
                    .then_some(())
                })
                .await;
                zero_windows.push((asked, load.started.elapsed()));
                tokio::time::sleep(Duration::from_secs(2)).await;
            } else {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            eprintln!(
                "{label}: round {round} at {replicas} after {:?}",
                load.started.elapsed()
            );
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    // Known limit: forcing the LAST pod away (1 -> 0) while requests flow
    // races its shutdown. The pod closes its idle keep-alive connections as
    // a request is written on one (hyper IncompleteMessage); with no other
    // pod to retry on, that request gets 502. The autoscaler never does this
    // (it goes to zero only with nothing queued or in flight), so these are
    // counted apart and bounded, not hidden.
    let near_forced_zero = |o: &&&Outcome| {
        zero_windows.iter().any(|(asked, gone)| {
            o.sent + Duration::from_millis(500) >= *asked
                && o.sent <= *gone + Duration::from_millis(500)
        }) && matches!(o.result, Ok((502, _)))
    };
    let failures = report.failures();
    let at_zero = failures.iter().filter(near_forced_zero).count();
    let other = failures.len() - at_zero;
    report.print(
        label,
        &format!(
            "transitions={transitions} failed_at_forced_last_pod_removal={at_zero} failed_elsewhere={other}"
        ),
    );
    assert!(report.sent() > 100, "the load ran");
    assert_eq!(other, 0, "requests were lost while scaling");
    assert!(
        at_zero <= WORKERS * zero_windows.len(),
        "more lost at forced zero than were in flight"
    );
    stack.stop().await;
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn scale_cycles_under_load_lose_no_request() {
    cycles("scale-cycles", 1).await;
}

#[tokio::test]
#[ignore = "soak: make soak"]
async fn soak_scale_cycles_many_times() {
    let rounds = std::env::var("SIESTA_SOAK_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    cycles("soak-scale-cycles", rounds).await;
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_sigkilled_pod_loses_only_what_it_held() {
    let client = client().await;
    let (ns, stack) = prepared(&client, "rel-kill", 3).await;
    let workers = 12;
    let load = Load::start(
        stack.activator.traffic,
        &host(&ns.name),
        "/delay?ms=200",
        workers,
        Duration::from_millis(5),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let victim = live_pods(&client, &ns.name, "f").await.remove(0);
    let pgid = pod_pgid(&victim, "function").expect("the victim's process group");
    let killed_at = load.started.elapsed();
    killpg(Pid::from_raw(pgid), Signal::SIGKILL).expect("SIGKILL the pod's processes");
    eprintln!(
        "killed {} (pgid {pgid}) at {killed_at:?}",
        victim.metadata.name.as_deref().unwrap_or("?")
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    let report = load.stop().await;
    let failures = report.failures();
    // Held by the pod when it died: sent before the kill, ended after it.
    let in_flight_lost = failures
        .iter()
        .filter(|o| o.sent <= killed_at && o.done >= killed_at)
        .count();
    let later = failures.iter().filter(|o| o.sent > killed_at).count();
    report.print(
        "pod-sigkill",
        &format!("lost_in_flight_on_killed_pod={in_flight_lost} failed_after_kill={later}"),
    );
    assert!(
        in_flight_lost <= workers,
        "more failures than requests could be in flight"
    );
    assert_eq!(
        later, 0,
        "a request sent after the kill failed (connect failures must be retried on another pod)"
    );
    assert_eq!(failures.len(), in_flight_lost);
    stack.stop().await;
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn gracefully_deleted_pods_finish_their_requests() {
    let client = client().await;
    let (ns, stack) = prepared(&client, "rel-delete", 3).await;
    let load = Load::start(
        stack.activator.traffic,
        &host(&ns.name),
        "/delay?ms=1500",
        12,
        Duration::from_millis(5),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let mut deleted = 0;
    for victim in live_pods(&client, &ns.name, "f").await.into_iter().take(2) {
        let name = victim.metadata.name.clone().unwrap_or_default();
        pods.delete(&name, &DeleteParams::default().grace_period(30))
            .await
            .expect("delete pod");
        deleted += 1;
        eprintln!("deleted {name} at {:?}", load.started.elapsed());
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    // The ReplicaSet replaces them; keep the stream going through that.
    wait_ready(&client, &ns.name, "f", 3, POD_START).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    let failed = report.print("pod-graceful-delete", &format!("deleted={deleted}"));
    assert_eq!(
        failed, 0,
        "a request failed while pods were deleted gracefully"
    );
    stack.stop().await;
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn an_unready_pod_gets_no_new_requests() {
    let client = client().await;
    let (ns, stack) = prepared(&client, "rel-unready", 2).await;
    let victim = live_pods(&client, &ns.name, "f").await.remove(0);
    let victim_name = victim.metadata.name.clone().unwrap_or_default();
    let load = Load::start(
        stack.activator.traffic,
        &host(&ns.name),
        "/pod",
        6,
        Duration::from_millis(10),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    // What a failing readiness probe writes: Ready=False. The node agent
    // only writes status when its own view changes, so this stays.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    pods.patch_status(
        &victim_name,
        &PatchParams::default(),
        &Patch::Strategic(json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "ReliabilityTest"}
        ]}})),
    )
    .await
    .expect("mark the pod unready");
    let unready_at = load.started.elapsed();
    wait_endpoints(&stack, &ns.name, 1).await;
    let observed_at = load.started.elapsed();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let report = load.stop().await;
    let after: Vec<_> = report
        .outcomes
        .iter()
        .filter(|o| o.sent > observed_at)
        .collect();
    let to_victim = after
        .iter()
        .filter(|o| matches!(&o.result, Ok((_, body)) if *body == victim_name))
        .count();
    let failed = report.print(
        "pod-unready",
        &format!(
            "sent_after_unready_seen={} answered_by_unready_pod={to_victim} watch_lag={:?}",
            after.len(),
            observed_at.saturating_sub(unready_at)
        ),
    );
    assert_eq!(failed, 0);
    assert!(!after.is_empty());
    assert_eq!(to_victim, 0, "the unready pod got new requests");
    stack.stop().await;
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn an_activator_restart_drains_in_flight_requests() {
    let client = client().await;
    let (ns, mut stack) = prepared(&client, "rel-drain", 2).await;
    // Long requests so that many are in flight at the restart.
    let load = Load::start(
        stack.activator.traffic,
        &host(&ns.name),
        "/delay?ms=2000",
        10,
        Duration::from_millis(5),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let in_flight_before = metric_sum(
        &stack.activator.metrics().await,
        "siesta_activator_in_flight_requests",
        &format!("namespace=\"{}\"", ns.name),
    );
    let stopped_at = load.started.elapsed();
    let old = std::mem::replace(
        &mut stack.activator,
        ActivatorRun::start(Some(&client), siesta_activator::Config::loopback())
            .await
            .expect("second activator"),
    );
    let old_addr = old.traffic;
    old.stop().await;
    let drained_in = load.started.elapsed().saturating_sub(stopped_at);
    let report = load.stop().await;
    // Requests the old activator had accepted before the stop: all answered.
    let accepted_before: Vec<_> = report
        .outcomes
        .iter()
        .filter(|o| o.sent < stopped_at)
        .collect();
    let lost = accepted_before.iter().filter(|o| !o.ok()).count();
    // After the stop the listener is closed: a client that keeps using that
    // address gets connection refused (a Service would send it to another
    // activator pod); counted apart.
    let refused_after = report
        .outcomes
        .iter()
        .filter(|o| o.sent >= stopped_at && !o.ok())
        .count();
    eprintln!(
        "RELIABILITY activator-restart sent={} answered={} failed={lost} in_flight_at_stop={in_flight_before} drained_in={drained_in:?} refused_after_stop={refused_after} (old address {old_addr})",
        accepted_before.len(),
        accepted_before.len() - lost,
    );
    assert!(
        in_flight_before > 0.0,
        "requests were in flight at the stop"
    );
    assert_eq!(
        lost, 0,
        "an in-flight request was cut by the activator stop"
    );
    // The new activator serves the function.
    let new = Load::start(
        stack.activator.traffic,
        &host(&ns.name),
        "/",
        2,
        Duration::from_millis(50),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = new.stop().await;
    assert_eq!(r.print("activator-restart-new-instance", ""), 0);
    assert!(r.sent() > 0);
    stack.stop().await;
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_killed_controller_fails_over_without_scaling_down() {
    let client = client().await;
    ensure_function_crd(&client).await;
    let ns = TestNamespace::create(&client, "rel-failover").await;
    // Both controllers scrape the activator, so each has the demand it would
    // scale down on (the load wants fewer than 2 pods): only the guard
    // against deciding on a fresh history keeps the replicas at 2.
    let stack = Stack::start_with(&client, &ns.name, scrape_activator).await;
    // A long stable window: however slowly the pods start, the first
    // controller never has a whole window of history before it is killed.
    let spec = json!({"scale": {
        "minReplicas": 0, "maxReplicas": 5, "scaleToZeroAfterSeconds": 3600,
        "stableWindowSeconds": 600,
    }});
    create_function(&client, &ns.name, &hello("f", spec)).await;
    scale(&client, &ns.name, "f", 2).await;
    wait_ready(&client, &ns.name, "f", 2, POD_START).await;
    let mut stack = stack;
    let first = stack.controller.take().expect("controller");
    wait_for(
        "the first controller to lead",
        Duration::from_secs(20),
        || async { first.is_leader().then_some(()) },
    )
    .await;
    let load = Load::start(
        stack.activator.traffic,
        &host(&ns.name),
        "/delay?ms=50",
        4,
        Duration::from_millis(20),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.abort();
    let mut second_config = controller_config(&ns.name, &format!("rel-{}-second", ns.name));
    scrape_activator(&mut second_config, stack.activator.admin);
    let second = siesta_controller::start(client.clone(), second_config)
        .await
        .expect("second controller");
    let started = std::time::Instant::now();
    wait_for(
        "the second controller to take the lease",
        Duration::from_secs(30),
        || async { second.is_leader().then_some(()) },
    )
    .await;
    let failover = started.elapsed();
    // Fresh history: whatever the new leader runs must not scale down now.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns.name);
    let mut seen = Vec::new();
    for _ in 0..10 {
        let d = deployments.get("f").await.expect("deployment");
        seen.push(d.spec.and_then(|s| s.replicas).unwrap_or(-1));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let report = load.stop().await;
    let failed = report.print(
        "controller-failover",
        &format!("failover={failover:?} replicas_after={seen:?}"),
    );
    assert!(
        seen.iter().all(|r| *r == 2),
        "replicas changed after the failover: {seen:?}"
    );
    assert_eq!(failed, 0);
    let _ = second.shutdown().await;
    stack.stop().await;
}
