#!/usr/bin/env bash
# `make bench`: measures Siesta on this machine, on loopback only, and writes
# docs/benchmarks.md (report.py turns the raw results into the tables).
#
#   BENCH_QUICK=1   smoke mode: short runs, one repetition, small sizes
#   BENCH_1K=1      the footprint run with 1,000 Functions (default 100)
#   BENCH_SCALE=N   section 8, the control plane at N Functions (default 100,
#                   10 in smoke mode; 0 skips it): hack/bench/scale.sh (part of
#                   the cluster section)
#   BENCH_OUT=path  where the markdown goes (default docs/benchmarks.md)
#   BENCH_SKIP_BUILD=1  use the release binaries already in $CARGO_TARGET_DIR
#   BENCH_REAL=0    skip section 7, the real node (images, kubelet + containerd)
#   BENCH_SECTIONS=proxy,h2   run only these sections (comma-separated; default
#                   all): proxy (1, HTTP/1.1 proxy cost), h2 (1b, over h2c),
#                   buffering (3), streaming (4), cluster (2, 5, 6 and 8: the
#                   local cluster, started if it is down), real (7, also BENCH_REAL)
#   BENCH_BEFORE_BIN=dir  also measure in sections 1 and 1b `siesta bench-activator`
#                   from dir (an earlier build's target/release), as the
#                   `activator-before` rows, for a change's before and after
#                   in one run
#   BENCH_REPS=N    repetitions of every point (default 3, 1 in smoke mode):
#                   more make the medians of the one-connection points,
#                   the noisiest, steadier
#   BENCH_PORT_OFFSET=N  added to every port of the hello backend and of
#                   sections 1 to 4 (default 0), so that two checkouts can
#                   run them at once
#
# Every process it starts is its own (temp dir, own ports, own pid) and is
# stopped by PID at exit. The shared local cluster is used, never stopped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
source hack/bench/lib.sh
QUICK="${BENCH_QUICK:-0}"
OUT="${BENCH_OUT:-$ROOT/docs/benchmarks.md}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-bench}"
BIN="$CARGO_TARGET_DIR/release"
export KUBECONFIG="${KUBECONFIG:-$ROOT/.cluster/kubeconfig}"
K="${KUBECTL:-$HOME/.cache/siesta/tools/bin/kubectl}"
HOST_HDR="hello.bench.siesta.local"
ALL_SECTIONS="proxy,h2,buffering,streaming,cluster,real"
SECTIONS="${BENCH_SECTIONS:-$ALL_SECTIONS}"
for s in ${SECTIONS//,/ }; do
  [[ ",$ALL_SECTIONS," == *",$s,"* ]] || { echo "BENCH_SECTIONS: unknown section $s (known: $ALL_SECTIONS)" >&2; exit 2; }
done
want() { [[ ",$SECTIONS," == *",$1,"* ]]; }
PORT_OFFSET="${BENCH_PORT_OFFSET:-0}"
port() { echo $(($1 + PORT_OFFSET)); }

# H2_POINTS: h2load's client connections x concurrent streams per connection.
if [[ "$QUICK" == 1 ]]; then
  REPS=1; DUR=1; CONCS="1 64"; H2_POINTS="16x10"; PARK_N=1000; STREAM_BYTES=$((64 << 20)); COLD_N=2; NFN=10
else
  REPS="${BENCH_REPS:-3}"; DUR=5; CONCS="1 16 64 256"; H2_POINTS="1x1 16x10 64x10"; PARK_N=10000; STREAM_BYTES=$((1 << 30)); COLD_N=7; NFN=100
fi
[[ "${BENCH_1K:-0}" == 1 ]] && NFN=1000

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

WORK="$(mktemp -d /tmp/siesta-bench.XXXXXX)"
RESULTS="$WORK/results.txt"
CMDS="$WORK/commands.txt"
: >"$RESULTS"; : >"$CMDS"
PIDS=()
cleanup() {
  stop_pids "${PIDS[@]}"
  if [[ -n "${BENCH_NS:-}" ]]; then "$K" delete ns "$BENCH_NS" --wait=false >/dev/null 2>&1 || true; fi
  if [[ -n "${BENCH_NS1K:-}" ]]; then "$K" delete ns "$BENCH_NS1K" --wait=false >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# Records a command as run (for the report) and runs it.
cmd() { printf '%s\n' "$*" >>"$CMDS"; "$@"; }
result() { printf '%s\n' "$*" >>"$RESULTS"; }

# ---------------------------------------------------------------- set-up
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || need+=(haproxy)
command -v python3 >/dev/null || need+=(python3)
command -v curl >/dev/null || need+=(curl)
command -v bc >/dev/null || need+=(bc)
if want proxy; then
  command -v go >/dev/null || need+=(golang-go)
  command -v valgrind >/dev/null || need+=(valgrind)
fi
if want h2; then command -v h2load >/dev/null || need+=(nghttp2-client); fi
if ((${#need[@]})); then
  log "installing ${need[*]}"
  apt_install "${need[@]}"
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"

if [[ "${BENCH_SKIP_BUILD:-0}" == 1 && -x "$BIN/siesta" && -x "$BIN/siesta-bench" ]]; then
  log "BENCH_SKIP_BUILD=1: using the binaries in $BIN"
else
  log "building release binaries into $CARGO_TARGET_DIR"
  # `siesta` on its own and with the profile, as the Dockerfile builds it
  # (pgo/rustflags.sh); the backend and the load clients apart, without.
  # SIESTA_PGO=check: LLVM names each function it has no profile for; the
  # same code as the default flags generate.
  mode="${SIESTA_PGO:-check}"
  printf '%s\n' "RUSTFLAGS=\"\$(SIESTA_PGO=$mode sh pgo/rustflags.sh \$PWD)\" cargo build -q --release --locked -p siesta" >>"$CMDS"
  RUSTFLAGS="$(SIESTA_PGO="$mode" sh pgo/rustflags.sh "$ROOT")" \
    cargo build -q --release --locked -p siesta 2>"$WORK/build-siesta.log" \
    || { cat "$WORK/build-siesta.log" >&2; exit 1; }
  cmd cargo build -q --release --locked -p hello -p siesta-bench
  if [[ "$mode" == check ]]; then
    line=$(python3 hack/pgo/freshness.py pgo/hot-functions.txt "$WORK/build-siesta.log")
    result "$line"
    log "$line (pgo/README.md)"
  fi
fi
# The activator measured: the shipped binary with a static route, no cluster.
ACTIVATOR=("$BIN/siesta" bench-activator)
BEFORE_ACTIVATOR=("${BENCH_BEFORE_BIN:-}/siesta" bench-activator)

if want proxy; then
  # go-rp (hack/bench/goproxy): standard library only, so GOPATH mode and no
  # module download; Go's build cache makes a rebuild instant.
  GO_RP="$CARGO_TARGET_DIR/go-rp/go-rp"
  mkdir -p "$(dirname "$GO_RP")"
  cmd env GO111MODULE=off GOFLAGS= GOCACHE="$HOME/.cache/siesta/go-build" \
    go build -o "$GO_RP" hack/bench/goproxy/main.go
fi

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
log "work dir $WORK; open files limit $(ulimit -n)"

result "load when=start loadavg=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' ,)"
TCK="$(getconf CLK_TCK)"
# utime+stime in clock ticks, summed over the given PIDs.
cpu_ticks() {
  local u s
  read -r u s <<<"$(cpu_split "$@")"
  echo $((u + s))
}
# utime and stime in clock ticks, each summed over the given PIDs.
cpu_split() {
  local u=0 s=0 p f
  for p in "$@"; do
    f="$(cat /proc/"$p"/stat 2>/dev/null)" || continue
    f="${f##*) }"
    set -- $f
    u=$((u + ${12})); s=$((s + ${13}))
  done
  echo "$u $s"
}
spawn() { # spawn LOGFILE CMD...: background, pid in $SPAWNED
  printf '%s\n' "${*:2}" >>"$CMDS"
  "${@:2}" >"$1" 2>&1 &
  SPAWNED=$!
  PIDS+=("$SPAWNED")
}
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
vm() { awk -v k="$2:" '$1==k {print $2}' /proc/"$1"/status; }

# ---------------------------------------------------------------- backend
# hello (HTTP/1.1 and h2c on one port) behind every proxy of sections 1 to 4.
BACKEND=127.0.0.1:$(port 18001)
HELLO_PID=""
if want proxy || want h2 || want buffering || want streaming; then
  spawn "$WORK/hello.log" env PORT="$(port 18001)" HOST=127.0.0.1 POD_NAME=bench "$BIN/hello"
  HELLO_PID=$SPAWNED
  wait_port "$BACKEND"
fi
# nginx's own processes: the master (pid file) and its workers.
nginx_pids() { echo "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); }
# Writes $WORK/NAME/nginx.conf from a config template: nginx_conf NAME
# TEMPLATE SED-ARGS...
nginx_conf() {
  local dir="$WORK/$1" tmpl="$2"
  shift 2
  mkdir -p "$dir"
  sed -e "s|@DIR@|$dir|g" -e "s|@BACKEND@|$BACKEND|g" "$@" "$tmpl" >"$dir/nginx.conf"
}
# Starts nginx from a config template: start_nginx NAME TEMPLATE SED-ARGS...;
# its master's pid in $NGINX_STARTED.
start_nginx() {
  local dir="$WORK/$1"
  nginx_conf "$@"
  cmd "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx-error.log"
  for _ in $(seq 1 50); do [[ -s "$dir/nginx.pid" ]] && break; sleep 0.1; done
  NGINX_STARTED="$(cat "$dir/nginx.pid")"
  PIDS+=("$NGINX_STARTED")
}
cpu_s() { echo "scale=3; ($2-$1)/$TCK" | bc; }

# Instructions per request: each proxy alone under callgrind, which counts
# instructions executed in user space, not seconds, so the figure is the
# same on a busy machine (the kernel's part is not in it). nginx runs one
# worker and no master. Counted only while the load runs for 10 s, after a
# 3 s warm-up that is not counted: HTTP/1.1 with wrk at c=16 and at c=1
# (`instr` results; at one connection every request pays for the runtime's
# wake-ups itself), HTTP/2 with h2load at one connection and one stream
# (`instr_h2`, the point where the activator is furthest from nginx), to
# hello over HTTP/1.1 and over h2c (targets activator-h2c, nginx-h2c). A
# run with any non-2xx answer or failed request (a route that does not
# reach hello) writes no result.
instr_count() { # instr_count NAME PORT h1c16|h1c1|h2 CMD...: runs CMD under callgrind
  local name=$1 port=$2 proto=$3 out="$WORK/callgrind-$1-$3.out"
  shift 3
  spawn "$WORK/callgrind-$name-$proto.log" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$@"
  local pid=$SPAWNED run n total ok
  wait_port "127.0.0.1:$port"
  local conc=1 threads=1
  if [[ "$proto" == h1c* ]]; then
    conc=${proto#h1c}
    ((conc < 2)) || threads=2
    for _ in $(seq 1 100); do curl -fs -o /dev/null -H "Host: $HOST_HDR" "http://127.0.0.1:$port/" && break; sleep 0.1; done
    wrk -t"$threads" -c"$conc" -d3s -H "Host: $HOST_HDR" "http://127.0.0.1:$port/" >/dev/null
    callgrind_control -i on "$pid" >/dev/null 2>&1
    run=$(wrk -t"$threads" -c"$conc" -d10s -H "Host: $HOST_HDR" "http://127.0.0.1:$port/")
    callgrind_control -i off "$pid" >/dev/null 2>&1
    n=$(awk '/requests in/ {print $1}' <<<"$run")
    ok=1; grep -q 'Non-2xx' <<<"$run" && ok=0
  else
    for _ in $(seq 1 100); do
      curl -fs --http2-prior-knowledge -o /dev/null -H "Host: $HOST_HDR" "http://127.0.0.1:$port/" && break
      sleep 0.1
    done
    h2load -c1 -m1 -D 3 -H ":authority: $HOST_HDR" "http://127.0.0.1:$port/" >/dev/null
    callgrind_control -i on "$pid" >/dev/null 2>&1
    run=$(h2load -c1 -m1 -D 10 -H ":authority: $HOST_HDR" "http://127.0.0.1:$port/")
    callgrind_control -i off "$pid" >/dev/null 2>&1
    # requests: T total, S started, D done, N succeeded, F failed, ...;
    # status codes: X 2xx, ...
    n=$(awk '/^requests:/ {print $8}' <<<"$run")
    ok=$(awk '/^requests:/ {f=$10} /^status codes:/ {x=$3} END {print (f == 0 && x == '"${n:-0}"') ? 1 : 0}' <<<"$run")
  fi
  stop "$pid"
  if [[ "$ok" != 1 || -z "$n" ]]; then
    log "  $name ($proto): not counted, the load saw errors: $(grep -E 'Non-2xx|errors|^requests:|^status codes:' <<<"$run" | tr -s ' ' | paste -sd' ')"
    return
  fi
  total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  if [[ "$proto" == h1c* ]]; then
    result "instr target=$name c=$conc requests=$n instructions=${total:-}"
  else
    result "instr_h2 target=$name c=1 m=1 requests=$n instructions=${total:-}"
  fi
  log "  $name ($proto): $n requests, ${total:-?} instructions"
}
# The activator's arguments under callgrind (its listen port is the caller's).
INSTR_ARGS=(--listen "127.0.0.1:$(port 18094)" --admin "127.0.0.1:$(port 19099)" --function bench/hello
  --backend "$BACKEND")
# instr_activators LOAD: counts this build's activator and, with
# BENCH_BEFORE_BIN, the earlier build's.
instr_activators() {
  instr_count activator "$(port 18094)" "$1" "${ACTIVATOR[@]}" "${INSTR_ARGS[@]}"
  if [[ -n "${BENCH_BEFORE_BIN:-}" ]]; then
    instr_count activator-before "$(port 18094)" "$1" "${BEFORE_ACTIVATOR[@]}" "${INSTR_ARGS[@]}"
  fi
}
# instr_nginx TARGET PORT LOAD NAME TEMPLATE SED-ARGS...: counts nginx on
# PORT, as TARGET in the results, from a config template (see nginx_conf), as
# one worker with no master, in the foreground.
instr_nginx() {
  local target=$1 port=$2 load=$3 dir="$WORK/$4"
  shift 3
  nginx_conf "$@" -e "s|^worker_processes .*|worker_processes 1; master_process off;|" -e "s|^daemon on;|daemon off;|"
  instr_count "$target" "$port" "$load" "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx-error.log"
}

# ---------------------------------------------------------------- 1. proxy cost
if want proxy; then
log "1. proxy cost: direct, activator, nginx, haproxy, go-rp at c=$CONCS, ${DUR}s x $REPS"
spawn "$WORK/activator-proxy.log" "${ACTIVATOR[@]}" --listen "127.0.0.1:$(port 18080)" \
  --admin "127.0.0.1:$(port 19091)" --function bench/hello --backend "$BACKEND"
ACT_PID=$SPAWNED
BEFORE_PID=""
if [[ -n "${BENCH_BEFORE_BIN:-}" ]]; then
  spawn "$WORK/activator-before.log" "${BEFORE_ACTIVATOR[@]}" --listen "127.0.0.1:$(port 18088)" \
    --admin "127.0.0.1:$(port 19098)" --function bench/hello --backend "$BACKEND"
  BEFORE_PID=$SPAWNED
fi
spawn "$WORK/go-rp.log" "$GO_RP" -listen "127.0.0.1:$(port 18085)" -backend "$BACKEND" -max-idle-conns 1000
GORP_PID=$SPAWNED

start_nginx nginx hack/bench/nginx.conf -e "s|@LISTEN@|127.0.0.1:$(port 18081)|g"
NGINX_PID=$NGINX_STARTED
mkdir -p "$WORK/haproxy"
sed -e "s|@DIR@|$WORK/haproxy|g" -e "s|@LISTEN@|127.0.0.1:$(port 18082)|g" -e "s|@BACKEND@|$BACKEND|g" \
  hack/bench/haproxy.cfg >"$WORK/haproxy/haproxy.cfg"
cmd "$HAPROXY" -f "$WORK/haproxy/haproxy.cfg"
for p in 18080 18081 18082 18085 ${BEFORE_PID:+18088}; do wait_port "127.0.0.1:$(port $p)"; done
HAPROXY_PID="$(cat "$WORK/haproxy/haproxy.pid")"; PIDS+=("$HAPROXY_PID")
PROXY_TARGETS="direct activator${BEFORE_PID:+ activator-before} nginx haproxy go-rp"
target_port() { case $1 in direct) port 18001;; activator) port 18080;; activator-before) port 18088;; nginx) port 18081;; haproxy) port 18082;; go-rp) port 18085;; esac; }
target_pids() { case $1 in direct) echo "";; activator) echo "$ACT_PID";; activator-before) echo "$BEFORE_PID";; nginx) nginx_pids "$NGINX_PID";; haproxy) echo "$HAPROXY_PID";; go-rp) echo "$GORP_PID";; esac; }

