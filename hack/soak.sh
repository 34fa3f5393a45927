#!/usr/bin/env bash
# `make soak`: the long and disruptive reliability tests (many scale cycles
# under load; the apiserver killed for 30 s), on a second local cluster of
# their own so nothing else is disturbed: state in .cluster-soak, ports from
# 27000, pod addresses 127.11.x.y. Stops that cluster when done.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export SIESTA_STATE_DIR="$ROOT/.cluster-soak" SIESTA_PORT_BASE=27000 SIESTA_POD_IP_OCTET=11
source hack/cluster/lib.sh
trap 'bash hack/cluster/down.sh || true' EXIT
bash hack/cluster/up.sh >/dev/null
bash hack/cluster/node-up.sh
export KUBECONFIG="$KUBECONFIG_PATH" PATH="$TOOLS_BIN:$PATH"
export SIESTA_OUTAGE_STATE_DIR="$STATE_DIR"
cargo test -p siesta-reliability --no-fail-fast -- --ignored soak_ --test-threads 1 --nocapture 2>&1 \
  | tee "$ROOT/.cluster-soak.log" | grep -E '^(RELIABILITY|test |test result)|panicked'
