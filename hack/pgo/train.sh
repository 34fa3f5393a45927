#!/usr/bin/env bash
# Trains pgo/siesta.profdata, the profile every release build of `siesta`
# uses (pgo/rustflags.sh; pgo/README.md says why and when to re-train).
#
#   bash hack/pgo/train.sh        # about 10 minutes here, most of it the build
#
# 1. Builds `siesta` instrumented (-Cprofile-generate), alone and with the
#    same flags as the Dockerfile's build apart from the profile flags, so
#    the symbol names the profile records are the shipped binary's.
# 2. Runs `siesta bench-activator` (the real request path, a static route)
#    in front of `hello` under the traffic of `make bench` and more: HTTP/1.1
#    at 1 to 256 connections, small and large bodies both ways, h2c at one
#    stream and at many, an h2c upstream, requests parked at zero and
#    released, WebSocket, chunked and 100-continue uploads, and malformed
#    requests (hack/pgo/odd_clients.py). Code the training never runs gets no
#    profile and is compiled as without one.
# 3. Merges the raw profiles (llvm-profdata of the LLVM that rustc is built
#    on, from Debian's llvm-N package, installed if missing) into a sparse
#    profile: functions that never ran are left out, not marked cold.
#
# Every process it starts is stopped by PID; ports 18300-18399 and 19300-19399.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
source hack/bench/lib.sh
log() { printf '[pgo %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

LLVM_MAJOR="$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
PROFDATA="llvm-profdata-$LLVM_MAJOR"
need=()
command -v "$PROFDATA" >/dev/null || need+=("llvm-$LLVM_MAJOR")
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
  # llvm-N for the LLVM of this rustc: Debian 12 has llvm-22 in bookworm-security.
  log "installing ${need[*]}"
  apt_install "${need[@]}"
fi

GEN_TARGET="${PGO_TARGET_DIR:-$ROOT/target-pgo}"
TOOLS_TARGET="${CARGO_TARGET_DIR:-$ROOT/target-bench}"
WORK="$(mktemp -d /tmp/siesta-pgo.XXXXXX)"
# A fixed path: it is part of RUSTFLAGS, so a new one would rebuild everything.
RAW="${PGO_RAW_DIR:-$GEN_TARGET/profraw}"
rm -rf "$RAW"
PIDS=()
trap 'stop_pids "${PIDS[@]}"' EXIT

log "building siesta instrumented into $GEN_TARGET"
RUSTFLAGS="-Cprofile-generate=$RAW" CARGO_TARGET_DIR="$GEN_TARGET" \
  cargo build -q --release --locked -p siesta
log "building hello and siesta-bench into $TOOLS_TARGET"
CARGO_TARGET_DIR="$TOOLS_TARGET" cargo build -q --release --locked -p hello -p siesta-bench
# The build scripts and proc macros of that build are instrumented too and
# wrote their own profiles: only the activator's are wanted.
rm -rf "$RAW"
SIESTA="$GEN_TARGET/release/siesta"
TOOLS="$TOOLS_TARGET/release"

spawn() { "${@:2}" >"$WORK/$1.log" 2>&1 & SPAWNED=$!; PIDS+=("$SPAWNED"); }
# Stops an activator and waits for it: the profile is written at exit.
finish() { kill -TERM "$1"; wait "$1" || { log "an activator exited with $?"; exit 1; }; }

HOST_HDR="hello.bench.siesta.local"
BACKEND=127.0.0.1:18301
spawn hello env PORT=18301 HOST=127.0.0.1 POD_NAME=pgo "$TOOLS/hello"
wait_port "127.0.0.1:18301"
activator() { # activator NAME PORT ADMIN_PORT FLAGS...
  spawn "$1" "$SIESTA" bench-activator --listen "127.0.0.1:$2" --admin "127.0.0.1:$3" \
    --function bench/hello --backend "$BACKEND" "${@:4}"
  wait_port "127.0.0.1:$2"
}

wrk_at() { # wrk_at PORT CONNECTIONS SECONDS [wrk flags]
  local threads=2; (($2 == 1)) && threads=1
  wrk -t"$threads" -c"$2" -d"$3"s -H "Host: $HOST_HDR" "${@:4}" "http://127.0.0.1:$1/" >>"$WORK/load.log"
}
h2_at() { # h2_at PORT CONNECTIONS STREAMS SECONDS [h2load flags]
  h2load -c"$2" -m"$3" -D "$4" -H ":authority: $HOST_HDR" "${@:5}" "http://127.0.0.1:$1/" >>"$WORK/load.log"
}
cat >"$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.path = "/echo"
wrk.body = string.rep("b", 4096)
wrk.headers["Content-Type"] = "application/octet-stream"
LUA
head -c 16384 /dev/zero >"$WORK/body"

log "HTTP/1.1 upstream: wrk, h2load, bodies, streams, odd clients"
activator h1 18310 19310
A=$SPAWNED
wrk_at 18310 1 6
wrk_at 18310 16 6
wrk_at 18310 64 4
wrk_at 18310 256 4
wrk_at 18310 8 3 -s "$WORK/post.lua"
h2_at 18310 1 1 6
h2_at 18310 16 10 5
h2load -c4 -m4 -D 3 -d "$WORK/body" -H ":authority: $HOST_HDR" "http://127.0.0.1:18310/echo" >>"$WORK/load.log"
for mode in upload download; do
  "$TOOLS/siesta-bench" stream --target 127.0.0.1:18310 --host "$HOST_HDR" --mode "$mode" --bytes $((256 << 20)) >>"$WORK/load.log"
done
python3 hack/pgo/odd_clients.py 127.0.0.1:18310 "$HOST_HDR" 50

log "h2c upstream: wrk, h2load"
activator h2c 18311 19311 --upstream-h2c
B=$SPAWNED
wrk_at 18311 16 4
h2_at 18311 1 1 4
h2_at 18311 16 10 4

log "at zero: 2,000 requests parked, then released"
activator zero 18312 19312 --at-zero --queue-max 2000 --queue-timeout-secs 60 --container-concurrency 100
C=$SPAWNED
wait_port "127.0.0.1:19312"
"$TOOLS/siesta-bench" park --target 127.0.0.1:18312 --admin 127.0.0.1:19312 --host "$HOST_HDR" --n 2000 --pid "$C" >>"$WORK/load.log"

for p in "$A" "$B" "$C"; do finish "$p"; done
# wrk's error line, or h2load's "N failed" / "N errored" above zero.
if grep -Eq 'Non-2xx or 3xx responses|, [1-9][0-9]* (failed|errored)' "$WORK/load.log"; then
  log "a load run got errors: $WORK/load.log"; exit 1
fi
ls "$RAW"/*.profraw >/dev/null || { log "no raw profiles in $RAW"; exit 1; }

log "merging $(ls "$RAW"/*.profraw | wc -l) raw profiles"
"$PROFDATA" merge --sparse -o pgo/siesta.profdata "$RAW"/*.profraw
# The activator's hottest functions, for `make bench`'s freshness check
# (hack/pgo/freshness.py): by their largest block count, names without the
# module prefix that LLVM gives functions of internal linkage. (awk, not
# head: head's early exit would fail the pipeline under pipefail.)
{
  echo "# The activator's 50 hottest functions in pgo/siesta.profdata (hack/pgo/train.sh)."
  "$PROFDATA" show --topn=5000 pgo/siesta.profdata \
    | sed -n 's/^  \(.*;\)\{0,1\}\(_ZN16siesta_activator[^,]*\), max count = .*/\2/p' | awk 'NR <= 50'
} >pgo/hot-functions.txt
{
  echo "# What pgo/siesta.profdata was trained on (written by hack/pgo/train.sh)."
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!pgo' || echo ' (with uncommitted changes)')"
  echo "rustc: $(rustc -V)"
  echo "llvm-profdata: $("$PROFDATA" --version | sed -n 's/.*LLVM version //p' | awk 'NR == 1')"
  echo "functions with counts: $("$PROFDATA" show pgo/siesta.profdata | sed -n 's/^Total functions: //p')"
  echo "size: $(stat -c %s pgo/siesta.profdata) bytes"
} >pgo/PROFILE.txt
cat pgo/PROFILE.txt >&2
log "done; rebuild with: RUSTFLAGS=\"\$(sh pgo/rustflags.sh \$PWD)\" cargo build --release --locked -p siesta"
