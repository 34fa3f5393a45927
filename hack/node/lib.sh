# Settings of the real-node cluster (kubelet + containerd + runc + CNI bridge
# + kube-proxy + kube-scheduler next to the local control plane). Sourced,
# not run. It is a cluster of its own beside the process node's: its own
# state dir, ports and kubeconfig, so both tiers can be up at once.
#
# Host-wide state it changes is listed once, here, so that up.sh saves it
# and down.sh restores it from the same list.
NODE_DIR="${SIESTA_REAL_STATE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.cluster-real}"
# The control plane's scripts (hack/cluster) run with their state one level
# down: their down.sh removes its whole state dir, and the node's saved host
# state must outlive that.
export SIESTA_STATE_DIR="$NODE_DIR/control-plane"
export SIESTA_PORT_BASE="${SIESTA_REAL_PORT_BASE:-29000}"
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"

NODE_NAME=siesta-node
BRIDGE="${SIESTA_BRIDGE:-siesta0}"
BRIDGE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SERVICE_IP=10.96.0.1
# A port nothing listens on: every proxy setting and registry mirror points
# here, so an image pull or any other outbound call fails at once, locally.
DEAD_PROXY=http://127.0.0.1:9
PAUSE_IMAGE=siesta.local/pause:3.2
# Tag of the images `make images` builds (never `latest`: that means a pull).
IMAGE_TAG="${SIESTA_IMAGE_TAG:-dev}"
# Registries the images here could name; each gets a hosts.toml that sends
# containerd to the dead proxy instead of the network.
REGISTRIES=(siesta.dev siesta.local docker.io registry-1.docker.io registry.k8s.io k8s.gcr.io gcr.io ghcr.io quay.io)

# Unix sockets must stay under 108 bytes, so they live in /run, keyed by the
# port base (two real-node clusters never share one).
RUN_DIR="/run/siesta-node-$PORT_BASE"
CONTAINERD_SOCK="$RUN_DIR/containerd.sock"
# Host state is saved here before the first start and restored from it.
SAVED_DIR="$NODE_DIR/host-saved"

# sysctls that kubelet (overcommit, panic), kube-proxy (route_localnet) and
# forwarding change.
SAVED_SYSCTLS=(net.ipv4.ip_forward net.ipv4.conf.all.route_localnet vm.overcommit_memory
  kernel.panic kernel.panic_on_oops)
# Paths kubelet 1.20, containerd and the CNI plugins use whatever flags say;
# down.sh removes each one that did not exist before up.sh.
HARDCODED_PATHS=(/var/log/pods /var/log/containers /var/lib/cni /var/lib/kubelet
  /run/containerd /run/runc /run/netns /opt/cni /etc/cni)
# Cgroups the kubelet and containerd create under every hierarchy.
CGROUP_NAMES=(kubepods k8s.io)

# Ports fixed per host by the kubelet and kube-proxy.
KUBELET_PORT=10250
KUBELET_HEALTHZ_PORT=10248
KUBE_PROXY_METRICS_PORT=10249
KUBE_PROXY_HEALTHZ_PORT=10256
SCHEDULER_PORT=$((PORT_BASE + 259))

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
nlog() { printf '[node] %s\n' "$*" >&2; }
ndie() { printf '[node] error: %s\n' "$*" >&2; exit 1; }

# cgroup hierarchies mounted on this host (v1 controllers and the unified one).
cgroup_roots() {
  awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts | sort -u
}
