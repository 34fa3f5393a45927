#!/usr/bin/env bash
# `make real-up`: a real node beside a local control plane, the way a user's
# cluster runs Siesta: kubelet 1.20.2 + containerd + runc, a CNI bridge,
# kube-proxy (iptables) and kube-scheduler. Idempotent: when it is up it
# only prints the kubeconfig. `make real-down` undoes all of it.
#
# Everything pods can reach stays on this machine (see REAL-NODE.md):
#  - one bridge of its own ($BRIDGE, $BRIDGE_IP/24), no masquerade;
#  - two mangle FORWARD rules drop anything between the bridge and any other
#    interface, set before ip_forward is turned on;
#  - the Service range is routed onto the bridge, so a ClusterIP kube-proxy
#    has not programmed yet cannot follow the default route away;
#  - containerd, kubelet and kube-proxy get a dead loopback proxy, and every
#    registry name a hosts.toml pointing at it: no pull leaves the machine.
# Host state it changes is saved first (hack/node/lib.sh lists it).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }
# The images `make images` built (and the sandbox image), imported into the
# node's containerd, plus the names users' manifests give them: the chart's
# default image (its appVersion) and the examples' tag. Run on every `up`,
# so a rebuilt image reaches a node that is already up.
import_images() {
  nlog "importing images into containerd (k8s.io namespace)"
  local tar app_version
  for tar in "$SIESTA_CACHE/node/pause.tar" "$SIESTA_CACHE"/images/*.tar; do
    [[ -f "$tar" ]] || continue
    ctr_ images import "$tar" >/dev/null
  done
  app_version=$(awk -F'"' '/^appVersion:/ {print $2}' "$SIESTA_ROOT/charts/siesta/Chart.yaml")
  local have
  have=$(ctr_ images ls -q)
  if grep -qx "siesta.dev/siesta:$IMAGE_TAG" <<<"$have"; then
    ctr_ images tag --force "siesta.dev/siesta:$IMAGE_TAG" "ghcr.io/siesta-dev/siesta:$app_version" >/dev/null
  fi
  if grep -qx "siesta.dev/examples/hello:$IMAGE_TAG" <<<"$have"; then
    ctr_ images tag --force "siesta.dev/examples/hello:$IMAGE_TAG" "siesta.dev/examples/hello:$app_version" >/dev/null
  fi
  ctr_ images ls -q | grep -v '^sha256:' | sed 's/^/[node]   /' >&2
}

if pid_alive "$STATE_DIR/kube-apiserver.pid" && pid_alive "$NODE_DIR/kubelet.pid" \
  && pid_alive "$NODE_DIR/containerd.pid" && pid_alive "$NODE_DIR/kube-proxy.pid"; then
  nlog "already up"
  import_images
  echo "export KUBECONFIG=$KUBECONFIG_PATH"
  exit 0
fi

bash "$SIESTA_ROOT/hack/node/install.sh"
# A half-started node from an earlier run is taken down (and the host
# restored) before starting anew.
bash "$SIESTA_ROOT/hack/node/down.sh" >/dev/null 2>&1 || true
started=$SECONDS
# A failed start leaves nothing behind: the host is restored at once.
on_exit() {
  local rc=$?
  if ((rc != 0)); then
    nlog "start failed (exit $rc); restoring the host"
    bash "$SIESTA_ROOT/hack/node/down.sh" >&2 || true
  fi
}
trap on_exit EXIT

# --- save host state (once; down.sh restores it) -------------------------
save_host_state() {
  mkdir -p "$SAVED_DIR"
  local s
  for s in "${SAVED_SYSCTLS[@]}"; do
    printf '%s=%s\n' "$s" "$(sysctl -n "$s")"
  done >"$SAVED_DIR/sysctls"
  for s in "${HARDCODED_PATHS[@]}"; do [[ -e "$s" ]] && echo "$s"; done >"$SAVED_DIR/paths" || true
  while read -r root; do
    for s in "${CGROUP_NAMES[@]}"; do [[ -d "$root/$s" ]] && echo "$root/$s"; done
  done < <(cgroup_roots) >"$SAVED_DIR/cgroups" || true
  as_root iptables-save >"$SAVED_DIR/iptables" 2>/dev/null || true
  as_root ip6tables-save >"$SAVED_DIR/ip6tables" 2>/dev/null || true
  as_root nft list tables 2>/dev/null | awk '{print $2, $3}' >"$SAVED_DIR/nft-tables" || true
  touch "$SAVED_DIR/complete"
}
mkdir -p "$NODE_DIR"/{logs,cni/net.d,cni/ipam,certs.d,kubelet}
save_host_state
mkdir -p "$RUN_DIR"

# --- control plane (its own, advertising the bridge address) ---------------
# The node lifecycle controller is on here (the process node has no use for
# it): it lifts the not-ready taint a kubelet registers with.
SIESTA_KCM_CONTROLLERS='*,-nodeipam,-cloud-node-lifecycle,-route,-service' \
  SIESTA_ADVERTISE_ADDRESS="$BRIDGE_IP" \
  SIESTA_APISERVER_SANS="IP:$BRIDGE_IP,IP:$KUBERNETES_SERVICE_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
  bash "$SIESTA_ROOT/hack/cluster/up.sh" >/dev/null
export KUBECONFIG="$KUBECONFIG_PATH"

# --- network: bridge, guards, route, forwarding --------------------------
nlog "bridge $BRIDGE $BRIDGE_IP/24, forwarding guards, route $SERVICE_CIDR"
as_root ip link add "$BRIDGE" type bridge
as_root ip addr add "$BRIDGE_IP/24" dev "$BRIDGE"
as_root ip link set "$BRIDGE" up
GUARD_COMMENT="siesta-node-$PORT_BASE guard"
as_root iptables -t mangle -I FORWARD 1 -i "$BRIDGE" ! -o "$BRIDGE" -m comment --comment "$GUARD_COMMENT" -j DROP
as_root iptables -t mangle -I FORWARD 1 ! -i "$BRIDGE" -o "$BRIDGE" -m comment --comment "$GUARD_COMMENT" -j DROP
as_root ip route add "$SERVICE_CIDR" dev "$BRIDGE"
# Only now, behind the guards: pods reach ClusterIPs of other pods.
as_root sysctl -qw net.ipv4.ip_forward=1

cat >"$NODE_DIR/cni/net.d/10-siesta.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "siesta",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$BRIDGE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
JSON
# Pods resolve nothing: there is no cluster DNS, and no lookup may leave.
printf 'nameserver 127.0.0.1\n' >"$NODE_DIR/resolv.conf"

# --- containerd ------------------------------------------------------------
for r in "${REGISTRIES[@]}"; do
  mkdir -p "$NODE_DIR/certs.d/$r"
  cat >"$NODE_DIR/certs.d/$r/hosts.toml" <<TOML
server = "$DEAD_PROXY"
[host."$DEAD_PROXY"]
  capabilities = ["pull", "resolve"]
TOML
done
cat >"$NODE_DIR/containerd.toml" <<TOML
version = 2
root = "$NODE_DIR/containerd/root"
state = "$RUN_DIR/containerd-state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_DIR/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # This VM lacks CAP_SYS_RESOURCE: a negative oom_score_adj is refused and
  # every sandbox would fail ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$NODE_DIR/certs.d"
TOML

# start NAME CMD...: in its own session, with the dead proxy, log and pid in the state dir.
nstart() {
  local name=$1; shift
  HTTP_PROXY=$DEAD_PROXY HTTPS_PROXY=$DEAD_PROXY http_proxy=$DEAD_PROXY https_proxy=$DEAD_PROXY \
    NO_PROXY="127.0.0.1,localhost,$BRIDGE_IP,$POD_CIDR,$SERVICE_CIDR" no_proxy="127.0.0.1,localhost,$BRIDGE_IP,$POD_CIDR,$SERVICE_CIDR" \
    AWS_EC2_METADATA_DISABLED=true setsid "$@" >"$NODE_DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$NODE_DIR/$name.pid"
}
nwait() { # nwait WHAT SECONDS CMD...
  local what=$1 limit=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)) || ! pid_alive "$NODE_DIR/$what.pid"; then
      tail -30 "$NODE_DIR/logs/$what.log" >&2 || true
      ndie "$what not ready after ${limit}s (log: $NODE_DIR/logs/$what.log)"
    fi
    sleep 0.3
  done
}
nstart containerd containerd --config "$NODE_DIR/containerd.toml"
nwait containerd 30 ctr --address "$CONTAINERD_SOCK" version

import_images

# The apiserver stays on loopback; pods reach it at the address it
# advertises (the `kubernetes` Service's endpoint) through this relay.
nstart apiserver-relay socat "TCP-LISTEN:$APISERVER_PORT,bind=$BRIDGE_IP,fork,reuseaddr" "TCP:127.0.0.1:$APISERVER_PORT"

# --- kube-scheduler, kubelet, kube-proxy -----------------------------------
nstart kube-scheduler "$K8S_BIN/kube-scheduler" --kubeconfig "$KUBECONFIG_PATH" \
  --leader-elect=false --port 0 --secure-port "$SCHEDULER_PORT" --bind-address 127.0.0.1 --v 1

cat >"$NODE_DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $BRIDGE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
cgroupDriver: cgroupfs
failSwapOn: false
resolvConf: $NODE_DIR/resolv.conf
clusterDomain: cluster.local
# The apiserver is the only client of this port, on this machine.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
# Images here cannot be pulled again: never collect them, never evict for disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
serializeImagePulls: false
YAML
nstart kubelet "$K8S_BIN/kubelet" --config "$NODE_DIR/kubelet.yaml" \
  --kubeconfig "$KUBECONFIG_PATH" --hostname-override "$NODE_NAME" --node-ip "$BRIDGE_IP" \
  --container-runtime remote --container-runtime-endpoint "unix://$CONTAINERD_SOCK" \
  --root-dir "$NODE_DIR/kubelet" --cert-dir "$NODE_DIR/kubelet/pki" \
  --pod-infra-container-image "$PAUSE_IMAGE" --v 1

nstart kube-proxy "$K8S_BIN/kube-proxy" --kubeconfig "$KUBECONFIG_PATH" \
  --hostname-override "$NODE_NAME" --cluster-cidr "$POD_CIDR" --proxy-mode iptables \
  --metrics-bind-address "127.0.0.1:$KUBE_PROXY_METRICS_PORT" \
  --healthz-bind-address "127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT" \
  --conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 --v 1

node_ready() {
  [[ "$("$TOOLS_BIN/kubectl" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}
nwait kubelet 90 node_ready
# kube-proxy has programmed the Services once the apiserver's ClusterIP works.
services_programmed() { as_root iptables -t nat -S KUBE-SERVICES 2>/dev/null | grep -q "$KUBERNETES_SERVICE_IP/32"; }
nwait kube-proxy 60 services_programmed
nlog "real node $NODE_NAME Ready in $((SECONDS - started)) s (node IP $BRIDGE_IP, pods $POD_CIDR, services $SERVICE_CIDR)"
echo "export KUBECONFIG=$KUBECONFIG_PATH"
