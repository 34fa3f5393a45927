#!/usr/bin/env python3
"""Cold starts and warm requests on the real node (hack/bench/realnode.sh
sets it up): prints `realcold`, `realwarm` and `realtput` result lines for
report.py.

Each cold run creates a Function at zero and sends one request to the
activator's ClusterIP over a raw socket (send and first-byte times taken
here, no client start-up in them). The phases come from what each party
saw, on one clock:
  - scale write returned: the controller's "woke up on an activation" line,
    timestamped by containerd as it was written;
  - pod scheduled, container started, pod Ready: a `kubectl get -w` of the
    function's pods, timed as each change arrived (Ready: or the queue
    release, when the activator's own watch saw it first);
  - queue released: the activator's "pod probed, releasing queue" line;
  - first byte: here.
Siesta's share is arrival -> scale write plus Ready -> first byte; the rest
is the scheduler's, the kubelet's, containerd's and the application's.

usage: realnode.py KUBECTL NAMESPACE ACTIVATOR_ADDR RUNS
"""
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime

KUBECTL, NS, ADDR, RUNS = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
SYSTEM_NS = "siesta-system"
IMAGE = "siesta.dev/examples/hello:0.1.0"


def k(*args, stdin=None, check=True):
    out = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True)
    if check and out.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)} failed: {out.stderr}")
    return out.stdout


def apply_function(name, scale):
    manifest = (
        f"apiVersion: siesta.dev/v1alpha1\nkind: Function\nmetadata: {{name: {name}, namespace: {NS}}}\n"
        f"spec:\n  image: {IMAGE}\n  port: 8080\n  scale: {{{scale}}}\n"
    )
    k("apply", "-f", "-", stdin=manifest)
    deadline = time.time() + 60
    while time.time() < deadline:
        ready = k("get", "fn", name, "-n", NS, "-o",
                  "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}", check=False)
        if ready == "True":
            return
        time.sleep(0.2)
    sys.exit(f"Function {NS}/{name} not Ready after 60 s")


def request(host, path="/"):
    """(send time, first-byte time, status, body) of one GET on a new connection."""
    ip, port = ADDR.rsplit(":", 1)
    with socket.create_connection((ip, int(port)), timeout=120) as s:
        raw = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        sent = time.time()
        s.sendall(raw)
        first = s.recv(65536)
        first_byte = time.time()
        rest = b"".join(iter(lambda: s.recv(65536), b""))
    text = (first + rest).decode(errors="replace")
    status = int(text.split(" ", 2)[1]) if text.startswith("HTTP/") else 0
    return sent, first_byte, status, text.split("\r\n\r\n", 1)[-1]


class PodWatch(threading.Thread):
    """Times when each pod of a function was scheduled, started and Ready."""

    def __init__(self, name):
        super().__init__(daemon=True)
        self.proc = subprocess.Popen(
            [KUBECTL, "get", "pods", "-n", NS, "-l", f"siesta.dev/function={name}", "-w",
             "--output-watch-events", "-o", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.seen = {}  # phase -> first time seen

    def run(self):
        decoder, buf = json.JSONDecoder(), ""
        for line in self.proc.stdout:
            buf += line
            try:
                event, end = decoder.raw_decode(buf.lstrip())
            except ValueError:
                continue
            now, buf = time.time(), ""
            pod = event.get("object", {})
            status = pod.get("status", {})
            if pod.get("spec", {}).get("nodeName"):
                self.seen.setdefault("scheduled", now)
            if any("running" in c.get("state", {}) for c in status.get("containerStatuses", [])):
                self.seen.setdefault("started", now)
            if any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])):
                self.seen.setdefault("ready", now)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def ms(a, b):
    return "na" if a is None or b is None else f"{(b - a) * 1000:.1f}"


