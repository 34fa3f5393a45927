//! The record of what each Function's pods ran (leader only), for "what
//! scaling to zero saved": it watches the pods labelled
//! `siesta.dev/function`, keeps one [`Ledger`] per Function (the pure rules
//! live in [`siesta_api::usage`]), writes it to `status.usage` under its own
//! field manager, and counts pod-seconds and requested resource-seconds in
//! counters that grow only while pods run.
//!
//! - A pod counts from its `status.startTime` (what `kubectl get pod` shows
//!   as its start; resources are reserved a little earlier, at binding, but
//!   that moment is not in the pod's status) until its containers' last
//!   `finishedAt`, or, without one, the moment the watch showed it deleted
//!   or Succeeded/Failed.
//! - Writes: at most every [`WRITE_PERIOD`] per Function and only when the
//!   record changed, plus a heartbeat every [`HEARTBEAT`] while a pod runs
//!   that moves `recordedAt`: a pod that disappears while no controller
//!   runs is closed at `recordedAt`, so it is under-counted by at most that.
//! - A new leader reads `status.usage` back and continues the open
//!   intervals; its counters start at `recordedAt`, where the record the
//!   old leader left ends (so across a fail-over the two processes' counters
//!   overlap by at most one write period).
//! - A pod whose `finishedAt` is earlier than when its end was seen has
//!   been counted up to when it was seen: the counters may run ahead of the
//!   record by that (about a second); `status.usage` holds the exact span.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use siesta_api::usage::{Ledger, PodSpan, Requests, UsageStatus};
use siesta_api::{FUNCTION_LABEL, Function};

use crate::context::Context;
use crate::error::api_call;
use siesta_api::names::FunctionKey;

/// The field manager of `status.usage`.
pub const MANAGER: &str = "siesta-usage";
/// Fewest time between two writes of one Function's record.
pub const WRITE_PERIOD: Duration = Duration::from_secs(5);
/// Longest time between two writes while one of its pods runs.
pub const HEARTBEAT: Duration = Duration::from_secs(60);
/// How often the record is compacted, counted and written.
const TICK: Duration = Duration::from_secs(1);

/// One Function's record and what this process has counted of it.
struct Account {
    ledger: Ledger,
    dirty: bool,
    last_write: Option<Instant>,
    /// Per pod: up to when (ms) it is in the counters.
    counted: HashMap<String, i64>,
    /// The baseline last put in the gauges: maxReplicas, requests per pod.
    baseline: Option<(i32, Requests)>,
}

