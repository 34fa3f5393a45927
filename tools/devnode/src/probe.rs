//! Readiness probes: what to check (pure, from the pod spec), whether a
//! result flips readiness (pure, thresholds), and running one check (IO).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One resolved probe: where and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbePlan {
    pub check: Check,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Http {
        addr: SocketAddr,
        path: String,
        host: String,
    },
    Tcp {
        addr: SocketAddr,
    },
    /// exec probes are not run by the dev node; they count as passing.
    Unsupported(&'static str),
}

/// The readiness plan for a container, or None when it has no probe (then
/// the container is ready as soon as it runs, as in Kubernetes).
pub fn readiness_plan(container: &Container, pod_ip: IpAddr) -> Result<Option<ProbePlan>, String> {
    let Some(probe) = &container.readiness_probe else {
        return Ok(None);
    };
    plan(probe, container, pod_ip).map(Some)
}

fn plan(probe: &Probe, container: &Container, pod_ip: IpAddr) -> Result<ProbePlan, String> {
    let secs =
        |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
    let check = if let Some(http) = &probe.http_get {
        let port = resolve_port(&http.port, container)?;
        let ip = host_ip(http.host.as_deref(), pod_ip)?;
        if http
            .scheme
            .as_deref()
            .is_some_and(|s| !s.eq_ignore_ascii_case("http"))
        {
            return Err(
                "httpGet probes with scheme HTTPS are not supported by the dev node".into(),
            );
        }
        Check::Http {
            addr: SocketAddr::new(ip, port),
            path: http
                .path
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".into()),
            host: ip.to_string(),
        }
    } else if let Some(tcp) = &probe.tcp_socket {
        let port = resolve_port(&tcp.port, container)?;
        Check::Tcp {
            addr: SocketAddr::new(host_ip(tcp.host.as_deref(), pod_ip)?, port),
        }
    } else if probe.exec.is_some() {
        Check::Unsupported("exec")
    } else {
        Check::Unsupported("grpc")
    };
    Ok(ProbePlan {
        check,
        initial_delay: secs(probe.initial_delay_seconds, 0),
        period: secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
        success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
        failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
    })
}

fn host_ip(host: Option<&str>, pod_ip: IpAddr) -> Result<IpAddr, String> {
    match host.filter(|h| !h.is_empty()) {
        None => Ok(pod_ip),
        Some(h) => match h.parse::<IpAddr>() {
            Ok(ip) if ip.is_loopback() => Ok(ip),
            _ => Err(format!(
                "probe host {h:?} is not a loopback address; the dev node only probes 127.0.0.0/8"
            )),
        },
    }
}

fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => {
            u16::try_from(*p).map_err(|_| format!("probe port {p} out of range"))
        }
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| {
                format!("probe names port {name:?}, which the container does not declare")
            }),
    }
}

/// Success/failure streaks and the readiness they imply.
#[derive(Debug, Default, Clone)]
pub struct Readiness {
    pub ready: bool,
    successes: u32,
    failures: u32,
}

impl Readiness {
    /// Records one probe result; returns true when readiness changed.
    pub fn observe(&mut self, ok: bool, plan: &ProbePlan) -> bool {
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let was = self.ready;
        if !self.ready && self.successes >= plan.success_threshold {
            self.ready = true;
        } else if self.ready && self.failures >= plan.failure_threshold {
            self.ready = false;
        }
        was != self.ready
    }
}

/// Runs one check; Ok(()) when it passed, Err with the reason otherwise.
pub async fn run_check(check: &Check, timeout: Duration) -> Result<(), String> {
    match check {
        Check::Unsupported(_) => Ok(()),
        Check::Tcp { addr } => tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("tcp {addr}: timed out"))?
            .map(|_| ())
            .map_err(|e| format!("tcp {addr}: {e}")),
        Check::Http { addr, path, host } => {
            tokio::time::timeout(timeout, http_get(*addr, path, host))
                .await
                .map_err(|_| format!("http {addr}{path}: timed out"))?
        }
    }
}

async fn http_get(addr: SocketAddr, path: &str, host: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("http {addr}{path}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: siesta-devnode-probe\r\nConnection: close\r\n\r\n",
        addr.port()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("http {addr}{path}: {e}"))?;
    let mut head = [0u8; 32];
    let mut read = 0;
    while read < 12 {
        let n = stream
            .read(&mut head[read..])
            .await
            .map_err(|e| format!("http {addr}{path}: {e}"))?;
        if n == 0 {
            break;
        }
        read += n;
    }
    let status = parse_status(&head[..read])
        .ok_or_else(|| format!("http {addr}{path}: no HTTP status line"))?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("http {addr}{path}: status {status}"))
    }
}

fn parse_status(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head.get(..12)?).ok()?;
    let rest = text.strip_prefix("HTTP/1.")?;
    rest.get(2..5)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction, TCPSocketAction};

    fn container(probe: Probe) -> Container {
        Container {
            name: "c".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            readiness_probe: Some(probe),
            ..Default::default()
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 10, 0, 1));

    #[test]
    fn named_port_http_probe_resolves_to_pod_ip() {
        let c = container(Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("http".into()),
                path: Some("/healthz".into()),
                ..Default::default()
            }),
            period_seconds: Some(2),
            ..Default::default()
        });
        let plan = readiness_plan(&c, IP).unwrap().unwrap();
        assert_eq!(
            plan.check,
            Check::Http {
                addr: "127.10.0.1:8080".parse().unwrap(),
                path: "/healthz".into(),
                host: "127.10.0.1".into()
            }
        );
        assert_eq!(plan.period, Duration::from_secs(2));
        assert_eq!(plan.failure_threshold, 3);
    }

    #[test]
    fn unknown_named_port_and_remote_host_are_errors() {
        let c = container(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("nope".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(readiness_plan(&c, IP).is_err());
        let c = container(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(1),
                host: Some("10.0.0.1".into()),
            }),
            ..Default::default()
        });
        assert!(readiness_plan(&c, IP).unwrap_err().contains("loopback"));
    }

    #[test]
    fn thresholds_gate_transitions() {
        let plan = ProbePlan {
            check: Check::Unsupported("exec"),
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: 2,
            failure_threshold: 2,
        };
        let mut r = Readiness::default();
        assert!(!r.observe(true, &plan));
        assert!(r.observe(true, &plan) && r.ready);
        assert!(!r.observe(false, &plan) && r.ready);
        assert!(!r.observe(true, &plan));
        assert!(!r.observe(false, &plan));
        assert!(r.observe(false, &plan) && !r.ready);
    }

    #[test]
    fn status_line_parsing() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content"), Some(204));
        assert_eq!(parse_status(b"HTTP/1.0 500 x"), Some(500));
        assert_eq!(parse_status(b"garbage here"), None);
        assert_eq!(parse_status(b"HTTP"), None);
    }

    #[tokio::test]
    async fn http_check_against_a_real_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for reply in ["HTTP/1.1 200 OK\r\n\r\n", "HTTP/1.1 503 Busy\r\n\r\n"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                s.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let check = Check::Http {
            addr,
            path: "/".into(),
            host: "x".into(),
        };
        assert_eq!(run_check(&check, Duration::from_secs(1)).await, Ok(()));
        assert!(
            run_check(&check, Duration::from_secs(1))
                .await
                .unwrap_err()
                .contains("503")
        );
    }
}
