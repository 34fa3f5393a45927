#!/bin/bash
# Measures (run from anywhere; needs jq, bc, the local cluster and `cargo build -p siesta`):
# 1,000 Functions applied at once -> all have a Deployment and Ready=True/ScaledToZero.
set -u
WORK=$(mktemp -d)
export KUBECONFIG=${KUBECONFIG:-/work/main/.cluster/kubeconfig}
K=${KUBECTL:-~/.cache/siesta/tools/bin/kubectl}
BIN=${SIESTA_BIN:-/work/main/target-controller/debug/siesta}
N=${N:-1000}
NS=scale1k-$$
$K create ns $NS >/dev/null
python3 -c "
for i in range($N):
    print('---\napiVersion: siesta.dev/v1alpha1\nkind: Function\nmetadata: {name: f%d}\nspec: {image: example.com/hello:1.0}' % i)
" > "$WORK/fns.yaml"
$BIN controller --admin-addr 127.0.0.1:19092 --namespace $NS --watch-namespace $NS --identity scale > "$WORK/ctl.log" 2>&1 &
PID=$!
sleep 3
start=$(date +%s.%N)
$K create -n $NS -f "$WORK/fns.yaml" >/dev/null 2>"$WORK/create.err" &
while true; do
  ready=$($K get fn -n $NS -o json | jq '[.items[] | select(.status.observedGeneration==1 and (.status.conditions // [] | any(.type=="Ready" and .status=="True")))] | length')
  deps=$($K get deploy -n $NS --no-headers 2>/dev/null | wc -l)
  now=$(date +%s.%N)
  echo "t=$(echo "$now - $start" | bc) ready=$ready deployments=$deps rss_kb=$(grep VmRSS /proc/$PID/status | awk '{print $2}')"
  [ "$ready" -ge $N ] && [ "$deps" -ge $N ] && break
  sleep 2
done
end=$(date +%s.%N)
echo "ALL $N READY after $(echo "$end - $start" | bc) s"
grep -E "VmHWM|VmRSS" /proc/$PID/status
curl -s 127.0.0.1:19092/metrics | grep -E "reconcile_total|reconcile_errors|duration_seconds_(sum|count)"
kill -TERM $PID; wait $PID
$K delete ns $NS --wait=false