impl Account {
    /// From `status.usage` when there is one, else a new record: from the
    /// Function's creation when this leader saw it created, else from now.
    fn load(f: &Function, now: i64, watching_since: i64) -> Self {
        let stored = f
            .status
            .as_ref()
            .and_then(|s| s.usage.as_ref())
            .and_then(Ledger::from_status);
        let loaded = stored.is_some();
        let ledger = stored.unwrap_or_else(|| {
            let created = f
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_millisecond());
            match created {
                Some(c) if c >= watching_since && c <= now => Ledger::new(c),
                _ => Ledger::new(now),
            }
        });
        // What the record holds up to `recordedAt` was counted by the
        // process that wrote it.
        let counted = ledger
            .pods
            .iter()
            .map(|p| {
                let upto = p.end.unwrap_or(i64::MAX);
                (
                    p.pod.clone(),
                    ledger.recorded_at.clamp(p.start, upto.max(p.start)),
                )
            })
            .collect();
        Account {
            ledger,
            dirty: !loaded,
            last_write: None,
            counted,
            baseline: None,
        }
    }

    fn has_open(&self) -> bool {
        self.ledger.pods.iter().any(|p| p.end.is_none())
    }

    fn due(&self, now: Instant) -> bool {
        let since_write = self.last_write.map(|w| now.duration_since(w));
        match since_write {
            None => self.dirty || self.has_open(),
            Some(d) => (self.dirty && d >= WRITE_PERIOD) || (self.has_open() && d >= HEARTBEAT),
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The accounts of every Function, driven by pod events and ticks.
struct Books {
    ctx: Arc<Context>,
    functions: Store<Function>,
    accounts: HashMap<FunctionKey, Account>,
    watching_since: i64,
    /// Pods seen in the current (re)list, by Function.
    listing: Option<HashMap<FunctionKey, HashSet<String>>>,
    /// Whether a list has completed in this process (the first one closes
    /// vanished pods at the old leader's `recordedAt`, later ones at now).
    listed_once: bool,
}

impl Books {
    fn account(&mut self, key: &FunctionKey, now: i64) -> Option<&mut Account> {
        if !self.accounts.contains_key(key) {
            let f = self
                .functions
                .get(&reflector::ObjectRef::new(&key.name).within(&key.namespace))?;
            self.accounts
                .insert(key.clone(), Account::load(&f, now, self.watching_since));
        }
        self.accounts.get_mut(key)
    }

    fn pod(&mut self, pod: &Pod, deleted: bool) {
        let Some(key) = FunctionKey::of_pod(pod) else {
            return;
        };
        let now = now_ms();
        if let Some(listing) = self.listing.as_mut() {
            listing
                .entry(key.clone())
                .or_default()
                .insert(pod.name_any());
        }
        let Some(span) = PodSpan::of(pod, now, deleted) else {
            return;
        };
        if let Some(account) = self.account(&key, now) {
            let since = account.ledger.since;
            let (pod_name, start) = (span.pod.clone(), span.start);
            if account.ledger.observe(span) {
                account.dirty = true;
                account.counted.entry(pod_name).or_insert(start.max(since));
            }
        }
    }

    fn listed(&mut self) {
        let Some(listing) = self.listing.take() else {
            return;
        };
        let now = now_ms();
        let first = !self.listed_once;
        self.listed_once = true;
        for f in self.functions.state() {
            let key = FunctionKey::of(&f);
            let live = listing.get(&key).cloned().unwrap_or_default();
            if let Some(account) = self.account(&key, now) {
                let at = if first {
                    account.ledger.recorded_at
                } else {
                    now
                };
                if account.ledger.close_missing(&live, at) {
                    account.dirty = true;
                }
            }
        }
    }

    /// Compacts, counts and writes what is due.
    async fn tick(&mut self) {
        let now = now_ms();
        let ctx = self.ctx.clone();
        let functions = self.functions.state();
        let live: HashSet<FunctionKey> = functions.iter().map(|f| FunctionKey::of(f)).collect();
        let gone: Vec<FunctionKey> = self
            .accounts
            .keys()
            .filter(|k| !live.contains(k))
            .cloned()
            .collect();
        for key in gone {
            self.accounts.remove(&key);
            ctx.metrics.forget_usage(&key.namespace, &key.name);
        }
        let instant = Instant::now();
        for f in &functions {
            let key = FunctionKey::of(f);
            let Some(account) = self.account(&key, now) else {
                continue;
            };
            // The baseline gauges move only with the spec: set at the
            // first tick and after a change, not every tick for every
            // Function (six label lookups each: 60,000 a second at 10,000).
            let baseline = (
                f.spec.scale.max_replicas,
                Requests::of([f.spec.resources.as_ref()]),
            );
            if account.baseline != Some(baseline) {
                ctx.metrics.set_function_baseline(
                    &key.namespace,
                    &key.name,
                    baseline.0,
                    baseline.1,
                );
                account.baseline = Some(baseline);
            }
            if account.ledger.compact(now) {
                account.dirty = true;
            }
            count(&ctx, &key, account, now);
            if account.due(instant) {
                account.ledger.recorded_at = now;
                let status = account.ledger.to_status();
                match write(&ctx, &key, &status).await {
                    Ok(()) => {
                        account.dirty = false;
                        account.last_write = Some(instant);
                        ctx.metrics.usage_write("success");
                    }
                    Err(e) => {
                        // Retried at the next tick past the write period.
                        account.last_write = Some(instant);
                        ctx.metrics.usage_write("error");
                        tracing::warn!(function = %key, error = %e, "could not write the usage record");
                    }
                }
            }
        }
    }
}

/// Adds to the counters what each pod ran since it was last counted.
fn count(ctx: &Context, key: &FunctionKey, account: &mut Account, now: i64) {
    let mut pods = HashSet::with_capacity(account.ledger.pods.len());
    for p in &account.ledger.pods {
        pods.insert(p.pod.clone());
        let upto = p.end.unwrap_or(now);
        let counted = account
            .counted
            .entry(p.pod.clone())
            .or_insert(p.start.max(account.ledger.since));
        if upto > *counted {
            let seconds = (upto - *counted) as f64 / 1000.0;
            ctx.metrics
                .add_usage(&key.namespace, &key.name, seconds, p.cpu, p.memory);
            *counted = upto;
        }
    }
    account.counted.retain(|pod, _| pods.contains(pod));
}

async fn write(ctx: &Context, key: &FunctionKey, usage: &UsageStatus) -> crate::Result<()> {
    let api: Api<Function> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let patch = serde_json::json!({
        "apiVersion": Function::api_version(&()),
        "kind": Function::kind(&()),
        "metadata": {"name": key.name},
        "status": {"usage": usage},
    });
    api_call(
        || format!("write the usage record of Function {key}"),
        api.patch_status(
            &key.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        ),
    )
    .await
    .map(|_| ())
}

/// Runs the accounting until dropped (the leader runs it next to the
/// reconciler; losing the lease drops it).
/// `store` is the leader's shared watch of Functions (`crate::watches`).
pub async fn run(ctx: Arc<Context>, store: Store<Function>) {
    let pods = match &ctx.watch_namespace {
        Some(ns) => Api::<Pod>::namespaced(ctx.client.clone(), ns),
        None => Api::<Pod>::all(ctx.client.clone()),
    };
    let watching_since = now_ms();
    if store.wait_until_ready().await.is_err() {
        return;
    }
    let mut books = Books {
        ctx: ctx.clone(),
        functions: store,
        accounts: HashMap::new(),
        watching_since,
        listing: None,
        listed_once: false,
    };
    let pod_events = watcher(pods, watcher::Config::default().labels(FUNCTION_LABEL))
        .backoff(siesta_api::watch_backoff::WatchBackoff::default());
    futures::pin_mut!(pod_events);
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = pod_events.next() => match event {
                Some(Ok(watcher::Event::Init)) => books.listing = Some(HashMap::new()),
                Some(Ok(watcher::Event::InitApply(p) | watcher::Event::Apply(p))) => books.pod(&p, false),
                Some(Ok(watcher::Event::Delete(p))) => books.pod(&p, true),
                Some(Ok(watcher::Event::InitDone)) => books.listed(),
                Some(Err(e)) => tracing::warn!(error = %e, "the usage record's watch of pods failed; retrying (check the controller may list and watch pods)"),
                None => return,
            },
            _ = ticks.tick() => books.tick().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siesta_api::usage::Span;

    fn function(usage: Option<UsageStatus>, created: i64) -> Function {
        let mut f = Function::new(
            "f",
            serde_json::from_value(serde_json::json!({"image": "x"})).unwrap(),
        );
        f.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_millisecond(created).unwrap(),
        ));
        f.status = Some(siesta_api::FunctionStatus {
            usage,
            ..Default::default()
        });
        f
    }

    const T0: i64 = 1_764_590_400_000;

    #[test]
    fn a_function_created_while_watched_is_counted_from_its_creation() {
        let a = Account::load(&function(None, T0 + 500), T0 + 2_000, T0);
        assert_eq!(a.ledger.since, T0);
        assert!(a.dirty, "a new record is written");
        let older = Account::load(&function(None, T0 - 60_000), T0 + 2_000, T0);
        assert_eq!(older.ledger.since, T0 + 2_000);
    }

    #[test]
    fn a_loaded_record_is_counted_from_where_the_old_leader_left_it() {
        let mut l = Ledger::new(T0);
        l.observe(Span {
            pod: "done".into(),
            start: T0,
            end: Some(T0 + 10_000),
            cpu: 1.0,
            memory: 0.0,
        });
        l.observe(Span {
            pod: "running".into(),
            start: T0 + 5_000,
            end: None,
            cpu: 1.0,
            memory: 0.0,
        });
        l.recorded_at = T0 + 30_000;
        let a = Account::load(&function(Some(l.to_status()), T0), T0 + 40_000, T0 + 35_000);
        assert!(!a.dirty);
        assert_eq!(a.counted["done"], T0 + 10_000);
        assert_eq!(a.counted["running"], T0 + 30_000);
        assert!(a.has_open());
        assert!(a.due(Instant::now()), "the first heartbeat is due at once");
    }
}
