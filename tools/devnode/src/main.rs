//! `siesta-devnode`: the kubelet's part for the local test cluster. It
//! registers a Node, binds pending pods to it, runs each pod's container as a
//! local process on its own 127.x.y.z address, probes readiness, reports
//! status and honours graceful deletion.

mod backoff;
mod container;
mod env;
mod images;
mod ipam;
mod kubeconfig;
mod node;
mod pod;
mod probe;
mod status;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "siesta-devnode", version, about)]
struct Args {
    /// The Node this agent registers and runs pods for.
    #[arg(long, default_value = "siesta-devnode")]
    node_name: String,
    /// YAML map from image to local command (see examples/images.yaml).
    #[arg(long, env = "SIESTA_IMAGE_MAP")]
    image_map: PathBuf,
    /// Where pod logs and process-group files go.
    #[arg(long, default_value = ".cluster/devnode")]
    state_dir: PathBuf,
    /// Pods get addresses `127.<this>.x.y`.
    #[arg(long, default_value_t = 10)]
    pod_ip_octet: u8,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter =
        EnvFilter::try_from_env("SIESTA_LOG").unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if args.log_json {
        logs.json().init();
    } else {
        logs.init();
    }

    let images = images::ImageMap::load(&args.image_map)?;
    let config = kube::Config::infer().await.map_err(|e| {
        anyhow::anyhow!("no kubeconfig ({e}); run `make cluster-up` and export KUBECONFIG")
    })?;
    let api_server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)?;
    std::fs::create_dir_all(&args.state_dir)?;
    let ctx = Arc::new(pod::NodeContext {
        client,
        node_name: args.node_name,
        images,
        state_dir: args.state_dir,
        api_server: api_server.trim_end_matches('/').to_string(),
        ips: Mutex::new(ipam::PodIps::new(args.pod_ip_octet)),
    });

    let mut term = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    };
    node::run(ctx, shutdown).await
}
