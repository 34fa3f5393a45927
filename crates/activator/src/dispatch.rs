//! Which pod a request goes to, and who waits: the pure decision logic of one
//! function, with no IO and no clock of its own.
//!
//! A request is sent at once when a ready pod has a free concurrency slot and
//! nobody is parked ahead of it (so arrival order is kept); otherwise it is
//! parked in a bounded FIFO. Each freed slot or new pod hands the front waiter
//! its pod. Balancing is least-in-flight, ties broken round-robin so idle pods
//! share sequential traffic.

use std::collections::VecDeque;
use std::net::SocketAddr;

/// A pod the function's requests may go to, and how many it has now.
#[derive(Debug)]
struct Slot {
    addr: SocketAddr,
    in_flight: u32,
}

/// What to do with a new request.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Send it to this pod now; its slot is taken.
    Go(SocketAddr),
    /// It was parked; the number names its place in the queue, for
    /// [`Dispatcher::cancel`].
    Parked(u64),
    /// The queue is full: refuse it.
    Full,
}

/// One function's pods and queue. `W` is what a parked request is woken with
/// (a channel sender in the server, a plain value in tests).
#[derive(Debug)]
pub struct Dispatcher<W> {
    slots: Vec<Slot>,
    queue: VecDeque<(u64, W)>,
    next_id: u64,
    cursor: usize,
    /// Most in-flight requests per pod; 0 means no limit.
    pub container_concurrency: u32,
    /// Most parked requests.
    pub max_queue: usize,
}

impl<W> Dispatcher<W> {
    pub fn new(container_concurrency: u32, max_queue: usize) -> Self {
        Self {
            slots: Vec::new(),
            queue: VecDeque::new(),
            next_id: 0,
            cursor: 0,
            container_concurrency,
            max_queue,
        }
    }

    /// Number of pods requests may go to.
    pub fn endpoints(&self) -> usize {
        self.slots.len()
    }

