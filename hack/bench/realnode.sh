#!/usr/bin/env bash
# The real-node part of `make bench` (BENCH_REAL=0 skips it): the images from
# the Dockerfiles under the chart's defaults on kubelet + containerd; cold
# starts phase by phase, and warm latency and throughput through the
# activator's ClusterIP against straight to the pod IP. Prints result lines
# (realcold, realwarm, realtput) for report.py on stdout.
#   realnode.sh RUNS
# Brings the real node up if it is not, and then takes it down again.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../node/lib.sh"
cd "$SIESTA_ROOT"
RUNS="${1:-5}"
NS=bench-real

command -v wrk >/dev/null || as_root apt-get install -y -qq wrk >/dev/null
bash hack/images/build.sh >&2
started=0
pid_alive "$NODE_DIR/kubelet.pid" || started=1
finish() {
  helm uninstall siesta -n siesta-system --wait >/dev/null 2>&1 || true
  kubectl delete ns "$NS" --wait=false >/dev/null 2>&1 || true
  [[ $started == 1 ]] && bash hack/node/down.sh >&2
  return 0
}
trap finish EXIT
bash hack/node/up.sh >/dev/null
export KUBECONFIG="$KUBECONFIG_PATH" PATH="$TOOLS_BIN:$PATH"

# The chart's defaults, plus the activator's probe line at debug: the
# moment it releases a queue is one of the phases.
helm upgrade --install siesta charts/siesta -n siesta-system --create-namespace --wait --timeout 180s \
  --set logLevel='info\,siesta_activator::probe=debug' >/dev/null
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
addr="$(kubectl -n siesta-system get svc siesta-activator -o jsonpath='{.spec.clusterIP}'):80"
python3 hack/bench/realnode.py "$(command -v kubectl)" "$NS" "$addr" "$RUNS"
