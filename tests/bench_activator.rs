//! `siesta bench-activator`, the hidden subcommand that `make bench`
//! measures and hack/pgo/train.sh trains the release profile on: it must
//! route to its static backend, park while "at zero" and release on SIGUSR1,
//! and exit cleanly on SIGTERM (the profile is written at exit).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use siesta_testkit::{backend, http_get};

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");

/// Kills the activator if the test fails before it exits: a child left
/// running would hold the test's output open and hang `cargo test`.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

#[tokio::test]
async fn parks_at_zero_routes_after_sigusr1_and_exits_on_sigterm() {
    // A pod that answers with the path it was asked for.
    let backend = backend::serve(|req| async move {
        Response::new(Full::new(Bytes::from(format!(
            "backend saw {}",
            req.uri().path()
        ))))
    })
    .await;
    let mut child = KillOnDrop(
        Command::new(SIESTA)
            .args([
                "bench-activator",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ])
            .args([
                "--function",
                "t/echo",
                "--backend",
                &backend.to_string(),
                "--at-zero",
            ])
            .env("SIESTA_LOG", "warn")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut banner = String::new();
    while !banner.starts_with("bench activator:") {
        banner.clear();
        assert_ne!(
            stderr.read_line(&mut banner).unwrap(),
            0,
            "exited before its banner"
        );
    }
    // "bench activator: t/echo -> ADDR (HTTP/1.1) on LISTEN (admin ...), at zero until SIGUSR1"
    let listen = banner
        .split(" on ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no listen address in {banner:?}"))
        .to_string();
    assert!(banner.contains("at zero until SIGUSR1"), "{banner}");

    let request =
        tokio::spawn(async move { http_get(&listen, "/first", "echo.t.siesta.local").await });
    // Parked: nothing comes back while the function has no endpoint.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !request.is_finished(),
        "an answer before the backend was added: {:?}",
        request.await
    );
    signal(child.0.id(), "USR1");
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .expect("no answer 10 s after SIGUSR1")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "backend saw /first");

    signal(child.0.id(), "TERM");
    let status = child.0.wait().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status}");
}
