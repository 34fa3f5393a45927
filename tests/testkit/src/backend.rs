//! Small hyper servers standing in for a function's pods (or any other
//! HTTP peer) on a loopback port, for every test tier: one accept loop, so
//! each test only says what its server answers.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// Serves `handle` (HTTP/1.1 and h2c) on a free loopback port until the
/// test ends.
pub async fn serve<F, Fut, B>(handle: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    serve_with(auto::Builder::new(TokioExecutor::new()), handle).await
}

/// [`serve`] with the connection settings of `builder` (HTTP/2 only, more
/// header fields…). Upgrades (101) are served, so a handler may take the
/// connection over.
pub async fn serve_with<F, Fut, B>(builder: auto::Builder<TokioExecutor>, handle: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            // An accept error (out of file descriptors at a flood's peak) is
            // transient: keep the listener, as a real server would.
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let handle = handle.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let handle = handle.clone();
                    async move { Ok::<_, Infallible>(handle(req).await) }
                });
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A pod that answers every request 200 with `body`.
pub async fn answering(body: &'static [u8]) -> SocketAddr {
    serve(move |_req| async move { Response::new(Full::new(Bytes::from_static(body))) }).await
}
