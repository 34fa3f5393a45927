//! How much of a request the activator holds in memory: the size of its
//! head, and the HTTP/2 stream window that bounds how much of its body a
//! client sends before anyone reads it. The server and the proxy apply
//! them and the park budget charges them; kept in a leaf module so that the
//! park budget needs neither the server nor the proxy (they both use it).

use http::Request;

/// The HTTP/2 flow-control window of each client stream: how much of a
/// request body a client may send before the activator reads it. A parked
/// request's body is not read until it has a pod, so this is what each one
/// may pin. hyper's default, 1 MiB, let a parked h2 upload pin 1.3 MiB
/// (measured: 200 parked 4 MiB uploads, one connection each); at 128 KiB
/// it is 163 KiB, and a single h2c upload through the activator is as fast
/// as at 1 MiB (median 199 vs 199 MiB/s on loopback; 64 KiB was 22 %
/// slower). The connection window stays at hyper's 1 MiB, so one
/// connection's streams together pin at most that.
pub const H2_STREAM_WINDOW: u32 = 128 * 1024;

/// The size of a request's head as HTTP/1 sends it: request line, then each
/// header as `name: value` and CRLF.
pub(crate) fn head_bytes<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    req.headers().iter().fold(line, |n, (name, value)| {
        n + name.as_str().len() + value.len() + 4
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_size_counts_the_request_line_and_each_header_line() {
        let req = Request::get("/a?b=1")
            .header("host", "f.ns.siesta.local")
            .header("x-a", "1")
            .body(())
            .unwrap();
        let wire = "GET /a?b=1 HTTP/1.1\r\nhost: f.ns.siesta.local\r\nx-a: 1\r\n";
        assert_eq!(head_bytes(&req), wire.len());
    }
}
