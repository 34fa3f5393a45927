//! Every known Function and its ready pods: the state the request path reads.
//!
//! Plain data driven by `apply`/`delete`/`set_ready` calls (from the watches,
//! or directly from tests); no IO. The map lock is taken once per request to
//! find the function, never across an await; everything else a request
//! touches lives behind that one function's own mutex.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use siesta_api::{FunctionSpec, Protocol};
use tokio::sync::oneshot;
use tokio::time::Instant;

use siesta_api::cold_start::ColdStartReport;

use crate::cold_record::ColdRecord;
use crate::dispatch::{Admit, Dispatcher};
use crate::metrics::{FunctionMetrics, Metrics};
use crate::park_budget::{self, Charge, ParkBudget, Refusal, RefusalLog, Tenant};
use crate::route::FunctionKey;

/// The parts of a Function's spec the activator acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionConfig {
    pub port: u16,
    pub protocol: Protocol,
    /// Most in-flight requests per pod; 0 means no limit.
    pub container_concurrency: u32,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Most parked requests.
    pub queue_max: usize,
    /// Longest wait for a pod.
    pub queue_timeout: Duration,
    /// Largest request body forwarded, in bytes; longer ones get 413.
    pub max_request_body_bytes: Option<u64>,
}

impl FunctionConfig {
    /// From a spec; out-of-range numbers (the schema refuses them, but an old
    /// object may predate it) are clamped to something that works.
    pub fn from_spec(spec: &FunctionSpec) -> Self {
        Self {
            port: u16::try_from(spec.port)
                .ok()
                .filter(|p| *p != 0)
                .unwrap_or(8080),
            protocol: spec.protocol,
            container_concurrency: u32::try_from(spec.container_concurrency).unwrap_or(0),
            timeout: Duration::from_secs(u64::try_from(spec.timeout_seconds.max(1)).unwrap_or(1)),
            queue_max: usize::try_from(spec.queue.max_requests.max(1)).unwrap_or(1),
            queue_timeout: Duration::from_secs(
                u64::try_from(spec.queue.timeout_seconds.max(1)).unwrap_or(1),
            ),
            max_request_body_bytes: spec
                .max_request_body_bytes
                .map(|n| u64::try_from(n).unwrap_or(0)),
        }
    }
}

impl Default for FunctionConfig {
    fn default() -> Self {
        Self::from_spec(&FunctionSpec {
            image: String::new(),
            port: siesta_api::defaults::port(),
            protocol: Protocol::Http1,
            command: vec![],
            args: vec![],
            env: vec![],
            resources: None,
            container_concurrency: 0,
            timeout_seconds: siesta_api::defaults::timeout_seconds(),
            max_request_body_bytes: None,
            queue: Default::default(),
            scale: Default::default(),
        })
    }
}

/// What a parked request is woken with: the pod whose slot it got, or why
/// it will get none (the controller refused to wake the function).
pub type Woken = Result<SocketAddr, Arc<str>>;
pub type WaiterTx = oneshot::Sender<Woken>;

/// A parked request as its function's queue holds it: how to wake it, and
/// its part of the activator-wide budget, given back when it leaves the
/// queue, whichever way.
pub struct Waiter {
    tx: WaiterTx,
    _charge: Charge,
}

/// One function: its identity, cached metric handles, and its mutable state.
pub struct FunctionEntry {
    pub key: FunctionKey,
    pub metrics: FunctionMetrics,
    budget: Arc<ParkBudget>,
    /// This function's part of `budget`.
    tenant: Arc<Tenant>,
    state: Mutex<FunctionState>,
}