for t in $PROXY_TARGETS; do  # warm-up: pools, caches
  wrk -t2 -c64 -d1s -H "Host: $HOST_HDR" "http://127.0.0.1:$(target_port $t)/" >/dev/null
done
for rep in $(seq 1 "$REPS"); do
  for c in $CONCS; do
    for t in $PROXY_TARGETS; do
      threads=2; ((c < 2)) && threads=1
      url="http://127.0.0.1:$(target_port $t)/"
      read -r pu0 ps0 <<<"$(cpu_split $(target_pids $t))"; b0=$(cpu_ticks "$HELLO_PID")
      line=$(wrk -t"$threads" -c"$c" -d"${DUR}s" --latency -s hack/bench/percentiles.lua \
        -H "Host: $HOST_HDR" "$url" | grep '^BENCH')
      read -r pu1 ps1 <<<"$(cpu_split $(target_pids $t))"; b1=$(cpu_ticks "$HELLO_PID")
      result "proxy target=$t c=$c rep=$rep ${line#BENCH } proxy_cpu_s=$(cpu_s $((pu0 + ps0)) $((pu1 + ps1)))" \
        "proxy_user_s=$(cpu_s "$pu0" "$pu1") proxy_sys_s=$(cpu_s "$ps0" "$ps1") backend_cpu_s=$(cpu_s "$b0" "$b1")"
      log "  $t c=$c rep=$rep: ${line#BENCH }"
    done
  done
