//! Addresses as ASCII bytes without the formatter: they are written on
//! every request (the pod's authority, the forwarding headers), and
//! `core::fmt`'s machinery costs more than the digits.

use std::net::{IpAddr, SocketAddr};

use bytes::BufMut;

/// The address as [`IpAddr`]'s `Display` writes it.
pub fn write_ip(out: &mut impl BufMut, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            // Made on the stack and written at once: a buffer's bounds are
            // checked once, not per digit.
            let mut text = [0u8; 15];
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[n] = b'.';
                    n += 1;
                }
                let (digits, from) = decimal(octet.into());
                for &d in &digits[from..] {
                    text[n] = d;
                    n += 1;
                }
            }
            out.put_slice(&text[..n]);
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            let _ = write!(out.writer(), "{v6}");
        }
    }
}

/// `1.2.3.4:80` or `[::1]:80`, as [`SocketAddr`]'s `Display` writes it.
pub fn write_socket_addr(out: &mut impl BufMut, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(_) => write_ip(out, addr.ip()),
        SocketAddr::V6(v6) => {
            use std::io::Write as _;
            let mut w = out.writer();
            let _ = write!(w, "[{}", v6.ip());
            if v6.scope_id() != 0 {
                let _ = write!(w, "%{}", v6.scope_id());
            }
            w.into_inner().put_u8(b']');
        }
    }
    out.put_u8(b':');
    write_u16(out, addr.port());
}

fn write_u16(out: &mut impl BufMut, n: u16) {
    let (digits, from) = decimal(n);
    out.put_slice(&digits[from..]);
}

/// `n`'s decimal digits: they are `digits[from..]`.
fn decimal(n: u16) -> ([u8; 5], usize) {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        // Always < 10, so the cast keeps it.
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    (digits, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_their_display_form() {
        for addr in [
            "0.0.0.0:0",
            "127.0.0.1:8080",
            "10.1.2.3:65535",
            "99.100.109.255:1",
            "1.20.200.9:10",
            "[::1]:80",
            "[fd00::1:2]:443",
            "[fe80::1%2]:9",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut out = Vec::new();
            write_socket_addr(&mut out, addr);
            assert_eq!(String::from_utf8(out).unwrap(), addr.to_string());
            let mut out = Vec::new();
            write_ip(&mut out, addr.ip());
            assert_eq!(String::from_utf8(out).unwrap(), addr.ip().to_string());
        }
        for o in 0..=255u8 {
            let ip = IpAddr::from([o, 255 - o, o / 2, o.wrapping_mul(7)]);
            let mut out = Vec::new();
            write_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
    }
}
