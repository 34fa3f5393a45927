#!/usr/bin/env bash
# `make demo`: a local Kubernetes control plane, the node agent, Siesta
# installed with its Helm chart, and an example Function taken through its
# life: cold request, warm requests, scale out under load, back to zero.
# `make demo NODE=real`: the same on the real node (kubelet + containerd),
# with the images built from the Dockerfiles and the chart's defaults.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source hack/cluster/lib.sh

NS=demo
FN=hello
HOST="$FN.$NS.siesta.local"
bold() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }

activator_ip() {
  kubectl -n siesta-system get pods -l app.kubernetes.io/component=activator \
    -o jsonpath='{.items[?(@.status.podIP)].status.podIP}' 2>/dev/null | awk '{print $1}'
}

if [[ "${NODE:-process}" == real ]]; then
  # The real node: the image built from the Dockerfile, the chart's defaults,
  # traffic through the activator Service's ClusterIP (kube-proxy).
  bold "1/7 images from the Dockerfiles (first run builds stand-in base images: ~10 min, then cached)"
  bash hack/images/build.sh
  bold "2/7 real node: control plane + kubelet + containerd + kube-proxy + scheduler (see README, The real node)"
  source hack/node/lib.sh
  bash hack/node/up.sh >/dev/null
  export KUBECONFIG="$KUBECONFIG_PATH" PATH="$TOOLS_BIN:$PATH"
  note "KUBECONFIG=$KUBECONFIG"
  bold "3/7 helm install siesta charts/siesta (the chart's defaults: 2 controllers, 2 activators)"
  helm upgrade --install siesta charts/siesta --namespace siesta-system --create-namespace \
    --wait --timeout 180s >/dev/null
  kubectl -n siesta-system get pods -o wide 2>/dev/null
  URL="http://$(kubectl -n siesta-system get svc siesta-activator -o jsonpath='{.spec.clusterIP}' 2>/dev/null)"
  note "activator Service at $URL (ClusterIP, reached from this host through kube-proxy)"
  STOP="make real-down"
else
  bold "1/7 local control plane (first run installs packages and builds Kubernetes: ~7 min, then cached)"
  bash hack/cluster/up.sh >/dev/null
  export KUBECONFIG="$KUBECONFIG_PATH" PATH="$TOOLS_BIN:$PATH"
  note "KUBECONFIG=$KUBECONFIG"

  bold "2/7 node agent (runs pods as local processes on 127.10.x.y)"
  bash hack/cluster/node-up.sh

  bold "3/7 helm install siesta charts/siesta"
  kubectl create namespace siesta-system --dry-run=client -o yaml 2>/dev/null | kubectl apply -f - >/dev/null 2>&1
  # listenOnPodIP: on the node agent every pod shares the host network, so
  # each component binds its own 127.10.x.y address instead of 0.0.0.0.
  helm upgrade --install siesta charts/siesta --namespace siesta-system \
    --set image.repository=siesta.dev/siesta --set image.tag=latest \
    --set activator.replicas=1 --set controller.replicas=1 --set listenOnPodIP=true \
    --wait --timeout 180s >/dev/null
  kubectl -n siesta-system get pods -o wide 2>/dev/null
  ACT="$(activator_ip)"
  [[ -n "$ACT" ]] || { echo "no activator pod IP" >&2; exit 1; }
  URL="http://$ACT:8080"
  note "activator listening on $URL (in a real cluster: the siesta-activator Service)"
  STOP="make cluster-down"
fi

bold "4/7 kubectl apply a Function (minReplicas 0: no pod until the first request)"
kubectl create namespace "$NS" --dry-run=client -o yaml 2>/dev/null | kubectl apply -f - >/dev/null 2>&1
# Printed from a variable, not with `tee /dev/stderr`: when the demo's output
# goes to a file (`make demo > demo.log 2>&1`), opening /dev/stderr again
# truncates that file and loses everything written before this point.
MANIFEST="$(cat <<YAML
apiVersion: siesta.dev/v1alpha1
kind: Function
metadata: {name: $FN, namespace: $NS}
spec:
  image: siesta.dev/examples/hello:0.1.0
  port: 8080
  containerConcurrency: 4
  scale: {minReplicas: 0, maxReplicas: 5, metric: concurrency, target: 2,
          stableWindowSeconds: 10, scaleToZeroAfterSeconds: 10}
YAML
)"
printf '%s\n' "$MANIFEST"
printf '%s\n' "$MANIFEST" | kubectl apply -f - 2>/dev/null
for _ in $(seq 50); do
  [[ "$(kubectl -n "$NS" get fn "$FN" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]] && break
  sleep 0.2
done
kubectl -n "$NS" get fn "$FN" 2>/dev/null
note "pods: $(kubectl -n "$NS" get pods --no-headers 2>/dev/null | wc -l)"

bold "5/7 cold request: the activator parks it, wakes the function, answers"
curl -sS -o /dev/null -w "    HTTP %{http_code} in %{time_total}s (cold, through the activator)\n" -H "Host: $HOST" "$URL/"
curl -sS -H "Host: $HOST" "$URL/pod" | sed 's/^/    answered by pod: /'; echo
for i in 1 2 3; do
  curl -sS -o /dev/null -w "    HTTP %{http_code} in %{time_total}s (warm)\n" -H "Host: $HOST" "$URL/"
done
note "same function by path: curl $URL/fn/$NS/$FN/"

bold "6/7 load: 12 clients, each request takes 300 ms, target 2 in flight per pod"
load_pids=()
for _ in $(seq 12); do
  ( end=$((SECONDS + 25)); while ((SECONDS < end)); do
      curl -s -o /dev/null -H "Host: $HOST" "$URL/delay?ms=300" || true
    done ) &
  load_pids+=($!)
done
for _ in $(seq 12); do
  sleep 2
  kubectl -n "$NS" get fn "$FN" --no-headers \
    -o custom-columns='DESIRED:.status.desiredReplicas,READY:.status.readyReplicas,MODE:.status.autoscaler.mode,CONCURRENCY:.status.autoscaler.observedConcurrency' 2>/dev/null | sed 's/^/    desired ready mode concurrency: /'
done
wait "${load_pids[@]}" 2>/dev/null || true

bold "7/7 load stopped: back to zero after the idle period (scaleToZeroAfterSeconds: 10)"
for _ in $(seq 60); do
  pods=$(kubectl -n "$NS" get pods --no-headers 2>/dev/null | wc -l)
  printf '    pods: %s\n' "$pods"
  ((pods == 0)) && break
  sleep 2
done
kubectl -n "$NS" get fn "$FN" 2>/dev/null
kubectl -n "$NS" describe fn "$FN" 2>/dev/null | sed -n '/Events:/,$p' | head -15

cat <<MSG

Siesta is still running. Try:
  export KUBECONFIG=$KUBECONFIG PATH=$TOOLS_BIN:\$PATH
  curl -H 'Host: $HOST' $URL/
  kubectl -n $NS get fn; kubectl -n $NS describe fn $FN
  curl http://$(activator_ip):9091/metrics | grep siesta_activator
Stop everything with: $STOP
MSG
