//! The autoscaler: activator request metrics in, Deployment replica counts
//! and `status.autoscaler` out. It runs on the leader only, next to the
//! reconciler, and starts with an empty history whenever this replica
//! becomes leader (so it scales nothing down before it has a stable window
//! of its own data).
//!
//! - [`source`] polls the metrics (scrape every activator, or PromQL);
//! - [`decision`] decides, purely, from the history and a clock;
//! - [`schedule`] says, purely, which `scale.schedules` window sets a floor
//!   at a wall-clock instant, started ahead by the [`cold_start`] lead;
//! - this module keeps one history per Function, decides every
//!   `--autoscale-interval` and at once on an activation, writes the scale
//!   subresource only on a change (and only if nobody changed the count
//!   since it was read) and only for a Deployment the Function controls (a
//!   Deployment of its name that is not its own is skipped, logged once),
//!   writes `status.desiredReplicas` and
//!   `status.autoscaler` under its own field manager, sets the per-function
//!   metrics and publishes events (WokeUp, Scaled, ScaledToZero, PanicEntered).

pub mod cold_start;
pub mod decision;
pub mod schedule;
pub mod source;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use siesta_api::names::FunctionKey;
use siesta_api::schedule::Window;
use siesta_api::{AutoscalerStatus, Function};
use tokio::sync::{broadcast, mpsc};

use crate::context::{Activation, Context};
use crate::deployment_view::DeploymentView;
use crate::error::api_call;
use crate::events::{Note, event_reason};
use crate::resources;
use crate::scale::{self, AUTOSCALER_MANAGER, Target};
use siesta_api::duration;

use cold_start::ColdStarts;
use decision::{Decision, History, Mode, Replicas, Sample};
use source::{MetricSource, Poll, PromQuery, Scraper, Targets};
use tokio_util::task::AbortOnDropHandle;

/// Which metric source the autoscaler reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// Scrape every activator's /metrics once a second (nothing to install).
    Scrape,
    /// PromQL instant queries against an existing Prometheus (--prometheus-url).
    Prometheus,
}

/// The autoscaler's command-line settings.
#[derive(Clone, Debug, clap::Args)]
pub struct Settings {
    /// Where request metrics come from: `scrape` the activators directly,
    /// or query `prometheus`.
    #[arg(
        long,
        env = "SIESTA_METRICS_SOURCE",
        value_enum,
        default_value = "scrape"
    )]
    pub metrics_source: SourceKind,
    /// Base URL of the Prometheus HTTP API (http only), e.g.
    /// http://prometheus.monitoring:9090; required with --metrics-source prometheus.
    #[arg(long, env = "SIESTA_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// Longest wait for one PromQL query.
    #[arg(long, default_value = "2s", value_parser = duration::parse_positive)]
    pub prometheus_timeout: Duration,
    /// Range of `rate()` in the PromQL queries; at least twice the
    /// Prometheus scrape interval of the activators.
    #[arg(long, default_value = "1m", value_parser = duration::parse_positive)]
    pub prometheus_window: Duration,
    /// How often every Function's replica count is decided.
    #[arg(long, default_value = "2s", value_parser = duration::parse_positive)]
    pub autoscale_interval: Duration,
    /// How often the activators are scraped (scrape source).
    #[arg(long, default_value = "1s", value_parser = duration::parse_positive)]
    pub scrape_interval: Duration,
    /// Port of the activators' /metrics (their admin port).
    #[arg(long, default_value_t = 9091)]
    pub activator_metrics_port: u16,
    /// Label selector of activator pods to scrape (in all namespaces).
    #[arg(
        long,
        default_value = "app.kubernetes.io/name=siesta,app.kubernetes.io/component=activator"
    )]
    pub activator_selector: String,
    /// Fixed activator metrics URLs (repeatable or comma separated), e.g.
    /// http://127.0.0.1:9091/metrics; replaces the pod discovery.
    #[arg(long = "activator-url", value_delimiter = ',')]
    pub activator_url: Vec<String>,
    /// The cold start assumed for a Function until one is measured (from
    /// the scale-up from zero to its first Ready pod); `scale.schedules`
    /// start pods ahead of a window by the cold start, a quarter more and
    /// one --autoscale-interval.
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    pub default_cold_start: Duration,
}

impl Settings {
    /// Defaults as on an empty command line.
    pub fn defaults() -> Self {
        siesta_api::cli::defaults()
    }