struct FunctionState {
    config: FunctionConfig,
    dispatcher: Dispatcher<Waiter>,
    /// Pods the watches call ready (probed or not).
    ready: Vec<SocketAddr>,
    /// Requests held now, parked or proxied.
    held: u64,
    last_change: Instant,
    /// When the first request parked with no pod, for the cold-start metric.
    cold_since: Option<Instant>,
    /// The phases of the cold start in progress, for the controller's record.
    cold: ColdRecord,
    /// An activation loop is running.
    waking: bool,
    deleted: bool,
    /// The controller refused to wake the function (409: its Deployment or
    /// Service is not Siesta's, or its spec is invalid) and until when that answer is
    /// given to new requests without asking again.
    refused: Option<(Arc<str>, Instant)>,
    /// Refusals for the parked-request budget, for a log line a second.
    budget_log: RefusalLog,
}

/// The outcome of [`FunctionEntry::admit`].
pub enum Admission {
    Go {
        addr: SocketAddr,
        config: FunctionConfig,
    },
    Parked {
        id: u64,
        rx: oneshot::Receiver<Woken>,
        config: FunctionConfig,
        /// This request found the function at zero with no wake-up running:
        /// the caller starts one.
        wake: bool,
    },
    Full,
    /// Its Content-Length is over the Function's `maxRequestBodyBytes`
    /// (this limit): refused before it parks or wakes anything.
    TooLarge {
        limit: u64,
    },
    /// The request would park, and the activator-wide budget of parked
    /// requests (or this function's fair share of it) says no.
    OverBudget(OverBudget),
    /// No pod, and the controller refused to wake the function a moment
    /// ago; the controller's reason.
    Refused(Arc<str>),
}

/// A refusal for the parked-request budget.
#[derive(Debug)]
pub struct OverBudget {
    pub refusal: Refusal,
    /// `Some(n)`: log it now, for `n` refusals of this function (one line a
    /// second per function; `n` counts the ones not logged since).
    pub log: Option<u64>,
}

