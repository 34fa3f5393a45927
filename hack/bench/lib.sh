# Shared by the bench scripts (run.sh, scale.sh); sourced, not run.

# Stops the processes a bench started, by PID: TERM, half a second, KILL.
stop_pids() {
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; done
}