def cold_runs():
    for run in range(RUNS):
        name = f"cold-{run}-{int(time.time()) % 100000}"
        apply_function(name, "minReplicas: 0, maxReplicas: 1, scaleToZeroAfterSeconds: 600")
        watch = PodWatch(name)
        watch.start()
        time.sleep(1)  # the watch is established before the request
        sent, first_byte, status, _ = request(f"{name}.{NS}.siesta.local")
        time.sleep(1)
        watch.stop()
        fn = f"function={NS}/{name}"
        woke = log_time_matching("controller", "woke up on an activation", fn)
        released = log_time_matching("activator", "pod probed, releasing queue", fn)
        s = watch.seen
        # The activator's own watch may see Ready a few ms before kubectl's
        # does: Ready is the earlier of the two.
        if released is not None and s.get("ready") is not None:
            s["ready"] = min(s["ready"], released)
        out = {
            "run": run, "status": status,
            "total_ms": ms(sent, first_byte),
            "arrival_to_scale_ms": ms(sent, woke),
            "scale_to_scheduled_ms": ms(woke, s.get("scheduled")),
            "scheduled_to_started_ms": ms(s.get("scheduled"), s.get("started")),
            "started_to_ready_ms": ms(s.get("started"), s.get("ready")),
            "ready_to_release_ms": ms(s.get("ready"), released),
            "release_to_first_byte_ms": ms(released, first_byte),
            "siesta_ms": "na" if None in (woke, s.get("ready")) else
            f"{((woke - sent) + (first_byte - s['ready'])) * 1000:.1f}",
        }
        print("realcold " + " ".join(f"{k}={v}" for k, v in out.items()), flush=True)
        k("delete", "fn", name, "-n", NS, "--wait=false", check=False)


def log_time_matching(component, *needles):
    """Earliest containerd timestamp of a log line of `component` pods
    containing every needle."""
    out = k("logs", "-n", SYSTEM_NS, "-l", f"app.kubernetes.io/component={component}",
            "--timestamps", "--tail=-1", "--max-log-requests=10", check=False)
    times = []
    for line in out.splitlines():
        if all(n in line for n in needles):
            stamp = line.split(" ", 1)[0]
            base, _, frac = stamp.rstrip("Z").partition(".")
            times.append(datetime.fromisoformat(f"{base}.{(frac + '000000')[:6]}+00:00").timestamp())
    return min(times) if times else None


def curl_times(url, host=None, n=20):
    """curl's own time_total of n requests, each on a new connection, in ms."""
    times = []
    for _ in range(n):
        args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}"]
        if host:
            args += ["-H", f"Host: {host}"]
        code, total = subprocess.run(args + [url], capture_output=True, text=True).stdout.split()
        if code != "200":
            sys.exit(f"warm request to {url} answered {code}")
        times.append(float(total) * 1000)
    return times


def wrk(url, host=None, conns=16, seconds=5):
    # wrk wants at least one connection per thread.
    args = ["wrk", "-t", str(min(2, conns)), "-c", str(conns), "-d", f"{seconds}s"]
    if host:
        args += ["-H", f"Host: {host}"]
    out = subprocess.run(args + [url], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
        if "Non-2xx" in line:
            sys.exit(f"wrk to {url}: {line.strip()}")
    sys.exit(f"wrk to {url} printed no rate:\n{out}")


def warm():
    apply_function("warm", "minReplicas: 1, maxReplicas: 1")
    deadline = time.time() + 90
    pod_ip = ""
    while time.time() < deadline and not pod_ip:
        pod_ip = k("get", "pods", "-n", NS, "-l", "siesta.dev/function=warm", "-o",
                   "jsonpath={.items[?(@.status.containerStatuses[0].ready==true)].status.podIP}",
                   check=False).split(" ")[0]
        time.sleep(0.3)
    if not pod_ip:
        sys.exit("the warm Function's pod never turned Ready")
    host = f"warm.{NS}.siesta.local"
    via = {"clusterip": (f"http://{ADDR}/", host), "podip": (f"http://{pod_ip}:8080/", None)}
    for name, (url, h) in via.items():
        curl_times(url, h, 5)  # connections, caches and the pool warmed up
    for name, (url, h) in via.items():
        t = curl_times(url, h)
        print(f"realwarm via={name} n={len(t)} median_ms={statistics.median(t):.3f} "
              f"min_ms={min(t):.3f} max_ms={max(t):.3f}", flush=True)
    for conns in (1, 16):
        for name, (url, h) in via.items():
            print(f"realtput via={name} c={conns} rps={wrk(url, h, conns):.0f}", flush=True)


if __name__ == "__main__":
    cold_runs()
    warm()