impl FunctionEntry {
    fn new(
        key: FunctionKey,
        config: FunctionConfig,
        metrics: FunctionMetrics,
        budget: Arc<ParkBudget>,
    ) -> Self {
        Self {
            key,
            metrics,
            budget,
            tenant: Arc::default(),
            state: Mutex::new(FunctionState {
                dispatcher: Dispatcher::new(config.container_concurrency, config.queue_max),
                config,
                ready: Vec::new(),
                held: 0,
                last_change: Instant::now(),
                cold_since: None,
                cold: ColdRecord::default(),
                waking: false,
                deleted: false,
                refused: None,
                budget_log: RefusalLog::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FunctionState> {
        // A panic while holding this lock cannot leave the counters torn in a
        // way worse than refusing all traffic would be, so keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> FunctionConfig {
        self.lock().config
    }

    /// Admits a request that pins no bytes when parked (for tests).
    pub fn admit(&self, now: Instant) -> Admission {
        self.admit_costing(now, None, || 0)
    }

    /// Admits a request: a pod now, a place in the queue, or a refusal. A
    /// request that is not refused is held until [`FunctionEntry::finish`].
    /// `parked_bytes` says what it would pin if parked
    /// ([`park_budget::cost`]); it is only called then, so the warm path
    /// never touches the budget. `declared_body` is the request's
    /// Content-Length, checked against `maxRequestBodyBytes` under the same
    /// lock.
    pub fn admit_costing(
        &self,
        now: Instant,
        declared_body: Option<u64>,
        parked_bytes: impl FnOnce() -> u64,
    ) -> Admission {
        let mut st = self.lock();
        if let (Some(n), Some(limit)) = (declared_body, st.config.max_request_body_bytes)
            && n > limit
        {
            return Admission::TooLarge { limit };
        }
        if st.dispatcher.endpoints() == 0
            && let Some((why, until)) = &st.refused
            && now < *until
        {
            return Admission::Refused(why.clone());
        }
        let mut rx = None;
        let admit = st.dispatcher.try_admit(|| {
            let charge = self.budget.try_charge(&self.tenant, parked_bytes())?;
            let (tx, r) = oneshot::channel();
            rx = Some(r);
            Ok(Waiter {
                tx,
                _charge: charge,
            })
        });
        let admit = match admit {
            Ok(admit) => admit,
            Err(refusal) => {
                let log = st.budget_log.note(now);
                return Admission::OverBudget(OverBudget { refusal, log });
            }
        };
        match (admit, rx) {
            (Admit::Go(addr), _) => {
                st.hold(now, &self.metrics);
                Admission::Go {
                    addr,
                    config: st.config,
                }
            }
            (Admit::Parked(id), Some(rx)) => {
                st.hold(now, &self.metrics);
                self.metrics.set_queued(st.dispatcher.queued() as i64);
                let cold = st.dispatcher.endpoints() == 0;
                if cold && st.cold_since.is_none() {
                    st.cold_since = Some(now);
                    st.cold.arrived(now);
                }
                let wake = cold && !st.waking && !st.deleted;
                if wake {
                    st.waking = true;
                }
                Admission::Parked {
                    id,
                    rx,
                    config: st.config,
                    wake,
                }
            }
            _ => Admission::Full,
        }
    }

    /// A parked request gives up (timeout, client gone). If it was handed a
    /// pod meanwhile, that slot is given back.
    pub fn cancel(&self, id: u64, rx: &mut oneshot::Receiver<Woken>) {
        let mut st = self.lock();
        if !st.dispatcher.cancel(id) {
            // Handed a pod under this lock earlier: the slot is in the channel.
            rx.close();
            if let Ok(Ok(addr)) = rx.try_recv() {
                st.dispatcher.release(addr);
                st.dispatch();
            }
        }
        self.metrics.set_queued(st.dispatcher.queued() as i64);
    }

    /// After a connect failure on `failed`: gives its slot back and takes one
    /// on another pod, without queueing.
    pub fn repick(&self, failed: SocketAddr) -> Option<SocketAddr> {
        let mut st = self.lock();
        st.dispatcher.release(failed);
        let next = st.dispatcher.pick(Some(failed));
        if next.is_none() {
            st.dispatch();
        }
        next
    }

    /// The request is over: gives back its pod slot (if it got one) and hands
    /// freed slots to parked requests.
    pub fn finish(&self, addr: Option<SocketAddr>, now: Instant) {
        let mut st = self.lock();
        if let Some(addr) = addr {
            st.dispatcher.release(addr);
            st.dispatch();
            self.metrics.set_queued(st.dispatcher.queued() as i64);
        }
        st.unhold(now, &self.metrics);
    }

    /// Sets the pods the watches call ready; returns the new ones, which the
    /// caller probes before calling [`FunctionEntry::probed`].
    pub fn set_ready(&self, addrs: &[SocketAddr]) -> Vec<SocketAddr> {
        let mut st = self.lock();
        let gone: Vec<SocketAddr> = st
            .ready
            .iter()
            .filter(|a| !addrs.contains(a))
            .copied()
            .collect();
        for a in gone {
            st.dispatcher.remove_endpoint(a);
        }
        let new: Vec<SocketAddr> = addrs
            .iter()
            .filter(|a| !st.ready.contains(a))
            .copied()
            .collect();
        st.ready = addrs.to_vec();
        if !new.is_empty() {
            st.cold.ready(Instant::now());
        }
        new
    }

    /// A ready pod answered the probe: requests may go to it now, parked ones
    /// first, in arrival order.
    pub fn probed(&self, addr: SocketAddr, now: Instant) {
        let mut st = self.lock();
        if !st.ready.contains(&addr) || st.deleted {
            return;
        }
        st.dispatcher.add_endpoint(addr);
        st.refused = None;
        if let Some(since) = st.cold_since.take() {
            self.metrics
                .observe_cold_start(now.saturating_duration_since(since).as_secs_f64());
            let parked = st.dispatcher.queued();
            st.cold.released(addr, parked, now);
        }
        st.dispatch();
        self.metrics.set_queued(st.dispatcher.queued() as i64);
    }

    /// The activation signal for the cold start in progress was answered.
    pub fn scale_written(&self, at: Instant) {
        self.lock().cold.scale_written(at);
    }

    /// A parked request's response head is going out: the record of the
    /// cold start that released it, the first time.
    pub fn first_byte(&self, now: Instant) -> Option<ColdStartReport> {
        self.lock().cold.first_byte(now)
    }

    /// Whether `addr` is still a pod the watches call ready (probes stop when not).
    pub fn is_ready(&self, addr: SocketAddr) -> bool {
        self.lock().ready.contains(&addr)
    }

    /// Whether a wake-up should be sent again: requests still parked and no
    /// pod yet. When not, the wake-up loop ends and a later cold park starts
    /// a new one.
    pub fn keep_waking(&self) -> bool {
        let mut st = self.lock();
        let keep = !st.deleted && st.dispatcher.queued() > 0 && st.dispatcher.endpoints() == 0;
        if !keep {
            st.waking = false;
        }
        keep
    }

    /// The controller refused to wake the function (`why`, its words). If
    /// there still is no pod, every parked request is answered with it at
    /// once instead of waiting out its queue timeout, and so is every new
    /// request until `until`; the first one after that asks the controller
    /// again (the conflict may have been resolved). Ends the wake-up loop.
    pub fn refuse(&self, why: Arc<str>, until: Instant) {
        let mut st = self.lock();
        st.waking = false;
        if st.deleted || st.dispatcher.endpoints() > 0 {
            return;
        }
        for (_, waiter) in st.dispatcher.drain_queue() {
            // A request that left meanwhile took nothing: nothing to give back.
            let _ = waiter.tx.send(Err(why.clone()));
        }
        st.cold_since = None;
        st.cold.abandon();
        st.refused = Some((why, until));
        self.metrics.set_queued(0);
    }

    /// Adds the in-flight integral up to `now`, so a scrape sees it exact.
    pub fn flush(&self, now: Instant) {
        let mut st = self.lock();
        st.account(now, &self.metrics);
    }

    /// Number of ready, probed pods.
    pub fn endpoints(&self) -> usize {
        self.lock().dispatcher.endpoints()
    }

    fn apply(&self, config: FunctionConfig) {
        let mut st = self.lock();
        st.dispatcher.container_concurrency = config.container_concurrency;
        st.dispatcher.max_queue = config.queue_max;
        st.config = config;
        // A higher limit may free slots for parked requests.
        st.dispatch();
        self.metrics.set_queued(st.dispatcher.queued() as i64);
    }

    fn delete(&self) {
        let mut st = self.lock();
        st.deleted = true;
        // Dropping the senders wakes every parked request with an error.
        st.dispatcher.drain_queue().for_each(drop);
        self.metrics.set_queued(0);
    }
}

impl FunctionState {
    /// Hands free slots to parked requests in order; slots of requests that
    /// left meanwhile are given back.
    fn dispatch(&mut self) {
        // Each waiter leaves the queue here, and its budget charge with it.
        while let Some((waiter, addr)) = self.dispatcher.next_ready() {
            if waiter.tx.send(Ok(addr)).is_err() {
                self.dispatcher.release(addr);
            }
        }
    }

    fn account(&mut self, now: Instant, m: &FunctionMetrics) {
        let dt = now.saturating_duration_since(self.last_change);
        if self.held > 0 && !dt.is_zero() {
            m.add_concurrency_seconds(self.held as f64 * dt.as_secs_f64());
        }
        self.last_change = now;
    }

    fn hold(&mut self, now: Instant, m: &FunctionMetrics) {
        self.account(now, m);
        self.held += 1;
        m.set_in_flight(self.held as i64);
    }

    fn unhold(&mut self, now: Instant, m: &FunctionMetrics) {
        self.account(now, m);
        self.held = self.held.saturating_sub(1);
        m.set_in_flight(self.held as i64);
    }
}

/// All known functions.
pub struct Index {
    functions: RwLock<HashMap<FunctionKey, Arc<FunctionEntry>>>,
    /// Parked requests across all functions.
    budget: Arc<ParkBudget>,
    /// Bumped whenever a function is added or removed, so per-connection
    /// caches know when their entry may be stale.
    generation: AtomicU64,
    metrics: Metrics,
}

/// A per-connection memo of the last function looked up. Keep-alive clients
/// mostly send a connection's requests to one function; with this the warm
/// path reads one shared atomic (the index generation) and takes a lock only
/// this connection uses (uncontended on HTTP/1; shared by the streams of an
/// HTTP/2 connection) instead of the global map lock every connection shares.
///
/// It also keeps the connection's last Host that named a function
/// ([`crate::target::HostMemo`]) and the forwarding values it last sent
/// ([`crate::forwarded::Memo`]).
#[derive(Default)]
pub struct LookupCache {
    last: Mutex<Option<(u64, Arc<FunctionEntry>)>>,
    host: Mutex<crate::target::HostMemo>,
    forwarded: Mutex<crate::forwarded::Memo>,
}

impl LookupCache {
    /// What the connection remembers of its last Host.
    pub fn host_memo(&self) -> MutexGuard<'_, crate::target::HostMemo> {
        self.host.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the connection remembers of the forwarding values it sent.
    pub fn forwarded_memo(&self) -> MutexGuard<'_, crate::forwarded::Memo> {
        self.forwarded.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, index: &Index, key: &FunctionKey) -> Option<Arc<FunctionEntry>> {
        let generation = index.generation.load(Ordering::Acquire);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((g, e)) = last.as_ref()
            && *g == generation
            && e.key == *key
        {
            return Some(e.clone());
        }
        let e = index.get(key)?;
        *last = Some((generation, e.clone()));
        Some(e)
    }
}

impl Index {
    pub fn new(metrics: Metrics, park_limits: park_budget::Limits) -> Self {
        Self {
            functions: RwLock::new(HashMap::new()),
            budget: ParkBudget::new(park_limits),
            generation: AtomicU64::new(0),
            metrics,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The activator-wide budget of parked requests.
    pub fn park_budget(&self) -> &ParkBudget {
        &self.budget
    }

    pub fn get(&self, key: &FunctionKey) -> Option<Arc<FunctionEntry>> {
        self.functions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Adds or updates a function.
    pub fn apply(&self, key: FunctionKey, config: FunctionConfig) -> Arc<FunctionEntry> {
        if let Some(e) = self.get(&key) {
            e.apply(config);
            return e;
        }
        let mut map = self.functions.write().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get(&key) {
            e.apply(config);
            return e.clone();
        }
        let metrics = self.metrics.function(&key);
        let entry = Arc::new(FunctionEntry::new(
            key.clone(),
            config,
            metrics,
            self.budget.clone(),
        ));
        map.insert(key, entry.clone());
        self.budget.set_known(map.len() as u64);
        self.generation.fetch_add(1, Ordering::Release);
        entry
    }

    /// Removes a function; its parked requests are answered at once.
    pub fn delete(&self, key: &FunctionKey) {
        let removed = {
            let mut map = self.functions.write().unwrap_or_else(|p| p.into_inner());
            let removed = map.remove(key);
            self.budget.set_known(map.len() as u64);
            removed
        };
        if let Some(e) = removed {
            self.generation.fetch_add(1, Ordering::Release);
            e.delete();
            self.metrics.forget(key);
        }
    }

    /// Brings every function's in-flight integral up to `now`.
    pub fn flush(&self, now: Instant) {
        let entries: Vec<Arc<FunctionEntry>> = self
            .functions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for e in entries {
            e.flush(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn index() -> Index {
        Index::new(Metrics::new().unwrap(), park_budget::Limits::UNLIMITED)
    }

    fn key() -> FunctionKey {
        FunctionKey::new("ns", "f")
    }

    #[tokio::test(start_paused = true)]
    async fn a_cold_park_asks_for_one_wake_up_and_a_probed_pod_releases_in_order() {
        let idx = index();
        let e = idx.apply(key(), FunctionConfig::default());
        let t0 = Instant::now();
        let Admission::Parked { rx: rx1, wake, .. } = e.admit(t0) else {
            panic!("expected a park")
        };
        assert!(wake);
        let Admission::Parked { rx: rx2, wake, .. } = e.admit(t0) else {
            panic!("expected a park")
        };
        assert!(!wake, "one wake-up loop at a time");
        assert_eq!(e.metrics.queued(), 2);
        assert_eq!(e.set_ready(&[a(1)]), vec![a(1)]);
        assert!(e.keep_waking(), "ready but not probed: still cold");
        tokio::time::advance(Duration::from_secs(3)).await;
        e.probed(a(1), Instant::now());
        assert_eq!(rx1.await.unwrap(), Ok(a(1)));
        assert_eq!(rx2.await.unwrap(), Ok(a(1)));
        assert_eq!(e.metrics.queued(), 0);
        let cold = e
            .metrics
            .cold_start_histogram()
            .expect("a cold start observed");
        assert_eq!(cold.get_sample_count(), 1);
        assert!((cold.get_sample_sum() - 3.0).abs() < 1e-9);
        assert!(!e.keep_waking());
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_seconds_is_the_integral_of_held_requests() {
        let idx = index();
        let e = idx.apply(key(), FunctionConfig::default());
        e.set_ready(&[a(1)]);
        e.probed(a(1), Instant::now());
        let t0 = Instant::now();
        let (Admission::Go { addr: x, .. }, Admission::Go { addr: y, .. }) =
            (e.admit(t0), e.admit(t0))
        else {
            panic!("expected pods")
        };
        e.finish(Some(x), t0 + Duration::from_secs(2));
        e.flush(t0 + Duration::from_secs(5));
        // 2 held for 2 s, then 1 held for 3 s.
        assert!((e.metrics.concurrency_seconds() - 7.0).abs() < 1e-9);
        assert_eq!(e.metrics.in_flight(), 1);
        e.finish(Some(y), t0 + Duration::from_secs(5));
        assert_eq!(e.metrics.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_that_already_got_a_pod_gives_the_slot_back() {
        let idx = index();
        let cfg = FunctionConfig {
            container_concurrency: 1,
            ..Default::default()
        };
        let e = idx.apply(key(), cfg);
        let now = Instant::now();
        let Admission::Parked { id, mut rx, .. } = e.admit(now) else {
            panic!()
        };
        e.set_ready(&[a(1)]);
        e.probed(a(1), now);
        // The slot went into the channel; the waiter times out anyway.
        e.cancel(id, &mut rx);
        e.finish(None, now);
        assert!(
            matches!(e.admit(now), Admission::Go { .. }),
            "slot was returned"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pod_that_is_no_longer_ready_is_not_added_after_its_probe() {
        let idx = index();
        let e = idx.apply(key(), FunctionConfig::default());
        e.set_ready(&[a(1)]);
        e.set_ready(&[]);
        e.probed(a(1), Instant::now());
        assert_eq!(e.endpoints(), 0);
        e.set_ready(&[a(2)]);
        e.probed(a(2), Instant::now());
        e.set_ready(&[]);
        assert_eq!(e.endpoints(), 0, "removed when it stops being ready");
    }

    #[tokio::test(start_paused = true)]
    async fn deleting_a_function_wakes_its_parked_requests_with_an_error() {
        let idx = index();
        let e = idx.apply(key(), FunctionConfig::default());
        let Admission::Parked { rx, .. } = e.admit(Instant::now()) else {
            panic!()
        };
        idx.delete(&key());
        assert!(rx.await.is_err());
        assert!(idx.get(&key()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_wake_up_answers_the_parked_at_once_and_new_requests_for_a_while() {
        let idx = index();
        let e = idx.apply(key(), FunctionConfig::default());
        let t0 = Instant::now();
        let Admission::Parked { rx: rx1, wake, .. } = e.admit(t0) else {
            panic!("expected a park")
        };
        assert!(wake);
        let Admission::Parked { rx: rx2, .. } = e.admit(t0) else {
            panic!("expected a park")
        };
        let why: Arc<str> = Arc::from("Deployment ns/f is not controlled by Function ns/f");
        e.refuse(why.clone(), t0 + Duration::from_secs(2));
        assert_eq!(rx1.await.unwrap(), Err(why.clone()));
        assert_eq!(rx2.await.unwrap(), Err(why.clone()));
        assert_eq!(e.metrics.queued(), 0);
        assert!(!e.keep_waking(), "the wake-up loop ended");

        // Within the hold: refused without parking or asking again.
        match e.admit(t0 + Duration::from_secs(1)) {
            Admission::Refused(w) => assert_eq!(w, why),
            _ => panic!("expected a refusal"),
        }
        // After it: parked, and a new wake-up asks the controller again.
        let Admission::Parked { wake, .. } = e.admit(t0 + Duration::from_secs(2)) else {
            panic!("expected a park after the hold")
        };
        assert!(wake, "the controller is asked again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pod_makes_a_refusal_moot() {
        let idx = index();
        let e = idx.apply(key(), FunctionConfig::default());
        let t0 = Instant::now();
        let Admission::Parked { rx, .. } = e.admit(t0) else {
            panic!("expected a park")
        };
        // A pod turned ready before the refusal came back: it serves the queue.
        e.set_ready(&[a(1)]);
        e.probed(a(1), t0);
        e.refuse(Arc::from("refused"), t0 + Duration::from_secs(2));
        assert_eq!(rx.await.unwrap(), Ok(a(1)));
        e.finish(Some(a(1)), t0);
        assert!(matches!(e.admit(t0), Admission::Go { .. }));

        // Refused at zero, then a pod: requests go to it at once.
        let e = idx.apply(FunctionKey::new("ns", "g"), FunctionConfig::default());
        e.refuse(Arc::from("refused"), t0 + Duration::from_secs(60));
        assert!(matches!(e.admit(t0), Admission::Refused(_)));
        e.set_ready(&[a(2)]);
        e.probed(a(2), t0);
        assert!(matches!(e.admit(t0), Admission::Go { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn every_way_out_of_the_queue_gives_the_budget_back() {
        use crate::park_budget::Usage;
        let idx = Index::new(
            Metrics::new().unwrap(),
            park_budget::Limits {
                requests: 100,
                bytes: 1 << 20,
            },
        );
        let nothing = (Usage::default(), 0);
        let now = Instant::now();
        let park = |e: &FunctionEntry| match e.admit_costing(now, None, || 500) {
            Admission::Parked { id, rx, .. } => (id, rx),
            _ => panic!("expected a park"),
        };

        // Handed a pod.
        let e = idx.apply(key(), FunctionConfig::default());
        let (_, rx) = park(&e);
        assert_eq!(
            idx.park_budget().used(),
            (
                Usage {
                    requests: 1,
                    bytes: 500
                },
                1
            )
        );
        e.set_ready(&[a(1)]);
        e.probed(a(1), now);
        assert_eq!(rx.await.unwrap(), Ok(a(1)));
        assert_eq!(idx.park_budget().used(), nothing, "handed a pod");
        // The warm path is never charged, nor costed.
        assert!(matches!(
            e.admit_costing(now, None, || panic!("costed on the warm path")),
            Admission::Go { .. }
        ));
        assert_eq!(idx.park_budget().used(), nothing);

        // Cancelled (timed out, or the client left), before and after being
        // handed a pod.
        let e = idx.apply(FunctionKey::new("ns", "cancel"), FunctionConfig::default());
        let (id, mut rx) = park(&e);
        e.cancel(id, &mut rx);
        assert_eq!(idx.park_budget().used(), nothing, "cancelled");
        let (id, mut rx) = park(&e);
        e.set_ready(&[a(2)]);
        e.probed(a(2), now);
        e.cancel(id, &mut rx);
        assert_eq!(
            idx.park_budget().used(),
            nothing,
            "cancelled after a pod came"
        );

        // The client left, and the hand-off found nobody.
        let e = idx.apply(FunctionKey::new("ns", "left"), FunctionConfig::default());
        let (_, rx) = park(&e);
        drop(rx);
        e.set_ready(&[a(3)]);
        e.probed(a(3), now);
        assert_eq!(idx.park_budget().used(), nothing, "nobody to hand to");

        // Refused by the controller.
        let e = idx.apply(FunctionKey::new("ns", "refused"), FunctionConfig::default());
        let (_, rx) = park(&e);
        e.refuse(Arc::from("no"), now + Duration::from_secs(1));
        assert!(rx.await.unwrap().is_err());
        assert_eq!(idx.park_budget().used(), nothing, "refused");

        // Deleted.
        let k = FunctionKey::new("ns", "deleted");
        let e = idx.apply(k.clone(), FunctionConfig::default());
        let _parked = park(&e);
        let _parked2 = park(&e);
        idx.delete(&k);
        assert_eq!(idx.park_budget().used(), nothing, "deleted");
    }

    #[tokio::test(start_paused = true)]
    async fn over_the_budget_a_request_is_refused_and_logged_once_a_second() {
        let idx = Index::new(
            Metrics::new().unwrap(),
            park_budget::Limits {
                requests: 2,
                bytes: 1 << 20,
            },
        );
        let e = idx.apply(key(), FunctionConfig::default());
        let t0 = Instant::now();
        let _a = e.admit(t0);
        let _b = e.admit(t0);
        let over = |at| match e.admit(at) {
            Admission::OverBudget(o) => o,
            _ => panic!("expected a refusal"),
        };
        let o = over(t0);
        assert_eq!(o.log, Some(1));
        assert_eq!(o.refusal.why, park_budget::Why::Exhausted);
        assert_eq!(over(t0 + Duration::from_millis(10)).log, None);
        assert_eq!(over(t0 + Duration::from_millis(20)).log, None);
        assert_eq!(over(t0 + Duration::from_secs(1)).log, Some(3));
        assert_eq!(e.metrics.queued(), 2, "the refused never queued");
    }

    #[test]
    fn the_lookup_cache_notices_a_function_replaced() {
        let idx = index();
        let cache = LookupCache::default();
        let first = idx.apply(key(), FunctionConfig::default());
        assert!(Arc::ptr_eq(&cache.get(&idx, &key()).unwrap(), &first));
        assert!(cache.get(&idx, &FunctionKey::new("ns", "other")).is_none());
        idx.delete(&key());
        assert!(cache.get(&idx, &key()).is_none());
        let second = idx.apply(key(), FunctionConfig::default());
        assert!(Arc::ptr_eq(&cache.get(&idx, &key()).unwrap(), &second));
    }

    #[test]
    fn config_from_spec_clamps_nonsense() {
        let mut spec = siesta_api::FunctionSpec {
            image: "x".into(),
            port: 70000,
            protocol: Protocol::H2c,
            command: vec![],
            args: vec![],
            env: vec![],
            resources: None,
            container_concurrency: -1,
            timeout_seconds: 0,
            max_request_body_bytes: Some(-5),
            queue: Default::default(),
            scale: Default::default(),
        };
        spec.queue.max_requests = 0;
        let c = FunctionConfig::from_spec(&spec);
        assert_eq!(c.port, 8080);
        assert_eq!(c.container_concurrency, 0);
        assert_eq!(c.timeout, Duration::from_secs(1));
        assert_eq!(c.queue_max, 1);
        assert_eq!(c.protocol, Protocol::H2c);
        assert_eq!(
            c.max_request_body_bytes,
            Some(0),
            "a negative limit forwards no body"
        );
    }
}
