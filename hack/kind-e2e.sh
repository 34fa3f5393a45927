#!/usr/bin/env bash
# `make kind-e2e`: Siesta on a real (kind) cluster, end to end, as a user
# would run it. Needs docker, kind, kubectl, helm and curl.
#
#  1. creates a kind cluster (or reuses one of that name),
#  2. builds the Siesta image and the example function image and loads both
#     into the cluster (no registry involved),
#  3. helm installs charts/siesta,
#  4. applies examples/functions/hello.yaml (at zero pods),
#  5. calls it through `kubectl port-forward` to the activator Service:
#     cold (wakes it from zero), warm, by Host and by path,
#  6. waits until it is back at zero pods, and calls it cold once more,
#  7. uninstalls and deletes the cluster (KEEP_CLUSTER=1 keeps it).
#
# Environment: KIND_CLUSTER (default siesta-e2e), KIND_NODE_IMAGE (e.g.
# kindest/node:v1.30.0; default: kind's own), KEEP_CLUSTER=1,
# SCALE_TO_ZERO_TIMEOUT (seconds, default 300).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CLUSTER="${KIND_CLUSTER:-siesta-e2e}"
KEEP="${KEEP_CLUSTER:-0}"
SCALE_TO_ZERO_TIMEOUT="${SCALE_TO_ZERO_TIMEOUT:-300}"
TAG=kind
IMAGE_REPO=siesta.dev/siesta
HELLO_IMAGE=siesta.dev/examples/hello:$TAG
RELEASE=siesta
NS=siesta-system
FN_NS=siesta-e2e
# With release "siesta" the chart's full name is "siesta".
ACTIVATOR_SVC=siesta-activator
LOCAL_PORT="${LOCAL_PORT:-18080}"
KCTX="kind-$CLUSTER"

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }
k() { kubectl --context "$KCTX" "$@"; }

for tool in docker kind kubectl helm curl; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (needed: docker kind kubectl helm curl)"
done

created=0
pf_pid=""
cleanup() {
  local rc=$?
  [[ -n "$pf_pid" ]] && kill "$pf_pid" 2>/dev/null || true
  if [[ $rc != 0 ]]; then
    step "failed (exit $rc): what the cluster looked like"
    k get all,functions,leases -A -o wide || true
    k get events -A --sort-by=.lastTimestamp | tail -50 || true
    k -n "$NS" logs -l app.kubernetes.io/name=siesta --all-containers --prefix --tail=200 || true
  fi
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

step "building images ($IMAGE_REPO:$TAG, $HELLO_IMAGE)"
export DOCKER_BUILDKIT=1
docker build -t "$IMAGE_REPO:$TAG" .
docker build -t "$HELLO_IMAGE" -f examples/hello/Dockerfile .

step "loading images into $CLUSTER"
kind load docker-image --name "$CLUSTER" "$IMAGE_REPO:$TAG" "$HELLO_IMAGE"

step "helm lint and install charts/siesta"
helm lint --strict charts/siesta
helm --kube-context "$KCTX" upgrade --install "$RELEASE" charts/siesta \
  --namespace "$NS" --create-namespace \
  --set image.repository="$IMAGE_REPO" --set image.tag="$TAG" --set image.pullPolicy=Never \
  --wait --timeout 180s
k -n "$NS" rollout status deploy/siesta-controller deploy/siesta-activator --timeout 120s

step "applying examples/functions/hello.yaml in namespace $FN_NS"
k create namespace "$FN_NS" --dry-run=client -o yaml | k apply -f -
sed "s|image: siesta.dev/examples/hello:latest|image: $HELLO_IMAGE|" examples/functions/hello.yaml \
  | k apply -n "$FN_NS" -f -
k -n "$FN_NS" wait --for=condition=Ready function/hello --timeout 90s
k -n "$FN_NS" get function hello
replicas="$(k -n "$FN_NS" get deploy hello -o jsonpath='{.spec.replicas}')"
[[ "$replicas" == 0 ]] || fail "hello should start at zero replicas, has $replicas"

step "port-forward svc/$ACTIVATOR_SVC to 127.0.0.1:$LOCAL_PORT"
kubectl --context "$KCTX" -n "$NS" port-forward "svc/$ACTIVATOR_SVC" "$LOCAL_PORT:80" >/tmp/siesta-kind-pf.log 2>&1 &
pf_pid=$!
for _ in $(seq 1 50); do
  curl -s -o /dev/null "http://127.0.0.1:$LOCAL_PORT/" && break
  sleep 0.2
done
URL="http://127.0.0.1:$LOCAL_PORT"
HOST="hello.$FN_NS.siesta.local"

call() { # call LABEL PATH [HOST]: one request, prints status, time, body
  local label=$1 path=$2 host=${3:-}
  local out
  out="$(curl -sS -m 120 ${host:+-H "Host: $host"} -w '\n%{http_code} %{time_total}s' "$URL$path")" \
    || fail "$label: curl failed"
  local status="${out##*$'\n'}" body="${out%$'\n'*}"
  printf '%-6s %-28s %s  %s\n' "$label" "$path${host:+ (Host $host)}" "$status" "$body"
  [[ "${status%% *}" == 200 ]] || fail "$label request answered ${status%% *}"
  [[ "$body" == "hello from "* ]] || fail "$label request: unexpected body: $body"
}

step "cold request (wakes hello from zero)"
call cold / "$HOST"

step "warm requests"
for _ in 1 2 3 4 5; do call warm / "$HOST"; done
call warm "/fn/$FN_NS/hello/"

step "waiting (up to ${SCALE_TO_ZERO_TIMEOUT}s) for hello to scale back to zero"
deadline=$((SECONDS + SCALE_TO_ZERO_TIMEOUT))
while :; do
  replicas="$(k -n "$FN_NS" get deploy hello -o jsonpath='{.spec.replicas}')"
  pods="$(k -n "$FN_NS" get pods -l siesta.dev/function=hello -o name | wc -l)"
  [[ "$replicas" == 0 && "$pods" == 0 ]] && break
  (( SECONDS < deadline )) || fail "hello did not scale to zero (replicas=$replicas, pods=$pods)"
  sleep 5
done
echo "hello is at zero pods"

step "cold request again"
call cold / "$HOST"

step "helm uninstall"
kill "$pf_pid" 2>/dev/null || true
pf_pid=""
k -n "$FN_NS" delete function hello --wait --timeout 60s
helm --kube-context "$KCTX" uninstall "$RELEASE" --namespace "$NS" --wait --timeout 120s
left="$(k get deploy,svc,sa,role,rolebinding,lease,pdb -n "$NS" -l app.kubernetes.io/instance="$RELEASE" -o name)"
left+="$(k get clusterrole,clusterrolebinding -l app.kubernetes.io/instance="$RELEASE" -o name)"
[[ -z "$left" ]] || fail "helm uninstall left objects behind: $left"

step "kind e2e passed"
