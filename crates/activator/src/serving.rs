//! The serving threads: one single-threaded runtime per core, each with its
//! own listener on the traffic port and its own upstream connection pools,
//! as nginx runs one worker process per core.
//!
//! A request is then read, forwarded and answered on one thread: no task
//! moves between threads, no worker wakes another, and the pool's lock and
//! counters stay in one core's cache. Measured on 2 cores with wrk against
//! `hello` (`make bench`, section 1), the work-stealing runtime this
//! replaced spent twice nginx's CPU per request at 64 connections. The
//! kernel spreads connections over the listeners (SO_REUSEPORT hashes each
//! connection's addresses), so one busy connection stays on one core, also
//! as nginx's `listen ... reuseport` does.
//!
//! What the threads share is the state that must be one for the whole
//! activator: the function index (queues, in-flight counts, metrics), the
//! park budget and the wake-up client.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpSocket;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::proxy::Proxy;
use crate::server::{self, Limits};

/// Pending connections the kernel keeps per listener before refusing more
/// (capped by `net.core.somaxconn`).
const BACKLOG: u32 = 1024;

/// How many serving threads `--serving-threads 0` means: one per CPU this
/// process may use (the cgroup's CPU quota counts), at least one.
pub fn threads(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// `n` listeners on one address, spread over by the kernel. With port 0 the
/// first picks a port and the others join it.
pub fn bind(addr: SocketAddr, n: usize) -> io::Result<Vec<TcpListener>> {
    let first = bind_one(addr)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..n {
        listeners.push(bind_one(addr)?);
    }
    Ok(listeners)
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    // `listen` on a tokio socket needs no runtime until it is polled; the
    // std listener is handed to its thread's runtime there.
    let listener = socket.listen(BACKLOG)?.into_std()?;
    Ok(listener)
}

/// Serves on one thread per listener, each with the proxy `make_proxy`
/// builds for it, until `stop` is cancelled; then each drains its own
/// connections (for at most `drain`). Returns when every thread has.
pub async fn serve(
    listeners: Vec<TcpListener>,
    make_proxy: impl Fn() -> Proxy,
    limits: Limits,
    stop: CancellationToken,
    drain: Duration,
) {
    let mut done = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.into_iter().enumerate() {
        let proxy = Arc::new(make_proxy());
        let stop = stop.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name(format!("serve-{i}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(thread = i, error = %e, "could not start a serving runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => {
                            server::serve(listener, proxy, limits, stop.cancelled_owned(), drain)
                                .await;
                        }
                        Err(e) => {
                            tracing::error!(thread = i, error = %e, "could not register the traffic listener");
                        }
                    }
                });
                // Dropping the runtime ends what the connections left
                // behind (idle upstream connections, their timers).
                drop(runtime);
                let _ = tx.send(());
            });
        match spawned {
            Ok(_) => done.push(rx),
            Err(e) => tracing::error!(thread = i, error = %e, "could not start a serving thread"),
        }
    }
    for rx in done {
        if rx.await.is_err() {
            tracing::error!("a serving thread ended without draining (it panicked)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_at_least_one_thread_and_anything_else_is_kept() {
        assert_eq!(threads(3), 3);
        assert_eq!(threads(1), 1);
        assert!(threads(0) >= 1);
    }

    #[tokio::test]
    async fn listeners_on_port_zero_share_the_first_ones_port() {
        let ls = bind(SocketAddr::from(([127, 0, 0, 1], 0)), 3).expect("bind");
        let ports: Vec<u16> = ls.iter().map(|l| l.local_addr().unwrap().port()).collect();
        assert_eq!(ports.len(), 3);
        assert!(ports[0] != 0);
        assert!(ports.iter().all(|p| *p == ports[0]), "{ports:?}");
    }

    #[tokio::test]
    async fn a_port_taken_without_reuseport_is_an_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().unwrap();
        assert!(bind(addr, 2).is_err());
    }
}
