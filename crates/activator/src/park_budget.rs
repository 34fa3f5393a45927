//! The activator-wide budget of parked requests: how many may wait for a pod
//! across every function, and how many bytes they may pin while they wait.
//! Each function's queue is bounded (`queue.maxRequests`), but their sum is
//! not: many functions at zero with full queues would otherwise grow the
//! activator's memory until it is killed.
//!
//! [`decide`] is the pure rule, on plain numbers. [`ParkBudget`] holds the
//! counters behind one small mutex (never held across an await, never taken
//! on the warm path: a request that finds a free pod is not parked), and a
//! [`Charge`] is one parked request's part of them, given back when it is
//! dropped: it lives in the function's queue next to the request's waker, so
//! every way out of the queue (handed a pod, cancelled or timed out, refused,
//! function deleted) returns it.
//!
//! # Fairness
//!
//! Parked requests cannot be taken back, so fairness is decided at the door.
//! For each limit:
//!
//! - A reserve is kept: one request for every known function that has none
//!   parked (any of them may be called next, and its first parked request is
//!   the one that wakes it), plus a tenth of the limit; at most half the
//!   limit in all.
//!   A function's first parked request may use all of the reserve (its slot
//!   was kept for it); its next ones, up to [`FLOOR`], may use the tenth
//!   while at least half of it is free. So a quiet function called during a
//!   flood always finds room to wake, and for a few requests while the flood
//!   is moderate.
//! - The rest is the pool, and a function's fair share of it is `pool / n`,
//!   `n` being the functions parking now (this one included). A request
//!   parks when, after it, the pool still has at least as much room left as
//!   the function's excess over its fair share. Within its share a function
//!   may fill the pool; beyond it, a function may take at most half of what
//!   is left. One busy function alone gets the whole pool but never the
//!   reserve, and a busy function next to others leaves them room to grow
//!   into their shares.
//!
//! Why a slot per known function and not only a fixed reserve: in a flood
//! of many functions the first ones take their whole burst while shares
//! are still large (nobody else is parking yet), the pool fills, and every
//! later one can only use the reserve. With 500 functions asking 40 each of
//! a budget of 5,000, some 390 arrive after the pool is full: a fixed tenth
//! (500) with a floor of 4 would run dry before the last of them, and
//! before a quiet function called after the flood. The slot per known
//! function holds for as many functions as half the limit less a tenth
//! (4,000 at the default 10,000); the bytes limit keeps the fixed tenth
//! only, as a first request's size is not known in advance.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper::body::Body;
use tokio::time::Instant;

/// How many of a function's parked requests may use the reserve: the first
/// one always, the next ones while at least half of it is free.
pub const FLOOR: u64 = 4;

/// The reserve is `limit / RESERVE_DIVISOR` of each limit.
pub const RESERVE_DIVISOR: u64 = 10;

/// What the client-facing server may hold of an unread HTTP/1 body: the
/// rest of the connection's read buffer after the head (hyper starts it at
/// 8 KiB and reads no further while the body is not polled). Measured: a
/// parked 4 MiB chunked upload costs 4.1 KiB more than a parked GET.
pub const H1_BODY_PINNED: u64 = 8 * 1024;

/// What it may hold of an unread HTTP/2 body: the stream's flow-control
/// window (see `request_size.rs`), and a third more for the frames' buffers
/// (measured: 1.27 to 1.34 times the window, from 64 KiB to 1 MiB).
pub const H2_BODY_PINNED: u64 = crate::request_size::H2_STREAM_WINDOW as u64 * 4 / 3;

/// The two limits. Both are checked; the first one a request would break is
/// reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most parked requests.
    pub requests: u64,
    /// Most bytes their heads and buffered bodies may pin.
    pub bytes: u64,
}

impl Limits {
    /// No budget (for tests of other things).
    pub const UNLIMITED: Limits = Limits {
        requests: u64::MAX,
        bytes: u64::MAX,
    };
}

/// Parked requests and the bytes they pin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub requests: u64,
    pub bytes: u64,
}

/// Which limit a refused request ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Requests,
    Bytes,
}