    pub fn has_endpoint(&self, addr: SocketAddr) -> bool {
        self.slots.iter().any(|s| s.addr == addr)
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// In-flight count of one pod (for tests and debugging).
    pub fn in_flight(&self, addr: SocketAddr) -> Option<u32> {
        self.slots
            .iter()
            .find(|s| s.addr == addr)
            .map(|s| s.in_flight)
    }

    /// Admits a request: a pod now, a place in the queue, or a refusal.
    /// `waiter` is only called when the request is parked.
    pub fn admit(&mut self, waiter: impl FnOnce() -> W) -> Admit {
        match self.try_admit(|| Ok::<W, std::convert::Infallible>(waiter())) {
            Ok(admit) => admit,
            Err(never) => match never {},
        }
    }

    /// Like [`Dispatcher::admit`], with a say for the caller when the request
    /// would park (the activator-wide budget): `waiter`'s error refuses it,
    /// leaving the queue as it was.
    pub fn try_admit<E>(&mut self, waiter: impl FnOnce() -> Result<W, E>) -> Result<Admit, E> {
        if self.queue.is_empty()
            && let Some(addr) = self.pick(None)
        {
            return Ok(Admit::Go(addr));
        }
        if self.queue.len() >= self.max_queue {
            return Ok(Admit::Full);
        }
        let w = waiter()?;
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push_back((id, w));
        Ok(Admit::Parked(id))
    }

    /// Takes a slot on the least-loaded pod with room, other than `except`.
    pub fn pick(&mut self, except: Option<SocketAddr>) -> Option<SocketAddr> {
        let n = self.slots.len();
        if n == 0 {
            return None;
        }
        let cc = self.container_concurrency;
        let mut best: Option<usize> = None;
        for k in 0..n {
            let i = (self.cursor + k) % n;
            let s = &self.slots[i];
            if Some(s.addr) == except || (cc != 0 && s.in_flight >= cc) {
                continue;
            }
            if best.is_none_or(|b| s.in_flight < self.slots[b].in_flight) {
                best = Some(i);
            }
        }
        let i = best?;
        self.cursor = (i + 1) % n;
        self.slots[i].in_flight += 1;
        Some(self.slots[i].addr)
    }

    /// Gives back a slot taken by [`Dispatcher::admit`] or [`Dispatcher::pick`].
    /// A pod that left the set meanwhile is ignored.
    pub fn release(&mut self, addr: SocketAddr) {
        if let Some(s) = self.slots.iter_mut().find(|s| s.addr == addr) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }

    /// The next parked request that can go now, with the pod whose slot it got.
    /// Call in a loop after a release or a new pod; if the waiter is gone,
    /// [`Dispatcher::release`] the pod and keep going.
    pub fn next_ready(&mut self) -> Option<(W, SocketAddr)> {
        if self.queue.is_empty() {
            return None;
        }
        let addr = self.pick(None)?;
        match self.queue.pop_front() {
            Some((_, w)) => Some((w, addr)),
            None => {
                self.release(addr);
                None
            }
        }
    }

    /// Removes a parked request (it timed out or its client left). False when
    /// it is no longer parked: it was handed a pod already.
    pub fn cancel(&mut self, id: u64) -> bool {
        // Parked requests leave mostly from the front (timeouts come in arrival
        // order), so search from there.
        match self.queue.iter().position(|(i, _)| *i == id) {
            Some(p) => {
                self.queue.remove(p);
                true
            }
            None => false,
        }
    }

    /// Adds a pod that is ready and answered the probe.
    pub fn add_endpoint(&mut self, addr: SocketAddr) {
        if !self.has_endpoint(addr) {
            self.slots.push(Slot { addr, in_flight: 0 });
        }
    }

    /// Removes a pod; requests in flight on it finish on their own.
    pub fn remove_endpoint(&mut self, addr: SocketAddr) {
        self.slots.retain(|s| s.addr != addr);
        if self.cursor >= self.slots.len() {
            self.cursor = 0;
        }
    }

    /// Takes every parked request out (the function was deleted).
    pub fn drain_queue(&mut self) -> impl Iterator<Item = (u64, W)> + '_ {
        self.queue.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn go(d: &mut Dispatcher<u32>, w: u32) -> Admit {
        d.admit(|| w)
    }

    #[test]
    fn with_no_pod_requests_park_in_order_and_are_released_in_order() {
        let mut d = Dispatcher::new(0, 10);
        for w in 0..3 {
            assert_eq!(go(&mut d, w), Admit::Parked(w as u64));
        }
        assert!(d.next_ready().is_none());
        d.add_endpoint(a(1));
        let order: Vec<u32> = std::iter::from_fn(|| d.next_ready().map(|(w, _)| w)).collect();
        assert_eq!(order, vec![0, 1, 2]);
        assert_eq!(d.in_flight(a(1)), Some(3));
    }

    #[test]
    fn a_full_queue_refuses() {
        let mut d = Dispatcher::new(0, 2);
        assert!(matches!(go(&mut d, 0), Admit::Parked(_)));
        assert!(matches!(go(&mut d, 1), Admit::Parked(_)));
        assert_eq!(go(&mut d, 2), Admit::Full);
        assert_eq!(d.queued(), 2);
    }

    #[test]
    fn a_waiter_that_says_no_leaves_the_queue_as_it_was() {
        let mut d = Dispatcher::new(0, 10);
        assert_eq!(d.try_admit(|| Err::<u32, _>("no")), Err("no"));
        assert_eq!(d.queued(), 0);
        assert_eq!(d.try_admit(|| Ok::<_, ()>(7)), Ok(Admit::Parked(0)));
        // A free pod: the waiter is not asked.
        d.add_endpoint(a(1));
        assert!(d.next_ready().is_some());
        assert_eq!(
            d.try_admit(|| -> Result<u32, ()> { panic!("asked on the warm path") }),
            Ok(Admit::Go(a(1)))
        );
    }

    #[test]
    fn least_in_flight_wins_and_ties_rotate() {
        let mut d = Dispatcher::<u32>::new(0, 10);
        d.add_endpoint(a(1));
        d.add_endpoint(a(2));
        let x = d.pick(None).unwrap();
        let y = d.pick(None).unwrap();
        assert_ne!(x, y);
        d.release(x);
        assert_eq!(d.pick(None), Some(x), "the idle pod is chosen");
        d.release(x);
        d.release(y);
        // Sequential traffic alternates.
        let p1 = d.pick(None).unwrap();
        d.release(p1);
        let p2 = d.pick(None).unwrap();
        d.release(p2);
        assert_ne!(p1, p2);
    }

    #[test]
    fn container_concurrency_parks_excess_and_keeps_arrival_order() {
        let mut d = Dispatcher::new(1, 10);
        d.add_endpoint(a(1));
        d.add_endpoint(a(2));
        assert!(matches!(go(&mut d, 0), Admit::Go(_)));
        assert!(matches!(go(&mut d, 1), Admit::Go(_)));
        assert_eq!(go(&mut d, 2), Admit::Parked(0));
        assert_eq!(go(&mut d, 3), Admit::Parked(1));
        assert!(d.next_ready().is_none(), "both pods are at their limit");
        d.release(a(2));
        let (w, addr) = d.next_ready().unwrap();
        assert_eq!((w, addr), (2, a(2)));
        assert!(d.next_ready().is_none());
        assert_eq!(d.in_flight(a(1)), Some(1));
        assert_eq!(d.in_flight(a(2)), Some(1));
    }

    #[test]
    fn a_newcomer_does_not_overtake_parked_requests() {
        let mut d = Dispatcher::new(1, 10);
        d.add_endpoint(a(1));
        assert!(matches!(go(&mut d, 0), Admit::Go(_)));
        assert!(matches!(go(&mut d, 1), Admit::Parked(_)));
        d.release(a(1));
        // The slot is free, but request 1 is parked ahead of request 2.
        assert!(matches!(go(&mut d, 2), Admit::Parked(_)));
        assert_eq!(d.next_ready().map(|(w, _)| w), Some(1));
    }

    #[test]
    fn cancel_removes_only_parked_requests() {
        let mut d = Dispatcher::new(0, 10);
        let Admit::Parked(id0) = go(&mut d, 0) else {
            panic!()
        };
        let Admit::Parked(id1) = go(&mut d, 1) else {
            panic!()
        };
        assert!(d.cancel(id0));
        assert!(!d.cancel(id0));
        d.add_endpoint(a(1));
        assert_eq!(d.next_ready().map(|(w, _)| w), Some(1));
        assert!(!d.cancel(id1), "already handed a pod");
    }

    #[test]
    fn pick_skips_the_excluded_pod_and_removed_pods_are_forgotten() {
        let mut d = Dispatcher::<u32>::new(0, 10);
        d.add_endpoint(a(1));
        d.add_endpoint(a(2));
        for _ in 0..4 {
            let p = d.pick(Some(a(1))).unwrap();
            assert_eq!(p, a(2));
            d.release(p);
        }
        d.remove_endpoint(a(2));
        assert_eq!(d.pick(Some(a(1))), None);
        d.release(a(2)); // a late release for a gone pod is harmless
        assert_eq!(d.pick(None), Some(a(1)));
    }
}
