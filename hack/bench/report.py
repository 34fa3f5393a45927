#!/usr/bin/env python3
"""Turns hack/bench/run.sh's raw result lines into docs/benchmarks.md and
prints the same markdown. Every figure is a median over the repetitions.

usage: report.py RESULTS COMMANDS QUICK REPS DURATION OUT
"""
import os
import platform
import statistics
import subprocess
import sys
import time

results_path, cmds_path, quick, reps, dur, out_path = sys.argv[1:7]
quick = quick == "1"
# Sections run.sh was asked for (BENCH_SECTIONS); the others say so.
sections = os.environ.get("BENCH_SECTIONS", "")


def not_run(name):
    if sections and name not in sections.split(","):
        return f"Not run (BENCH_SECTIONS={sections})."
    return "Not measured."


def parse(line):
    parts = line.split()
    kv = {}
    for p in parts[1:]:
        if "=" in p:
            k, v = p.split("=", 1)
            kv[k] = v
    return parts[0] if parts else "", kv


rows = [parse(l) for l in open(results_path) if l.strip()]


def of(kind, **match):
    return [kv for k, kv in rows if k == kind and all(kv.get(a) == str(b) for a, b in match.items())]


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def med(values):
    vals = [v for v in (num(x) for x in values) if v is not None]
    return statistics.median(vals) if vals else None


def f(v, fmt="{:.2f}", na="n/a"):
    return na if v is None else fmt.format(v)


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip() or \
            subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stderr.strip()
    except Exception:  # noqa: BLE001 - a missing tool is reported as such
        return "?"


def cpuinfo():
    model = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = "?"
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return model, mem


