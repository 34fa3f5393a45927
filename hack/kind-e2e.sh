#!/usr/bin/env bash
# `make kind-e2e`: the real-node e2e (tests/e2e/tests/real_node.rs) on kind,
# the same code `make test` runs against the real node here, so the kind
# path is not a second, untested copy. Needs docker, kind, kubectl, helm,
# cargo.
#
#  1. creates a kind cluster (or reuses one of that name),
#  2. builds the Siesta image and the example function image from their
#     Dockerfiles (public base images) and loads them into the cluster under
#     the names the chart's defaults and examples/functions use,
#  3. runs the e2e with the activator Service reached as a NodePort on the
#     kind node's IP (SIESTA_E2E_ACCESS=nodeport): README quickstart, helm
#     upgrade --wait with the defaults, cold and warm traffic, scale out and
#     back to zero, rollout restart and leader failover under load, a
#     foreign Deployment left alone, helm uninstall,
#  4. deletes the cluster it created (KEEP_CLUSTER=1 keeps it).
#
# Environment: KIND_CLUSTER (default siesta-e2e), KIND_NODE_IMAGE (e.g.
# kindest/node:v1.30.0; default: kind's own), KEEP_CLUSTER=1.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CLUSTER="${KIND_CLUSTER:-siesta-e2e}"
KEEP="${KEEP_CLUSTER:-0}"
APP_VERSION=$(awk -F'"' '/^appVersion:/ {print $2}' charts/siesta/Chart.yaml)
SIESTA_IMAGE="ghcr.io/siesta-dev/siesta:$APP_VERSION"
HELLO_IMAGE="siesta.dev/examples/hello:$APP_VERSION"

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }

for tool in docker kind kubectl helm curl cargo; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (needed: docker kind kubectl helm curl cargo)"
done

created=0
kubeconfig=$(mktemp)
cleanup() {
  local rc=$?
  rm -f "$kubeconfig"
  if [[ $created == 1 && $KEEP != 1 ]]; then
    step "deleting kind cluster $CLUSTER"
    kind delete cluster --name "$CLUSTER" || true
  fi
  exit $rc
}
trap cleanup EXIT

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  step "reusing kind cluster $CLUSTER"
else
  step "creating kind cluster $CLUSTER"
  created=1
  kind create cluster --name "$CLUSTER" --wait 180s ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
fi
kind get kubeconfig --name "$CLUSTER" >"$kubeconfig"

step "building images ($SIESTA_IMAGE, $HELLO_IMAGE)"
export DOCKER_BUILDKIT=1
docker build -t "$SIESTA_IMAGE" .
docker build -t "$HELLO_IMAGE" -f examples/hello/Dockerfile .

step "loading images into $CLUSTER"
kind load docker-image --name "$CLUSTER" "$SIESTA_IMAGE" "$HELLO_IMAGE"

step "the real-node e2e against kind"
KUBECONFIG="$kubeconfig" SIESTA_E2E_ACCESS=nodeport \
  cargo test -q -p siesta-e2e --test real_node -- --include-ignored --nocapture
step "kind e2e passed"
