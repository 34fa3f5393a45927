#!/usr/bin/env python3
"""Turns one h2load run into the bench's one-line record (the same keys as
wrk's percentiles.lua, plus h2load's own counts), so run.sh's h2 rows read
like its HTTP/1.1 rows.

usage: h2load_line.py H2LOAD_STDOUT LOG_FILE

h2load prints min/max/mean/sd of the request time but no percentiles; its
--log-file has one line per request (start µs since epoch, status, µs until
the end of the response), from which p50/p99/p99.9 are taken (nearest rank).
"""
import re
import sys


def summary(text):
    """The counts and the req/s h2load prints at the end of a run."""
    out = {}
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", text)
    if m:
        secs = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
        out.update(secs=secs, rps=float(m.group(3)))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    if m:
        total, started, done, ok, failed, errored, timeout = (int(g) for g in m.groups())
        out.update(requests=done, succeeded=ok, failed=failed, errored=errored, timeout=timeout)
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text)
    if m:
        out.update(min_us=us(m.group(1)), max_us=us(m.group(2)), mean_us=us(m.group(3)), sd_us=us(m.group(4)))
    return out


def us(v):
    """h2load's durations ("50us", "8.38ms", "1.2s") in microseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", v)
    if not m:
        return None
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]


def percentile(sorted_vals, permille):
    """Nearest rank: the smallest value with at least permille/1000 of all at
    or below it. Integer arithmetic, so that p99.9 of 1,000 values is the
    999th, not (through 99.9 * 1000 in floating point) the 1,000th."""
    if not sorted_vals:
        return None
    rank = max(1, -(-len(sorted_vals) * permille // 1000))  # ceil(n * permille / 1000)
    return sorted_vals[rank - 1]


def per_request(lines):
    """Request times in µs, how many requests answered other than 2xx, and how
    many carry status 0: h2load records no status for a response whose headers
    arrived before its measured phase began (a client still starting up) and
    counts it as succeeded; such a request is timed, not an error."""
    times, non2xx, unstamped = [], 0, 0
    for line in lines:
        cols = line.split("\t")
        if len(cols) < 3:
            continue
        status, dur = int(cols[1]), int(cols[2])
        times.append(dur)
        if status == 0:
            unstamped += 1
        elif not 200 <= status < 300:
            non2xx += 1
    times.sort()
    return times, non2xx, unstamped


def record(stdout_text, log_lines):
    s = summary(stdout_text)
    times, non2xx, unstamped = per_request(log_lines)
    fields = [
        ("requests", s.get("requests")),
        ("secs", s.get("secs")),
        ("rps", s.get("rps")),
        ("p50_us", percentile(times, 500)),
        ("p99_us", percentile(times, 990)),
        ("p999_us", percentile(times, 999)),
        ("mean_us", s.get("mean_us")),
        ("max_us", s.get("max_us")),
        # h2load's "failed" holds every request that did not succeed, HTTP
        # errors and stream/connection errors alike ("errored" is a subset).
        ("errors", s.get("failed")),
        ("errored", s.get("errored")),
        ("timeout", s.get("timeout")),
        ("non2xx", non2xx),
        ("status0", unstamped),
        ("logged", len(times)),
    ]
    return "BENCH " + " ".join(f"{k}={'na' if v is None else (f'{v:.3f}' if isinstance(v, float) else v)}" for k, v in fields)


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        text = fh.read()
    try:
        with open(sys.argv[2]) as fh:
            lines = fh.readlines()
    except FileNotFoundError:
        lines = []
    print(record(text, lines))
