//! The request target and Host, against a real activator on loopback with a
//! recording backend per function (ns/f and ns/g), raw requests over real
//! sockets, and h2c with a real HTTP/2 client. Each case: the status, which
//! function's pod got the request (if any) and the exact target it got.
//!
//! The rules are those of `siesta_activator::target` and `::normalize`
//! (README "Routing and status codes"). Every test prints one
//! `RELIABILITY request-target-<point> sent=.. answered=.. failed=..` line:
//! `answered` is the requests that got the specified outcome, `failed` the
//! others (wrong status, wrong pod, wrong target forwarded).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use siesta_activator::Config;
use siesta_activator::index::FunctionConfig;
use siesta_activator::route::FunctionKey;
use siesta_reliability::backend::{Seen, raw, recording_backend, status};
use siesta_reliability::{ActivatorRun, metric_sum};
use tokio::net::TcpStream;

const F: &str = "f.ns.siesta.local";
const G: &str = "g.ns.siesta.local";

/// An activator serving ns/f and ns/g, each on its own recording pod.
struct Setup {
    run: ActivatorRun,
    f: Seen,
    g: Seen,
}

impl Setup {
    async fn start(config: Config) -> Setup {
        let run = ActivatorRun::start(None, config).await.expect("activator");
        let mut seen = Vec::new();
        for name in ["f", "g"] {
            let (be, s) = recording_backend().await;
            let key = FunctionKey::new("ns", name);
            run.control.apply_function(
                key.clone(),
                FunctionConfig {
                    port: be.port(),
                    queue_timeout: Duration::from_secs(2),
                    ..FunctionConfig::default()
                },
            );
            run.control.set_endpoints(&key, &[be]);
            run.wait_endpoints("ns", name, 1, Duration::from_secs(2))
                .await;
            seen.push(s);
        }
        let g = seen.pop().expect("g");
        let f = seen.pop().expect("f");
        Setup { run, f, g }
    }

    /// What the pods got since the last call: (function, target, headers).
    fn take(&self) -> Vec<(&'static str, String, http::HeaderMap)> {
        let mut out = Vec::new();
        for (name, seen) in [("f", &self.f), ("g", &self.g)] {
            for (t, h) in seen.lock().expect("lock").drain(..) {
                out.push((name, t, h));
            }
        }
        out
    }

    async fn bad_request_metric(&self) -> f64 {
        let (_, text) = siesta_testkit::http_get(&self.run.admin.to_string(), "/metrics", "admin")
            .await
            .expect("metrics");
        metric_sum(
            &text,
            "siesta_activator_rejected_requests_total",
            r#"reason="bad_request""#,
        )
    }
}

/// What a case must get: a status, and the pod and target when forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Pod(&'static str, &'static str),
    Status(u16),
}

struct Case {
    name: &'static str,
    request: String,
    want: Want,
}

fn req(target: &str, version: &str, hosts: &[&str]) -> String {
    let mut r = format!("GET {target} {version}\r\n");
    for h in hosts {
        r.push_str(&format!("Host: {h}\r\n"));
    }
    r.push_str("Connection: close\r\n\r\n");
    r
}

fn case(name: &'static str, target: &str, hosts: &[&str], want: Want) -> Case {
    Case {
        name,
        request: req(target, "HTTP/1.1", hosts),
        want,
    }
}

/// Runs the cases, prints the table and the counts, returns the failures.
async fn run_cases(s: &Setup, point: &str, cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut refused = 0;
    let mut forwarded = 0;
    eprintln!("case | status | forwarded to");
    for c in cases {
        let resp = raw(s.run.traffic, c.request.as_bytes()).await;
        let code = status(&resp);
        let got = s.take();
        let shown = match got.as_slice() {
            [] => "not forwarded".to_string(),
            [(name, target, _)] => format!("ns/{name} {target}"),
            more => format!("{} requests!", more.len()),
        };
        eprintln!(
            "{} | {} | {shown}",
            c.name,
            code.map_or("none".into(), |c| c.to_string())
        );
        let ok = match c.want {
            Want::Pod(name, target) => {
                code == Some(200) && got.len() == 1 && got[0].0 == name && got[0].1 == target
            }
            Want::Status(want) => code == Some(want) && got.is_empty(),
        };
        if code.is_some_and(|c| (400..500).contains(&c)) {
            refused += 1;
        }
        forwarded += got.len();
        if !ok {
            failures.push(format!(
                "{}: wanted {:?}, got {code:?} and {shown}; response {:?}",
                c.name,
                c.want,
                resp.lines().last()
            ));
        }
    }
    eprintln!(
        "RELIABILITY request-target-{point} sent={} answered={} failed={} refused_4xx={refused} forwarded={forwarded}",
        cases.len(),
        cases.len() - failures.len(),
        failures.len()
    );
    failures
}

