//! What scaling to zero saved, on the local cluster: the controller and an
//! activator in-process (`siesta_testkit::stack`), the node agent running
//! the example image. The test watches the Function's pods itself and
//! keeps each one's own `startTime` and last container `finishedAt`; the
//! controller's `status.usage` and its pod-seconds counter must agree with
//! them within a second, across a controller restart (continued, not
//! reset, not counted twice). At the end it runs the real `kubectl-siesta
//! list` and `explain` and prints what they show.
//!
//! Run: `KUBECONFIG=.cluster/kubeconfig cargo test -p siesta --test usage_cluster -- --include-ignored --nocapture`

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use siesta_api::usage::Ledger;
use siesta_api::{FUNCTION_LABEL, Function};
use siesta_testkit::metrics_text::metric_sum;
use siesta_testkit::stack::{Stack, controller_config, scrape_activator};
use siesta_testkit::{
    TestNamespace, client, ensure_function_crd, http_get, wait_for, wait_for_state,
};

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-siesta");

/// Each pod's own start and stop (Unix ms), as its status shows them.
type Seen = Arc<Mutex<BTreeMap<String, (i64, Option<i64>)>>>;

/// Keeps, for every pod of the Function, its `status.startTime` and, once
/// all its containers have terminated, their latest `finishedAt`.
fn watch_pods(
    client: &kube::Client,
    ns: &str,
    function: &str,
) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let config = watcher::Config::default().labels(&format!("{FUNCTION_LABEL}={function}"));
    let record = seen.clone();
    let task = tokio::spawn(async move {
        let events = watcher(api, config);
        futures::pin_mut!(events);
        while let Some(event) = events.next().await {
            let pod = match event {
                Ok(
                    watcher::Event::Apply(p)
                    | watcher::Event::InitApply(p)
                    | watcher::Event::Delete(p),
                ) => p,
                _ => continue,
            };
            let Some(status) = pod.status.as_ref() else {
                continue;
            };
            let Some(start) = status.start_time.as_ref() else {
                continue;
            };
            let states: Vec<_> = status
                .container_statuses
                .iter()
                .flatten()
                .map(|c| c.state.as_ref().and_then(|s| s.terminated.as_ref()))
                .collect();
            let end = if !states.is_empty() && states.iter().all(Option::is_some) {
                states
                    .iter()
                    .flatten()
                    .filter_map(|t| t.finished_at.as_ref())
                    .map(|f| f.0.as_millisecond())
                    .max()
            } else {
                None
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            let mut seen = record.lock().unwrap();
            let entry = seen.entry(name).or_insert((start.0.as_millisecond(), None));
            if entry.1.is_none() {
                entry.1 = end;
            }
        }
    });
    (seen, task)
}

fn seen_total(seen: &Seen) -> (usize, f64, bool) {
    let seen = seen.lock().unwrap();
    let all_ended = seen.values().all(|(_, e)| e.is_some());
    let total = seen
        .values()
        .map(|(s, e)| (e.unwrap_or(*s) - s) as f64 / 1000.0)
        .sum();
    (seen.len(), total, all_ended)
}

async fn replicas(deployments: &Api<Deployment>, name: &str) -> Option<i32> {
    deployments.get_opt(name).await.ok()??.spec?.replicas
}

/// The controller's pod-seconds counter for the Function (0 when absent).
async fn counter(admin: std::net::SocketAddr, ns: &str) -> f64 {
    let (_, text) = http_get(&admin.to_string(), "/metrics", "admin")
        .await
        .expect("read the controller's /metrics");
    let needle = format!("function=\"hello\",namespace=\"{ns}\"}}");
    metric_sum(
        &text,
        "siesta_controller_function_pod_seconds_total",
        &needle,
    )
}

/// The record's pods, all closed, once it holds `n` of them: (pod → (start,
/// end)), and the record's total pod-seconds.
async fn closed_record(functions: &Api<Function>, n: usize) -> (BTreeMap<String, (i64, i64)>, f64) {
    wait_for_state(
        &format!("status.usage to hold {n} closed pods"),
        Duration::from_secs(30),
        || async {
            let f = functions.get("hello").await.map_err(|e| e.to_string())?;
            let usage = f.status.and_then(|s| s.usage).ok_or("no status.usage")?;
            let ledger = Ledger::from_status(&usage).ok_or("an unreadable status.usage")?;
            let closed: BTreeMap<String, (i64, i64)> = ledger
                .pods
                .iter()
                .filter_map(|p| Some((p.pod.clone(), (p.start, p.end?))))
                .collect();
            if closed.len() != n || ledger.pods.len() != n {
                return Err(format!("{usage:?}"));
            }
            let now = chrono::Utc::now().timestamp_millis();
            Ok((
                closed,
                ledger.used_between(ledger.since, now, now).pod_seconds,
            ))
        },
    )
    .await
}

