#!/usr/bin/env bash
# Stops exactly what up.sh (and node-up.sh) started, by PID, newest first,
# then removes the state directory. Safe to run when nothing is up.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop_pid_file() {
  local file=$1 grace=${2:-10}
  [[ -f "$file" ]] || return 0
  local pid
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((grace * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

[[ -d "$STATE_DIR" ]] || { log "nothing to stop"; exit 0; }
# The node agent first: on SIGTERM it stops every pod process it runs.
stop_pid_file "$STATE_DIR/devnode.pid" 30
# Pod processes left behind by a node agent that was killed hard.
if [[ -d "$STATE_DIR/devnode/pods" ]]; then
  for f in "$STATE_DIR"/devnode/pods/*/*.pgid; do
    [[ -f "$f" ]] || continue
    pg=$(cat "$f"); kill -KILL -- "-$pg" 2>/dev/null || true
  done
fi
stop_pid_file "$STATE_DIR/kube-controller-manager.pid"
stop_pid_file "$STATE_DIR/kube-apiserver.pid"
stop_pid_file "$STATE_DIR/etcd.pid"
if [[ "${SIESTA_KEEP_STATE:-0}" != 1 ]]; then
  rm -rf "$STATE_DIR"
fi
log "down"
