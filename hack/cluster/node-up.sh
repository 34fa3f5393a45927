#!/usr/bin/env bash
# Starts siesta-devnode (the node agent) against the local control plane.
# It runs pods as local processes, resolving images through
# examples/images.yaml with SIESTA_BIN_DIR pointing at the cargo build.
# Idempotent: a running devnode is left alone. Pods get 127.$SIESTA_POD_IP_OCTET.x.y
# (default 10): give a second local cluster another octet.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROFILE="${SIESTA_PROFILE:-debug}"
TARGET_DIR="${CARGO_TARGET_DIR:-$SIESTA_ROOT/target}"
BIN_DIR="$TARGET_DIR/$PROFILE"
PID_FILE="$STATE_DIR/devnode.pid"
LOG="$STATE_DIR/logs/devnode.log"
export KUBECONFIG="$KUBECONFIG_PATH"

[[ -f "$KUBECONFIG_PATH" ]] || die "no cluster: run 'make cluster-up' first"
# Always build: pods exec these binaries when they start, so a running
# devnode picks up a rebuilt siesta or hello for its next pods.
cargo_flags=()
[[ "$PROFILE" == release ]] && cargo_flags+=(--release)
log "building siesta, siesta-devnode and hello ($PROFILE)"
(cd "$SIESTA_ROOT" && cargo build -q "${cargo_flags[@]}" -p siesta -p siesta-devnode -p hello)

if pid_alive "$PID_FILE"; then
  log "devnode already running (pid $(cat "$PID_FILE"))"
  exit 0
fi


mkdir -p "$STATE_DIR/logs" "$STATE_DIR/devnode"
SIESTA_BIN_DIR="$BIN_DIR" SIESTA_TOOLS_BIN="$TOOLS_BIN" setsid "$BIN_DIR/siesta-devnode" \
  --image-map "$SIESTA_ROOT/examples/images.yaml" \
  --state-dir "$STATE_DIR/devnode" --pod-ip-octet "${SIESTA_POD_IP_OCTET:-10}" >>"$LOG" 2>&1 < /dev/null &
echo $! > "$PID_FILE"

for _ in $(seq 1 100); do
  if "$TOOLS_BIN/kubectl" get node siesta-devnode \
      -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True; then
    log "devnode up (pid $(cat "$PID_FILE")), node siesta-devnode Ready; log: $LOG"
    exit 0
  fi
  pid_alive "$PID_FILE" || { tail -20 "$LOG" >&2; die "devnode exited; see $LOG"; }
  sleep 0.2
done
tail -20 "$LOG" >&2
die "node siesta-devnode did not turn Ready; see $LOG"
