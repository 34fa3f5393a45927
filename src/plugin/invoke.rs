//! `kubectl siesta invoke NAME`: one request to the Function through the
//! activator, via the apiserver's service proxy and the activator's path
//! routing (`/fn/NAMESPACE/NAME/...`), so nothing needs a port-forward.
//!
//! Cold or warm: cold when the Function had no ready pod before the call,
//! or when a new `status.lastColdStart` appeared by the time it returned
//! (someone else's request may have woken it a moment before).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use super::cluster::{self, Cluster};
use super::{Global, Output, print_object};

#[derive(Args, Debug)]
pub struct InvokeArgs {
    /// The Function's name.
    pub name: String,
    /// The path and query sent to the function.
    #[arg(default_value = "/")]
    pub path: String,
    /// Request body (`-d @FILE` reads a file); implies POST unless -X says otherwise.
    #[arg(short = 'd', long = "data")]
    pub data: Option<String>,
    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// The request method (default GET, or POST with -d).
    #[arg(short = 'X', long = "request")]
    pub method: Option<String>,
}

/// What `invoke -o json|yaml` prints.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Invocation {
    pub status: u16,
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: String,
    pub seconds: f64,
    pub cold: bool,
    /// Why it counts as cold or warm.
    pub why: String,
}

/// `Name: value` into a pair, or why not.
pub fn parse_header(h: &str) -> Result<(String, String), String> {
    let (k, v) = h
        .split_once(':')
        .ok_or_else(|| format!("-H {h:?} is not `Name: value`"))?;
    let k = k.trim();
    if k.is_empty() || http::HeaderName::from_bytes(k.as_bytes()).is_err() {
        return Err(format!("-H {h:?}: {k:?} is not a header name"));
    }
    Ok((k.to_string(), v.trim().to_string()))
}

/// The apiserver path of `path` on Function `ns/name` through the activator
/// Service `svc_ns/svc`.
pub fn proxy_path(svc_ns: &str, svc: &str, ns: &str, name: &str, path: &str) -> String {
    let path = path.strip_prefix('/').unwrap_or(path);
    format!("/api/v1/namespaces/{svc_ns}/services/{svc}:http/proxy/fn/{ns}/{name}/{path}")
}

/// `took 1.23 s (cold: the function was at zero)`.
pub fn took_line(elapsed: Duration, cold: bool, why: &str) -> String {
    let secs = elapsed.as_secs_f64();
    let took = if secs < 1.0 {
        format!("{} ms", elapsed.as_millis())
    } else {
        format!("{secs:.2} s")
    };
    if cold {
        format!("took {took} (cold: {why})")
    } else {
        format!("took {took} (warm)")
    }
}

/// A request to send: method, headers, body.
type Request = (http::Method, Vec<(String, String)>, Vec<u8>);

/// The method, headers and body that `-X`, `-H` and `-d` ask for.
fn request_of(a: &InvokeArgs) -> anyhow::Result<Request> {
    let mut headers = Vec::new();
    for h in &a.headers {
        headers.push(parse_header(h).map_err(anyhow::Error::msg)?);
    }
    let body = match a.data.as_deref() {
        Some(d) if d.starts_with('@') => {
            std::fs::read(&d[1..]).map_err(|e| anyhow::anyhow!("could not read -d {d}: {e}"))?
        }
        Some(d) => d.as_bytes().to_vec(),
        None => Vec::new(),
    };
    let method = match (&a.method, &a.data) {
        (Some(m), _) => http::Method::from_bytes(m.to_uppercase().as_bytes())
            .map_err(|_| anyhow::anyhow!("-X {m:?} is not an HTTP method"))?,
        (None, Some(_)) => http::Method::POST,
        (None, None) => http::Method::GET,
    };
    Ok((method, headers, body))
}