done
printf '%s\n' "wrk -t{1|2} -c{C} -d${DUR}s --latency -s hack/bench/percentiles.lua -H 'Host: $HOST_HDR' http://127.0.0.1:{$(port 18001) direct|$(port 18080) activator|$(port 18081) nginx|$(port 18082) haproxy|$(port 18085) go-rp}/" >>"$CMDS"
result "idle_rss component=bench-activator-after-load rss_kib=$(vm "$ACT_PID" VmRSS) hwm_kib=$(vm "$ACT_PID" VmHWM)"
result "idle_rss component=go-rp-after-load rss_kib=$(vm "$GORP_PID" VmRSS) hwm_kib=$(vm "$GORP_PID" VmHWM)"
stop "$ACT_PID"; stop "$GORP_PID"
[[ -z "$BEFORE_PID" ]] || stop "$BEFORE_PID"
kill -TERM "$NGINX_PID" "$HAPROXY_PID" 2>/dev/null || true

log "1. instructions per request (callgrind): activator${BEFORE_PID:+, activator-before}, nginx"
for load in h1c16 h1c1; do
  instr_activators $load
  instr_nginx nginx "$(port 18095)" $load nginx-callgrind hack/bench/nginx.conf -e "s|@LISTEN@|127.0.0.1:$(port 18095)|g"
