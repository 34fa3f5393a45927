#!/usr/bin/env bash
# The real-node tier of `make test` (also `make test-real`): builds the images
# from the Dockerfiles (make images), brings up the real node, runs the
# chart e2e against it (tests/e2e/tests/real_node.rs), takes the node down,
# and fails if the host is not exactly as it was before (hoststate.sh).
# A node that was already up is used and left up (then the host check is
# skipped: there is no "before" to compare with).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SIESTA_ROOT"
step() { printf '\n==> [%ss] %s\n' "$SECONDS" "$*"; }

step "images from the Dockerfiles (make images)"
bash hack/images/build.sh

started_node=0
before=""
if ! pid_alive "$NODE_DIR/kubelet.pid"; then
  started_node=1
  # The images build's verify containers can leave a containerd shim
  # exiting for a moment after their dockerd stopped; with no node up, a
  # shim that goes within 10 s is theirs, not the host's (seen once, under
  # load: the shim was in "before" and gone after the node's teardown).
  for ((i = 0; i < 100; i++)); do
    pgrep -f '^[^ ]*containerd-shim' >/dev/null || break
    sleep 0.1
  done
  before=$(mktemp)
  bash hack/node/hoststate.sh >"$before"
fi
finish() {
  local rc=$?
  if [[ $started_node == 1 ]]; then
    if [[ $rc != 0 ]]; then
      step "real-node tier failed: the kubelet's and containerd's last errors"
      grep -hE '^E[0-9]{4}|level=error' "$NODE_DIR"/logs/{kubelet,containerd}.log 2>/dev/null | tail -n 30 || true
    fi
    step "taking the real node down"
    bash hack/node/down.sh || rc=1
    step "the host is as it was before (hack/node/hoststate.sh)"
    if ! diff -u "$before" <(bash hack/node/hoststate.sh); then
      echo "real-node teardown left host state behind (diff above)" >&2
      rc=1
    else
      echo "no difference"
    fi
    rm -f "$before"
  fi
  exit $rc
}
trap finish EXIT

step "real node (kubelet + containerd + kube-proxy + kube-scheduler)"
bash hack/node/up.sh >/dev/null
export KUBECONFIG="$KUBECONFIG_PATH" PATH="$TOOLS_BIN:$PATH"

step "chart e2e on the real node"
# kubectl finds the `kubectl siesta` plugin on PATH; the e2e runs it against
# the real apiserver proxies and kubelet.
cargo build -q -p siesta --bin kubectl-siesta
export PATH="${CARGO_TARGET_DIR:-$SIESTA_ROOT/target}/debug:$PATH"
cargo test -q -p siesta-e2e --test real_node -- --include-ignored --nocapture
