//! `kubectl siesta logs NAME [-f]`: the logs of the Function's pods (label
//! `siesta.dev/function=NAME`), each line prefixed with its pod. With `-f` a
//! watch picks up every new pod as its container starts, so a follow
//! started at zero shows the pod the next request wakes; Ctrl-C ends it.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams, LogParams};
use kube::runtime::{WatchStreamExt, watcher};
use siesta_api::FUNCTION_LABEL;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::cluster::Cluster;

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The Function's name.
    pub name: String,
    /// Keep following, and pick up new pods as they start.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Lines of each pod's past log to show (default: all; with -f, 10).
    #[arg(long)]
    pub tail: Option<i64>,
}

/// `[pod] line`.
pub fn prefixed(pod: &str, line: &str) -> String {
    format!("[{pod}] {line}\n")
}

fn running(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.state
                    .as_ref()
                    .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
            })
        })
}

/// The apiserver's own message (not the whole Status) for one-line errors.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

type Stdout = Arc<Mutex<tokio::io::Stdout>>;

/// Copies one pod's log to stdout until it ends.
async fn copy_log(pods: Api<Pod>, pod: String, lp: LogParams, out: Stdout) -> Result<(), String> {
    let stream = pods
        .log_stream(&pod, &lp)
        .await
        .map_err(|e| format!("could not read the log of pod {pod}: {}", api_message(&e)))?;
    let mut lines = stream.lines();
    while let Some(line) = lines.next().await {
        let line = line.map_err(|e| format!("the log of pod {pod} broke off: {e}"))?;
        let mut o = out.lock().await;
        let _ = o.write_all(prefixed(&pod, &line).as_bytes()).await;
        let _ = o.flush().await;
    }
    Ok(())
}

pub async fn run(c: &Cluster, a: &LogsArgs) -> anyhow::Result<ExitCode> {
    let ns = &c.namespace;
    // Fail on a wrong name before waiting for pods that never come.
    c.function(ns, &a.name).await?;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), ns);
    let selector = format!("{FUNCTION_LABEL}={}", a.name);
    let out: Stdout = Arc::new(Mutex::new(tokio::io::stdout()));
    if a.follow {
        follow(c, a, &pods, &selector, out).await
    } else {
        print_once(c, a, &pods, &selector, out).await
    }
}

/// The logs of the pods running now, one after the other.
async fn print_once(
    c: &Cluster,
    a: &LogsArgs,
    pods: &Api<Pod>,
    selector: &str,
    out: Stdout,
) -> anyhow::Result<ExitCode> {
    let ns = &c.namespace;
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| anyhow::anyhow!("could not list the pods of {ns}/{}: {e}", a.name))?;
    let mut names: Vec<String> = list
        .items
        .iter()
        .filter(|p| running(p))
        .map(|p| p.name_any())
        .collect();
    names.sort();
    if names.is_empty() {
        eprintln!(
            "No running pods of Function {ns}/{} (at zero?); `-f` waits for the next one.",
            a.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
    for pod in names {
        let lp = LogParams {
            tail_lines: a.tail,
            ..LogParams::default()
        };
        if let Err(e) = copy_log(pods.clone(), pod, lp, out.clone()).await {
            eprintln!("error: {e}");
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `-f`: every running pod's log, and each new pod's as it starts, until
/// Ctrl-C.
async fn follow(
    c: &Cluster,
    a: &LogsArgs,
    pods: &Api<Pod>,
    selector: &str,
    out: Stdout,
) -> anyhow::Result<ExitCode> {
    let ns = &c.namespace;
    let tail = a.tail.or(Some(10));
    let mut followed: HashSet<String> = HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    let events = watcher(pods.clone(), watcher::Config::default().labels(selector))
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(events);
    let mut first = true;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            event = events.try_next() => match event {
                Ok(Some(p)) => {
                    let uid = p.uid().unwrap_or_else(|| p.name_any());
                    if !running(&p) || followed.contains(&uid) {
                        continue;
                    }
                    followed.insert(uid);
                    // Pods already running get their tail; pods that start
                    // while following get their whole log from the start.
                    let lp = LogParams {
                        follow: true,
                        tail_lines: if first { tail } else { None },
                        ..LogParams::default()
                    };
                    let name = p.name_any();
                    eprintln!("following pod {name}");
                    tasks.spawn(copy_log(pods.clone(), name, lp, out.clone()));
                }
                Ok(None) => break,
                Err(e) => eprintln!("warning: the watch of the pods of {ns}/{} failed: {e}; retrying", a.name),
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(Err(e)) = done {
                    eprintln!("warning: {e}");
                }
            }
            // The first listing is over once a second passed without news.
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)), if first => first = false,
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_names_its_pod() {
        assert_eq!(
            prefixed("hello-7d9-abc", "hello listening"),
            "[hello-7d9-abc] hello listening\n"
        );
    }
}
