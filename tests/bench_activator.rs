//! `siesta bench-activator`, the hidden subcommand that `make bench`
//! measures and hack/pgo/train.sh trains the release profile on: it must
//! route to its static backend, park while "at zero" and release on SIGUSR1,
//! and exit cleanly on SIGTERM (the profile is written at exit).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");

/// A backend that answers every request on a connection with its path.
fn backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut writer = conn;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("?").to_string();
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 {
                            return;
                        }
                        if header == "\r\n" {
                            break;
                        }
                    }
                    let body = format!("backend saw {path}");
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if writer.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Kills the activator if the test fails before it exits: a child left
/// running would hold the test's output open and hang `cargo test`.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

#[test]
fn parks_at_zero_routes_after_sigusr1_and_exits_on_sigterm() {
    let backend = backend();
    let mut child = KillOnDrop(
        Command::new(SIESTA)
            .args([
                "bench-activator",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ])
            .args([
                "--function",
                "t/echo",
                "--backend",
                &backend.to_string(),
                "--at-zero",
            ])
            .env("SIESTA_LOG", "warn")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut banner = String::new();
    while !banner.starts_with("bench activator:") {
        banner.clear();
        assert_ne!(
            stderr.read_line(&mut banner).unwrap(),
            0,
            "exited before its banner"
        );
    }
    // "bench activator: t/echo -> ADDR (HTTP/1.1) on LISTEN (admin ...), at zero until SIGUSR1"
    let listen = banner
        .split(" on ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no listen address in {banner:?}"))
        .to_string();
    assert!(banner.contains("at zero until SIGUSR1"), "{banner}");

    let mut client = TcpStream::connect(&listen).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
        .write_all(b"GET /first HTTP/1.1\r\nHost: echo.t.siesta.local\r\nConnection: close\r\n\r\n")
        .unwrap();
    // Parked: nothing comes back while the function has no endpoint.
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = client.read(&mut byte);
    assert!(
        early
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut),
        "an answer before the backend was added: {early:?}"
    );
    signal(child.0.id(), "USR1");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    assert!(reply.ends_with("backend saw /first"), "{reply}");

    signal(child.0.id(), "TERM");
    let status = child.0.wait().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status}");
}
