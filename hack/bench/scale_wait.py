#!/usr/bin/env python3
"""Waits, from one watch per kind on the apiserver (not from polling lists,
which at 10,000 objects would load the apiserver more than what is
measured; and not from `kubectl get --watch`, which printed a few hundred
objects a second here), until N Functions are Ready at their first
generation, N Deployments and N ReplicaSets exist, and the Deployment
controller has observed all N Deployments (written their
status.observedGeneration: the last of the controller manager's work);
prints the seconds from START to each.

usage: scale_wait.py KUBECTL NAMESPACE N START_EPOCH TIMEOUT_S
prints: ready_s=.. deployments_s=.. replicasets_s=.. observed_s=.. ready=.. deployments=.. replicasets=.. observed=..
"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scale_kube import Apiserver  # noqa: E402

kubectl, ns, n, start, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
api = Apiserver(kubectl)


def ready(obj):
    s = obj.get("status") or {}
    return s.get("observedGeneration") == 1 and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in s.get("conditions") or [])


def observed(obj):
    meta, s = obj.get("metadata") or {}, obj.get("status") or {}
    return (s.get("observedGeneration") or 0) >= (meta.get("generation") or 1)


def follow(path, counts, out):
    """Watches `path` (again when the watch ends: the apiserver closes them
    now and then) and records when N objects first pass `counts` (a test of
    one object, or None: every object counts). The count is kept per event,
    not recounted: recounting all objects on every event took a whole core
    at 10,000 (hundreds of millions of tests), on the machine it measures."""
    passing = set()
    while time.time() < start + timeout:
        conn = api.connect(timeout=max(1.0, start + timeout - time.time()))
        try:
            conn.request("GET", f"{path}?watch=1&allowWatchBookmarks=false", headers=api.headers)
            r = conn.getresponse()
            while True:
                line = r.readline()
                if not line:
                    break
                ev = json.loads(line)
                obj = ev.get("object") or {}
                name = (obj.get("metadata") or {}).get("name")
                if not name:
                    continue
                if ev.get("type") != "DELETED" and (counts is None or counts(obj)):
                    passing.add(name)
                else:
                    passing.discard(name)
                out["count"] = len(passing)
                if out["count"] >= n:
                    out["at"] = time.time() - start
                    return
        except (OSError, ValueError):
            pass
        finally:
            conn.close()
        out["restarts"] = out.get("restarts", 0) + 1
        time.sleep(0.5)


jobs = {
    "ready": (f"/apis/siesta.dev/v1alpha1/namespaces/{ns}/functions", ready),
    "deployments": (f"/apis/apps/v1/namespaces/{ns}/deployments", None),
    "replicasets": (f"/apis/apps/v1/namespaces/{ns}/replicasets", None),
    "observed": (f"/apis/apps/v1/namespaces/{ns}/deployments", observed),
}
results = {k: {"count": 0} for k in jobs}
threads = [threading.Thread(target=follow, args=(*jobs[k], results[k]), daemon=True) for k in jobs]
for t in threads:
    t.start()
for t in threads:
    t.join(max(0.0, start + timeout - time.time()))


def fmt(k):
    at = results[k].get("at")
    return f"{at:.1f}" if at is not None else "na"


print(" ".join([f"{k}_s={fmt(k)}" for k in jobs] + [f"{k}={results[k]['count']}" for k in jobs]))