md = []
w = md.append
model, mem = cpuinfo()
w("# Siesta benchmarks")
w("")
w("Written by `make bench` (hack/bench/run.sh" + (", **BENCH_QUICK=1 smoke mode: not figures to quote**" if quick else "") + ").")
w("")
w("## Machine")
w("")
w(f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
w(f"- nproc: {os.cpu_count()}; CPU: {model}; memory: {mem}; kernel {platform.release()}")
w(f"- nginx: {sh('nginx -v 2>&1')}; HAProxy: {sh('haproxy -v | head -1')}; {sh('wrk -v 2>&1 | head -1')}; "
  f"{sh('h2load --version 2>&1 | head -1')}; {sh('go version')}; {sh('rustc --version')}")
loads = ", ".join(f"{kv['when']} {kv['loadavg'].replace(',', ' ')}" for kv in of("load"))
w(f"- load average (1/5/15 min) during the run: {loads}. This machine is shared: other sessions' builds and "
  "tests may run at the same time; a load above 0.5 at the start means the figures carry their noise.")
pgo = of("pgo")
if pgo:
    kv = pgo[0]
    w(f"- The activator's build: with the profile in pgo/ (pgo/README.md); of its {kv['hot']} hottest trained "
      f"functions, {kv['matched']} matched this build ({kv['missing']} missing, {kv['stale']} changed since "
      "the training; re-train with `make pgo` when these grow).")
else:
    w("- The activator's build: not checked against the profile in pgo/ (BENCH_SKIP_BUILD=1 or SIESTA_PGO=0).")
w("- Client (wrk, h2load or siesta-bench), proxy and backend (examples/hello, release) all run on the same "
  f"{os.cpu_count()} cores over loopback, unpinned: every proxy figure includes the contention of "
  "three processes on two cores, and all proxies are measured under the same contention.")
w("")
w("## Method")
w("")
w(f"- Each figure is the median of {reps} repetitions (cold start: of every run); ratios are of medians taken in the same run. "
  f"Proxy runs are {dur} s of wrk per point, targets interleaved within each repetition after a 1 s warm-up each.")
w("- Proxy cost: `hello` (release) on 127.0.0.1:18001; in front of it the activator (`siesta bench-activator`: the "
  "shipped binary, built as the Dockerfile builds it with the profile of pgo/, with a static function -> backend "
  "route in place of the cluster's), nginx (2 workers, upstream "
  "keepalive 512) and HAProxy (2 threads, `http-reuse always`) with the configs in hack/bench/, and "
  "**go-rp**: Go's `net/http/httputil.ReverseProxy` (hack/bench/goproxy/main.go, standard library only), "
  "the proxy core of Knative's activator and the KEDA HTTP add-on's interceptor, set up as they set it up for "
  "HTTP/1: the client's Host kept, keep-alive, `DisableCompression`, `ForceAttemptHTTP2` false, a 32 KiB buffer "
  "pool; idle pool `MaxIdleConns` = `MaxIdleConnsPerHost` = 1,000 (Knative: 1,000 and 100 per host, KEDA: 100; "
  "raised so that 256 clients never churn upstream connections, in Go's favour); GOMAXPROCS left at its default (every core). "
  "Latency percentiles come from wrk's `done` hook (hack/bench/percentiles.lua). "
  "CPU = utime+stime from /proc/PID/stat before and after each run (nginx: master + workers), per 100k requests.")
w("- Proxy cost over HTTP/2: h2load (nghttp2) with prior-knowledge h2c, `-c` client connections × `-m` "
  "concurrent streams each, for the same duration, repetitions and interleaving as above; the route is named by "
  "`:authority`. Targets: hello directly (h2c); the activator (`siesta bench-activator`) speaking HTTP/1.1 to "
  "hello (a Function's default) and, in a second process with `--upstream-h2c`, h2c to hello (a Function with "
  "`protocol: H2c`); nginx with `listen ... http2` (no TLS) proxying to hello over HTTP/1.1 (keep-alive 512, as "
  "above) and, on a second server, over h2c with `grpc_pass grpc://` (nginx 1.22 speaks HTTP/2 upstream only "
  "for gRPC; a plain GET through it is answered by hello as any other; hack/bench/nginx-h2.conf). go-rp is not "
  "in these rows: Go's standard library serves h2c only through golang.org/x/net/http2/h2c, which is not in it. "
  "h2load prints no percentiles: p50/p99/p99.9 are nearest-rank over its `--log-file` (one line per request, "
  "time to the end of the response; hack/bench/h2load_line.py); failed = h2load's `failed` count (HTTP and "
  "stream errors alike); non-2xx = logged statuses outside 2xx (h2load logs status 0 for a response whose "
  "headers came before its measured phase began, and counts it as succeeded: timed, not counted here).")
w("- Cold start: release `siesta controller` and `siesta activator` as local processes (KUBECONFIG) against the "
  "local control plane and node agent; a Function at zero; `siesta-bench cold` sends one request and notes the "
  "wall-clock send and first-byte times; the phases are lined up with the controller's `woke up on an activation` "
  "log line (written when the scale write returned), the node agent's `started` and `readiness changed ready=true` "
  "lines and the activator's `pod probed, releasing queue` line (hack/bench/coldstart.py). Each run creates the "
  "Function afresh (its Deployment at zero) and deletes it after; a run whose request found a pod already up is not counted. The pods run "
  "the node agent's own hello build (its SIESTA_BIN_DIR), which only affects the Running → Ready row.")
w("- Buffering: a fresh activator with the function at zero (queue max = N, 300 s queue timeout, "
  "containerConcurrency 1000 so that the release opens at most 1,000 upstream connections: this machine's "
  "hard open-files limit is 20,000 per process and cannot be raised); "
  "`siesta-bench park` opens N connections with one request each, waits until "
  "`siesta_activator_queued_requests` = N, then sends SIGUSR1 (the bench activator adds the backend) and times "
  "until the last response. RSS from /proc/PID/status.")
w("- Streaming: POST of N bytes to `/echo` (echoed back, so N bytes go each way at once) and GET of N bytes from "
  "`/stream` (64 KiB chunks), through a fresh activator and directly; activator RSS sampled every 20 ms.")
w("")

# ---------------------------------------------------------------- proxy
concs = sorted({int(kv["c"]) for kv in of("proxy")})
targets = ["direct", "activator", "nginx", "haproxy", "go-rp"]
# BENCH_BEFORE_BIN adds the activator of an earlier build, measured in the
# same run: a change's before and after under the same load.
before = "activator-before"
if of("proxy", target=before):
    targets.insert(2, before)
P = {}
for c in concs:
    for t in targets:
        rs = of("proxy", target=t, c=c)
        if not rs:
            continue
        P[(c, t)] = {
            "rps": med(r["rps"] for r in rs),
            "p50": med(num(r["p50_us"]) / 1000 for r in rs),
            "p99": med(num(r["p99_us"]) / 1000 for r in rs),
            "p999": med(num(r["p999_us"]) / 1000 for r in rs),
            "cpu": med(num(r["proxy_cpu_s"]) / num(r["requests"]) * 1e5 for r in rs) if t != "direct" else None,
            "bcpu": med(num(r["backend_cpu_s"]) / num(r["requests"]) * 1e5 for r in rs),
            # User and kernel time per request, in µs (runs before these
            # fields were recorded have neither).
            "user": med(num(r["proxy_user_s"]) / num(r["requests"]) * 1e6 for r in rs if "proxy_user_s" in r)
            if t != "direct" else None,
            "sys": med(num(r["proxy_sys_s"]) / num(r["requests"]) * 1e6 for r in rs if "proxy_sys_s" in r)
            if t != "direct" else None,
            "err": sum(int(r.get("errors", 0)) for r in rs),
        }


def instructions(kind, **match):
    """callgrind's counts of one kind of `instr` result: target -> (per request, requests)."""
    counted = {}
    for kv in of(kind, **match):
        count, total = num(kv.get("requests")), num(kv.get("instructions"))
        if count and total:
            counted[kv["target"]] = (total / count, int(count))
    return counted


def instr_table(counted, targets, against="nginx"):
    """The rows of an instructions-per-request table, each against `against`'s (nginx's)."""
    w(f"| path | instructions per request | / {against} | requests counted |")
    w("|---|---:|---:|---:|")
    ng = counted.get(against, (None,))[0]
    for t in targets:
        if t in counted:
            per, count = counted[t]
            w(f"| {t} | {per:,.0f} | {f(per / ng if ng else None)} | {count} |")


def before_table(head, rows):
    """This build against BENCH_BEFORE_BIN's, each also against nginx: rows of (label, this, before, nginx)."""
    w(f"| {head} | req/s, this / before | CPU per request, this / before | this / nginx req/s | before / nginx req/s "
      "| this / nginx CPU | before / nginx CPU |")
    w("|---:|---:|---:|---:|---:|---:|---:|")
    for label, a, b, n in rows:
        w(f"| {label} | {f(over(a, b, 'rps'))} | {f(over(a, b, 'cpu'))} | {f(over(a, n, 'rps'))} | "
          f"{f(over(b, n, 'rps'))} | {f(over(a, n, 'cpu'))} | {f(over(b, n, 'cpu'))} |")


def over(a, b, key):
    """a[key] / b[key], or None when either side is missing or zero."""
    if not a or not b or a.get(key) is None or not b.get(key):
        return None
    return a[key] / b[key]


w("## 1. Proxy cost (GET / on hello, HTTP/1.1 keep-alive)")
w("")
ratio = {}
if not P:
    w(not_run("proxy"))
else:
    w("| conc | path | req/s | p50 ms | p99 ms | p99.9 ms | proxy CPU s /100k req | backend CPU s /100k req | errors |")
    w("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for c in concs:
        for t in targets:
            p = P.get((c, t))
            if p:
                w(f"| {c} | {t} | {f(p['rps'], '{:.0f}')} | {f(p['p50'], '{:.3f}')} | {f(p['p99'], '{:.3f}')} | "
                  f"{f(p['p999'], '{:.3f}')} | {f(p['cpu'], '{:.2f}', '-')} | {f(p['bcpu'])} | {p['err']} |")
    w("")
    w("| conc | activator / nginx req/s | activator / HAProxy req/s | activator / go-rp req/s | activator / direct req/s | "
      "activator p99 − direct p99 (ms) | activator CPU / nginx CPU | activator CPU / go-rp CPU |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in concs:
        d, a, n, h, g = (P.get((c, t)) for t in ("direct", "activator", "nginx", "haproxy", "go-rp"))
        if not a:
            continue
        p99_gap = a["p99"] - d["p99"] if d and a["p99"] is not None and d["p99"] is not None else None
        if n and d:
            ratio[c] = (a["rps"] / n["rps"], p99_gap)
        w(f"| {c} | {f(over(a, n, 'rps'))} | {f(over(a, h, 'rps'))} | {f(over(a, g, 'rps'))} | {f(over(a, d, 'rps'))} | "
          f"{f(p99_gap, '{:+.3f}')} | {f(over(a, n, 'cpu'))} | {f(over(a, g, 'cpu'))} |")
    if any(p.get("user") is not None for p in P.values()):
        w("")
        w("Where each proxy's CPU goes: user-space and kernel time per request, µs (utime and stime from "
          "/proc/PID/stat over the same runs). The kernel's part is the sockets' (reads, writes, epoll, wake-ups).")
        w("")
        proxies = [t for t in targets if t != "direct"]
        w("| conc | " + " | ".join(f"{t} user | {t} kernel" for t in proxies) +
          " | activator / nginx user | activator / nginx kernel |")
        w("|---:|" + "---:|---:|" * len(proxies) + "---:|---:|")
        for c in concs:
            cells = []
            for t in proxies:
                p = P.get((c, t)) or {}
                cells += [f(p.get("user"), "{:.2f}"), f(p.get("sys"), "{:.2f}")]
            a, n = P.get((c, "activator")), P.get((c, "nginx"))
            w(f"| {c} | " + " | ".join(cells) + f" | {f(over(a, n, 'user'))} | {f(over(a, n, 'sys'))} |")
    if before in targets:
        w("")
        w(f"This build against an earlier one (`BENCH_BEFORE_BIN`, the `{before}` rows), in the same run:")
        w("")
        before_table("conc", [(c, *(P.get((c, t)) for t in ("activator", before, "nginx"))) for c in concs])
    instr = instructions("instr", c=16)
    instr_c1 = instructions("instr", c=1)
    if instr:
        w("")
        w("Instructions per request in user space, counted by callgrind (`valgrind --tool=callgrind`): each proxy "
          "alone, wrk at c=16 for 10 s after a 3 s warm-up, nginx with one worker and no master. A count, not a "
          "time: the same on a busy machine, so a change's effect shows here when the timings above are noise. "
          "The kernel's work is not in it.")
        w("")
        instr_table(instr, ("activator", before, "nginx"))
    if instr_c1:
        w("")
        w("The same count at one connection (`wrk -t1 -c1`): there every request pays for the runtime's "
          "wake-ups (two a request) itself, which many connections share.")
        w("")
        instr_table(instr_c1, ("activator", before, "nginx"))
w("")

# ---------------------------------------------------------------- proxy over h2c
h2_targets = [
    ("direct", "direct (h2c)"),
    ("activator", "activator → HTTP/1.1"),
    ("activator-before", "activator-before → HTTP/1.1"),
    ("activator-h2c", "activator → h2c"),
    ("nginx", "nginx → HTTP/1.1"),
    ("nginx-h2c", "nginx → h2c (grpc_pass)"),
]
h2_points = sorted({(int(kv["c"]), int(kv["m"])) for kv in of("h2")})
H = {}
for c, m in h2_points:
    for t, _ in h2_targets:
        rs = of("h2", target=t, c=c, m=m)
        if not rs:
            continue
        H[(c, m, t)] = {
            "rps": med(r["rps"] for r in rs),
            "p50": med(num(r["p50_us"]) / 1000 for r in rs if num(r.get("p50_us")) is not None),
            "p99": med(num(r["p99_us"]) / 1000 for r in rs if num(r.get("p99_us")) is not None),
            "p999": med(num(r["p999_us"]) / 1000 for r in rs if num(r.get("p999_us")) is not None),
            "mean": med(num(r["mean_us"]) / 1000 for r in rs if num(r.get("mean_us")) is not None),
            "cpu": med(num(r["proxy_cpu_s"]) / num(r["requests"]) * 1e5 for r in rs if num(r.get("requests")))
            if t != "direct" else None,
            "bcpu": med(num(r["backend_cpu_s"]) / num(r["requests"]) * 1e5 for r in rs if num(r.get("requests"))),
            "err": sum(int(num(r.get("errors")) or 0) for r in rs),
            "non2xx": sum(int(num(r.get("non2xx")) or 0) for r in rs),
        }
w("## 1b. Proxy cost over HTTP/2 (h2c from the client, GET / on hello)")
w("")
if not H:
    w(not_run("h2"))
else:
    w("c × m = client connections × concurrent streams per connection (h2load `-c`, `-m`). "
      "Percentiles from h2load's per-request log; mean as h2load prints it.")
    w("")
    w("| c × m | path | req/s | p50 ms | p99 ms | p99.9 ms | mean ms | proxy CPU s /100k req | backend CPU s /100k req | failed | non-2xx |")
    w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c, m in h2_points:
        for t, label in h2_targets:
            p = H.get((c, m, t))
            if p:
                w(f"| {c} × {m} | {label} | {f(p['rps'], '{:.0f}')} | {f(p['p50'], '{:.3f}')} | {f(p['p99'], '{:.3f}')} | "
                  f"{f(p['p999'], '{:.3f}')} | {f(p['mean'], '{:.3f}')} | {f(p['cpu'], '{:.2f}', '-')} | {f(p['bcpu'])} | "
                  f"{p['err']} | {p['non2xx']} |")
    w("")
    w("| c × m | activator / nginx req/s, → HTTP/1.1 | activator / nginx req/s, → h2c | activator → HTTP/1.1 / direct req/s | "
      "activator CPU / nginx CPU, → HTTP/1.1 | activator CPU / nginx CPU, → h2c | activator p99 − nginx p99 (ms), → HTTP/1.1 | → h2c |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c, m in h2_points:
        d, a1, a2, n1, n2 = (H.get((c, m, t)) for t in ("direct", "activator", "activator-h2c", "nginx", "nginx-h2c"))

        def gap(a, b):
            return a["p99"] - b["p99"] if a and b and a["p99"] is not None and b["p99"] is not None else None
        w(f"| {c} × {m} | {f(over(a1, n1, 'rps'))} | {f(over(a2, n2, 'rps'))} | {f(over(a1, d, 'rps'))} | "
          f"{f(over(a1, n1, 'cpu'))} | {f(over(a2, n2, 'cpu'))} | {f(gap(a1, n1), '{:+.3f}')} | {f(gap(a2, n2), '{:+.3f}')} |")
    if any(t == "activator-before" for (_, _, t) in H):
        w("")
        w("This build against an earlier one (`BENCH_BEFORE_BIN`, the `activator-before` rows), both → HTTP/1.1, "
          "in the same run:")
        w("")
        before_table("c × m", [(f"{c} × {m}", *(H.get((c, m, t)) for t in ("activator", "activator-before", "nginx")))
                               for c, m in h2_points])
    instr_h2 = instructions("instr_h2")
    if instr_h2:
        w("")
        w("Instructions per request in user space, counted by callgrind as in section 1, with h2load at one "
          "connection and one stream (`-c1 -m1`, 10 s after a 3 s warm-up), each proxy → HTTP/1.1 to hello, nginx "
          "with one worker and no master.")
        w("")
        instr_table(instr_h2, ("activator", "activator-before", "nginx"))
        if "activator-h2c" in instr_h2:
            w("")
            w("The same count to hello over h2c: the activator with `--upstream-h2c`, nginx through `grpc_pass`.")
            w("")
            instr_table(instr_h2, ("activator-h2c", "nginx-h2c"), against="nginx-h2c")
    uc = {r["target"]: r["n"] for r in of("h2_upstream_conns")}
    if uc:
        w("")
        w(f"Upstream connections to hello held after the runs (`ss`, by pid): activator → HTTP/1.1 {uc.get('activator', '?')}, "
          f"activator → h2c {uc.get('activator-h2c', '?')} (h2c multiplexes the streams on a few connections).")
w("")

# ---------------------------------------------------------------- cold start
cs = of("coldsplit")
w("## 2. Cold start on the local cluster")
w("")
phases = [
    ("arrival_to_scale_ms", "request arrival → scale write returned (activator park + signal, controller read + scale write)"),
    ("scale_to_running_ms", "scale write → pod Running (kube-controller-manager, node agent bind + process start)"),
    ("running_to_ready_ms", "pod Running → Ready (hello binds; node agent TCP readiness probe)"),
    ("ready_to_release_ms", "pod Ready → activator releases the queue (node agent status write, API watch, activator probe)"),
    ("release_to_first_byte_ms", "queue released → first byte at the client (proxying)"),
    ("ready_to_first_byte_ms", "pod Ready → first byte (the two rows above)"),
    ("total_ms", "total: request sent → first byte"),
    ("siesta_ms", "**Siesta's own part**: arrival → scale write + Ready → first byte"),
    ("siesta_strict_ms", "Siesta's own part without the node agent's status write/API watch: arrival → scale write + released → first byte"),
]
warm = [r for r in cs if r.get("arrival_to_scale_ms") == "na" or num(r.get("total_ms")) is None or num(r["total_ms"]) < 20]
cs = [r for r in cs if r not in warm]
if cs or warm:
    w(f"{len(cs)} cold runs counted ({len(warm)} not cold, left out); statuses: {', '.join(sorted({r['status'] for r in cs}))}.")
    w("")
    w("| phase | median ms | min ms | max ms |")
    w("|---|---:|---:|---:|")
    for key, label in phases:
        vals = [num(r.get(key)) for r in cs if num(r.get(key)) is not None]
        if vals:
            w(f"| {label} | {statistics.median(vals):.1f} | {min(vals):.1f} | {max(vals):.1f} |")
        else:
            w(f"| {label} | n/a | | |")
    cm = of("cold_metric")
    if cm:
        kv = cm[0]
        s, n = num(kv.get("siesta_activator_cold_start_duration_seconds_sum")), num(kv.get("siesta_activator_cold_start_duration_seconds_count"))
        if s is not None and n:
            w("")
            w(f"The activator's own `siesta_activator_cold_start_duration_seconds` histogram: {int(n)} cold starts, mean {s / n * 1000:.1f} ms.")
else:
    w(not_run("cluster") if sections else "Not measured (no cold-start runs recorded).")
w("")

# ---------------------------------------------------------------- buffering
pk = of("park")
w("## 3. Buffering at zero")
w("")
if pk:
    n = pk[0]["n"]
    mib = lambda k: med(num(r[k]) / 1024 for r in pk)  # noqa: E731
    w(f"| parked requests | answered (all reps) | failed | time to park all s | drain s (release → last response) | activator RSS idle MiB | RSS while parked MiB | peak RSS (VmHWM) MiB |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|")
    w(f"| {n} | {sum(int(r['ok']) for r in pk)} / {int(n) * len(pk)} | {sum(int(r['failed']) for r in pk)} | "
      f"{f(med(r['parked_in_s'] for r in pk))} | {f(med(r['drain_s'] for r in pk), '{:.3f}')} | {f(mib('rss_before_kib'), '{:.1f}')} | "
      f"{f(mib('rss_parked_kib'), '{:.1f}')} | {f(mib('hwm_kib'), '{:.1f}')} |")
else:
    w(not_run("buffering"))
w("")

# ---------------------------------------------------------------- streaming
st = of("stream")
w("## 4. Streaming")
w("")
idle = of("stream_idle")
end = of("stream_end")
if st:
    size = int(st[0]["bytes"])
    w(f"{size / (1 << 20):.0f} MiB per transfer. Upload = POST to `/echo`, echoed back while it is sent "
      "(MiB/s counts one direction).")
    w("")
    w("| transfer | via | MiB/s | activator RSS before MiB | activator RSS peak (sampled) MiB |")
    w("|---|---|---:|---:|---:|")
    for mode in ("upload", "download"):
        for via in ("direct", "activator"):
            rs = of("stream", mode=mode, via=via)
            if rs:
                before = med(num(r["rss_before_kib"]) / 1024 for r in rs) if via == "activator" else None
                peak = med(num(r["rss_peak_sampled_kib"]) / 1024 for r in rs) if via == "activator" else None
                w(f"| {mode} | {via} | {f(med(r['mib_per_s'] for r in rs), '{:.0f}')} | {f(before, '{:.1f}', '-')} | {f(peak, '{:.1f}', '-')} |")
    if idle and end:
        w("")
        w(f"Activator RSS: {num(idle[0]['rss_kib']) / 1024:.1f} MiB idle before the first transfer, "
          f"VmHWM {num(end[0]['hwm_kib']) / 1024:.1f} MiB after all {len(of('stream', via='activator'))} transfers "
          f"({sum(int(r['bytes']) for r in of('stream', via='activator')) / (1 << 30):.1f} GiB each way in total).")
else:
    w(not_run("streaming"))
w("")

# ---------------------------------------------------------------- footprint
w("## 5. Footprint")
w("")
if not of("idle_rss"):
    w(not_run("cluster"))
else:
    w("| process | RSS MiB |")
    w("|---|---:|")
for r in of("idle_rss"):
    label = {"controller": "controller, idle (release, 1 namespace watched, leader)",
             "activator": "activator, idle (release, watching Functions and Pods in all namespaces of the shared cluster)",
             "bench-activator-after-load": "bench activator after the proxy runs (static route, no cluster)",
             "go-rp-after-load": "go-rp (Go httputil.ReverseProxy) after the proxy runs"}.get(r["component"], r["component"])
    w(f"| {label} | {num(r['rss_kib']) / 1024:.1f} (peak {num(r['hwm_kib']) / 1024:.1f}) |")
fn = of("fns")
if fn:
    r = fn[0]
    w("")
    w(f"Controller with {r['n']} Functions created at once: {r['ready']} Ready with a Deployment after {num(r['secs']):.1f} s; "
      f"controller RSS {num(r['rss_kib']) / 1024:.1f} MiB, peak {num(r['hwm_kib']) / 1024:.1f} MiB."
      + ("" if r["n"] == "1000" else " (1,000 Functions: `BENCH_1K=1 make bench`; not in the default run, to stay within 20 minutes.)"))
w("")

# ---------------------------------------------------------------- autoscaler
w("## 6. Autoscaler reaction")
w("")
au = [r for r in of("autoscale") if "rep" in r]
if not au:
    w(not_run("cluster"))
else:
    r0 = au[0]
    w(f"Function `step` (target 10 in-flight per pod, stableWindowSeconds 6, panic window 10 %, scaleToZeroAfterSeconds 2, "
      f"maxReplicas 5), at zero; wrk opens {r0['clients']} connections doing GET /delay?ms=50 through the activator "
      f"(so {int(r0['clients']) // 10} pods are right); controller flags as shipped (autoscale every 2 s, scrape every 1 s). "
      "Times from the load start (or stop) to the first poll (kubectl, every ~0.1-0.3 s) that saw the state; "
      f"{len(au)} repetitions. Caveat: when the shared cluster also runs another Siesta controller watching every "
      "namespace (`make demo`'s), its autoscaler sees none of this traffic and may scale `step` down during the load "
      "or to zero after it: the step-up times are the first moment the right count was seen; the times to zero are "
      "the first time replicas = 0 was seen, by whichever controller wrote it.")
    w("")
    w("| measure | median s | min s | max s |")
    w("|---|---:|---:|---:|")
    for key, label in [("to_desired_s", f"load start (0 → {r0['clients']} clients) → Deployment replicas = {r0['expect']}"),
                       ("to_ready_s", f"load start → {r0['expect']} pods Ready"),
                       ("stop_to_zero_s", "load stop → Deployment replicas = 0"),
                       ("stop_to_pods_gone_s", "load stop → every pod gone")]:
        vals = [num(r.get(key)) for r in au if num(r.get(key)) is not None]
        if vals:
            w(f"| {label} | {statistics.median(vals):.1f} | {min(vals):.1f} | {max(vals):.1f} |")
        else:
            w(f"| {label} | not reached | | |")
    w("")
    w(f"Most replicas seen during the step: {', '.join(r['max_replicas'] for r in au)} (expected {r0['expect']}); "
      f"wrk req/s: {', '.join(r.get('rps', 'na') for r in au)}.")
zs = of("zero")
if zs:
    vals = [num(r["idle_to_zero_s"]) for r in zs if num(r.get("idle_to_zero_s")) is not None]
    if vals:
        w("")
        w(f"After each cold request of section 2 (function `hello`, same settings): last response → replicas 0 took "
          f"{statistics.median(vals):.1f} s at the median (min {min(vals):.1f}, max {max(vals):.1f}).")
w("")

# ---------------------------------------------------------------- real node
rc = [r for r in of("realcold") if r.get("status") == "200"]
w("## 7. The real node: kubelet + containerd, the image from the Dockerfile, the chart's defaults")
w("")
if rc:
    w(f"{len(rc)} cold requests to the activator's ClusterIP, each for a new Function at zero "
      "(one pod, TCP readiness probe every 1 s, as the controller writes it). Phase ends as each party saw them: "
      "the controller's and activator's log lines (containerd timestamps), a pod watch (Ready: or the activator's release, when its "
      "own watch saw Ready first), the client's own socket.")
    w("")
    w("| phase | whose | median ms | min ms | max ms |")
    w("|---|---|---:|---:|---:|")
    for key, whose, label in [
        ("arrival_to_scale_ms", "Siesta", "request arrival → scale write returned"),
        ("scale_to_scheduled_ms", "Kubernetes", "scale write → pod scheduled (ReplicaSet, scheduler)"),
        ("scheduled_to_started_ms", "kubelet", "scheduled → container started (sandbox, CNI, runc)"),
        ("started_to_ready_ms", "kubelet + app", "started → Ready (hello binds; kubelet probe period 1 s)"),
        ("ready_to_release_ms", "Siesta", "Ready → queue released (pod watch, activator probe)"),
        ("release_to_first_byte_ms", "Siesta", "released → first byte (proxying)"),
        ("total_ms", "", "total: request sent → first byte"),
        ("siesta_ms", "Siesta", "**Siesta's own share**: arrival → scale write + Ready → first byte"),
    ]:
        vals = [num(r.get(key)) for r in rc if num(r.get(key)) is not None]
        if vals:
            w(f"| {label} | {whose} | {statistics.median(vals):.1f} | {min(vals):.1f} | {max(vals):.1f} |")
        else:
            w(f"| {label} | {whose} | n/a | | |")
    w("")
rw = {r["via"]: r for r in of("realwarm")}
if rw:
    w("Warm requests, curl's own `time_total`, a new connection each (20 each):")
    w("")
    w("| via | median ms | min ms | max ms |")
    w("|---|---:|---:|---:|")
    for via, label in [("clusterip", "activator ClusterIP (kube-proxy DNAT → activator → pod)"), ("podip", "straight to the pod IP")]:
        if via in rw:
            r = rw[via]
            w(f"| {label} | {r['median_ms']} | {r['min_ms']} | {r['max_ms']} |")
    w("")
rt = of("realtput")
if rt:
    w("Warm throughput (wrk, 2 threads (1 at c=1), 5 s, keep-alive):")
    w("")
    w("| connections | ClusterIP req/s | pod IP req/s | ratio |")
    w("|---:|---:|---:|---:|")
    for c in sorted({int(r["c"]) for r in rt}):
        ci = med([r["rps"] for r in rt if r["via"] == "clusterip" and int(r["c"]) == c])
        pi = med([r["rps"] for r in rt if r["via"] == "podip" and int(r["c"]) == c])
        w(f"| {c} | {f(ci, '{:.0f}')} | {f(pi, '{:.0f}')} | {f(ci / pi if ci and pi else None)} |")
    w("")
if not (rc or rw or rt):
    w(not_run("real") if sections and "real" not in sections.split(",") else "Not measured (BENCH_REAL=0).")
    w("")

# ---------------------------------------------------------------- targets
w("## Targets")
w("")


def verdict(ok):
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


t1 = [c for c in ratio]
ok1 = all(ratio[c][0] >= 1.0 for c in t1) if t1 else None
w(f"- Activator throughput ≥ nginx at every concurrency: {verdict(ok1)} — activator/nginx = "
  + (", ".join(f"{ratio[c][0]:.2f} at c={c}" for c in t1) or "not measured") + ".")
t2 = [c for c in t1 if c <= 64 and ratio[c][1] is not None]
ok2 = all(ratio[c][1] <= 1.0 for c in t2) if t2 else None
w(f"- Activator p99 within 1 ms of direct at c ≤ 64: {verdict(ok2)} — "
  + (", ".join(f"{ratio[c][1]:+.3f} ms at c={c}" for c in t2) or "not measured") + ".")
sv = [num(r.get("siesta_ms")) for r in cs if num(r.get("siesta_ms")) is not None]
ok3 = statistics.median(sv) < 50 if sv else None
w(f"- Siesta's own cold-start part < 50 ms median: {verdict(ok3)} — "
  + (f"{statistics.median(sv):.1f} ms" if sv else "not measured") + ".")
hw = [num(r["hwm_kib"]) * 1024 / 1e6 for r in pk] if pk else []
ok4 = (statistics.median(hw) < 150 and all(int(r["ok"]) == int(r["n"]) for r in pk)) if hw else None
w(f"- {pk[0]['n'] if pk else 'N'} parked requests under 150 MB activator RSS, all answered: {verdict(ok4)} — "
  + (f"peak {statistics.median(hw):.1f} MB (VmHWM)" if hw else "not measured") + ".")
if idle and end and st:
    growth = (num(end[0]["hwm_kib"]) - num(idle[0]["rss_kib"])) / 1024
    moved = sum(int(r["bytes"]) for r in of("stream", via="activator")) / (1 << 20)
    ok5 = growth < 32
    w(f"- Streaming memory flat: {verdict(ok5)} — activator peak grew {growth:.1f} MiB over idle while moving "
      f"{moved:.0f} MiB each way (flat = under 32 MiB growth, independent of the size moved).")
w("")
w("## Commands (as run)")
w("")
w("```")
# Paths of this machine are written relative to the checkout, the work dir
# and the home dir, so the committed report names none of them.
repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
work_dir = os.path.dirname(os.path.abspath(cmds_path))
home = os.path.expanduser("~")
for line in open(cmds_path):
    line = line.rstrip().replace(work_dir, "$WORK").replace(repo_root + "/", "./").replace(repo_root, ".")
    w(line.replace(home, "~"))
w("```")
w("")
text = "\n".join(md) + "\n"
os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
with open(out_path, "w") as fh:
    fh.write(text)
print(text)