done
fi

# ---------------------------------------------------------------- 1b. proxy cost over h2c
# h2load speaks HTTP/2 with prior knowledge to http:// URLs. The route is
# named by :authority (a Host header would be sent as a second, regular
# header, which nginx refuses with 400). go-rp is not a target: Go's standard
# library serves h2c only through golang.org/x/net/http2/h2c.
if want h2; then
log "1b. proxy cost over h2c: direct, activator (-> HTTP/1.1 and -> h2c), nginx (-> HTTP/1.1 and -> h2c) at c x m = $H2_POINTS, ${DUR}s x $REPS"
spawn "$WORK/activator-h2.log" "${ACTIVATOR[@]}" --listen "127.0.0.1:$(port 18086)" \
  --admin "127.0.0.1:$(port 19096)" --function bench/hello --backend "$BACKEND"
H2ACT_PID=$SPAWNED
spawn "$WORK/activator-h2c.log" "${ACTIVATOR[@]}" --listen "127.0.0.1:$(port 18087)" \
  --admin "127.0.0.1:$(port 19097)" --function bench/hello --backend "$BACKEND" --upstream-h2c
H2CACT_PID=$SPAWNED
H2BEFORE_PID=""
if [[ -n "${BENCH_BEFORE_BIN:-}" ]]; then
  spawn "$WORK/activator-h2-before.log" "${BEFORE_ACTIVATOR[@]}" --listen "127.0.0.1:$(port 18090)" \
    --admin "127.0.0.1:$(port 19090)" --function bench/hello --backend "$BACKEND"
  H2BEFORE_PID=$SPAWNED