    /// Refuses settings that cannot work, before anything starts.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.metrics_source == SourceKind::Prometheus {
            let url = self.prometheus_url.as_deref().unwrap_or("");
            if url.is_empty() {
                anyhow::bail!(
                    "--metrics-source prometheus needs --prometheus-url (e.g. http://prometheus.monitoring:9090)"
                );
            }
            if !url.starts_with("http://") {
                anyhow::bail!(
                    "--prometheus-url {url:?} must be an http:// URL (https is not supported; use the in-cluster Service)"
                );
            }
        }
        for url in &self.activator_url {
            if url.parse::<hyper::Uri>().is_err() || !url.starts_with("http://") {
                anyhow::bail!(
                    "--activator-url {url:?} is not an http:// URL like http://127.0.0.1:9091/metrics"
                );
            }
        }
        Ok(())
    }
}

/// Everything the autoscaler keeps per Function.
#[derive(Default)]
struct FunctionState {
    history: History,
    last_status_write: Option<Instant>,
    /// The Deployment of its name is not the Function's: it is skipped
    /// every decision, and this keeps the log to one line about it.
    not_owned: bool,
    cold_starts: ColdStarts,
    /// A decision of this Function has had something to show (replicas,
    /// traffic, panic): from then on its decision gauges are set every
    /// decision. Before, none are made: at 10,000 Functions at zero that
    /// was 40,000 series of zeros, and as many label lookups every tick.
    gauges: bool,
    /// The spec as last checked, so that its cron expressions and time
    /// zones are parsed once per generation, not every decision.
    checked: Option<Checked>,
}

/// One generation of a Function's spec, checked.
struct Checked {
    uid: Option<String>,
    generation: i64,
    /// Its `scale.schedules`, parsed; `None` when the spec is invalid.
    windows: Option<Arc<[Window]>>,
}

impl FunctionState {
    /// The Function's parsed windows, or `None` when its spec is invalid
    /// (the reconciler reports that; the autoscaler leaves it alone).
    fn windows_of(&mut self, f: &Function) -> Option<Arc<[Window]>> {
        let uid = f.metadata.uid.clone();
        let Some(generation) = f.metadata.generation else {
            return parsed_windows(f);
        };
        let fresh = self
            .checked
            .as_ref()
            .is_some_and(|c| c.generation == generation && c.uid == uid);
        if !fresh {
            self.checked = Some(Checked {
                uid,
                generation,
                windows: parsed_windows(f),
            });
        }
        self.checked.as_ref().and_then(|c| c.windows.clone())
    }
}

/// The parsed windows of a valid spec.
fn parsed_windows(f: &Function) -> Option<Arc<[Window]>> {
    siesta_api::validate(&f.spec).ok()?;
    f.spec
        .scale
        .schedules
        .iter()
        .map(|s| siesta_api::schedule::parse(s).ok())
        .collect()
}

/// The cold start that `scale.schedules` lead by: the longer of this
/// leader's own measurements and the last one recorded on the status
/// (`status.lastColdStart`, which survives a restart), else the default.
fn cold_start_of(state: &FunctionState, function: &Function, settings: &Settings) -> Duration {
    let recorded = function
        .status
        .as_ref()
        .and_then(|s| s.last_cold_start.as_ref())
        .and_then(|c| siesta_api::cold_start::parse_duration(&c.total));
    match (state.cold_starts.estimate(), recorded) {
        (Some(measured), Some(recorded)) => measured.max(recorded),
        (measured, recorded) => measured.or(recorded).unwrap_or(settings.default_cold_start),
    }
}

/// A decision to carry out.
struct Plan {
    function: Arc<Function>,
    key: FunctionKey,
    target: Target,
    current: i32,
    decision: Decision,
    write_status: bool,
    /// Set the decision gauges ([`FunctionState::gauges`]).
    gauges: bool,
}

/// Status is rewritten for a new count or mode at once, and for new
/// numbers in the reason at most this often (1,000 busy functions would
/// otherwise write their status every decision).
const STATUS_REFRESH: Duration = Duration::from_secs(10);

/// Most API writes in flight at once.
const WRITE_CONCURRENCY: usize = 16;

