#!/usr/bin/env bash
# The control plane at scale: N Functions at zero (a Deployment and a
# Service each) created at once against the local cluster, with release
# builds of the controller and the activator. Prints `scale ...`, `api ...`
# result lines on stdout (make bench appends them to its results; alone,
# `make bench-scale N=10000` prints them and the table).
#
#   hack/bench/scale.sh N          N Functions (default $BENCH_SCALE or 100)
#   SCALE_IDLE_SECS=60             length of each idle window (API requests, CPU)
#   BENCH_SKIP_BUILD=1             use the release binaries in $CARGO_TARGET_DIR
#   SCALE_BIN=path                 another siesta binary (e.g. an older build, to compare)
#   SCALE_CONTROLLER_ARGS="..."    more controller flags (e.g. --concurrency=64)
#   SCALE_RUN=name                 a name for the run in the results (default: current)
#   SCALE_PERF=file                perf record (flat) the controller from creation to all Ready
#   SCALE_HEAPTRACK=file           run the controller under heaptrack (a build with the system
#                                  allocator, into $CARGO_TARGET_DIR/heaptrack); then
#                                  `heaptrack_print -p0 -a0 -T0 -l0 -M file.zst` shows what it holds
#                                  (its RSS figures are then glibc's and heaptrack's, not the product's)
#   KUBECONFIG / SIESTA_STATE_DIR  which cluster (default: this tree's .cluster);
#                                  the state dir's pid files give the apiserver's,
#                                  etcd's and the controller manager's CPU time
#
# Measured: creation time (POSTs from 16 threads: scale_create.py); time
# until every Function is Ready at generation 1, until N
# Deployments and N ReplicaSets exist (the controller manager's part);
# controller RSS and peak; activator RSS with 0 and with N Functions and the
# difference per Function; CPU seconds of each process during creation and
# in the idle window; the autoscaler's decision time per tick; API requests
# per second when nothing changes, the controller's and the activator's.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
source hack/bench/lib.sh
N="${1:-${BENCH_SCALE:-100}}"
RUN="${SCALE_RUN:-current}"
IDLE="${SCALE_IDLE_SECS:-60}"
STATE="${SIESTA_STATE_DIR:-$ROOT/.cluster}"
export KUBECONFIG="${KUBECONFIG:-$STATE/kubeconfig}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-bench}"
BIN="$CARGO_TARGET_DIR/release"
K="${KUBECTL:-$HOME/.cache/siesta/tools/bin/kubectl}"
# Own ports, apart from run.sh's other sections.
ACT_LISTEN=127.0.0.1:18290 ACT_ADMIN=127.0.0.1:19290 CTL_ADMIN=127.0.0.1:19291

