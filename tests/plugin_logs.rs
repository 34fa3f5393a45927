//! `kubectl siesta logs` against a scripted apiserver on a loopback socket:
//! the local cluster's node agent serves no kubelet API (so `pods/log`
//! fails there), and this checks what the plugin asks for and prints: the
//! Function's pods by label, each pod's log prefixed with its name,
//! `--tail` passed on, and `-f` following pods found by a watch.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::{Request, Response};

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-siesta");

type Body = BoxBody<Bytes, Infallible>;

fn full(s: String) -> Body {
    http_body_util::Full::new(Bytes::from(s)).boxed()
}

fn pod(name: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "resourceVersion": "5", "labels": {"siesta.dev/function": "hello"}},
        "spec": {"containers": [{"name": "function", "image": "x"}]},
        "status": {"containerStatuses": [{"name": "function", "image": "x", "imageID": "", "ready": true,
                    "restartCount": 0, "state": {"running": {"startedAt": "2026-12-01T10:00:00Z"}}}]},
    })
}

/// What the fake apiserver was asked: path and query of every request.
type Seen = Arc<Mutex<Vec<String>>>;

async fn answer(req: Request<hyper::body::Incoming>, seen: Seen) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    seen.lock().unwrap().push(format!("{path}?{query}"));
    let params: HashMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let json = |v: serde_json::Value| {
        let mut r = Response::new(full(v.to_string()));
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    };
    match path.as_str() {
        "/apis/siesta.dev/v1alpha1/namespaces/default/functions/hello" => json(serde_json::json!({
            "apiVersion": "siesta.dev/v1alpha1", "kind": "Function",
            "metadata": {"name": "hello", "namespace": "default"},
            "spec": {"image": "x"},
        })),
        "/api/v1/namespaces/default/pods" if params.get("watch").is_some_and(|w| w == "true") => {
            // A pod that starts later (a wake from zero), then no news.
            let added =
                serde_json::json!({"type": "ADDED", "object": pod("hello-c")}).to_string() + "\n";
            let events = futures::stream::once(async move {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                Ok::<_, Infallible>(Frame::data(Bytes::from(added)))
            })
            .chain(futures::stream::pending());
            Response::new(BodyExt::boxed(StreamBody::new(events)))
        }
        "/api/v1/namespaces/default/pods" => json(serde_json::json!({
            "apiVersion": "v1", "kind": "PodList",
            "metadata": {"resourceVersion": "5"},
            "items": [pod("hello-b"), pod("hello-a")],
        })),
        p if p.starts_with("/api/v1/namespaces/default/pods/") && p.ends_with("/log") => {
            let name = p
                .trim_start_matches("/api/v1/namespaces/default/pods/")
                .trim_end_matches("/log");
            let lines: Vec<String> = (1..=3).map(|i| format!("{name} line {i}")).collect();
            let tail = params
                .get("tailLines")
                .and_then(|t| t.parse::<usize>().ok())
                .unwrap_or(lines.len());
            let text = lines[lines.len() - tail.min(lines.len())..].join("\n") + "\n";
            if params.get("follow").is_some_and(|f| f == "true") {
                // The log so far, then nothing more for a while (a live pod).
                let chunks = futures::stream::iter([Ok(Frame::data(Bytes::from(text)))])
                    .chain(futures::stream::pending());
                Response::new(BodyExt::boxed(StreamBody::new(chunks)))
            } else {
                Response::new(full(text))
            }
        }
        _ => {
            let mut r = json(
                serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": format!("{path} not found"), "reason": "NotFound", "code": 404}),
            );
            *r.status_mut() = hyper::StatusCode::NOT_FOUND;
            r
        }
    }
}

/// Starts the fake apiserver; returns a kubeconfig path for it and the log
/// of requests.
async fn fake_apiserver(dir: &std::path::Path) -> (std::path::PathBuf, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let addr = siesta_testkit::backend::serve(move |req| answer(req, s.clone())).await;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"http://{addr}\"}}\n\
             users:\n- name: u\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: u, namespace: default}}\n\
             current-context: fake\n"
        ),
    )
    .unwrap();
    (kubeconfig, seen)
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("siesta-plugin-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn logs_prints_each_pods_log_prefixed_with_its_name_and_passes_the_tail() {
    let dir = temp_dir("logs");
    let (kubeconfig, seen) = fake_apiserver(&dir).await;
    let kc = kubeconfig.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(PLUGIN)
            .args(["--kubeconfig", &kc, "logs", "hello", "--tail", "2"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "[hello-a] hello-a line 2\n[hello-a] hello-a line 3\n[hello-b] hello-b line 2\n[hello-b] hello-b line 3\n"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|r| r.starts_with("/api/v1/namespaces/default/pods?")
                && r.contains("labelSelector=siesta.dev%2Ffunction%3Dhello")),
        "pods listed by the Function's label: {seen:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn logs_follow_streams_the_running_pods_and_picks_up_a_new_one_from_the_watch() {
    let dir = temp_dir("follow");
    let (kubeconfig, seen) = fake_apiserver(&dir).await;
    let kc = kubeconfig.display().to_string();
    let mut child = Command::new(PLUGIN)
        .args(["--kubeconfig", &kc, "logs", "hello", "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            lines.push(line);
            if lines.len() == 9 || started.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
        lines
    });
    let lines = tokio::time::timeout(Duration::from_secs(30), lines)
        .await
        .expect("nine log lines within 30 s")
        .unwrap();
    // Still following (the streams stay open): it has not exited.
    assert!(child.try_wait().unwrap().is_none(), "logs -f exited early");
    child.kill().unwrap();
    let _ = child.wait();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(sorted.len(), 9, "{lines:?}");
    assert_eq!(sorted[0], "[hello-a] hello-a line 1");
    assert_eq!(sorted[5], "[hello-b] hello-b line 3");
    // The pod the watch found later came last, with its whole log.
    assert_eq!(
        lines[6..],
        [
            "[hello-c] hello-c line 1",
            "[hello-c] hello-c line 2",
            "[hello-c] hello-c line 3"
        ]
    );
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|r| r.contains("/log?") && r.contains("follow=true")),
        "logs followed: {seen:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