impl Resource {
    /// The flag that sets it, for messages.
    pub fn flag(self) -> &'static str {
        match self {
            Resource::Requests => "--max-parked-requests",
            Resource::Bytes => "--max-parked-bytes",
        }
    }
}

/// Why a request may not park.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The whole budget is in use.
    Exhausted,
    /// Only the reserve is left, and this function already has its floor.
    Reserved,
    /// This function is over its fair share by more than the pool has left.
    OverShare,
}

/// A refusal, with the numbers behind it (for the log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub resource: Resource,
    pub why: Why,
    /// In the unit of `resource`.
    pub limit: u64,
    pub used: u64,
    pub mine: u64,
    pub fair_share: u64,
    /// Functions parking now, this one included.
    pub parking: u64,
}

impl Refusal {
    /// What happened, for the client: plain words and the flag to raise.
    pub fn explain(&self) -> String {
        let what = match self.resource {
            Resource::Requests => "requests",
            Resource::Bytes => "bytes of requests",
        };
        match self.why {
            Why::Exhausted => format!(
                "the activator holds as many {what} waiting for pods as it may ({} {})",
                self.resource.flag(),
                self.limit
            ),
            Why::Reserved => format!(
                "the activator holds as many {what} waiting for pods as it may but for a reserve \
                 kept for functions with fewer waiting ({} {}, {} functions waiting now)",
                self.resource.flag(),
                self.limit,
                self.parking
            ),
            Why::OverShare => format!(
                "this function has more than its fair share of the {what} the activator may hold \
                 waiting for pods ({} {}, shared by {} functions waiting now)",
                self.resource.flag(),
                self.limit,
                self.parking
            ),
        }
    }
}

/// Whether one more request of a function may park. `used` is the whole
/// activator's, `parking` the number of functions with parked requests now,
/// `known` the number of functions the activator knows, `mine` this
/// function's, `bytes` what the new request would pin.
pub fn decide(
    limits: Limits,
    used: Usage,
    parking: u64,
    known: u64,
    mine: Usage,
    bytes: u64,
) -> Result<(), Refusal> {
    let mine_requests = mine.requests;
    let n = if mine.requests == 0 {
        parking + 1
    } else {
        parking.max(1)
    };
    // Known functions with nothing parked, this one aside: a slot each.
    let idle = known.saturating_sub(n);
    let check = |resource, limit: u64, used: u64, mine: u64, cost: u64, kept: u64| {
        let tenth = limit / RESERVE_DIVISOR;
        let reserve = tenth.saturating_add(kept).min(limit / 2);
        let pool = limit - reserve;
        let fair_share = pool / n;
        let refusal = |why| Refusal {
            resource,
            why,
            limit,
            used,
            mine,
            fair_share,
            parking: n,
        };
        let after = used.saturating_add(cost);
        if after > limit {
            return Err(refusal(Why::Exhausted));
        }
        if mine_requests == 0 || (mine_requests < FLOOR && limit - after >= reserve - tenth / 2) {
            return Ok(());
        }
        let Some(room_left) = pool.checked_sub(after) else {
            return Err(refusal(Why::Reserved));
        };
        let excess = mine.saturating_add(cost).saturating_sub(fair_share);
        if excess > room_left {
            return Err(refusal(Why::OverShare));
        }
        Ok(())
    };
    check(
        Resource::Requests,
        limits.requests,
        used.requests,
        mine.requests,
        1,
        idle,
    )?;
    check(
        Resource::Bytes,
        limits.bytes,
        used.bytes,
        mine.bytes,
        bytes,
        0,
    )
}

/// What a parked request pins beyond the fixed cost of a request (the
/// connection, its task, hyper's state), which the request count bounds: its
/// head, and what the server may already hold of a body nobody reads yet.
pub fn cost<B: Body>(req: &http::Request<B>) -> u64 {
    let head = crate::request_size::head_bytes(req) as u64;
    let body = req.body();
    if body.is_end_stream() {
        return head;
    }
    let pinned = if req.version() == http::Version::HTTP_2 {
        H2_BODY_PINNED
    } else {
        H1_BODY_PINNED
    };
    // A declared length smaller than what could be buffered is all there is.
    let declared = body.size_hint().upper().unwrap_or(u64::MAX);
    head + declared.min(pinned)
}