/// Runs the autoscaler until dropped. Call it on the leader only.
/// `fn_store` and `dep_store` are the leader's shared watches
/// (`crate::watches`), filled while the reconciler runs.
pub async fn run(
    ctx: Arc<Context>,
    settings: Settings,
    fn_store: Store<Function>,
    dep_store: Store<DeploymentView>,
) {
    let mut activations = ctx.activations.subscribe();
    let (source, pods_task) = build_source(&ctx, &settings);
    let _pods_task = pods_task.map(AbortOnDropHandle::new);
    let source_label = match settings.metrics_source {
        SourceKind::Scrape => "scrape",
        SourceKind::Prometheus => "prometheus",
    };

    if fn_store.wait_until_ready().await.is_err() || dep_store.wait_until_ready().await.is_err() {
        tracing::error!("the autoscaler's watches ended before syncing; autoscaling is off");
        // Reconciling goes on; returning would stop the controller.
        std::future::pending::<()>().await;
    }
    tracing::info!(source = source_label, interval = ?settings.autoscale_interval, "autoscaler running");

    let (_poller, mut polls) = spawn_poller(source);

    let mut states: HashMap<FunctionKey, FunctionState> = HashMap::new();
    let mut tick = tokio::time::interval(settings.autoscale_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(poll) = polls.recv() => {
                if !poll.complete {
                    ctx.metrics.autoscaler.source_errors.with_label_values(&[source_label]).inc();
                }
                record_poll(&ctx, &fn_store, &mut states, &poll);
            }
            _ = tick.tick() => {
                let now = Clocks::now();
                let plans = plan_all(&ctx, &settings, &fn_store, &dep_store, &mut states, now);
                execute_all(&ctx, &mut states, plans).await;
            }
            received = activations.recv() => match received {
                Ok(Activation { key, replicas }) => {
                    let now = Clocks::now();
                    let state = states.entry(key.clone()).or_default();
                    state.history.activation(now.mono);
                    state.cold_starts.woke(now.mono);
                    let plans = plan_one(&settings, &fn_store, &dep_store, &mut states, &key, replicas, now);
                    execute_all(&ctx, &mut states, plans).await;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "the autoscaler missed activation notices; the next metrics show the demand");
                }
                Err(broadcast::error::RecvError::Closed) => {
                    // The context outlives this task; never happens.
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// Polls `source` at its own interval, apart from the decisions, so a slow
/// scrape never delays one; the task ends when the handle is dropped.
fn spawn_poller(mut source: MetricSource) -> (AbortOnDropHandle<()>, mpsc::Receiver<Poll>) {
    let (poll_tx, polls) = mpsc::channel::<Poll>(4);
    let poller = AbortOnDropHandle::new(tokio::spawn(async move {
        let mut tick = tokio::time::interval(source.interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let poll = source.poll().await;
            if poll_tx.send(poll).await.is_err() {
                return;
            }
        }
    }));
    (poller, polls)
}

fn build_source(
    ctx: &Context,
    settings: &Settings,
) -> (MetricSource, Option<tokio::task::JoinHandle<()>>) {
    match settings.metrics_source {
        SourceKind::Prometheus => (
            MetricSource::Prometheus(PromQuery::new(
                settings.prometheus_url.as_deref().unwrap_or(""),
                settings.prometheus_window,
                settings.prometheus_timeout,
                settings.autoscale_interval,
            )),
            None,
        ),
        SourceKind::Scrape if !settings.activator_url.is_empty() => (
            MetricSource::Scrape(Scraper::new(
                Targets::Static(settings.activator_url.clone()),
                settings.scrape_interval,
            )),
            None,
        ),
        SourceKind::Scrape => {
            let (targets, task) = Targets::watch(
                ctx.client.clone(),
                &settings.activator_selector,
                settings.activator_metrics_port,
            );
            (
                MetricSource::Scrape(Scraper::new(targets, settings.scrape_interval)),
                Some(task),
            )
        }
    }
}

/// Adds a poll to every Function's history. A complete poll that does not
/// mention a function says it had no traffic; an incomplete one is a gap.
fn record_poll(
    ctx: &Context,
    fn_store: &Store<Function>,
    states: &mut HashMap<FunctionKey, FunctionState>,
    poll: &Poll,
) {
    let functions = fn_store.state();
    let mut live = std::collections::HashSet::with_capacity(functions.len());
    for f in &functions {
        let key = FunctionKey::of(f);
        let state = states.entry(key.clone()).or_default();
        let reading = poll.functions.get(&key);
        if !poll.complete {
            state.history.gap();
        }
        if poll.complete || reading.is_some() {
            let r = reading.copied().unwrap_or_default();
            state.history.record(
                Sample {
                    at: poll.at,
                    dt: poll.dt,
                    rps: r.rps,
                    concurrency: r.concurrency,
                    requests: r.requests,
                },
                r.in_flight,
                r.queued,
            );
        }
        live.insert(key);
    }
    states.retain(|key, _| {
        let keep = live.contains(key);
        if !keep {
            ctx.metrics.forget_function(&key.namespace, &key.name);
        }
        keep
    });
}

/// The two clocks a decision reads: the monotonic one for the metric
/// windows, the wall clock for `scale.schedules`.
#[derive(Clone, Copy, Debug)]
struct Clocks {
    mono: Instant,
    wall: jiff::Timestamp,
}

impl Clocks {
    fn now() -> Self {
        Self {
            mono: Instant::now(),
            wall: jiff::Timestamp::now(),
        }
    }
}

fn plan_all(
    ctx: &Context,
    settings: &Settings,
    fn_store: &Store<Function>,
    dep_store: &Store<DeploymentView>,
    states: &mut HashMap<FunctionKey, FunctionState>,
    now: Clocks,
) -> Vec<Plan> {
    let started = Instant::now();
    let mut plans = Vec::new();
    for f in fn_store.state() {
        let key = FunctionKey::of(&f);
        if let Some(plan) = plan_for(settings, f, dep_store, states, key, 0, now) {
            plans.push(plan);
        }
    }
    ctx.metrics
        .autoscaler
        .decision_duration
        .observe(started.elapsed().as_secs_f64());
    plans
}

/// Plans one Function just after an activation that left its Deployment at
/// `woken_to` replicas.
fn plan_one(
    settings: &Settings,
    fn_store: &Store<Function>,
    dep_store: &Store<DeploymentView>,
    states: &mut HashMap<FunctionKey, FunctionState>,
    key: &FunctionKey,
    woken_to: i32,
    now: Clocks,
) -> Vec<Plan> {
    let Some(f) = fn_store.get(&ObjectRef::new(&key.name).within(&key.namespace)) else {
        return Vec::new();
    };
    plan_for(settings, f, dep_store, states, key.clone(), woken_to, now)
        .into_iter()
        .collect()
}

/// Plans one Function. `at_least` is a replica count known to be written
/// already (an activation's) that the Deployment watch may not show yet.
fn plan_for(
    settings: &Settings,
    function: Arc<Function>,
    dep_store: &Store<DeploymentView>,
    states: &mut HashMap<FunctionKey, FunctionState>,
    key: FunctionKey,
    at_least: i32,
    clocks: Clocks,
) -> Option<Plan> {
    let now = clocks.mono;
    // An invalid spec is the reconciler's to report; a missing Deployment
    // is not created yet (or was deleted): nothing to scale.
    if function.meta().deletion_timestamp.is_some() {
        return None;
    }
    let state = states.entry(key.clone()).or_default();
    let windows = state.windows_of(&function)?;
    let d = dep_store.get(&ObjectRef::new(&key.name).within(&key.namespace))?;
    let target = Target::of(&function).ok()?;
    // The watch sees Deployments by Siesta's label, which anyone can copy
    // (or leave behind: `kubectl delete fn --cascade=orphan`). Such a
    // Deployment is not the Function's to scale; the reconciler reports it
    // as DeploymentConflict, and the scale write would refuse it anyway.
    if let Some(why) = resources::not_controlled_because(&d.metadata, &target.name, &target.uid) {
        if !state.not_owned {
            state.not_owned = true;
            tracing::warn!(function = %key, reason = %why, "not autoscaling: the Deployment of this name is not the Function's (see its Ready condition, DeploymentConflict)");
        }
        return None;
    }
    state.not_owned = false;
    let current = d.replicas().max(at_least);
    let ready = d
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    state.cold_starts.observe(current, ready, now);
    let floor = if windows.is_empty() {
        None
    } else {
        let lead = cold_start::lead(
            cold_start_of(state, &function, settings),
            settings.autoscale_interval,
        );
        schedule::active_floor(&windows, clocks.wall, lead)
    };
    let decision = decision::decide(
        &mut state.history,
        &function.spec.scale,
        Replicas { current, ready },
        floor.as_ref(),
        now,
    );
    if current == 0 && decision.desired > 0 {
        // Timed from the decision: if the write fails, the next read still
        // sees zero and drops the measurement.
        state.cold_starts.woke(now);
    }
    let write_status = status_outdated(&function, &decision, state.last_status_write, now);
    state.gauges |= !decision.is_idle();
    Some(Plan {
        function,
        key,
        target,
        current,
        decision,
        write_status,
        gauges: state.gauges,
    })
}

fn status_outdated(f: &Function, d: &Decision, last_write: Option<Instant>, now: Instant) -> bool {
    let Some(status) = f.status.as_ref() else {
        return true;
    };
    let Some(a) = status.autoscaler.as_ref() else {
        return true;
    };
    if status.desired_replicas != d.desired
        || a.mode != d.mode.as_str()
        || a.active_schedule != d.schedule
    {
        return true;
    }
    a.reason != d.reason
        && last_write.is_none_or(|t| now.saturating_duration_since(t) >= STATUS_REFRESH)
}

async fn execute_all(
    ctx: &Context,
    states: &mut HashMap<FunctionKey, FunctionState>,
    plans: Vec<Plan>,
) {
    let written: Vec<(FunctionKey, bool)> = futures::stream::iter(plans)
        .map(|plan| async move {
            let key = plan.key.clone();
            (key, execute(ctx, plan).await)
        })
        .buffer_unordered(WRITE_CONCURRENCY)
        .collect()
        .await;
    let now = Instant::now();
    for (key, status_written) in written {
        if status_written && let Some(s) = states.get_mut(&key) {
            s.last_status_write = Some(now);
        }
    }
}

/// Carries out one decision. Returns whether the status was written.
async fn execute(ctx: &Context, plan: Plan) -> bool {
    let Plan {
        function,
        key,
        target,
        current,
        decision: d,
        write_status,
        gauges,
    } = plan;
    // The one hook of `kubectl siesta explain`: every decision, kept.
    ctx.decisions.record(
        &key,
        &function.spec.scale,
        current,
        function.status.as_ref().map_or(0, |s| s.ready_replicas),
        &d,
        std::time::SystemTime::now(),
    );
    if gauges {
        set_decision_gauges(ctx, &key, &d);
    }

    if d.desired != current {
        match scale::set_replicas_from(&ctx.client, &target, current, d.desired).await {
            Ok(Some(from)) => {
                ctx.metrics
                    .autoscaler
                    .scale_writes
                    .with_label_values(&["success"])
                    .inc();
                tracing::info!(function = %key, from, to = d.desired, mode = d.mode.as_str(), reason = %d.reason, "scaled");
                let note = scale_note(from, &d);
                ctx.events.publish(&function, note).await;
            }
            Ok(None) => {
                // Someone (an activation, a user) changed the count since the
                // Deployment was read: decide again on fresh numbers.
                tracing::debug!(function = %key, "replicas changed under the autoscaler; deciding again next round");
                return false;
            }
            Err(e) => {
                ctx.metrics
                    .autoscaler
                    .scale_writes
                    .with_label_values(&["error"])
                    .inc();
                tracing::warn!(function = %key, error = %e, "could not scale; retrying at the next decision");
                return false;
            }
        }
    }
    if d.panic_entered {
        ctx.events
            .publish(
                &function,
                Note::normal(event_reason::PANIC_ENTERED, d.reason.clone()),
            )
            .await;
    }
    if !write_status {
        return false;
    }
    match write_status_of(ctx, &key, &d).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(function = %key, error = %e, "could not write the autoscaler status; retrying at the next decision");
            false
        }
    }
}

/// The per-function gauges of one decision.
fn set_decision_gauges(ctx: &Context, key: &FunctionKey, d: &Decision) {
    let labels = [key.namespace.as_str(), key.name.as_str()];
    ctx.metrics
        .autoscaler
        .desired_replicas
        .with_label_values(&labels)
        .set(i64::from(d.desired));
    ctx.metrics
        .autoscaler
        .observed_concurrency
        .with_label_values(&labels)
        .set(d.concurrency);
    ctx.metrics
        .autoscaler
        .observed_rps
        .with_label_values(&labels)
        .set(d.rps);
    ctx.metrics
        .autoscaler
        .panic_mode
        .with_label_values(&labels)
        .set(i64::from(d.mode == Mode::Panic));
}

/// The event of a scale write from `from` replicas.
fn scale_note(from: i32, d: &Decision) -> Note {
    if d.desired == 0 {
        Note::normal(
            event_reason::SCALED_TO_ZERO,
            format!("scaled from {from} to zero: {}", d.reason),
        )
    } else if from == 0 {
        Note::normal(
            event_reason::WOKE_UP,
            format!("scaled from 0 to {}: {}", d.desired, d.reason),
        )
    } else {
        Note::normal(
            event_reason::SCALED,
            format!("scaled from {from} to {} replicas: {}", d.desired, d.reason),
        )
    }
}

/// Server-side apply of `status.desiredReplicas` and `status.autoscaler`
/// under the autoscaler's own field manager: the reconciler's apply leaves
/// both out, so neither writer removes the other's fields.
async fn write_status_of(ctx: &Context, key: &FunctionKey, d: &Decision) -> crate::Result<()> {
    let api: Api<Function> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let patch = serde_json::json!({
        "apiVersion": Function::api_version(&()),
        "kind": Function::kind(&()),
        "metadata": {"name": key.name},
        "status": {
            "desiredReplicas": d.desired,
            "autoscaler": AutoscalerStatus {
                mode: d.mode.as_str().to_string(),
                observed_concurrency: round(d.concurrency),
                observed_rps: round(d.rps),
                reason: d.reason.clone(),
                active_schedule: d.schedule.clone(),
            },
        },
    });
    api_call(
        || format!("write the autoscaler status of Function {key}"),
        api.patch_status(
            &key.name,
            &PatchParams::apply(AUTOSCALER_MANAGER).force(),
            &Patch::Apply(&patch),
        ),
    )
    .await
    .map(|_| ())
}

/// Three decimals are plenty on a status, and keep it readable.
fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Starts nothing; checks the settings (used by `start`).
pub fn check(settings: &Settings) -> anyhow::Result<()> {
    settings.check().context("invalid autoscaler settings")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(scale: serde_json::Value, generation: i64) -> Function {
        let mut f = crate::resources::tests::function(serde_json::json!({
            "image": "x",
            "scale": scale,
        }));
        f.metadata.generation = Some(generation);
        f
    }

    fn decision(schedule: Option<&str>) -> Decision {
        Decision {
            desired: 3,
            mode: Mode::Stable,
            concurrency: 0.0,
            rps: 0.0,
            reason: "r".into(),
            panic_entered: false,
            schedule: schedule.map(String::from),
        }
    }

    #[test]
    fn a_new_active_schedule_is_written_at_once() {
        let mut f = function(serde_json::json!({}), 1);
        f.status = Some(siesta_api::FunctionStatus {
            desired_replicas: 3,
            autoscaler: Some(AutoscalerStatus {
                mode: "stable".into(),
                reason: "r".into(),
                active_schedule: Some("schedules[0] \"0 8 * * *\" UTC until 09:00".into()),
                ..AutoscalerStatus::default()
            }),
            ..siesta_api::FunctionStatus::default()
        });
        let now = Instant::now();
        let just_written = Some(now);
        let same = decision(Some("schedules[0] \"0 8 * * *\" UTC until 09:00"));
        assert!(!status_outdated(&f, &same, just_written, now));
        for other in [
            None,
            Some("schedules[0] \"0 8 * * *\" UTC until 10:00"),
            Some("schedules[1] \"0 9 * * *\" UTC until 10:00"),
        ] {
            assert!(
                status_outdated(&f, &decision(other), just_written, now),
                "{other:?}"
            );
        }
    }

    #[test]
    fn windows_are_parsed_once_per_generation_and_none_for_an_invalid_spec() {
        let mut state = FunctionState::default();
        let one = serde_json::json!({"schedules": [
            {"cron": "0 8 * * *", "duration": "1h", "minReplicas": 2},
        ]});
        let windows = state.windows_of(&function(one.clone(), 1)).expect("valid");
        assert_eq!(windows.len(), 1);
        assert_eq!(windows[0].min_replicas, 2);
        // A new generation with two windows is parsed again.
        let two = serde_json::json!({"schedules": [
            {"cron": "0 8 * * *", "duration": "1h", "minReplicas": 2},
            {"cron": "0 9 * * *", "timeZone": "Europe/Berlin", "duration": "1h", "minReplicas": 4},
        ]});
        assert_eq!(state.windows_of(&function(two, 2)).unwrap().len(), 2);
        // An invalid spec: no windows, no decision (the reconciler reports it).
        let bad = serde_json::json!({"schedules": [
            {"cron": "0 8 * *", "duration": "1h", "minReplicas": 2},
        ]});
        assert!(state.windows_of(&function(bad, 3)).is_none());
        // The same generation number of a recreated Function (another uid)
        // is checked again.
        let mut again = function(one, 3);
        again.metadata.uid = Some("uid-2".into());
        assert_eq!(state.windows_of(&again).unwrap().len(), 1);
        // No schedules: an empty list, and a decision as before.
        assert_eq!(
            state
                .windows_of(&function(serde_json::json!({}), 4))
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn the_cold_start_defaults_until_one_is_measured() {
        let settings = Settings::defaults();
        let mut state = FunctionState::default();
        let mut f = function(serde_json::json!({}), 1);
        assert_eq!(
            cold_start_of(&state, &f, &settings),
            Duration::from_secs(30)
        );
        // A recorded cold start (status.lastColdStart) survives a restart.
        f.status = Some(siesta_api::FunctionStatus {
            last_cold_start: Some(siesta_api::cold_start::ColdStartStatus {
                total: "4.250s".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            cold_start_of(&state, &f, &settings),
            Duration::from_millis(4_250)
        );
        let t0 = Instant::now();
        state.cold_starts.observe(0, 0, t0);
        state.cold_starts.woke(t0);
        state.cold_starts.observe(1, 1, t0 + Duration::from_secs(3));
        assert_eq!(
            cold_start_of(&state, &f, &settings),
            Duration::from_millis(4_250),
            "the longer wins"
        );
        f.status = None;
        assert_eq!(cold_start_of(&state, &f, &settings), Duration::from_secs(3));
    }

    /// A Function at zero and its Deployment in a store, as the watches
    /// would hold them.
    struct AtZero {
        settings: Settings,
        function: Arc<Function>,
        deployments: Store<DeploymentView>,
        key: FunctionKey,
    }

    impl AtZero {
        fn new() -> Self {
            use kube::runtime::{reflector::store::Writer, watcher};
            let f = function(serde_json::json!({}), 1);
            let owner = resources::Owner::of(&f).unwrap();
            let mut writer = Writer::<DeploymentView>::default();
            writer.apply_watcher_event(&watcher::Event::Apply(
                resources::deployment(&owner, &f.spec, Some(0)).into(),
            ));
            Self {
                settings: Settings::defaults(),
                function: Arc::new(f),
                deployments: writer.as_reader(),
                key: FunctionKey {
                    namespace: "demo".into(),
                    name: "hello".into(),
                },
            }
        }

        /// `plan_for` it now, with `at_least` replicas known written.
        fn plan(
            &self,
            states: &mut HashMap<FunctionKey, FunctionState>,
            at_least: i32,
            now: Clocks,
        ) -> Plan {
            plan_for(
                &self.settings,
                self.function.clone(),
                &self.deployments,
                states,
                self.key.clone(),
                at_least,
                now,
            )
            .expect("a plan")
        }
    }

    /// The Deployment watch after a wake can still show zero; the activation
    /// carries the count its scale write left, so the decision made at once
    /// on it records what the Deployment has and writes nothing, instead of
    /// "0 → 1" and a second scale write of what the wake wrote.
    #[test]
    fn an_activation_is_planned_with_the_count_its_wake_wrote() {
        let z = AtZero::new();
        let plan = |at_least: i32| {
            let mut states = HashMap::new();
            let now = Clocks::now();
            states
                .entry(z.key.clone())
                .or_insert_with(FunctionState::default)
                .history
                .activation(now.mono);
            let plan = z.plan(&mut states, at_least, now);
            (plan.current, plan.decision.desired)
        };
        assert_eq!(plan(0), (0, 1), "as the watch shows it: a write of 1");
        assert_eq!(plan(1), (1, 1), "as the wake left it: kept, no write");
    }

    /// A Function at zero that is never called makes no decision gauges;
    /// once a decision has something to show, they are set from then on.
    #[test]
    fn decision_gauges_are_set_from_the_first_decision_with_something_to_show() {
        let z = AtZero::new();
        let mut states = HashMap::new();
        let idle = z.plan(&mut states, 0, Clocks::now());
        assert!(
            idle.decision.is_idle() && !idle.gauges,
            "{:?}",
            idle.decision
        );
        let woken = z.plan(&mut states, 1, Clocks::now());
        assert!(!woken.decision.is_idle() && woken.gauges);
        assert!(
            z.plan(&mut states, 0, Clocks::now()).gauges,
            "set from then on, zeros included"
        );
    }
}
