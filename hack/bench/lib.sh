# Shared by the bench scripts (run.sh, scale.sh); sourced, not run.

# Stops the processes a bench started, by PID: TERM, half a second, KILL.
stop_pids() {
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; done
}

# Installs Debian packages (apt-get update only if the first try fails).
apt_install() {
  local sudo=""
  [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get install -y "$@" >/dev/null 2>&1 \
    || { $sudo apt-get update >/dev/null && $sudo apt-get install -y "$@" >/dev/null; }
}

# Waits up to 10 s for something to listen on HOST:PORT (the caller's `log`
# says so if nothing does).
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
    sleep 0.05
  done
  log "nothing listens on $1"; return 1
}
