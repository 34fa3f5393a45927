//! What a failed request to a pod tells the client: the 502 message, by the
//! kind of failure hyper reports.

use hyper_util::client::legacy;

use crate::route::FunctionKey;

/// The pod's response head was refused as too large: more header fields
/// than `--max-response-headers`, or a head over the client's read buffer
/// (hyper's ~400 KiB). The same response would fail on any pod, so such a
/// failure is not worth a retry elsewhere.
pub fn response_head_too_large(e: &legacy::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            return h.is_parse_too_large();
        }
        source = s.source();
    }
    false
}

/// The body of the 502 for a request whose pod failed with `e`.
pub fn bad_gateway_message(
    function: &FunctionKey,
    e: &legacy::Error,
    max_response_headers: usize,
) -> String {
    if response_head_too_large(e) {
        format!(
            "function {function}: its response had too many headers (more than \
             {max_response_headers}, --max-response-headers) or too large a head\n"
        )
    } else {
        format!("function {function}: the pod could not be reached\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::rt::TokioExecutor;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A pod that answers every connection's first request with `headers`
    /// header fields.
    async fn pod(headers: usize) -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let mut resp = String::from("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n");
                    for i in 1..headers {
                        resp.push_str(&format!("x-h{i}: v\r\n"));
                    }
                    resp.push_str("\r\nok");
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        addr
    }

    async fn get(max_headers: usize, addr: std::net::SocketAddr) -> Result<u16, legacy::Error> {
        let client = legacy::Client::builder(TokioExecutor::new())
            .http1_max_headers(max_headers)
            .build_http::<Empty<Bytes>>();
        let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
        client.get(uri).await.map(|r| r.status().as_u16())
    }

    #[tokio::test]
    async fn too_many_response_headers_are_told_apart_from_an_unreachable_pod() {
        let key = FunctionKey::new("ns", "f");
        assert_eq!(get(5, pod(5).await).await.unwrap(), 200);
        let e = get(5, pod(6).await).await.unwrap_err();
        assert!(response_head_too_large(&e), "{e:?}");
        assert!(bad_gateway_message(&key, &e, 5).contains("too many headers (more than 5"));

        // Nobody listening: a connect error, the old message.
        let gone = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = get(5, gone).await.unwrap_err();
        assert!(!response_head_too_large(&e));
        assert_eq!(
            bad_gateway_message(&key, &e, 5),
            "function ns/f: the pod could not be reached\n"
        );
    }
}
