#!/usr/bin/env python3
"""Creates N Functions f0..f{N-1} at once: POSTs to the apiserver from
CONCURRENCY threads, each on one kept-alive connection, with the
credentials of the current kubeconfig context (`scale_kube.py`). `kubectl create -f`
of a multi-document file sends one POST at a time; this is the "all at
once" a burst of users, a GitOps sync or a migration makes.

usage: scale_create.py KUBECTL NAMESPACE N CONCURRENCY
prints: create n=.. ok=.. failed=.. secs=.. per_s=..
"""
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scale_kube import Apiserver  # noqa: E402

kubectl, ns, n, conc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
api = Apiserver(kubectl)
path = f"/apis/siesta.dev/v1alpha1/namespaces/{ns}/functions"
headers = api.headers

ok = failed = 0
lock = threading.Lock()
next_i = 0


def worker():
    """One kept-alive connection per thread."""
    global ok, failed, next_i
    conn = None
    while True:
        with lock:
            i = next_i
            next_i += 1
        if i >= n:
            break
        body = json.dumps({"apiVersion": "siesta.dev/v1alpha1", "kind": "Function",
                           "metadata": {"name": f"f{i}"},
                           "spec": {"image": "example.com/hello:1.0"}})
        good = False
        for _ in range(5):  # a 429 or a reset under load: try again
            try:
                if conn is None:
                    conn = api.connect()
                conn.request("POST", path, body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                # 409: already there (a retry of a create that went through).
                good = r.status in (201, 409)
                if good:
                    break
                time.sleep(0.5)
            except (OSError, http.client.HTTPException):
                conn = None
                time.sleep(0.5)
        with lock:
            if good:
                ok += 1
            else:
                failed += 1
    if conn is not None:
        conn.close()


start = time.time()
threads = [threading.Thread(target=worker) for _ in range(conc)]
for t in threads:
    t.start()
for t in threads:
    t.join()
secs = time.time() - start
print(f"create n={n} ok={ok} failed={failed} secs={secs:.1f} per_s={n / secs:.0f}")
