//! `siesta`: one binary, one image, every component.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// jemalloc instead of glibc's malloc: hyper reserves 8 KiB buffers per
/// connection that a parked request mostly never touches; jemalloc leaves
/// those pages unbacked (glibc's chunk headers touch them), which cuts the
/// activator's RSS with 10,000 parked requests by about a third. Options in
/// `.cargo/config.toml`. Without the `jemalloc` feature, the system
/// allocator (for heaptrack, which follows only malloc and free).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "siesta",
    version,
    about = "Scale-to-zero HTTP functions for Kubernetes"
)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "SIESTA_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the Function CustomResourceDefinition as YAML.
    Crd,
    /// Run the controller: reconciles Functions, autoscales, takes wake-ups.
    Controller(siesta_controller::Config),
    /// Run the activator: the request path in front of every function.
    Activator(siesta_activator::Config),
    /// The activator with one static route and no cluster, for `make bench`
    /// and the release build's profile training (hack/pgo/train.sh).
    #[command(hide = true)]
    BenchActivator(siesta_activator::standalone::StandaloneArgs),
}

fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_env("SIESTA_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,kube=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Crd = cli.command {
        print!("{}", siesta_api::crd::function_crd_yaml()?);
        return Ok(());
    }
    init_logging(cli.log_json);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Command::Activator(_) | Command::BenchActivator(_) = cli.command {
        // Client traffic runs on the activator's own serving threads, one
        // per core; this runtime has only the watches, probes and the
        // admin port.
        runtime.worker_threads(1);
    }
    let runtime = runtime.enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Crd => Ok(()),
            Command::Controller(config) => siesta_controller::run(config).await,
            Command::Activator(config) => siesta_activator::run(config).await,
            Command::BenchActivator(args) => siesta_activator::standalone::run(args).await,
        }
    })
}
