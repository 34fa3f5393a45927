//! The apiserver goes away for 30 s (killed, then started again with the
//! same command line): warm traffic keeps flowing from the activator's
//! caches, a cold request parked during the outage is answered once the
//! apiserver is back (within its queue timeout), and the controller and
//! activator recover their watches without a restart.
//!
//! Disruptive, so it runs only under `make soak`, which gives it a cluster
//! of its own (`SIESTA_OUTAGE_STATE_DIR` names that cluster's state dir).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use siesta_reliability::{Load, Stack, create_function, hello, wait_ready};
use siesta_testkit::{TestNamespace, client, ensure_function_crd, http_get, wait_for};

const OUTAGE: Duration = Duration::from_secs(30);

fn state_dir() -> PathBuf {
    std::env::var_os("SIESTA_OUTAGE_STATE_DIR")
        .map(PathBuf::from)
        .expect(
            "SIESTA_OUTAGE_STATE_DIR: run this through `make soak`, which starts a cluster for it",
        )
}

/// Kills the apiserver and returns how to start it again: its argv.
fn kill_apiserver(dir: &std::path::Path) -> Vec<String> {
    let pid: i32 = std::fs::read_to_string(dir.join("kube-apiserver.pid"))
        .expect("kube-apiserver.pid")
        .trim()
        .parse()
        .expect("a pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the apiserver's cmdline");
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill the apiserver");
    argv
}

// The apiserver must outlive this test (down.sh stops it by its pid file),
// so it is not waited for.
#[allow(clippy::zombie_processes)]
fn restart_apiserver(dir: &std::path::Path, argv: &[String]) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("logs/kube-apiserver.log"))
        .expect("apiserver log");
    let child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("start the apiserver again");
    std::fs::write(dir.join("kube-apiserver.pid"), child.id().to_string()).expect("pid file");
}

#[tokio::test]
#[ignore = "soak: make soak"]
async fn soak_apiserver_outage_keeps_warm_traffic_and_recovers() {
    let dir = state_dir();
    let client = client().await;
    ensure_function_crd(&client).await;
    let ns = TestNamespace::create(&client, "rel-outage").await;
    let stack = Stack::start(&client, &ns.name).await;
    let warm = hello(
        "warm",
        json!({"scale": {"minReplicas": 2, "maxReplicas": 2}}),
    );
    create_function(&client, &ns.name, &warm).await;
    create_function(&client, &ns.name, &hello("cold", json!({}))).await;
    wait_ready(&client, &ns.name, "warm", 2, Duration::from_secs(60)).await;
    let traffic = stack.activator.traffic;
    let warm_host = format!("warm.{}.siesta.local", ns.name);
    wait_for("warm answering", Duration::from_secs(30), || async {
        let (code, _) = http_get(&traffic.to_string(), "/", &warm_host).await.ok()?;
        (code == 200).then_some(())
    })
    .await;
    stack.activator.wait_known(&ns.name, "cold").await;

    let load = Load::start(
        traffic,
        &warm_host,
        "/delay?ms=20",
        4,
        Duration::from_millis(10),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let argv = kill_apiserver(&dir);
    let down_at = Instant::now();
    eprintln!("apiserver killed; down for {OUTAGE:?}");

    // A cold request parked during the outage.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cold_host = format!("cold.{}.siesta.local", ns.name);
    let cold = tokio::spawn({
        let addr = traffic.to_string();
        async move {
            let sent = Instant::now();
            (http_get(&addr, "/pod", &cold_host).await, sent.elapsed())
        }
    });

    tokio::time::sleep(OUTAGE.saturating_sub(down_at.elapsed())).await;
    restart_apiserver(&dir, &argv);
    let up_at = Instant::now();
    wait_for("the apiserver back", Duration::from_secs(60), || async {
        client.apiserver_version().await.ok().map(|_| ())
    })
    .await;
    eprintln!("apiserver back after {:?}", up_at.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    let warm_failed = report.print("apiserver-outage-warm", &format!("outage={OUTAGE:?}"));

    let (cold_result, cold_took) = cold.await.expect("join");
    eprintln!("RELIABILITY apiserver-outage-cold result={cold_result:?} waited={cold_took:?}");

    // Recovery without restarts: a Function created now is reconciled by
    // the same controller and routed by the same activator.
    create_function(&client, &ns.name, &hello("after", json!({}))).await;
    let after_host = format!("after.{}.siesta.local", ns.name);
    let after = wait_for(
        "the new Function answering through the same activator",
        Duration::from_secs(90),
        || async {
            let (code, body) = http_get(&traffic.to_string(), "/pod", &after_host)
                .await
                .ok()?;
            (code == 200).then_some(body)
        },
    )
    .await;
    eprintln!(
        "RELIABILITY apiserver-outage-recovery new_function_answered_by={}",
        after.trim()
    );

    assert_eq!(
        warm_failed, 0,
        "warm traffic failed during the apiserver outage"
    );
    match cold_result {
        Ok((200, _)) => {}
        other => panic!("the cold request parked during the outage was not answered: {other:?}"),
    }
    stack.stop().await;
}