#[tokio::test]
async fn the_absolute_form_authority_names_the_function_and_must_agree_with_host() {
    let s = Setup::start(Config::loopback()).await;
    let cases = [
        case(
            "absolute g, Host g",
            &format!("http://{G}/a"),
            &[G],
            Want::Pod("g", "/a"),
        ),
        case(
            "absolute g, Host f",
            &format!("http://{G}/a"),
            &[F],
            Want::Status(400),
        ),
        case(
            "absolute f, Host g",
            &format!("http://{F}/a"),
            &[G],
            Want::Status(400),
        ),
        case(
            "absolute f, no Host",
            &format!("http://{F}/a"),
            &[],
            Want::Status(400),
        ),
        Case {
            name: "absolute f, HTTP/1.0, no Host",
            request: req(&format!("http://{F}/a"), "HTTP/1.0", &[]),
            want: Want::Pod("f", "/a"),
        },
        case(
            "absolute f:80, Host f",
            &format!("http://{F}:80/a"),
            &[F],
            Want::Pod("f", "/a"),
        ),
        case(
            "absolute f:8080, Host f",
            &format!("http://{F}:8080/a"),
            &[F],
            Want::Status(400),
        ),
        case(
            "absolute upper case",
            "HTTP://F.NS.SIESTA.LOCAL/a",
            &[F],
            Want::Pod("f", "/a"),
        ),
        case(
            "absolute https f",
            &format!("https://{F}/a"),
            &[F],
            Want::Pod("f", "/a"),
        ),
        case(
            "absolute ftp f",
            &format!("ftp://{F}/a"),
            &[F],
            Want::Status(400),
        ),
        case(
            "absolute userinfo",
            &format!("http://u@{F}/a"),
            &[F],
            Want::Status(400),
        ),
        case(
            "absolute, path names g",
            "http://localhost/fn/ns/g/x",
            &["localhost"],
            Want::Pod("g", "/x"),
        ),
        case(
            "absolute, path names g, Host f",
            "http://localhost/fn/ns/g/x",
            &[F],
            Want::Status(400),
        ),
        case(
            "absolute no path, query",
            &format!("http://{F}?q"),
            &[F],
            Want::Pod("f", "/?q"),
        ),
        case(
            "absolute dots above root",
            &format!("http://{F}/../x"),
            &[F],
            Want::Status(400),
        ),
        case(
            "absolute metadata IP",
            "http://169.254.169.254/latest",
            &["169.254.169.254"],
            Want::Status(404),
        ),
    ];
    let failures = run_cases(&s, "absolute-form", &cases).await;
    assert!(failures.is_empty(), "{failures:#?}");
    s.run.stop().await;
}

