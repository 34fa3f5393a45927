#!/usr/bin/env python3
"""Creates N Functions f0..f{N-1} at once: POSTs to the apiserver from
CONCURRENCY threads, with the credentials of the current kubeconfig
context (as `kubectl config view --raw` shows them). `kubectl create -f`
of a multi-document file sends one POST at a time; this is the "all at
once" a burst of users, a GitOps sync or a migration makes.

usage: scale_create.py KUBECTL NAMESPACE N CONCURRENCY
prints: create n=.. ok=.. failed=.. secs=.. per_s=..
"""
import base64
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import http.client
import urllib.parse

kubectl, ns, n, conc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


def view(path):
    return subprocess.run([kubectl, "config", "view", "--raw", "--minify", "-o", "jsonpath=" + path],
                          check=True, capture_output=True, text=True).stdout.strip()


server = view("{.clusters[0].cluster.server}")
token = view("{.users[0].user.token}")
ctx = ssl.create_default_context()
ca_file, ca_data = view("{.clusters[0].cluster.certificate-authority}"), view(
    "{.clusters[0].cluster.certificate-authority-data}")
if ca_data:
    with tempfile.NamedTemporaryFile("wb", delete=False, suffix=".crt") as f:
        f.write(base64.b64decode(ca_data))
    ca_file = f.name
ctx.load_verify_locations(cafile=ca_file)
if not token:
    cert, key = view("{.users[0].user.client-certificate}"), view("{.users[0].user.client-key}")
    if not cert:
        sys.exit("scale_create.py: the kubeconfig has neither a token nor a client certificate file")
    ctx.load_cert_chain(cert, key)
url = f"{server}/apis/siesta.dev/v1alpha1/namespaces/{ns}/functions"
headers = {"Content-Type": "application/json"}
if token:
    headers["Authorization"] = "Bearer " + token

ok = failed = 0
lock = threading.Lock()
next_i = 0


def worker():
    """One kept-alive connection per thread."""
    global ok, failed, next_i
    u = urllib.parse.urlsplit(url)
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
                    conn = http.client.HTTPSConnection(u.hostname, u.port or 443, context=ctx, timeout=60)
                conn.request("POST", u.path, body=body, headers=headers)
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
if ca_data:
    os.unlink(ca_file)
