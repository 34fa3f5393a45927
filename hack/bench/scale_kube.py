"""The apiserver of the current kubeconfig context, for the scale bench's
helpers: where it is and how to authenticate (as `kubectl config view
--raw` shows it), without a Kubernetes client library."""
import base64
import http.client
import ssl
import subprocess
import sys
import tempfile
import urllib.parse


def _view(kubectl, path):
    return subprocess.run([kubectl, "config", "view", "--raw", "--minify", "-o", "jsonpath=" + path],
                          check=True, capture_output=True, text=True).stdout.strip()


class Apiserver:
    def __init__(self, kubectl):
        server = _view(kubectl, "{.clusters[0].cluster.server}")
        token = _view(kubectl, "{.users[0].user.token}")
        self.ctx = ssl.create_default_context()
        ca_file = _view(kubectl, "{.clusters[0].cluster.certificate-authority}")
        ca_data = _view(kubectl, "{.clusters[0].cluster.certificate-authority-data}")
        if ca_data:
            with tempfile.NamedTemporaryFile("wb", delete=False, suffix=".crt") as f:
                f.write(base64.b64decode(ca_data))
            ca_file = f.name
        self.ctx.load_verify_locations(cafile=ca_file)
        if not token:
            cert = _view(kubectl, "{.users[0].user.client-certificate}")
            key = _view(kubectl, "{.users[0].user.client-key}")
            if not cert:
                sys.exit("the kubeconfig has neither a token nor a client certificate file")
            self.ctx.load_cert_chain(cert, key)
        u = urllib.parse.urlsplit(server)
        self.host, self.port = u.hostname, u.port or 443
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = "Bearer " + token

    def connect(self, timeout=60):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