/// Sends the request to the activator, directly with `--activator-url`,
/// else through the apiserver's service proxy.
async fn send(
    c: &Cluster,
    g: &Global,
    a: &InvokeArgs,
    method: http::Method,
    headers: &[(String, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> anyhow::Result<cluster::Answer> {
    let ns = &c.namespace;
    let answer = match &g.activator_url {
        Some(url) => {
            let route = proxy_path("", "", ns, &a.name, &a.path);
            let route = &route[route.find("/fn/").unwrap_or(0)..];
            let url = format!("{}{route}", url.trim_end_matches('/'));
            cluster::plain_request(method, &url, headers, body, timeout).await?
        }
        None => {
            let (svc_ns, svc) = c.activator_service(g).await?;
            let path = proxy_path(&svc_ns, &svc, ns, &a.name, &a.path);
            let answer = tokio::time::timeout(timeout, c.raw(method, &path, headers, body))
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "no answer through the service proxy of {svc_ns}/{svc} in {} s",
                        timeout.as_secs()
                    )
                })??;
            // The apiserver's own refusal, not the function's answer.
            if answer.status == http::StatusCode::SERVICE_UNAVAILABLE
                && let Some(hint) = cluster::proxy_hint(
                    &answer.body,
                    "--activator-url http://ACTIVATOR_POD_IP:8080",
                )
            {
                anyhow::bail!("the activator Service {svc_ns}/{svc} could not be reached: {hint}");
            }
            answer
        }
    };
    Ok(answer)
}

/// Whether the call was a cold start, and why it counts as one or not:
/// the function was at zero, or a new cold start was recorded meanwhile.
async fn was_cold(
    c: &Cluster,
    name: &str,
    status_before: &siesta_api::FunctionStatus,
) -> anyhow::Result<(bool, String)> {
    let (cold, why) = if status_before.ready_replicas == 0 {
        (true, "the function was at zero".to_string())
    } else {
        let after = c.function(&c.namespace, name).await?;
        let at = |s: Option<&siesta_api::cold_start::ColdStartStatus>| s.map(|c| c.at.clone());
        let new = at(after
            .status
            .as_ref()
            .and_then(|s| s.last_cold_start.as_ref()));
        if new.is_some() && new != at(status_before.last_cold_start.as_ref()) {
            (
                true,
                "a new cold start was recorded during the call".to_string(),
            )
        } else {
            (
                false,
                format!("{} pod(s) were ready", status_before.ready_replicas),
            )
        }
    };
    Ok((cold, why))
}

pub async fn run(
    c: &Cluster,
    g: &Global,
    a: &InvokeArgs,
    out: Option<Output>,
) -> anyhow::Result<ExitCode> {
    let ns = &c.namespace;
    let (method, headers, body) = request_of(a)?;
    let before = c.function(ns, &a.name).await?;
    // The activator gives up after the function's own timeout; a little
    // more here so its answer (504) arrives rather than ours.
    let timeout =
        Duration::from_secs(u64::try_from(before.spec.timeout_seconds).unwrap_or(300) + 10);
    let status_before = before.status.unwrap_or_default();
    let started = Instant::now();
    let answer = send(c, g, a, method, &headers, body, timeout).await?;
    let elapsed = started.elapsed();
    let (cold, why) = was_cold(c, &a.name, &status_before).await?;
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    match out {
        Some(out) => print_object(
            &Invocation {
                status: answer.status.as_u16(),
                headers: answer
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                body: text,
                seconds: elapsed.as_secs_f64(),
                cold,
                why,
            },
            out,
        )?,
        None => {
            println!(
                "HTTP {} {}",
                answer.status.as_u16(),
                answer.status.canonical_reason().unwrap_or("")
            );
            print!("{text}");
            if !text.is_empty() && !text.ends_with('\n') {
                println!();
            }
            println!("{}", took_line(elapsed, cold, &why));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_as_curl_writes_them() {
        assert_eq!(
            parse_header("X-Id: 7").unwrap(),
            ("X-Id".into(), "7".into())
        );
        assert!(
            parse_header("no colon")
                .unwrap_err()
                .contains("not `Name: value`")
        );
        assert!(
            parse_header("bad name: x")
                .unwrap_err()
                .contains("not a header name")
        );
    }

    #[test]
    fn the_request_goes_through_the_service_proxy_with_path_routing() {
        assert_eq!(
            proxy_path(
                "siesta",
                "rel-siesta-activator",
                "team-a",
                "hello",
                "/greet?x=1"
            ),
            "/api/v1/namespaces/siesta/services/rel-siesta-activator:http/proxy/fn/team-a/hello/greet?x=1"
        );
    }

    #[test]
    fn the_timing_line_says_cold_or_warm() {
        assert_eq!(
            took_line(
                Duration::from_millis(1234),
                true,
                "the function was at zero"
            ),
            "took 1.23 s (cold: the function was at zero)"
        );
        assert_eq!(
            took_line(Duration::from_millis(8), false, "1 ready"),
            "took 8 ms (warm)"
        );
    }
}
