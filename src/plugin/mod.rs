//! `kubectl siesta`: list Functions, explain their replica counts, invoke
//! them through the activator, and read their pods' logs.
//!
//! It talks only to the apiserver, with the user's kubeconfig (as kubectl:
//! `--kubeconfig`, `--context`, `-n`, `-A`, `-o json|yaml`): the activator
//! through the apiserver's service proxy, the leading controller's decision
//! history through the pod proxy. The pure parts (rows, tables, sentences)
//! live in [`format`](mod@format), [`list`] and [`explain`] and are tested without a
//! cluster; [`cluster`] holds the IO.

pub mod cluster;
pub mod explain;
pub mod format;
pub mod invoke;
pub mod list;
pub mod logs;
pub mod saved;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "kubectl siesta",
    bin_name = "kubectl siesta",
    version,
    about = "Inspect and call Siesta Functions: list, explain, invoke, logs"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// kubectl's own flags, with kubectl's names.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Every namespace (list only).
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
    /// Output format: a table or sentences by default, or json, yaml.
    #[arg(short = 'o', long, global = true, value_enum)]
    pub output: Option<Output>,
    /// The namespace Siesta is installed in (default: found by the labels
    /// app.kubernetes.io/name=siesta and app.kubernetes.io/component).
    #[arg(long, global = true)]
    pub siesta_namespace: Option<String>,
    /// Reach the controller's admin server here instead of through the
    /// apiserver's pod proxy, e.g. http://127.0.0.1:9090.
    #[arg(long, global = true)]
    pub controller_url: Option<String>,
    /// Send `invoke` to the activator here instead of through the
    /// apiserver's service proxy, e.g. http://127.0.0.1:8080.
    #[arg(long, global = true)]
    pub activator_url: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Every Function with its replicas, traffic, cold starts and what
    /// scaling to zero saved (SAVED: pod-seconds saved vs one pod always on,
    /// over --since).
    List(saved::SinceArgs),
    /// Why a Function has the replicas it has, whether it is Ready, and its
    /// last cold start phase by phase.
    Explain {
        /// The Function's name.
        name: String,
        #[command(flatten)]
        since: saved::SinceArgs,
    },
    /// Call a Function through the activator (via the apiserver's service
    /// proxy) and say how long it took and whether it was a cold start.
    Invoke(invoke::InvokeArgs),
    /// The logs of a Function's pods, each line prefixed with its pod.
    Logs(logs::LogsArgs),
}

/// Runs the plugin from the process's arguments; one line on stderr and
/// exit code 1 on failure.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: could not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let cluster = cluster::Cluster::connect(&cli.global).await?;
    let out = cli.global.output;
    match cli.command {
        Command::List(since) => list::run(&cluster, &cli.global, since.since, out).await,
        Command::Explain { name, since } => {
            explain::run(&cluster, &cli.global, &name, since.since, out).await
        }
        Command::Invoke(args) => invoke::run(&cluster, &cli.global, &args, out).await,
        Command::Logs(args) => logs::run(&cluster, &args).await,
    }
}

/// Prints `value` as JSON or YAML.
pub fn print_object<T: serde::Serialize>(value: &T, out: Output) -> anyhow::Result<()> {
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Yaml => print!("{}", serde_yaml::to_string(value)?),
    }
    Ok(())
}
