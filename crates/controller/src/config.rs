//! `siesta controller`'s command line.

use std::net::SocketAddr;
use std::time::Duration;

use siesta_api::duration;

use crate::autoscaler;

/// Command-line configuration of `siesta controller`.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// Domain of function URLs: a Function answers on http://NAME.NAMESPACE.DOMAIN.
    #[arg(long, env = "SIESTA_DOMAIN", default_value = "siesta.local")]
    pub domain: String,
    /// Address of the admin server (/metrics, /healthz, /readyz, /v1/activate).
    #[arg(long, env = "SIESTA_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    pub admin_addr: SocketAddr,
    /// Namespace of the leader Lease: the controller's own namespace (the
    /// Helm chart passes it as POD_NAMESPACE through the downward API).
    #[arg(long = "namespace", env = "POD_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "siesta-controller")]
    pub lease_name: String,
    /// How long a leader's lease lasts without renewal before a standby takes
    /// over (e.g. 15s, 500ms). The leader itself stops at 2/3 of it.
    #[arg(long, default_value = "15s", value_parser = duration::parse_positive)]
    pub lease_duration: Duration,
    /// How often the leader renews (and a standby checks) the lease.
    #[arg(long, default_value = "2s", value_parser = duration::parse_positive)]
    pub renew_period: Duration,
    /// This replica's name in the lease and in events; defaults to POD_NAME,
    /// else HOSTNAME-PID.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Serve only Functions in this namespace (default: all namespaces).
    #[arg(long, env = "SIESTA_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Most Functions reconciled at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u16,
    #[command(flatten)]
    pub autoscaler: autoscaler::Settings,
}

impl Config {
    /// Defaults as on an empty command line, for embedding (tests).
    pub fn defaults() -> Self {
        siesta_api::cli::defaults()
    }

    pub(crate) fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| {
                    std::fs::read_to_string("/proc/sys/kernel/hostname")
                        .ok()
                        .map(|h| h.trim().to_string())
                })
                .unwrap_or_else(|| "siesta-controller".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn the_defaults_are_those_of_an_empty_command_line() {
        let parsed = Cli::parse_from(["controller"]).config;
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Config::defaults()));
        assert_eq!(
            format!("{:?}", parsed.autoscaler),
            format!("{:?}", autoscaler::Settings::defaults())
        );
    }

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let d = Config::defaults();
        assert_eq!(d.admin_addr, SocketAddr::from(([0, 0, 0, 0], 9090)));
        assert_eq!(d.lease_duration, Duration::from_secs(15));
        assert_eq!(d.renew_period, Duration::from_secs(2));
        assert_eq!(d.concurrency, 16);
        assert_eq!(d.autoscaler.autoscale_interval, Duration::from_secs(2));
        assert_eq!(d.autoscaler.prometheus_window, Duration::from_secs(60));
        assert_eq!(d.autoscaler.activator_metrics_port, 9091);
    }
}
