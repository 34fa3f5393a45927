#!/usr/bin/env python3
"""Waits, from one watch each (not from polling lists, which at 10,000
objects would load the apiserver more than what is measured), until N
Functions are Ready at their first generation and N Deployments and
ReplicaSets exist; prints the seconds from START to each.

usage: scale_wait.py KUBECTL NAMESPACE N START_EPOCH TIMEOUT_S
prints: ready_s=.. deployments_s=.. replicasets_s=.. ready=.. deployments=.. replicasets=..
"""
import subprocess
import sys
import threading
import time

kubectl, ns, n, start, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])

READY = (
    '{.metadata.name} {.status.observedGeneration} '
    '{.status.conditions[?(@.type=="Ready")].status}{"\\n"}'
)


def follow(kind, template, done_when, out):
    """Runs `kubectl get KIND --watch` and records when `done_when(seen)` first holds."""
    p = subprocess.Popen(
        [kubectl, "get", kind, "-n", ns, "--watch", "-o", "jsonpath=" + template],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out["proc"] = p
    seen = {}
    for line in p.stdout:
        parts = line.split()
        if not parts:
            continue
        seen[parts[0]] = parts[1:]
        count = done_when(seen)
        out["count"] = count
        if count >= n:
            out["at"] = time.time() - start
            break
    p.terminate()


def ready_count(seen):
    return sum(1 for v in seen.values() if v[:2] == ["1", "True"])


def exists_count(seen):
    return len(seen)


jobs = {
    "ready": ("functions.siesta.dev", READY, ready_count),
    "deployments": ("deployments", '{.metadata.name}{"\\n"}', exists_count),
    "replicasets": ("replicasets", '{.metadata.name}{"\\n"}', exists_count),
}
results = {k: {"count": 0} for k in jobs}
threads = [threading.Thread(target=follow, args=(*jobs[k], results[k]), daemon=True) for k in jobs]
for t in threads:
    t.start()
deadline = time.time() + timeout
for t in threads:
    t.join(max(0.0, deadline - time.time()))
for r in results.values():
    p = r.get("proc")
    if p and p.poll() is None:
        p.terminate()


def fmt(k):
    at = results[k].get("at")
    return f"{at:.1f}" if at is not None else "na"


print(" ".join([f"{k}_s={fmt(k)}" for k in jobs] + [f"{k}={results[k]['count']}" for k in jobs]))