log() { printf '[scale %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
"$K" get --raw /readyz >/dev/null 2>&1 \
  || { log "no cluster answers at $KUBECONFIG: start one with hack/cluster/up.sh"; exit 1; }
SIESTA="${SCALE_BIN:-$BIN/siesta}"
if [[ -z "${SCALE_BIN:-}" && ( "${BENCH_SKIP_BUILD:-0}" != 1 || ! -x "$SIESTA" ) ]]; then
  log "building the release siesta into $CARGO_TARGET_DIR"
  # As the Dockerfile builds it, with the profile (pgo/rustflags.sh).
  RUSTFLAGS="$(sh pgo/rustflags.sh "$ROOT")" cargo build -q --release --locked -p siesta
fi

CTL_WRAP=()
if [[ -n "${SCALE_HEAPTRACK:-}" ]]; then
  command -v heaptrack >/dev/null || { log "SCALE_HEAPTRACK needs heaptrack (Debian package heaptrack)"; exit 1; }
  log "building the siesta with the system allocator, for heaptrack"
  CARGO_TARGET_DIR="$CARGO_TARGET_DIR/heaptrack" cargo build -q --release -p siesta --no-default-features
  CTL_WRAP=(heaptrack -o "$SCALE_HEAPTRACK")
  CTL_BIN="$CARGO_TARGET_DIR/heaptrack/release/siesta"
fi

WORK="$(mktemp -d /tmp/siesta-scale.XXXXXX)"
NS="siesta-scale-$$"
PIDS=()
cleanup() {
  stop_pids "${PIDS[@]}"
  "$K" delete ns "$NS" --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT

TCK="$(getconf CLK_TCK)"
ticks() { # utime+stime of one PID in clock ticks (0 if gone)
  local f; f="$(cat /proc/"$1"/stat 2>/dev/null)" || { echo 0; return; }
  f="${f##*) }"; set -- $f; echo $((${12} + ${13}))
}
secs() { echo "scale=2; $1 / $TCK" | bc; }
vm() { awk -v k="$2:" '$1==k {print $2}' /proc/"$1"/status; }
pidof_state() { local p; p="$(cat "$STATE/$1.pid" 2>/dev/null || true)"; [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null && echo "$p" || echo 0; }
APISERVER=$(pidof_state kube-apiserver) ETCD=$(pidof_state etcd) KCM=$(pidof_state kube-controller-manager)
cluster_ticks() { echo "$(ticks "$APISERVER") $(ticks "$ETCD") $(ticks "$KCM")"; }
wait_ready() { for _ in $(seq 1 600); do curl -fs "$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done; log "$1 never ready"; return 1; }
scrape_api() { "$K" get --raw /metrics | grep '^apiserver_request_total' >"$1"; }
decisions() { curl -s "$CTL_ADMIN/metrics" | awk '/^siesta_controller_autoscaler_decision_duration_seconds_(sum|count)/ {printf "%s ", $2}'; }

"$K" apply -f crds/function.yaml >/dev/null
"$K" create ns "$NS" >/dev/null

log "idle window 1/3 (${IDLE}s): nothing of Siesta's running, for the other clients' requests"
scrape_api "$WORK/base0"; sleep "$IDLE"; scrape_api "$WORK/base1"

SIESTA_LOG=warn "$SIESTA" activator --listen "$ACT_LISTEN" --admin-addr "$ACT_ADMIN" \
  --controller-url "http://$CTL_ADMIN" >"$WORK/activator.log" 2>&1 &
ACT=$!; PIDS+=("$ACT")
wait_ready "http://$ACT_ADMIN"
SIESTA_LOG=warn "${CTL_WRAP[@]}" "${CTL_BIN:-$SIESTA}" controller --admin-addr "$CTL_ADMIN" --namespace "$NS" \
  --watch-namespace "$NS" --identity "scale-$$" \
  --activator-url "http://$ACT_ADMIN/metrics" ${SCALE_CONTROLLER_ARGS:-} >"$WORK/controller.log" 2>&1 &
CTL=$!; PIDS+=("$CTL")
wait_ready "http://$CTL_ADMIN"
if ((${#CTL_WRAP[@]})); then
  # heaptrack's script runs the controller as its child: signals and
  # figures go to the controller itself (it writes heaptrack's data at exit).
  CTL=$(pgrep -P "$CTL" -f 'siesta controller'); PIDS=("$CTL" "${PIDS[@]}")
fi
sleep 3
act_rss0=$(vm "$ACT" VmRSS); ctl_rss0=$(vm "$CTL" VmRSS)

CREATE_CONC="${SCALE_CREATE_CONCURRENCY:-16}"
log "creating $N Functions ($CREATE_CONC POSTs in flight: hack/bench/scale_create.py)"
read -r a0 e0 k0 <<<"$(cluster_ticks)"; c0=$(ticks "$CTL"); x0=$(ticks "$ACT")
if [[ -n "${SCALE_PERF:-}" ]]; then
  perf record -q -F 499 -p "$CTL" -o "$SCALE_PERF" >/dev/null 2>&1 &
  PERF=$!; PIDS+=("$PERF")
fi
load0=$(cut -d' ' -f1 /proc/loadavg)
start=$(date +%s.%N)
python3 hack/bench/scale_wait.py "$K" "$NS" "$N" "$start" "${SCALE_TIMEOUT_SECS:-1800}" >"$WORK/wait.txt" &
WAITER=$!; PIDS+=("$WAITER")
creation=$(python3 hack/bench/scale_create.py "$K" "$NS" "$N" "$CREATE_CONC")
created=$(echo "$(date +%s.%N) - $start" | bc)
log "  $creation; waiting for Ready, Deployments, ReplicaSets"
wait "$WAITER"
[[ -n "${PERF:-}" ]] && { kill -INT "$PERF"; wait "$PERF" 2>/dev/null || true; }
done_at=$(echo "$(date +%s.%N) - $start" | bc)
load1=$(cut -d' ' -f1 /proc/loadavg)
# The controller manager's client limit (20 requests/s per controller unless raised).
kcm_qps=$(tr '\0' ' ' </proc/"$KCM"/cmdline 2>/dev/null | grep -o 'kube-api-qps=[0-9]*' | cut -d= -f2 || true)
read -r a1 e1 k1 <<<"$(cluster_ticks)"; c1=$(ticks "$CTL"); x1=$(ticks "$ACT")
waited=$(cat "$WORK/wait.txt")
log "  $waited"
sleep 10  # the last status writes and watch events settle
ctl_rss=$(vm "$CTL" VmRSS); ctl_hwm=$(vm "$CTL" VmHWM)
act_rss=$(vm "$ACT" VmRSS); act_hwm=$(vm "$ACT" VmHWM)
per_fn=$(echo "scale=2; ($act_rss - $act_rss0) / $N" | bc)
# What one scrape carries: the autoscaler reads the activator's page every
# --scrape-interval; Prometheus would read both.
act_page=$(curl -s "$ACT_ADMIN/metrics" | wc -c); ctl_page=$(curl -s "$CTL_ADMIN/metrics" | wc -c)
echo "scale run=$RUN n=$N created_s=$created $waited all_done_s=$done_at load=$load0,$load1 kcm_qps=${kcm_qps:-20}" \
  "ctl_rss0_kib=$ctl_rss0 ctl_rss_kib=$ctl_rss ctl_hwm_kib=$ctl_hwm" \
  "act_rss0_kib=$act_rss0 act_rss_kib=$act_rss act_hwm_kib=$act_hwm act_kib_per_fn=$per_fn" \
  "act_metrics_bytes=$act_page ctl_metrics_bytes=$ctl_page" \
  "cpu_create_s=controller:$(secs $((c1 - c0))),activator:$(secs $((x1 - x0))),apiserver:$(secs $((a1 - a0))),etcd:$(secs $((e1 - e0))),kcm:$(secs $((k1 - k0)))"

log "idle window 2/3 (${IDLE}s): controller and activator, nothing changing"
read -r a0 e0 k0 <<<"$(cluster_ticks)"; c0=$(ticks "$CTL"); x0=$(ticks "$ACT"); read -r ds0 dc0 <<<"$(decisions)"
scrape_api "$WORK/both0"; sleep "$IDLE"; scrape_api "$WORK/both1"
read -r a1 e1 k1 <<<"$(cluster_ticks)"; c1=$(ticks "$CTL"); x1=$(ticks "$ACT"); read -r ds1 dc1 <<<"$(decisions)"
tick_ms=$(echo "scale=3; 1000 * ($ds1 - $ds0) / ($dc1 - $dc0)" | bc 2>/dev/null || echo na)
echo "scale_idle run=$RUN n=$N secs=$IDLE autoscaler_tick_ms=$tick_ms ticks=$(echo "$dc1 - $dc0" | bc)" \
  "cpu_idle_s=controller:$(secs $((c1 - c0))),activator:$(secs $((x1 - x0))),apiserver:$(secs $((a1 - a0))),etcd:$(secs $((e1 - e0))),kcm:$(secs $((k1 - k0)))"
kill -TERM "$CTL"; wait "$CTL" 2>/dev/null || true
sleep 2

log "idle window 3/3 (${IDLE}s): the activator alone"
scrape_api "$WORK/act0"; sleep "$IDLE"; scrape_api "$WORK/act1"
python3 hack/bench/scale_api.py "$WORK/both0" "$WORK/both1" "$WORK/act0" "$WORK/act1" "$IDLE" "$RUN" controller
python3 hack/bench/scale_api.py "$WORK/act0" "$WORK/act1" "$WORK/base0" "$WORK/base1" "$IDLE" "$RUN" activator
python3 hack/bench/scale_api.py "$WORK/base0" "$WORK/base1" "$IDLE" "$RUN" others
log "raw files in $WORK; deleting namespace $NS (in the background)"
