#!/usr/bin/env bash
# Starts a real control plane on 127.0.0.1: etcd, kube-apiserver and
# kube-controller-manager 1.20.2, with RBAC and service-account tokens.
# Idempotent: when it is already up, it only prints where the kubeconfig is.
# Everything lives under $STATE_DIR: certs, data, logs and pid files.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if pid_alive "$STATE_DIR/etcd.pid" && pid_alive "$STATE_DIR/kube-apiserver.pid" \
  && pid_alive "$STATE_DIR/kube-controller-manager.pid"; then
  log "already up"
  echo "export KUBECONFIG=$KUBECONFIG_PATH"
  exit 0
fi

"$SIESTA_ROOT/hack/cluster/install.sh"
# A half-started cluster from an earlier run is stopped before starting anew.
"$SIESTA_ROOT/hack/cluster/down.sh" >/dev/null 2>&1 || true

mkdir -p "$STATE_DIR"/{pki,etcd,logs}
PKI="$STATE_DIR/pki"

make_pki() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=siesta-local-ca" \
    -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$PKI/apiserver.key" -out "$PKI/apiserver.csr" 2>/dev/null
  # A real node's pods reach the apiserver through the `kubernetes` Service
  # and the bridge address it advertises (hack/node/up.sh adds those SANs).
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost%s\n' "${SIESTA_APISERVER_SANS:+,$SIESTA_APISERVER_SANS}" >"$PKI/san.ext"
  openssl x509 -req -in "$PKI/apiserver.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 3650 -extfile "$PKI/san.ext" -out "$PKI/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  ADMIN_TOKEN=$(openssl rand -hex 24)
  printf '%s,admin,admin,"system:masters"\n' "$ADMIN_TOKEN" >"$PKI/tokens.csv"
  chmod 600 "$PKI"/*.key "$PKI/tokens.csv"
}

# start NAME CMD...: runs CMD in its own session, logs to logs/NAME.log, pid to NAME.pid.
start() {
  local name=$1; shift
  setsid "$@" >"$STATE_DIR/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$STATE_DIR/$name.pid"
}

# wait_for WHAT SECONDS CMD...: polls CMD until it succeeds.
wait_for() {
  local what=$1 limit=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { tail -30 "$STATE_DIR/logs/$what.log" >&2 || true; die "$what not ready after ${limit}s (log: $STATE_DIR/logs/$what.log)"; }
    sleep 0.5
  done
}

make_pki
ADMIN_TOKEN=$(cut -d, -f1 "$PKI/tokens.csv")
started=$SECONDS

start etcd etcd --name siesta --data-dir "$STATE_DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "siesta=http://127.0.0.1:$ETCD_PEER_PORT" \
  --listen-metrics-urls "" --log-level warn
wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_CLIENT_PORT/health"

start kube-apiserver "$K8S_BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --secure-port "$APISERVER_PORT" --bind-address 127.0.0.1 --advertise-address "${SIESTA_ADVERTISE_ADDRESS:-127.0.0.1}" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" --token-auth-file "$PKI/tokens.csv" \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-account-issuer "https://kubernetes.default.svc" \
  --authorization-mode RBAC --service-cluster-ip-range 10.96.0.0/16 \
  --kubelet-preferred-address-types InternalIP \
  --insecure-port 0 --profiling=false --v 1
wait_for kube-apiserver 90 curl -sf --cacert "$PKI/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" \
  "https://127.0.0.1:$APISERVER_PORT/readyz"

cat >"$KUBECONFIG_PATH" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: siesta-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: admin
  user:
    token: $ADMIN_TOKEN
contexts:
- name: siesta-local
  context: {cluster: siesta-local, user: admin}
current-context: siesta-local
KCFG
chmod 600 "$KUBECONFIG_PATH"

# SIESTA_KCM_ARGS: more flags, e.g. "--kube-api-qps=200 --kube-api-burst=400"
# (each of its controllers is limited to 20 requests/s by default; at
# thousands of Deployments that is the Deployment controller's pace).
start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
  --kubeconfig "$KUBECONFIG_PATH" \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --controllers "${SIESTA_KCM_CONTROLLERS:-*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-route,-service}" \
  --leader-elect=false --use-service-account-credentials=false \
  --port 0 --secure-port "$KCM_PORT" --bind-address 127.0.0.1 --v 1 ${SIESTA_KCM_ARGS:-}
# Service-account tokens are the last thing the controller manager sets up for
# a namespace: when default/default has its token Secret, the cluster is usable.
export KUBECONFIG="$KUBECONFIG_PATH"
wait_for kube-controller-manager 60 bash -c \
  "'$TOOLS_BIN/kubectl' get secrets -n default -o name 2>/dev/null | grep -q default-token"

log "control plane up in $((SECONDS - started)) s (apiserver https://127.0.0.1:$APISERVER_PORT)"
echo "export KUBECONFIG=$KUBECONFIG_PATH"
