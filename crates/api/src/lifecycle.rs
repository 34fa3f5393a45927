//! The process lifecycle both servers share: the signal that starts a
//! shutdown, and the accept loop every listener runs (the activator's traffic
//! and admin ports, the controller's admin port). One copy, so an accept
//! error is handled, and a shutdown is heard, the same way everywhere.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// Resolves on SIGTERM (what the kubelet sends) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops this process");
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!("SIGINT: shutting down");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("SIGINT: shutting down");
    }
}

/// Accepts connections on `listener` until `stop` resolves, handing each one
/// to `on_accept`, and returns (the caller then drains what it spawned).
/// `stop` is polled first, so no connection is taken once it has resolved.
/// A failed accept (out of file descriptors and the like) is logged and
/// retried after `backoff`, instead of spinning; `what` names the listener
/// in that log line.
pub async fn accept_until(
    listener: &TcpListener,
    what: &str,
    backoff: Duration,
    stop: impl Future<Output = ()>,
    mut on_accept: impl FnMut(TcpStream, SocketAddr),
) {
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => on_accept(stream, peer),
            Err(e) => {
                tracing::warn!(error = %e, "{what} could not accept a connection; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_connection_is_handed_over_until_the_stop() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
        let accepting = tokio::spawn(async move {
            accept_until(
                &listener,
                "test listener",
                Duration::from_millis(10),
                async {
                    let _ = stop_rx.await;
                },
                move |stream, peer| {
                    let _ = seen_tx.send((stream, peer));
                },
            )
            .await;
            listener
        });
        let mut clients = Vec::new();
        for _ in 0..3 {
            let client = TcpStream::connect(addr).await.expect("connect");
            let (_, peer) = seen_rx.recv().await.expect("handed over");
            assert_eq!(peer, client.local_addr().expect("client addr"));
            clients.push(client);
        }
        stop_tx.send(()).expect("loop still running");
        let listener = accepting.await.expect("loop returns after the stop");
        // The listener outlives the loop: a connection now is queued, not taken.
        let _late = TcpStream::connect(addr).await.expect("connect");
        assert!(seen_rx.try_recv().is_err());
        drop(listener);
    }

    #[tokio::test]
    async fn a_stop_that_has_already_happened_takes_no_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _waiting = TcpStream::connect(addr).await.expect("connect");
        let mut taken = 0;
        accept_until(
            &listener,
            "test listener",
            Duration::ZERO,
            async {},
            |_, _| taken += 1,
        )
        .await;
        assert_eq!(taken, 0);
    }
}