#[tokio::test]
async fn host_rules_two_hosts_a_bad_host_or_none_on_http_1_1_get_400() {
    let s = Setup::start(Config::loopback()).await;
    let before = s.bad_request_metric().await;
    let cases = [
        case("two Host, same", "/a", &[F, F], Want::Status(400)),
        case("two Host, f and g", "/a", &[F, G], Want::Status(400)),
        case(
            "HTTP/1.1, no Host, path",
            "/fn/ns/f/a",
            &[],
            Want::Status(400),
        ),
        case("empty Host", "/fn/ns/f/a", &[""], Want::Status(400)),
        case(
            "Host with a space",
            "/a",
            &["f.ns siesta.local"],
            Want::Status(400),
        ),
        case(
            "Host with a comma",
            "/a",
            &[&format!("{F},{G}")],
            Want::Status(400),
        ),
        case(
            "Host with userinfo",
            "/a",
            &[&format!("u@{F}")],
            Want::Status(400),
        ),
        case(
            "Host port 99999",
            "/a",
            &[&format!("{F}:99999")],
            Want::Status(400),
        ),
        case(
            "Host port not a number",
            "/a",
            &[&format!("{F}:http")],
            Want::Status(400),
        ),
    ];
    let refusals = cases.len();
    let more = [
        case(
            "Host upper case",
            "/a",
            &["F.NS.SIESTA.LOCAL"],
            Want::Pod("f", "/a"),
        ),
        case(
            "Host trailing dot",
            "/a",
            &[&format!("{F}.")],
            Want::Pod("f", "/a"),
        ),
        case(
            "Host with port",
            "/a",
            &[&format!("{F}:8080")],
            Want::Pod("f", "/a"),
        ),
        case(
            "Host not a function, path",
            "/fn/ns/g/a",
            &["localhost:8080"],
            Want::Pod("g", "/a"),
        ),
        Case {
            name: "HTTP/1.0, no Host, path",
            request: req("/fn/ns/f/a", "HTTP/1.0", &[]),
            want: Want::Pod("f", "/a"),
        },
        Case {
            name: "HTTP/1.0, no Host, no path",
            request: req("/a", "HTTP/1.0", &[]),
            want: Want::Status(404),
        },
    ];
    let all: Vec<Case> = cases.into_iter().chain(more).collect();
    let failures = run_cases(&s, "host", &all).await;
    assert!(failures.is_empty(), "{failures:#?}");
    // Every refusal above was the activator's, and counted as such.
    let counted = s.bad_request_metric().await - before;
    assert_eq!(counted, refusals as f64, "bad_request refusals counted");
    // HTTP/1.0 without Host is forwarded with an empty Host.
    raw(s.run.traffic, req("/fn/ns/f/a", "HTTP/1.0", &[]).as_bytes()).await;
    let got = s.take();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].2.get("host").map(|v| v.as_bytes()), Some(&b""[..]));
    s.run.stop().await;
}

