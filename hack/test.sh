#!/usr/bin/env bash
# `make test`: style gates, then every test, cluster tests included, against
# the local control plane and node agent; then the real-node tier (the
# image built from the Dockerfile, under the chart, on kubelet + containerd). Installs and starts what it needs;
# stops only what it started (a cluster you had up stays up).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source hack/cluster/lib.sh

step() { printf '\n==> [%ss] %s\n' "$SECONDS" "$*"; }

step "static gates (make lint: fmt, clippy, doc, deny, machete)"
bash hack/lint.sh

started_cluster=0
if ! pid_alive "$STATE_DIR/kube-apiserver.pid"; then
  started_cluster=1
fi
cleanup() {
  local rc=$?
  if [[ $rc != 0 && -f "$STATE_DIR/logs/devnode.log" ]]; then
    step "tests failed: the node agent's last warnings and errors"
    # Images the tests name on purpose without a mapping are expected noise.
    grep -E 'WARN|ERROR' "$STATE_DIR/logs/devnode.log" | grep -v ErrImagePull | tail -n 40 || true
  fi
  if [[ $started_cluster == 1 && "${SIESTA_KEEP_CLUSTER:-0}" != 1 ]]; then
    step "stopping the local cluster this run started"
    bash hack/cluster/down.sh || true
  fi
}
trap cleanup EXIT

step "local control plane (installs and builds on first use; cached in $SIESTA_CACHE)"
bash hack/cluster/up.sh >/dev/null
bash hack/cluster/node-up.sh
export KUBECONFIG="$KUBECONFIG_PATH"
export PATH="$TOOLS_BIN:$PATH"

step "cargo test (unit, loopback and cluster tests)"
# Cluster tests are #[ignore]d so a bare `cargo test` works without a
# cluster; here they run too.
# Soak tests (`soak_*`: long, or disruptive to the cluster) run only under
# `make soak`, which gives them a cluster of their own.
# The real-node tests (`real_node_*`) run below, against their own cluster.
cargo test --workspace --no-fail-fast -- --include-ignored --skip soak_ --skip real_node_

step "real-node tier: the image under the chart on kubelet + containerd"
bash hack/node/test.sh
