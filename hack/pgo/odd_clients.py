#!/usr/bin/env python3
"""Clients the load tools do not cover, for hack/pgo/train.sh: WebSocket
echo, chunked and 100-continue uploads, and malformed requests that must get
a 4xx. Each is one raw socket; the point is that the activator runs these
paths while it is being profiled, not a test of them (tests/ has those)."""

import base64
import os
import socket
import sys

ADDR = (sys.argv[1].rsplit(":", 1)[0], int(sys.argv[1].rsplit(":", 1)[1]))
HOST = sys.argv[2]
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 50


def exchange(raw: bytes) -> bytes:
    """One request on its own connection, read to the server's close. Not a
    half-close after the request: the activator, as nginx and hyper, takes
    that for the client gone and drops the request."""
    with socket.create_connection(ADDR, timeout=5) as s:
        s.sendall(raw.replace(b"\r\n", b"\r\nConnection: close\r\n", 1))
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def status(reply: bytes) -> int:
    """The final status: interim 1xx heads (100 Continue) skipped."""
    while reply.startswith(b"HTTP/1.1 1") and b"\r\n\r\n" in reply:
        reply = reply.split(b"\r\n\r\n", 1)[1]
    return int(reply.split(b" ", 2)[1]) if reply.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")) else 0


def websocket(messages: int) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(ADDR, timeout=5) as s:
        s.sendall(
            f"GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        if not head.startswith(b"HTTP/1.1 101 "):
            raise SystemExit(f"websocket: {head[:80]!r}")
        for i in range(messages):
            payload = f"message {i}".encode()
            mask = os.urandom(4)
            masked = bytes(b ^ mask[j % 4] for j, b in enumerate(payload))
            s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
            frame = b""
            while len(frame) < 2 + len(payload):
                frame += s.recv(4096)
            if frame[2:] != payload:
                raise SystemExit(f"websocket echo: {frame!r}")


def main() -> None:
    body = b"x" * 3000
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body), body) for _ in range(5)) + b"0\r\n\r\n"
    good = [
        b"POST /echo HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n%s" % (HOST.encode(), chunked),
        b"POST /echo HTTP/1.1\r\nHost: %s\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n%s"
        % (HOST.encode(), len(body), body),
        b"HEAD / HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST.encode(),
        b"GET /headers HTTP/1.0\r\nHost: %s\r\n\r\n" % HOST.encode(),
        b"GET /stream?chunks=50&size=4096 HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST.encode(),
    ]
    bad = [
        b"GET / HTTP/1.1\r\nHost: nobody.else.siesta.local\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello" % HOST.encode(),
        b"GET / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: gzip\r\n\r\n" % HOST.encode(),
        b"GET /\x01 HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST.encode(),
        b"BREW\r\n\r\n",
    ]
    for _ in range(ROUNDS):
        for raw in good:
            if not 200 <= status(exchange(raw)) < 300:
                raise SystemExit(f"expected 2xx for {raw[:60]!r}")
        for raw in bad:
            code = status(exchange(raw))
            if not 400 <= code < 500:
                raise SystemExit(f"expected 4xx for {raw[:40]!r}, got {code}")
        websocket(20)


if __name__ == "__main__":
    main()
