//! `siesta activator`'s command line.

use std::net::SocketAddr;
use std::time::Duration;

use crate::trust::Cidr;

/// Command-line configuration of `siesta activator`.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// Address for client traffic (HTTP/1.1 and h2c on one port).
    #[arg(long, env = "SIESTA_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "SIESTA_ADMIN_ADDR", default_value = "0.0.0.0:9091")]
    pub admin_addr: SocketAddr,
    /// Functions answer at NAME.NAMESPACE.DOMAIN.
    #[arg(long, env = "SIESTA_DOMAIN", default_value = "siesta.local")]
    pub domain: String,
    /// Peers (IPs or CIDRs, comma separated) whose X-Forwarded-Host,
    /// X-Forwarded-Proto, X-Forwarded-Prefix and Forwarded headers are kept.
    /// From every other peer they are replaced. Default: none.
    #[arg(long, env = "SIESTA_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<Cidr>,
    /// Controller base URL(s) for activation signals (repeatable or comma
    /// separated). When none is given, controllers are found by watching
    /// their pods.
    #[arg(
        long = "controller-url",
        env = "SIESTA_CONTROLLER_URL",
        value_delimiter = ','
    )]
    pub controller_url: Vec<String>,
    /// Port of the controller pods' admin server, when found by watching pods.
    #[arg(long, env = "SIESTA_CONTROLLER_PORT", default_value_t = 9090)]
    pub controller_port: u16,
    /// Longest wait for in-flight requests at shutdown (e.g. 30s, 500ms).
    #[arg(long, env = "SIESTA_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// After SIGTERM, keep accepting and serving for this long while
    /// /readyz already says 503, so load balancers and Service endpoints
    /// stop sending new connections before the listener closes (e.g. 5s
    /// behind a cloud load balancer). The drain starts after it.
    #[arg(long, env = "SIESTA_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// Longest time a client may take to send a request's headers.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Largest request head in bytes; larger ones get 431.
    #[arg(long, default_value_t = 65536)]
    pub max_header_bytes: usize,
    /// Most header fields in an HTTP/1 request; more get 431. (HTTP/2
    /// requests are bounded by --max-header-bytes alone.)
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_request_headers: u16,
    /// Most header fields in a function's HTTP/1 response; more get 502.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_response_headers: u16,
    /// Most requests parked across all functions (waiting for a pod or a
    /// free concurrency slot); beyond it, or beyond a function's fair share
    /// of it, requests get 503 with Retry-After. A parked request costs
    /// about 12 KiB on its own HTTP/1 connection, 4.5 KiB as one of many
    /// HTTP/2 streams (peak 13.6 KiB while released): 10,000 are about
    /// 136 MiB at most.
    #[arg(long, default_value_t = 10_000)]
    pub max_parked_requests: u64,
    /// Most bytes parked requests may pin across all functions beyond that:
    /// their heads and the body bytes the server may hold for them before
    /// they are sent on (HTTP/1: at most 8 KiB each, HTTP/2: the 128 KiB
    /// stream window and its buffers, 171 KiB). With the default count, the
    /// activator's parked requests stay under about 232 MiB.
    #[arg(long, default_value_t = 96 << 20)]
    pub max_parked_bytes: u64,
    /// How long a newly ready pod is probed (TCP connect) before it is used anyway.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub probe_timeout: Duration,
    /// Interval between repeated activation signals while requests stay parked.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub wake_interval: Duration,
    /// Threads serving client traffic, each with its own listener
    /// (SO_REUSEPORT) and upstream pools. 0: one per CPU the process may
    /// use (its cgroup CPU limit counts).
    #[arg(long, env = "SIESTA_SERVING_THREADS", default_value_t = 0)]
    pub serving_threads: usize,
}

impl Config {
    /// Every default, as on an empty command line.
    pub fn defaults() -> Self {
        siesta_api::cli::defaults()
    }

    /// Every default, listening on ephemeral loopback ports (for tests).
    /// One serving thread: tests run many activators side by side on a
    /// few cores, and one thread each keeps their timing close to a
    /// dedicated activator's (a test that wants more sets it).
    pub fn loopback() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            serving_threads: 1,
            ..Self::defaults()
        }
    }
}

/// `30s`, `500ms`, `2m`, or plain seconds (zero allowed).
pub use siesta_api::duration::parse as parse_duration;

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::trust::TrustedProxies;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn trusted_proxies_are_a_comma_separated_cidr_list_and_none_by_default() {
        let defaults = Cli::try_parse_from(["activator"]).expect("defaults parse");
        assert!(defaults.config.trusted_proxies.is_empty());
        assert_eq!(
            defaults.config.trusted_proxies,
            Config::loopback().trusted_proxies
        );
        let cli = Cli::try_parse_from(["activator", "--trusted-proxies=10.0.0.0/8,::1"])
            .expect("a list parses");
        let t = TrustedProxies::new(cli.config.trusted_proxies);
        assert!(t.trusts("10.2.3.4".parse().expect("ip")));
        assert!(t.trusts("::1".parse().expect("ip")));
        assert!(!t.trusts("192.168.0.1".parse().expect("ip")));
        let err = Cli::try_parse_from(["activator", "--trusted-proxies=ingress"])
            .err()
            .expect("a name is refused");
        assert!(
            err.to_string().contains("not an IP address or CIDR"),
            "{err}"
        );
    }

    #[test]
    fn loopback_repeats_every_default_but_the_addresses_and_threads() {
        let parsed = Cli::parse_from(["activator"]).config;
        let lo = super::Config::loopback();
        assert_eq!(lo.serving_threads, 1);
        let show = |c: &super::Config| {
            let mut c = c.clone();
            c.listen = lo.listen;
            c.admin_addr = lo.admin_addr;
            c.serving_threads = lo.serving_threads;
            format!("{c:?}")
        };
        assert_eq!(show(&parsed), show(&lo));
    }
}