/// The dot-segment and target-form cases measured against nginx 1.22 too
/// (see the closing note of the change for nginx's answers).
#[tokio::test]
async fn dot_segments_are_resolved_or_refused_before_routing_and_the_pod_gets_what_was_routed() {
    let s = Setup::start(Config::loopback()).await;
    let l = "localhost";
    let cases = [
        case("/../x", "/../x", &[F], Want::Status(400)),
        case(
            "/../../etc/passwd",
            "/../../etc/passwd",
            &[F],
            Want::Status(400),
        ),
        case("/a/../b", "/a/../b", &[F], Want::Pod("f", "/b")),
        case("/a/./b", "/a/./b", &[F], Want::Pod("f", "/a/b")),
        case("/a/..", "/a/..", &[F], Want::Pod("f", "/")),
        case("/a/.", "/a/.", &[F], Want::Pod("f", "/a/")),
        case("/%2e%2e/x", "/%2e%2e/x", &[F], Want::Status(400)),
        case("/a/%2e%2e/b", "/a/%2e%2e/b", &[F], Want::Pod("f", "/b")),
        case("/a/%2E%2E/b", "/a/%2E%2E/b", &[F], Want::Pod("f", "/b")),
        case("/a/.%2e/b", "/a/.%2e/b", &[F], Want::Pod("f", "/b")),
        case("/a/%2e/b", "/a/%2e/b", &[F], Want::Pod("f", "/a/b")),
        case("/a/..%2fb", "/a/..%2fb", &[F], Want::Status(400)),
        case("/a/..%2f..%2fb", "/a/..%2f..%2fb", &[F], Want::Status(400)),
        case("/a%2fb", "/a%2fb", &[F], Want::Pod("f", "/a%2fb")),
        case("/a/..\\b", "/a/..\\b", &[F], Want::Status(400)),
        case("/a\\..\\..\\b", "/a\\..\\..\\b", &[F], Want::Status(400)),
        case("/a/..%5cb", "/a/..%5cb", &[F], Want::Status(400)),
        case("/a\\b", "/a\\b", &[F], Want::Pod("f", "/a\\b")),
        case("/a//b", "/a//b", &[F], Want::Pod("f", "/a//b")),
        case("/a//../b", "/a//../b", &[F], Want::Status(400)),
        case(
            "/a/%252e%252e/b",
            "/a/%252e%252e/b",
            &[F],
            Want::Pod("f", "/a/%252e%252e/b"),
        ),
        case(
            "/a?x=/../y",
            "/a?x=/../y",
            &[F],
            Want::Pod("f", "/a?x=/../y"),
        ),
        case("/a/..?x", "/a/..?x", &[F], Want::Pod("f", "/?x")),
        case("/a#frag", "/a#frag", &[F], Want::Pod("f", "/a")),
        case("/a#/../../b", "/a#/../../b", &[F], Want::Pod("f", "/a")),
        case("/a%00b", "/a%00b", &[F], Want::Status(400)),
        case("/a%zz", "/a%zz", &[F], Want::Status(400)),
        case("/a%", "/a%", &[F], Want::Status(400)),
        case("/a/..;/b", "/a/..;/b", &[F], Want::Status(400)),
        case("/a;/../b", "/a;/../b", &[F], Want::Pod("f", "/b")),
        case("/a/.../b", "/a/.../b", &[F], Want::Pod("f", "/a/.../b")),
        case("path /fn/ns/f/a", "/fn/ns/f/a", &[l], Want::Pod("f", "/a")),
        case(
            "path /fn/ns/f/../../x",
            "/fn/ns/f/../../x",
            &[l],
            Want::Status(404),
        ),
        case(
            "path /fn/ns/f/../g/x",
            "/fn/ns/f/../g/x",
            &[l],
            Want::Pod("g", "/x"),
        ),
        case(
            "path /fn/ns/f/%2e%2e/g/x",
            "/fn/ns/f/%2e%2e/g/x",
            &[l],
            Want::Pod("g", "/x"),
        ),
        case(
            "path /fn/ns/f/..%2fg/x",
            "/fn/ns/f/..%2fg/x",
            &[l],
            Want::Status(400),
        ),
        case(
            "path /fn/ns/f/../../../../x",
            "/fn/ns/f/../../../../x",
            &[l],
            Want::Status(400),
        ),
        case(
            "path /x/../fn/ns/f/a",
            "/x/../fn/ns/f/a",
            &[l],
            Want::Pod("f", "/a"),
        ),
        case(
            "path /fn/ns/f/a/../b",
            "/fn/ns/f/a/../b",
            &[l],
            Want::Pod("f", "/b"),
        ),
        case("path /fn/ns/f/..", "/fn/ns/f/..", &[l], Want::Status(404)),
        case(
            "path /fn/ns/f//../g",
            "/fn/ns/f//../g",
            &[l],
            Want::Status(400),
        ),
        case("path /fn/ns/%66/a", "/fn/ns/%66/a", &[l], Want::Status(404)),
        case("path /fn/ns%2ff/a", "/fn/ns%2ff/a", &[l], Want::Status(404)),
        case("path //fn/ns/f/a", "//fn/ns/f/a", &[l], Want::Status(404)),
        case(
            "path /fn/ns/f/a%2fb",
            "/fn/ns/f/a%2fb",
            &[l],
            Want::Pod("f", "/a%2fb"),
        ),
        case(
            "path under Host g",
            "/fn/ns/f/a",
            &[G],
            Want::Pod("g", "/fn/ns/f/a"),
        ),
        Case {
            name: "OPTIONS *",
            request: format!("OPTIONS * HTTP/1.1\r\nHost: {F}\r\nConnection: close\r\n\r\n"),
            want: Want::Status(400),
        },
        case("GET *", "*", &[F], Want::Status(400)),
        case("?x (no slash)", "?x", &[F], Want::Status(400)),
        case("a (no slash)", "a", &[F], Want::Status(400)),
        case(
            "authority-form GET",
            &format!("{F}:80"),
            &[F],
            Want::Status(400),
        ),
        Case {
            name: "CONNECT",
            request: format!(
                "CONNECT {F}:80 HTTP/1.1\r\nHost: {F}:80\r\nConnection: close\r\n\r\n"
            ),
            want: Want::Status(405),
        },
    ];
    let failures = run_cases(&s, "dot-segments", &cases).await;
    assert!(failures.is_empty(), "{failures:#?}");
    s.run.stop().await;
}

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// A header the pod must see with this value, or not at all.
type HeaderWant = (&'static str, Option<&'static str>);