/// The activator's counters.
#[derive(Debug)]
pub struct ParkBudget {
    limits: Limits,
    /// Functions the activator knows (the index's size).
    known: AtomicU64,
    totals: Mutex<Totals>,
}

#[derive(Debug, Default)]
struct Totals {
    used: Usage,
    /// Functions with at least one parked request.
    parking: u64,
}

/// One function's parked requests. Changed only under the budget's lock (the
/// atomics only make it shareable with the [`Charge`]s that give back).
#[derive(Debug, Default)]
pub struct Tenant {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl Tenant {
    fn usage(&self) -> Usage {
        Usage {
            requests: self.requests.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// One parked request's part of the budget; dropping it gives it back.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<ParkBudget>,
    tenant: Arc<Tenant>,
    bytes: u64,
}

impl ParkBudget {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            known: AtomicU64::new(0),
            totals: Mutex::new(Totals::default()),
        })
    }

    /// Sets how many functions the activator knows: each one with nothing
    /// parked has a slot kept for its first request.
    pub fn set_known(&self, functions: u64) {
        self.known.store(functions, Ordering::Relaxed);
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Totals> {
        // Counters torn by a panic elsewhere are still counters: keep going.
        self.totals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one parked request of `tenant`, pinning `bytes`, if [`decide`]
    /// lets it.
    pub fn try_charge(
        self: &Arc<Self>,
        tenant: &Arc<Tenant>,
        bytes: u64,
    ) -> Result<Charge, Refusal> {
        let mut t = self.lock();
        let mine = tenant.usage();
        let known = self.known.load(Ordering::Relaxed);
        decide(self.limits, t.used, t.parking, known, mine, bytes)?;
        if mine.requests == 0 {
            t.parking += 1;
        }
        t.used.requests += 1;
        t.used.bytes += bytes;
        tenant.requests.store(mine.requests + 1, Ordering::Relaxed);
        tenant.bytes.store(mine.bytes + bytes, Ordering::Relaxed);
        Ok(Charge {
            budget: self.clone(),
            tenant: tenant.clone(),
            bytes,
        })
    }

    /// What is parked now, and by how many functions.
    pub fn used(&self) -> (Usage, u64) {
        let t = self.lock();
        (t.used, t.parking)
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let mut t = self.budget.lock();
        let mine = self.tenant.usage();
        let requests = mine.requests.saturating_sub(1);
        self.tenant.requests.store(requests, Ordering::Relaxed);
        self.tenant
            .bytes
            .store(mine.bytes.saturating_sub(self.bytes), Ordering::Relaxed);
        if requests == 0 {
            t.parking = t.parking.saturating_sub(1);
        }
        t.used.requests = t.used.requests.saturating_sub(1);
        t.used.bytes = t.used.bytes.saturating_sub(self.bytes);
    }
}

/// Keeps refusals from flooding the log under a flood: one line per function
/// per [`RefusalLog::EVERY`], which counts the refusals since the last one.
#[derive(Debug, Default)]
pub struct RefusalLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    pub const EVERY: Duration = Duration::from_secs(1);

    /// Notes a refusal at `now`. `Some(n)`: write a line now, for `n`
    /// refusals (this one and those not written since the last line).
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < Self::EVERY)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        requests: 1000,
        bytes: 1 << 30,
    };

    const DEFAULT: Limits = Limits {
        requests: 10_000,
        bytes: 1 << 40,
    };

    /// A budget and `functions` known functions.
    fn setup(limits: Limits, functions: usize) -> (Arc<ParkBudget>, Vec<Arc<Tenant>>) {
        let b = ParkBudget::new(limits);
        b.set_known(functions as u64);
        (
            b,
            (0..functions)
                .map(|_| Arc::new(Tenant::default()))
                .collect(),
        )
    }

    /// Parks one request of function `f` (index into `tenants`) if it may.
    fn park(
        budget: &Arc<ParkBudget>,
        tenants: &[Arc<Tenant>],
        held: &mut Vec<Charge>,
        f: usize,
        bytes: u64,
    ) -> bool {
        match budget.try_charge(&tenants[f], bytes) {
            Ok(c) => {
                held.push(c);
                true
            }
            Err(_) => false,
        }
    }

    fn parked(t: &Tenant) -> u64 {
        t.usage().requests
    }

    #[test]
    fn one_busy_function_gets_the_pool_but_never_the_reserve() {
        let (b, t) = setup(L, 2);
        let mut held = Vec::new();
        while park(&b, &t, &mut held, 0, 100) {}
        // The limit less a tenth and a slot kept for the other function.
        assert_eq!(parked(&t[0]), 899);
        assert_eq!(
            b.try_charge(&t[0], 100).unwrap_err().why,
            Why::Reserved,
            "the reserve is not for it"
        );
        // The quiet function parks its first requests from the reserve.
        for _ in 0..FLOOR {
            assert!(park(&b, &t, &mut held, 1, 100));
        }
        assert!(
            !park(&b, &t, &mut held, 1, 100),
            "beyond its floor: the pool is full"
        );
    }

    #[test]
    fn five_hundred_busy_functions_arriving_together_share_the_pool_evenly() {
        let (b, t) = setup(DEFAULT, 501);
        let mut held = Vec::new();
        // Round-robin arrivals, 50 each (their queue limit).
        for _ in 0..50 {
            for f in 0..500 {
                park(&b, &t, &mut held, f, 100);
            }
        }
        // The pool (10,000 less 1,000 and a slot for function 500) split
        // 500 ways: 17 or 18 each.
        assert!(t[..500].iter().all(|t| (17..=18).contains(&parked(t))));
        let (used, parking) = b.used();
        // The last slot of the pool would leave less room than the excess
        // of whoever took it.
        assert_eq!((used.requests, parking), (8998, 500));
        // The reserve is whole: a newcomer gets its floor.
        for _ in 0..FLOOR {
            assert!(park(&b, &t, &mut held, 500, 100));
        }
    }

    /// 500 functions flood one after another (each one's burst arrives
    /// together, as over one connection), `burst` requests each, against
    /// `limits`; then function 500, quiet until now, is called.
    fn sequential_flood(limits: Limits, burst: usize) -> (Vec<u64>, u64) {
        let (b, t) = setup(limits, 501);
        let mut held = Vec::new();
        for f in 0..500 {
            for _ in 0..burst {
                park(&b, &t, &mut held, f, 200);
            }
        }
        let mut quiet = 0;
        while park(&b, &t, &mut held, 500, 200) {
            quiet += 1;
        }
        assert!(b.used().0.requests <= limits.requests);
        (t[..500].iter().map(|t| parked(t)).collect(), quiet)
    }

    #[test]
    fn after_a_flood_of_500_functions_one_after_another_every_one_and_a_newcomer_can_wake() {
        // The first ones take their whole burst while shares are large; the
        // later ones, and the newcomer, still get their first request in.
        let (flood, quiet) = sequential_flood(
            Limits {
                requests: 5000,
                bytes: 1 << 40,
            },
            40,
        );
        assert_eq!(flood[0], 40);
        assert!(flood.iter().all(|n| *n >= 1), "{flood:?}");
        assert_eq!(flood[499], 1, "the last ones: their first request only");
        assert!(quiet >= 1, "the newcomer wakes");

        let (flood, quiet) = sequential_flood(DEFAULT, 50);
        assert!(flood.iter().all(|n| *n >= 1), "{flood:?}");
        assert!(quiet >= 1);
    }

    #[test]
    fn a_newcomer_during_a_moderate_flood_gets_its_floor_then_its_share() {
        let (b, t) = setup(DEFAULT, 51);
        let mut held = Vec::new();
        // 50 functions arrive together and flood without end.
        for _ in 0..300 {
            for f in 0..50 {
                park(&b, &t, &mut held, f, 200);
            }
        }
        // (10,000 - 1,000 - a slot for function 50) / 50 = 179.98 each.
        assert!(t[..50].iter().all(|t| (179..=180).contains(&parked(t))));
        while park(&b, &t, &mut held, 50, 200) {}
        assert_eq!(parked(&t[50]), FLOOR, "its floor, from the reserve");
        // Six functions' pods come up and their requests leave: the newcomer
        // grows into its share (9000 / 45 = 200) and beyond.
        held.retain(|c| !t[..6].iter().any(|x| Arc::ptr_eq(&c.tenant, x)));
        while park(&b, &t, &mut held, 50, 200) {}
        assert!(parked(&t[50]) > 200, "{}", parked(&t[50]));
    }

    #[test]
    fn a_busy_function_over_its_share_leaves_others_room_to_grow() {
        let (b, t) = setup(L, 2);
        let mut held = Vec::new();
        // Function 1 parks a few, then function 0 floods.
        for _ in 0..10 {
            assert!(park(&b, &t, &mut held, 1, 0));
        }
        while park(&b, &t, &mut held, 0, 0) {}
        // Share 450 each; 0's excess over it may not exceed what is left of
        // the pool: 670 - 450 = 220 = 900 - 670 - 10.
        assert_eq!(parked(&t[0]), 670);
        // Function 1 can still grow by that much.
        while park(&b, &t, &mut held, 1, 0) {}
        assert_eq!(parked(&t[1]), 230);
        assert_eq!(
            b.used().0.requests,
            900,
            "the pool is used up, the reserve kept"
        );
    }

    #[test]
    fn a_slot_is_kept_for_every_known_function_up_to_half_the_limit() {
        // 300 functions known: 299 slots kept besides the tenth.
        let (b, t) = setup(L, 300);
        let mut held = Vec::new();
        while park(&b, &t, &mut held, 0, 0) {}
        assert_eq!(parked(&t[0]), 1000 - 100 - 299);
        // Every other function then floods in turn: each wakes.
        for f in 1..300 {
            for _ in 0..10 {
                park(&b, &t, &mut held, f, 0);
            }
        }
        assert!(t.iter().all(|t| parked(t) >= 1));
        // 10,000 known: at most half the limit is held back.
        let (b, t) = setup(L, 10_000);
        let mut held = Vec::new();
        while park(&b, &t, &mut held, 0, 0) {}
        assert_eq!(parked(&t[0]), 500);
    }

    #[test]
    fn the_byte_limit_is_shared_by_the_same_rule() {
        let limits = Limits {
            requests: 1_000_000,
            bytes: 10 * 1024 * 1024,
        };
        let (b, t) = setup(limits, 2);
        let mut held = Vec::new();
        while park(&b, &t, &mut held, 0, 64 * 1024) {}
        let pool = limits.bytes - limits.bytes / RESERVE_DIVISOR;
        assert_eq!(
            b.used().0.bytes,
            pool,
            "144 requests of 64 KiB fill the pool"
        );
        let r = b.try_charge(&t[0], 64 * 1024).unwrap_err();
        assert_eq!((r.resource, r.why), (Resource::Bytes, Why::Reserved));
        assert!(park(&b, &t, &mut held, 1, 64 * 1024), "the reserve");
        // A request bigger than what is left of the whole budget never fits.
        let r = b.try_charge(&t[1], limits.bytes).unwrap_err();
        assert_eq!((r.resource, r.why), (Resource::Bytes, Why::Exhausted));
    }

    #[test]
    fn charges_given_back_in_any_order_leave_nothing_behind() {
        let (b, t) = setup(L, 3);
        let mut held = Vec::new();
        for i in 0..30 {
            assert!(park(&b, &t, &mut held, i % 3, i as u64 * 10));
        }
        assert_eq!(b.used().1, 3);
        // Out of order: odd positions first, then the rest from the back.
        let mut odd = Vec::new();
        let mut even = Vec::new();
        for (i, c) in held.drain(..).enumerate() {
            if i % 2 == 1 {
                odd.push(c)
            } else {
                even.push(c)
            }
        }
        drop(odd);
        let (u, parking) = b.used();
        assert_eq!(u.requests, 15);
        assert_eq!(parking, 3);
        while let Some(c) = even.pop() {
            drop(c);
        }
        assert_eq!(b.used(), (Usage::default(), 0));
        assert!(t.iter().all(|t| t.usage() == Usage::default()));
        // A function that emptied counts as parking again when it parks.
        assert!(park(&b, &t, &mut held, 2, 5));
        assert_eq!(b.used().1, 1);
    }

    #[test]
    fn the_fair_share_counts_the_functions_parking_and_the_newcomer() {
        let count = |requests| Usage { requests, bytes: 0 };
        // Over a share of 900 / 3 by 61, with 49 left in the pool: no.
        let r = decide(L, count(850), 3, 3, count(360), 0).unwrap_err();
        assert_eq!((r.why, r.fair_share, r.parking), (Why::OverShare, 300, 3));
        // With two parking (and a slot kept for the third) the share is
        // 899 / 2: yes.
        let r = decide(L, count(850), 2, 3, count(360), 0);
        assert!(r.is_ok(), "{r:?}");
        // A newcomer counts itself.
        let r = decide(L, count(1000), 2, 3, Usage::default(), 0).unwrap_err();
        assert_eq!((r.why, r.fair_share, r.parking), (Why::Exhausted, 300, 3));
        assert!(decide(L, count(999), 2, 3, Usage::default(), 0).is_ok());
    }

    #[test]
    fn no_requests_allowed_means_none_park() {
        let none = Limits {
            requests: 0,
            bytes: 1 << 20,
        };
        assert_eq!(
            decide(none, Usage::default(), 0, 1, Usage::default(), 0)
                .unwrap_err()
                .why,
            Why::Exhausted
        );
    }

    #[test]
    fn what_a_parked_request_is_charged() {
        let get = http::Request::get("/a")
            .header("host", "f.ns")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let head = crate::request_size::head_bytes(&get) as u64;
        assert_eq!(cost(&get), head, "no body: the head only");

        let small = http::Request::post("/a")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"0123456789",
            )))
            .unwrap();
        assert_eq!(
            cost(&small),
            crate::request_size::head_bytes(&small) as u64 + 10
        );

        // A body of unknown length: what the server may buffer unread.
        let stream = |version| {
            http::Request::post("/a")
                .version(version)
                .body(http_body_util::StreamBody::new(futures::stream::empty::<
                    Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
                >()))
                .unwrap()
        };
        let h1 = stream(http::Version::HTTP_11);
        assert_eq!(
            cost(&h1),
            crate::request_size::head_bytes(&h1) as u64 + H1_BODY_PINNED
        );
        let h2 = stream(http::Version::HTTP_2);
        assert_eq!(
            cost(&h2),
            crate::request_size::head_bytes(&h2) as u64 + H2_BODY_PINNED
        );
    }

    #[test]
    fn a_refusal_says_which_limit_and_why() {
        let r = |resource, why| Refusal {
            resource,
            why,
            limit: 10,
            used: 10,
            mine: 3,
            fair_share: 3,
            parking: 3,
        };
        let full = r(Resource::Requests, Why::Exhausted).explain();
        assert!(full.contains("as many requests") && full.contains("--max-parked-requests 10"));
        let kept = r(Resource::Bytes, Why::Reserved).explain();
        assert!(
            kept.contains("reserve") && kept.contains("--max-parked-bytes 10"),
            "{kept}"
        );
        let share = r(Resource::Requests, Why::OverShare).explain();
        assert!(
            share.contains("fair share") && share.contains("3 functions"),
            "{share}"
        );
    }

    #[test]
    fn refusals_are_logged_once_a_second_with_the_count_between() {
        let t0 = Instant::now();
        let mut log = RefusalLog::default();
        assert_eq!(log.note(t0), Some(1), "the first one at once");
        for ms in [1, 200, 999] {
            assert_eq!(log.note(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(log.note(t0 + Duration::from_millis(1000)), Some(4));
        assert_eq!(log.note(t0 + Duration::from_millis(1500)), None);
        assert_eq!(log.note(t0 + Duration::from_secs(60)), Some(2));
    }
}
