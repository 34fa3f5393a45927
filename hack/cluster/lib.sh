# Shared settings for the local control plane scripts. Sourced, not run.
# Everything listens on 127.0.0.1; ports can be moved with SIESTA_PORT_BASE.
set -euo pipefail

SIESTA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
K8S_VERSION="1.20.2"
SIESTA_CACHE="${SIESTA_CACHE:-$HOME/.cache/siesta}"
K8S_BIN="$SIESTA_CACHE/k8s-$K8S_VERSION/bin"
TOOLS_BIN="$SIESTA_CACHE/tools/bin"
STATE_DIR="${SIESTA_STATE_DIR:-$SIESTA_ROOT/.cluster}"
KUBECONFIG_PATH="$STATE_DIR/kubeconfig"

PORT_BASE="${SIESTA_PORT_BASE:-26000}"
ETCD_CLIENT_PORT=$((PORT_BASE + 79))
ETCD_PEER_PORT=$((PORT_BASE + 80))
APISERVER_PORT=$((PORT_BASE + 443))
KCM_PORT=$((PORT_BASE + 257))
PROMETHEUS_PORT=$((PORT_BASE + 90))

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

# pid_alive FILE: true when FILE names a running process.
pid_alive() {
  [[ -f "$1" ]] || return 1
  local pid state
  pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null || return 1
  # A killed process nobody reaped yet is a zombie: not alive.
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z)
  [[ "$state" != Z ]]
}