fn assert_matches(seen: &Seen, record: &BTreeMap<String, (i64, i64)>) {
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        record.keys().collect::<Vec<_>>(),
        "the record names the pods that ran"
    );
    for (pod, (start, end)) in record {
        let (s, e) = seen[pod];
        let e = e.expect("every pod showed its finishedAt");
        assert!(
            (start - s).abs() <= 1000 && (end - e).abs() <= 1000,
            "{pod}: record {start}..{end}, the pod's own {s}..{e}"
        );
    }
}

/// Requests of `ms` each, from `clients` loops, until `stop`.
fn load(
    clients: usize,
    traffic: String,
    host: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<usize>> {
    (0..clients)
        .map(|_| {
            let (traffic, host, stop) = (traffic.clone(), host.clone(), stop.clone());
            tokio::spawn(async move {
                let mut ok = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok((200, _)) = http_get(&traffic, "/delay?ms=1000", &host).await {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect()
}

fn plugin(args: &[&str]) -> String {
    let out = Command::new(PLUGIN)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("could not run kubectl-siesta: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "kubectl-siesta {args:?}: {stdout}\n{stderr}"
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the local cluster: make test"]
async fn the_pod_seconds_match_the_pods_own_times_across_a_controller_restart() {
    let t0 = Instant::now();
    let client = client().await;
    ensure_function_crd(&client).await;
    let ns = TestNamespace::create(&client, "usage").await;
    let mut stack = Stack::start_with(&client, &ns.name, scrape_activator).await;
    let functions: Api<Function> = Api::namespaced(client.clone(), &ns.name);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let (seen, watch) = watch_pods(&client, &ns.name, "hello");
    let function: Function = serde_json::from_value(json!({
        "apiVersion": "siesta.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": "hello"},
        "spec": {
            "image": "siesta.dev/examples/hello:latest",
            "port": 8080,
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
            "scale": {
                "minReplicas": 0, "maxReplicas": 2,
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
    let traffic = stack.activator.traffic.to_string();

    // Two requests in flight at target 1: out from zero to 2 pods.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loops = load(2, traffic.clone(), host.clone(), stop.clone());
    wait_for(
        "2 replicas for 2 in flight",
        Duration::from_secs(60),
        || async { (replicas(&deployments, "hello").await == Some(2)).then_some(()) },
    )
    .await;
    stack
        .activator
        .wait_endpoints(&ns.name, "hello", 2, Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answered = 0;
    for l in loops {
        answered += l.await.unwrap_or(0);
    }
    assert!(answered > 0, "the load was answered");

    // Back to zero: every pod showed its end.
    let (n, total, _) = wait_for_state("the pods to end", Duration::from_secs(90), || async {
        let (n, total, all_ended) = seen_total(&seen);
        let r = replicas(&deployments, "hello").await;
        if n >= 2 && all_ended && r == Some(0) {
            Ok((n, total, all_ended))
        } else {
            Err(format!(
                "{n} pods seen, all ended: {all_ended}, replicas {r:?}"
            ))
        }
    })
    .await;
    let (record, recorded) = closed_record(&functions, n).await;
    assert_matches(&seen, &record);
    assert!(
        (recorded - total).abs() <= 1.0,
        "the record's {recorded:.3} pod-seconds vs the pods' own {total:.3}"
    );
    let controller = stack.controller.as_ref().expect("a controller");
    let counted = counter(controller.admin_addr(), &ns.name).await;
    // The counter takes a pod up to when its end was seen (the tick after
    // its finishedAt, which is itself truncated to the second).
    assert!(
        counted >= total - 1.0 && counted <= total + 2.0 * n as f64,
        "the counter's {counted:.3} pod-seconds vs the pods' own {total:.3}"
    );
    println!(
        "MEASURED first run: {n} pods, their own times {total:.3} pod-seconds, status.usage {recorded:.3}, counter {counted:.3}"
    );

    // A new controller process: it reads the record back and continues it.
    stack.stop_controller().await;
    let mut config = controller_config(&ns.name, &format!("test-{}-second", ns.name));
    scrape_activator(&mut config, stack.activator.admin);
    let second = siesta_controller::start(client.clone(), config)
        .await
        .expect("start the second controller");
    stack
        .activator
        .control
        .set_controllers(vec![format!("http://{}", second.admin_addr())]);
    let mut leader = second.leader();
    tokio::time::timeout(Duration::from_secs(30), leader.wait_for(|l| *l))
        .await
        .expect("the second controller leads within 30 s")
        .expect("a leader signal");
    stack.controller = Some(second);
    let admin = stack
        .controller
        .as_ref()
        .expect("a controller")
        .admin_addr();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        counter(admin, &ns.name).await,
        0.0,
        "the new process does not count again what the old one recorded"
    );

    // One request from zero: one more pod, added to the record.
    let (code, _) = http_get(&traffic, "/", &host)
        .await
        .expect("a request at zero");
    assert_eq!(code, 200, "a request at zero is answered");
    let (n2, total2) = wait_for_state("the new pod to end", Duration::from_secs(90), || async {
        let (n2, total2, all_ended) = seen_total(&seen);
        let r = replicas(&deployments, "hello").await;
        if n2 > n && all_ended && r == Some(0) {
            Ok((n2, total2))
        } else {
            Err(format!(
                "{n2} pods seen, all ended: {all_ended}, replicas {r:?}"
            ))
        }
    })
    .await;
    let (record2, recorded2) = closed_record(&functions, n2).await;
    assert_matches(&seen, &record2);
    for (pod, span) in &record {
        assert_eq!(
            record2.get(pod),
            Some(span),
            "the first run's {pod} is kept as it was"
        );
    }
    assert!(
        (recorded2 - total2).abs() <= 1.0,
        "the record's {recorded2:.3} pod-seconds vs the pods' own {total2:.3}"
    );
    let counted2 = counter(admin, &ns.name).await;
    let new_seconds = total2 - total;
    assert!(
        counted2 >= new_seconds - 1.0 && counted2 <= new_seconds + 2.0 * (n2 - n) as f64,
        "the second counter's {counted2:.3} vs the new pods' own {new_seconds:.3}"
    );
    println!(
        "MEASURED after the restart: {n2} pods, their own times {total2:.3} pod-seconds, status.usage {recorded2:.3}, the new process's counter {counted2:.3}"
    );

    // The plugin, as a user runs it.
    let kubeconfig = std::env::var("KUBECONFIG").unwrap_or_default();
    let controller_url = format!("http://{admin}");
    let common = ["--kubeconfig", kubeconfig.as_str(), "-n", ns.name.as_str()];
    let list = plugin(&[&common[..], &["list", "--since", "24h"]].concat());
    let explain = plugin(
        &[
            &common[..],
            &[
                "explain",
                "hello",
                "--since",
                "24h",
                "--controller-url",
                &controller_url,
            ],
        ]
        .concat(),
    );
    let json: serde_json::Value = serde_json::from_str(&plugin(
        &[
            &common[..],
            &[
                "explain",
                "hello",
                "--since",
                "90m",
                "-o",
                "json",
                "--controller-url",
                &controller_url,
            ],
        ]
        .concat(),
    ))
    .expect("explain -o json is JSON");
    let used = json["saved"]["used"]["podSeconds"]
        .as_f64()
        .expect("saved.used.podSeconds");
    assert!(
        (used - total2).abs() <= 1.0,
        "explain -o json: {used} vs {total2}"
    );
    assert!(
        list.lines().next().is_some_and(|h| h.contains("SAVED")),
        "{list}"
    );
    assert!(
        explain.contains("What scaling to zero saved over"),
        "{explain}"
    );
    println!("$ kubectl siesta -n {} list --since 24h\n{list}", ns.name);
    println!(
        "$ kubectl siesta -n {} explain hello --since 24h\n{explain}",
        ns.name
    );
    println!(
        "$ kubectl siesta -n {} explain hello --since 90m -o json | jq .saved\n{}",
        ns.name,
        serde_json::to_string_pretty(&json["saved"]).unwrap_or_default()
    );
    println!("MEASURED test took {:.1}s", t0.elapsed().as_secs_f64());
    watch.abort();
    stack.stop().await;
}