fi
start_nginx nginx-h2 hack/bench/nginx-h2.conf \
  -e "s|@LISTEN_H1@|127.0.0.1:$(port 18088)|g" -e "s|@LISTEN_H2@|127.0.0.1:$(port 18089)|g"
H2NGINX_PID=$NGINX_STARTED
for p in 18086 18087 18088 18089 ${H2BEFORE_PID:+18090}; do wait_port "127.0.0.1:$(port $p)"; done
H2_TARGETS="direct activator${H2BEFORE_PID:+ activator-before} activator-h2c nginx nginx-h2c"
h2_port() { case $1 in direct) port 18001;; activator) port 18086;; activator-before) port 18090;; activator-h2c) port 18087;; nginx) port 18088;; nginx-h2c) port 18089;; esac; }
h2_pids() { case $1 in direct) echo "";; activator) echo "$H2ACT_PID";; activator-before) echo "$H2BEFORE_PID";; activator-h2c) echo "$H2CACT_PID";; nginx | nginx-h2c) nginx_pids "$H2NGINX_PID";; esac; }

for t in $H2_TARGETS; do  # warm-up: pools, caches
  h2load -t2 -c16 -m10 -D 1 -H ":authority: $HOST_HDR" "http://127.0.0.1:$(h2_port $t)/" >/dev/null