const SPOOFED: &str = "X-Forwarded-Host: evil.com\r\n\
    X-Forwarded-Proto: https\r\n\
    X-Forwarded-Prefix: /evil\r\n\
    Forwarded: for=6.6.6.6;host=evil.com\r\n\
    X-Forwarded-For: 6.6.6.6\r\n";

/// Sends one request with the spoofed forwarding headers; the pod's view.
async fn forwarded_view(s: &Setup, target: &str, host: &str) -> http::HeaderMap {
    let r = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{SPOOFED}Connection: close\r\n\r\n");
    let resp = raw(s.run.traffic, r.as_bytes()).await;
    assert_eq!(status(&resp), Some(200), "{resp}");
    let mut got = s.take();
    assert_eq!(got.len(), 1);
    got.remove(0).2
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_replaced_and_the_prefix_is_set() {
    let s = Setup::start(Config::loopback()).await;
    let cases: [(&str, &str, Vec<HeaderWant>); 2] = [
        (
            "/a",
            F,
            vec![
                ("x-forwarded-host", Some(F)),
                ("x-forwarded-proto", Some("http")),
                ("x-forwarded-prefix", None),
                (
                    "forwarded",
                    Some("for=127.0.0.1;host=\"f.ns.siesta.local\";proto=http"),
                ),
                ("x-forwarded-for", Some("6.6.6.6, 127.0.0.1")),
                ("host", Some(F)),
            ],
        ),
        (
            "/fn/ns/f/a",
            "localhost:8080",
            vec![
                ("x-forwarded-host", Some("localhost:8080")),
                ("x-forwarded-proto", Some("http")),
                ("x-forwarded-prefix", Some("/fn/ns/f")),
                (
                    "forwarded",
                    Some("for=127.0.0.1;host=\"localhost:8080\";proto=http"),
                ),
                ("x-forwarded-for", Some("6.6.6.6, 127.0.0.1")),
                ("host", Some("localhost:8080")),
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (target, host, wants) in &cases {
        let h = forwarded_view(&s, target, host).await;
        let wrong: Vec<String> = wants
            .iter()
            .filter(|(name, want)| header(&h, name) != *want)
            .map(|(name, want)| format!("{name}: wanted {want:?}, got {:?}", header(&h, name)))
            .collect();
        if !wrong.is_empty() {
            failures.push(format!("{target} Host {host}: {wrong:?}"));
        }
    }
    eprintln!(
        "RELIABILITY request-target-forwarded-untrusted sent={} answered={} failed={}",
        cases.len(),
        cases.len() - failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    s.run.stop().await;
}

#[tokio::test]
async fn forwarding_headers_from_a_trusted_proxy_are_kept_and_ours_appended() {
    let s = Setup::start(Config {
        trusted_proxies: vec!["127.0.0.0/8".parse().expect("cidr")],
        ..Config::loopback()
    })
    .await;
    let h = forwarded_view(&s, "/fn/ns/f/a", "localhost:8080").await;
    assert_eq!(header(&h, "x-forwarded-host"), Some("evil.com"));
    assert_eq!(header(&h, "x-forwarded-proto"), Some("https"));
    assert_eq!(header(&h, "x-forwarded-prefix"), Some("/evil/fn/ns/f"));
    assert_eq!(
        header(&h, "forwarded"),
        Some("for=6.6.6.6;host=evil.com, for=127.0.0.1;host=\"localhost:8080\";proto=http")
    );
    assert_eq!(header(&h, "x-forwarded-for"), Some("6.6.6.6, 127.0.0.1"));
    eprintln!("RELIABILITY request-target-forwarded-trusted sent=1 answered=1 failed=0");
    s.run.stop().await;
}

#[tokio::test]
async fn http2_settings_and_an_h2c_upgrade_are_not_passed_to_the_pod() {
    let s = Setup::start(Config::loopback()).await;
    let cases = [
        "Connection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n",
        "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nConnection: close\r\n",
    ];
    let mut failures = Vec::new();
    for extra in cases {
        let r = format!("GET /a HTTP/1.1\r\nHost: {F}\r\n{extra}\r\n");
        let resp = raw(s.run.traffic, r.as_bytes()).await;
        let got = s.take();
        let passed: Vec<&str> = got
            .iter()
            .flat_map(|g| {
                ["http2-settings", "upgrade", "connection"]
                    .into_iter()
                    .filter(|n| g.2.contains_key(*n))
            })
            .collect();
        if status(&resp) != Some(200) || got.len() != 1 || !passed.is_empty() {
            failures.push(format!(
                "{extra:?}: status {:?}, {} forwarded, passed on {passed:?}",
                status(&resp),
                got.len()
            ));
        }
    }
    eprintln!(
        "RELIABILITY request-target-http2-settings sent={} answered={} failed={}",
        cases.len(),
        cases.len() - failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    s.run.stop().await;
}

/// One HTTP/2 request over a fresh h2c connection: status and the pod's view.
async fn h2(
    s: &Setup,
    uri: &str,
    host: Option<&str>,
) -> (u16, Vec<(&'static str, String, http::HeaderMap)>) {
    let io = TcpStream::connect(s.run.traffic).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("h2c handshake");
    tokio::spawn(conn);
    let mut req = Request::get(uri);
    if let Some(h) = host {
        req = req.header("host", h);
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new()).expect("request"))
        .await
        .expect("h2 response");
    let code = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    (code, s.take())
}

#[tokio::test]
async fn over_h2c_the_authority_names_the_function_and_a_different_host_is_refused() {
    let s = Setup::start(Config::loopback()).await;
    let port = s.run.traffic.port();
    let cases: Vec<(String, Option<&str>, Want)> = vec![
        (format!("http://{F}:{port}/a"), None, Want::Pod("f", "/a")),
        (format!("http://{F}/a"), Some(F), Want::Pod("f", "/a")),
        (format!("http://{F}/a"), Some(G), Want::Status(400)),
        (format!("http://{G}/a"), Some(F), Want::Status(400)),
        (
            format!("http://127.0.0.1:{port}/fn/ns/g/x"),
            None,
            Want::Pod("g", "/x"),
        ),
        (
            format!("http://127.0.0.1:{port}/fn/ns/g/x"),
            Some(F),
            Want::Status(400),
        ),
        (format!("http://{F}/a/../b"), None, Want::Pod("f", "/b")),
        (format!("http://{F}/../b"), None, Want::Status(400)),
        (format!("http://{F}/a/..%2fb"), None, Want::Status(400)),
    ];
    let mut failures = Vec::new();
    for (uri, host, want) in &cases {
        let (code, got) = h2(&s, uri, *host).await;
        let shown: Vec<String> = got.iter().map(|(n, t, _)| format!("ns/{n} {t}")).collect();
        eprintln!("h2 {uri} host={host:?} | {code} | {shown:?}");
        let ok = match want {
            Want::Pod(name, target) => {
                code == 200 && got.len() == 1 && got[0].0 == *name && got[0].1 == *target
            }
            Want::Status(w) => code == *w && got.is_empty(),
        };
        if !ok {
            failures.push(format!(
                "{uri} host={host:?}: wanted {want:?}, got {code} {shown:?}"
            ));
        }
    }
    eprintln!(
        "RELIABILITY request-target-h2c sent={} answered={} failed={}",
        cases.len(),
        cases.len() - failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    s.run.stop().await;
}

// ------------------------------------------------ generated request targets

/// The reference reading, written apart from the activator's: RFC 3986
/// §5.2.4 on the path (with `%2e` as a dot), the fragment dropped, the
/// query kept. `None` when the path climbs above the root.
fn rfc3986_resolve(path: &str) -> Option<String> {
    let is_dot = |s: &str| s.replace("%2e", ".").replace("%2E", ".");
    let mut out: Vec<&str> = Vec::new();
    let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        match is_dot(seg).as_str() {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop()?;
                if last {
                    out.push("");
                }
            }
            _ => out.push(seg),
        }
    }
    Some(format!("/{}", out.join("/")))
}

/// Where the reference reading sends a request: the function and the
/// target its pod must get, given the Host.
fn reference(target: &str, host: &str) -> Option<(String, String)> {
    let target = target.split('#').next().unwrap_or(target);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let resolved = rfc3986_resolve(path)?;
    let with_query = |p: &str| match query {
        Some(q) => format!("{p}?{q}"),
        None => p.to_string(),
    };
    let h = host
        .split(':')
        .next()
        .unwrap_or(host)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if let Some(name) = h.strip_suffix(".ns.siesta.local")
        && !name.contains('.')
    {
        return Some((name.to_string(), with_query(&resolved)));
    }
    let rest = resolved.strip_prefix("/fn/ns/")?;
    let (name, tail) = rest.split_once('/').unwrap_or((rest, ""));
    Some((name.to_string(), with_query(&format!("/{tail}"))))
}

/// A path segment that is `.` or `..` in any spelling.
fn is_dot_segment(s: &str) -> bool {
    matches!(
        s.replace("%2e", ".").replace("%2E", ".").as_str(),
        "." | ".."
    )
}

#[tokio::test]
async fn generated_targets_reach_only_the_function_they_name_and_forward_what_was_routed() {
    let s = Setup::start(Config::loopback()).await;
    const TOKENS: &[&str] = &[
        "/", "/", "/", ".", "..", "%2e", "%2E", "%2f", "%5c", "\\", "?", "#", "fn", "ns", "f", "g",
        ";", "%", "2", "e", "a", "fn/ns/f/", "fn/ns/g/",
    ];
    const STARTS: &[&str] = &["/", "/fn/ns/f/", "/fn/ns/g/", "/fn/", "/a/"];
    const HOSTS: &[&str] = &[F, G, "localhost", "evil.com"];
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize % n
    };
    let (mut sent, mut ok200, mut r400, mut r404, mut failures) = (0, 0, 0, 0, Vec::new());
    for _ in 0..400 {
        let mut target = String::from(STARTS[next(STARTS.len())]);
        for _ in 0..next(8) {
            target.push_str(TOKENS[next(TOKENS.len())]);
        }
        let host = HOSTS[next(HOSTS.len())];
        let resp = raw(s.run.traffic, req(&target, "HTTP/1.1", &[host]).as_bytes()).await;
        sent += 1;
        let code = status(&resp);
        let got = s.take();
        match code {
            Some(200) => ok200 += 1,
            Some(400) => r400 += 1,
            Some(404) => r404 += 1,
            _ => {}
        }
        let mut wrong: Vec<String> = Vec::new();
        if code != Some(200) {
            if !got.is_empty() {
                wrong.push("refused yet forwarded".into());
            }
        } else if let [(name, fwd, _)] = got.as_slice() {
            let fwd_path = fwd.split('?').next().unwrap_or(fwd);
            if fwd_path.split('/').any(is_dot_segment) {
                wrong.push("a dot segment reached the pod".into());
            }
            match reference(&target, host) {
                Some((want_name, want_target)) if want_name == *name && want_target == *fwd => {}
                other => wrong.push(format!("the reference reading says {other:?}")),
            }
            // A decoding (nginx-like) reader names the same function, or none.
            if !host.ends_with(".ns.siesta.local")
                && let Some(k) = siesta_activator::invariants::liberal_path_key(
                    target.split(['?', '#']).next().unwrap_or(&target),
                )
                && k != FunctionKey::new("ns", *name)
            {
                wrong.push(format!("a decoding proxy would send it to {k}"));
            }
        } else {
            wrong.push("not exactly one pod got it".into());
        }
        if !wrong.is_empty() {
            let seen: Vec<_> = got.iter().map(|g| (g.0, &g.1)).collect();
            failures.push(format!(
                "Host {host} target {target:?}: {}; got {code:?} {seen:?}",
                wrong.join("; ")
            ));
        }
    }
    eprintln!(
        "RELIABILITY request-target-generated sent={sent} answered={} failed={} ok_200={ok200} refused_400={r400} refused_404={r404}",
        sent - failures.len(),
        failures.len()
    );
    for f in failures.iter().take(10) {
        eprintln!("  failure: {f}");
    }
    // The generator must produce every outcome, or the test proves little.
    assert!(
        ok200 > 50 && r400 > 30 && r404 > 10,
        "200={ok200} 400={r400} 404={r404}"
    );
    assert!(failures.is_empty(), "{} of {sent} failed", failures.len());
    s.run.stop().await;
}