done
for rep in $(seq 1 "$REPS"); do
  for point in $H2_POINTS; do
    c=${point%x*}; m=${point#*x}
    for t in $H2_TARGETS; do
      threads=2; ((c < 2)) && threads=1
      rm -f "$WORK/h2load.log"
      p0=$(cpu_ticks $(h2_pids $t)); b0=$(cpu_ticks "$HELLO_PID")
      h2load -t"$threads" -c"$c" -m"$m" -D "$DUR" --log-file="$WORK/h2load.log" \
        -H ":authority: $HOST_HDR" "http://127.0.0.1:$(h2_port $t)/" >"$WORK/h2load.out" 2>&1 || true
      p1=$(cpu_ticks $(h2_pids $t)); b1=$(cpu_ticks "$HELLO_PID")
      line=$(python3 hack/bench/h2load_line.py "$WORK/h2load.out" "$WORK/h2load.log")
      result "h2 target=$t c=$c m=$m rep=$rep ${line#BENCH } proxy_cpu_s=$(cpu_s "$p0" "$p1") backend_cpu_s=$(cpu_s "$b0" "$b1")"
      log "  h2 $t c=$c m=$m rep=$rep: ${line#BENCH }"
    done
  done
done
rm -f "$WORK/h2load.log"
# Upstream connections each activator holds to hello once the load is over
# (idle in its pool): h2c multiplexes, so a handful against up to c x m for
# HTTP/1.1; the check that --upstream-h2c took effect.
for t in activator activator-h2c; do
  n=$(ss -Htnp state established "( dport = :$(port 18001) )" 2>/dev/null | grep -c "pid=$(h2_pids $t)," || true)
  result "h2_upstream_conns target=$t n=$n"
done
printf '%s\n' "h2load -t{1|2} -c{C} -m{M} -D $DUR --log-file=\$WORK/h2load.log -H ':authority: $HOST_HDR' http://127.0.0.1:{$(port 18001) direct|$(port 18086) activator|$(port 18087) activator-h2c (--upstream-h2c)|$(port 18088) nginx|$(port 18089) nginx-h2c}/  # then hack/bench/h2load_line.py \$WORK/h2load.out \$WORK/h2load.log" >>"$CMDS"
stop "$H2ACT_PID"; stop "$H2CACT_PID"
[[ -z "$H2BEFORE_PID" ]] || stop "$H2BEFORE_PID"
kill -TERM "$H2NGINX_PID" 2>/dev/null || true

log "1b. instructions per request (callgrind, h2load -c1 -m1, -> HTTP/1.1 and -> h2c): activator${H2BEFORE_PID:+, activator-before}, nginx"
instr_activators h2
instr_nginx nginx "$(port 18095)" h2 nginx-h2-callgrind hack/bench/nginx-h2.conf \
  -e "s|@LISTEN_H1@|127.0.0.1:$(port 18095)|g" -e "s|@LISTEN_H2@|127.0.0.1:$(port 18096)|g"
instr_count activator-h2c "$(port 18094)" h2 "${ACTIVATOR[@]}" "${INSTR_ARGS[@]}" --upstream-h2c
instr_nginx nginx-h2c "$(port 18096)" h2 nginx-h2c-callgrind hack/bench/nginx-h2.conf \
  -e "s|@LISTEN_H1@|127.0.0.1:$(port 18095)|g" -e "s|@LISTEN_H2@|127.0.0.1:$(port 18096)|g"
fi

# ---------------------------------------------------------------- 3. buffering
if want buffering; then
log "3. buffering: $PARK_N requests parked at zero, x $REPS"
for rep in $(seq 1 "$REPS"); do
  spawn "$WORK/activator-park-$rep.log" "${ACTIVATOR[@]}" --listen "127.0.0.1:$(port 18083)" \
    --admin "127.0.0.1:$(port 19093)" --function bench/hello --backend "$BACKEND" --at-zero \
    --queue-max "$PARK_N" --queue-timeout-secs 300 --container-concurrency 1000
  pid=$SPAWNED
  wait_port "127.0.0.1:$(port 18083)"; wait_port "127.0.0.1:$(port 19093)"
  line=$(cmd "$BIN/siesta-bench" park --target "127.0.0.1:$(port 18083)" --admin "127.0.0.1:$(port 19093)" \
    --host "$HOST_HDR" --n "$PARK_N" --pid "$pid")
  result "park rep=$rep $line"
  log "  rep=$rep: $line"
  stop "$pid"
done
fi

# ---------------------------------------------------------------- 4. streaming
if want streaming; then
log "4. streaming: $STREAM_BYTES bytes up (echoed back) and down, x $REPS"
spawn "$WORK/activator-stream.log" "${ACTIVATOR[@]}" --listen "127.0.0.1:$(port 18084)" \
  --admin "127.0.0.1:$(port 19094)" --function bench/hello --backend "$BACKEND"
SPID=$SPAWNED
wait_port "127.0.0.1:$(port 18084)"
sleep 0.5
result "stream_idle rss_kib=$(vm "$SPID" VmRSS)"
for rep in $(seq 1 "$REPS"); do
  for mode in upload download; do
    line=$(cmd "$BIN/siesta-bench" stream --target "127.0.0.1:$(port 18084)" --host "$HOST_HDR" \
      --mode "$mode" --bytes "$STREAM_BYTES" --pid "$SPID")
    result "stream via=activator rep=$rep $line"
    line=$(cmd "$BIN/siesta-bench" stream --target "$BACKEND" --host "$HOST_HDR" \
      --mode "$mode" --bytes "$STREAM_BYTES")
    result "stream via=direct rep=$rep $line"
    log "  rep=$rep $mode done"
  done
done
result "stream_end rss_kib=$(vm "$SPID" VmRSS) hwm_kib=$(vm "$SPID" VmHWM)"
stop "$SPID"
fi
[[ -n "$HELLO_PID" ]] && stop "$HELLO_PID"

# ---------------------------------------------------------------- 2 + 5. cluster
if want cluster; then
log "2. cold start on the local cluster ($COLD_N runs) and 5. footprint"
if ! "$K" get --raw /readyz >/dev/null 2>&1; then
  log "local cluster not up: starting it (hack/cluster/up.sh, node-up.sh)"
  bash hack/cluster/up.sh >&2
fi
# node-up.sh rebuilds the debug binaries the node agent runs; only when no node
# agent runs, and into the default target dir, not ours.
devnode_pid="$(cat "$ROOT/.cluster/devnode.pid" 2>/dev/null || true)"
if [[ -z "$devnode_pid" ]] || ! kill -0 "$devnode_pid" 2>/dev/null; then
  env -u CARGO_TARGET_DIR bash hack/cluster/node-up.sh >&2
fi
DEVNODE_LOG="$ROOT/.cluster/logs/devnode.log"
cmd "$K" apply -f crds/function.yaml >/dev/null
BENCH_NS="siesta-bench-$$"
cmd "$K" create ns "$BENCH_NS" >/dev/null
SIESTA_LOG=info spawn "$WORK/controller.log" "$BIN/siesta" controller --admin-addr 127.0.0.1:19190 \
  --namespace "$BENCH_NS" --watch-namespace "$BENCH_NS" --identity "bench-$$" \
  --lease-duration 3s --renew-period 300ms --activator-url http://127.0.0.1:19192/metrics
CTL_PID=$SPAWNED
SIESTA_LOG="info,siesta_activator::probe=debug" spawn "$WORK/activator.log" "$BIN/siesta" activator \
  --listen 127.0.0.1:18090 --admin-addr 127.0.0.1:19192 --controller-url http://127.0.0.1:19190
CACT_PID=$SPAWNED
for _ in $(seq 1 300); do
  curl -fs 127.0.0.1:19190/readyz >/dev/null 2>&1 && curl -fs 127.0.0.1:19192/readyz >/dev/null 2>&1 && break
  sleep 0.1
done
sleep 3
result "idle_rss component=controller rss_kib=$(vm "$CTL_PID" VmRSS) hwm_kib=$(vm "$CTL_PID" VmHWM)"
result "idle_rss component=activator rss_kib=$(vm "$CACT_PID" VmRSS) hwm_kib=$(vm "$CACT_PID" VmHWM)"

cat >"$WORK/function.yaml" <<EOF
apiVersion: siesta.dev/v1alpha1
kind: Function
metadata: {name: hello, namespace: $BENCH_NS}
spec:
  image: siesta.dev/examples/hello:latest
  port: 8080
  queue: {maxRequests: 100, timeoutSeconds: 60}
  scale: {minReplicas: 0, maxReplicas: 5, target: 10, stableWindowSeconds: 6, scaleToZeroAfterSeconds: 2}
---
apiVersion: siesta.dev/v1alpha1
kind: Function
metadata: {name: step, namespace: $BENCH_NS}
spec:
  image: siesta.dev/examples/hello:latest
  port: 8080
  queue: {maxRequests: 1000, timeoutSeconds: 60}
  scale: {minReplicas: 0, maxReplicas: 5, target: 10, stableWindowSeconds: 6, scaleToZeroAfterSeconds: 2}
EOF
# The shared cluster may run another Siesta controller that watches every
# namespace (make demo's); its autoscaler sees none of this traffic and scales
# these Functions too. So each cold run gets a fresh Function (created at zero)
# with a long scaleToZeroAfterSeconds, and is deleted after the run.
wait_hello_gone() {
  for _ in $(seq 1 300); do
    [[ -z "$("$K" get deploy,pods -n "$BENCH_NS" -l siesta.dev/function=hello -o name 2>/dev/null)" ]] && return 0
    sleep 0.2
  done
}
python3 - "$WORK/function.yaml" <<'PY'
import sys
p = sys.argv[1]
docs = open(p).read().split("---\n")
open(p.replace("function.yaml", "cold.yaml"), "w").write(docs[0].replace("scaleToZeroAfterSeconds: 2", "scaleToZeroAfterSeconds: 3600"))
open(p.replace("function.yaml", "step.yaml"), "w").write(docs[1])
PY
for i in $(seq 1 "$COLD_N"); do
  cmd "$K" apply -f "$WORK/cold.yaml" >/dev/null
  for _ in $(seq 1 300); do
    r=$("$K" get deploy hello -n "$BENCH_NS" -o jsonpath='{.spec.replicas}' 2>/dev/null || true)
    [[ "$r" == 0 ]] && break; sleep 0.1
  done
  sleep 2  # the activator's Function watch
  line=$(cmd "$BIN/siesta-bench" cold --target 127.0.0.1:18090 --host "hello.$BENCH_NS.siesta.local" --path /pod)
  result "cold run=$i $line"
  log "  cold run $i: $line"
  cmd "$K" delete fn hello -n "$BENCH_NS" --wait=false >/dev/null
  wait_hello_gone
  sleep 1
done
cmd "$K" apply -f "$WORK/step.yaml" >/dev/null
sleep 2
result "cold_metric $(curl -s 127.0.0.1:19192/metrics | awk '/^siesta_activator_cold_start_duration_seconds_(sum|count)/ {printf "%s=%s ", $1, $2}' | sed 's/{[^}]*}//g')"
python3 hack/bench/coldstart.py "$BENCH_NS" "$RESULTS" "$WORK/controller.log" "$DEVNODE_LOG" "$WORK/activator.log" >>"$RESULTS"

log "5. footprint: controller with $NFN Functions"
BENCH_NS1K="siesta-bench-fns-$$"
cmd "$K" create ns "$BENCH_NS1K" >/dev/null
python3 -c "
for i in range($NFN):
    print('---\napiVersion: siesta.dev/v1alpha1\nkind: Function\nmetadata: {name: f%d}\nspec: {image: example.com/hello:1.0}' % i)
" >"$WORK/fns.yaml"
SIESTA_LOG=warn spawn "$WORK/controller-fns.log" "$BIN/siesta" controller --admin-addr 127.0.0.1:19195 \
  --namespace "$BENCH_NS1K" --watch-namespace "$BENCH_NS1K" --identity "bench-fns-$$" \
  --lease-duration 3s --renew-period 300ms
FPID=$SPAWNED
for _ in $(seq 1 300); do curl -fs 127.0.0.1:19195/readyz >/dev/null 2>&1 && break; sleep 0.1; done
start=$(date +%s.%N)
cmd "$K" create -n "$BENCH_NS1K" -f "$WORK/fns.yaml" >/dev/null
deadline=$(( $(date +%s) + (NFN > 100 ? 900 : 300) ))
ready=0
while (( $(date +%s) < deadline )); do
  ready=$("$K" get fn -n "$BENCH_NS1K" -o json | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
print(sum(1 for f in items if f.get("status", {}).get("observedGeneration") == 1 and any(
    c["type"] == "Ready" and c["status"] == "True" for c in f.get("status", {}).get("conditions", []))))')
  deps=$("$K" get deploy -n "$BENCH_NS1K" --no-headers 2>/dev/null | wc -l)
  (( ready >= NFN && deps >= NFN )) && break
  sleep 1
done
end=$(date +%s.%N)
result "fns n=$NFN ready=$ready secs=$(echo "$end - $start" | bc) rss_kib=$(vm "$FPID" VmRSS) hwm_kib=$(vm "$FPID" VmHWM)"
stop "$FPID"
"$K" delete ns "$BENCH_NS1K" --wait=false >/dev/null 2>&1 || true; BENCH_NS1K=""

# ---------------------------------------------------------------- 6. autoscaler
STEP_C=30; STEP_EXPECT=3; STEP_DUR=15; [[ "$QUICK" == 1 ]] && STEP_DUR=8
log "6. autoscaler: step 0 -> $STEP_C clients (GET /delay?ms=50, target 10/pod), ${STEP_DUR}s, x $REPS"
printf '%s\n' "wrk -t2 -c$STEP_C -d${STEP_DUR}s -H 'Host: step.$BENCH_NS.siesta.local' 'http://127.0.0.1:18090/delay?ms=50'  # polled: kubectl get deploy step -o jsonpath='{.spec.replicas} {.status.readyReplicas}'" >>"$CMDS"
for rep in $(seq 1 "$REPS"); do
  wrk -t2 -c"$STEP_C" -d"${STEP_DUR}s" -H "Host: step.$BENCH_NS.siesta.local" \
    "http://127.0.0.1:18090/delay?ms=50" >"$WORK/step-$rep.wrk" 2>&1 &
  WRK_PID=$!; PIDS+=("$WRK_PID")
  t0=$(date +%s.%N); td=""; tr=""; maxr=0
  while kill -0 "$WRK_PID" 2>/dev/null; do
    out=$("$K" get deploy step -n "$BENCH_NS" -o jsonpath='{.spec.replicas} {.status.readyReplicas}' 2>/dev/null || true)
    r=$(awk '{print $1+0}' <<<"$out"); rr=$(awk '{print $2+0}' <<<"$out")
    now=$(date +%s.%N)
    (( ${r:-0} > maxr )) && maxr=${r:-0}
    [[ -z "$td" ]] && (( ${r:-0} >= STEP_EXPECT )) && td=$(echo "$now - $t0" | bc)
    [[ -z "$tr" ]] && (( ${rr:-0} >= STEP_EXPECT )) && tr=$(echo "$now - $t0" | bc)
    sleep 0.1
  done
  wait "$WRK_PID" 2>/dev/null || true
  t1=$(date +%s.%N); tz=""; tg=""
  for _ in $(seq 1 600); do
    r=$("$K" get deploy step -n "$BENCH_NS" -o jsonpath='{.spec.replicas}' 2>/dev/null || true)
    [[ -z "$tz" && "$r" == 0 ]] && tz=$(echo "$(date +%s.%N) - $t1" | bc)
    if [[ -n "$tz" && -z "$("$K" get pods -n "$BENCH_NS" -l siesta.dev/function=step -o name 2>/dev/null)" ]]; then
      tg=$(echo "$(date +%s.%N) - $t1" | bc); break
    fi
    sleep 0.2
  done
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/step-$rep.wrk")
  result "autoscale rep=$rep clients=$STEP_C expect=$STEP_EXPECT to_desired_s=${td:-na} to_ready_s=${tr:-na} max_replicas=$maxr stop_to_zero_s=${tz:-na} stop_to_pods_gone_s=${tg:-na} rps=${rps:-na}"
  log "  rep=$rep: desired $STEP_EXPECT after ${td:-na}s, ready ${tr:-na}s, max $maxr; zero ${tz:-na}s after stop"
  sleep 2
done
stop "$CACT_PID"; stop "$CTL_PID"
"$K" delete ns "$BENCH_NS" --wait=false >/dev/null 2>&1 || true; BENCH_NS=""
fi

# ---------------------------------------------------------------- 8. scale
SCALE_N="${BENCH_SCALE:-100}"; [[ "$QUICK" == 1 ]] && SCALE_N="${BENCH_SCALE:-10}"
if [[ "$SCALE_N" != 0 ]] && want cluster; then
  log "8. control plane at scale: $SCALE_N Functions (hack/bench/scale.sh)"
  printf '%s\n' "hack/bench/scale.sh $SCALE_N" >>"$CMDS"
  SCALE_IDLE_SECS="${SCALE_IDLE_SECS:-$([[ "$QUICK" == 1 ]] && echo 10 || echo 30)}" \
    BENCH_SKIP_BUILD=1 bash hack/bench/scale.sh "$SCALE_N" >>"$RESULTS"
fi

# ---------------------------------------------------------------- 7. real node
if want real && [[ "${BENCH_REAL:-1}" == 1 ]]; then
  REAL_RUNS=5; [[ "$QUICK" == 1 ]] && REAL_RUNS=2
  log "7. real node: $REAL_RUNS cold starts, warm latency and throughput via ClusterIP and pod IP"
  printf '%s\n' "bash hack/bench/realnode.sh $REAL_RUNS  # images, make real-up, helm install (defaults), hack/bench/realnode.py" >>"$CMDS"
  bash hack/bench/realnode.sh "$REAL_RUNS" >>"$RESULTS"
fi

# ---------------------------------------------------------------- report
result "load when=end loadavg=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' ,)"
cp "$RESULTS" "$WORK/results.keep"
python3 hack/bench/report.py "$RESULTS" "$CMDS" "$QUICK" "$REPS" "$DUR" "$OUT"
grep -q '^scale ' "$RESULTS" && python3 hack/bench/scale_report.py "$RESULTS" --into "$OUT"
log "raw results in $RESULTS; report written to $OUT"
