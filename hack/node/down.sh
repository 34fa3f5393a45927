#!/usr/bin/env bash
# `make real-down`: stops what hack/node/up.sh started, by PID, removes every
# container, mount and cgroup it made, and restores the host state it saved
# (iptables, sysctls, bridge, route, paths). Safe to run when nothing is up,
# and again after a failed run. `hack/node/hoststate.sh` before and after
# shows nothing changed (make test checks that).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop_pid() { # stop_pid NAME GRACE_SECONDS
  local file="$NODE_DIR/$1.pid" grace=${2:-10} pid
  [[ -f "$file" ]] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((grace * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

[[ -d "$NODE_DIR" ]] || { nlog "nothing to stop"; exit 0; }
started=$SECONDS

# The node's agents first, so nothing restarts containers while they go.
stop_pid kube-proxy 5
stop_pid kube-scheduler 5
stop_pid kubelet 10

# Every container and sandbox: killed, then deleted (the shims exit with them).
if [[ -S "$CONTAINERD_SOCK" ]] && pid_alive "$NODE_DIR/containerd.pid"; then
  ctr_() { timeout 20 ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }
  for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
  for _ in $(seq 50); do
    [[ -z "$(ctr_ tasks ls 2>/dev/null | awk 'NR > 1 && $3 != "STOPPED"')" ]] && break
    sleep 0.1
  done
  for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$t" >/dev/null 2>&1 || true; done
  for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$c" >/dev/null 2>&1 || true; done
fi
stop_pid containerd 10
stop_pid apiserver-relay 2
# Shims of this containerd that outlived it (they are found by its socket).
for pid in $(pgrep -f -- "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" || true); do
  kill -KILL "$pid" 2>/dev/null || true
done

# The control plane of this node.
bash "$SIESTA_ROOT/hack/cluster/down.sh" >/dev/null 2>&1 || true

# Mounts under the node's dirs (container rootfs, netns, secret volumes),
# deepest first.
unmount_under() {
  local dir=$1 m
  for _ in 1 2 3; do
    mapfile -t mounts < <(awk -v d="$dir" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r)
    ((${#mounts[@]})) || return 0
    for m in "${mounts[@]}"; do as_root umount "$m" 2>/dev/null || as_root umount -l "$m" 2>/dev/null || true; done
  done
}
unmount_under "$NODE_DIR/"
unmount_under "$RUN_DIR/"
unmount_under /run/containerd/
unmount_under /run/netns/

# Network: the bridge (veths went with their namespaces), its route, the
# guards and every chain kube-proxy, kubelet and CNI added.
as_root ip route del "$SERVICE_CIDR" dev "$BRIDGE" 2>/dev/null || true
as_root ip link del "$BRIDGE" 2>/dev/null || true
if [[ -x "$K8S_BIN/kube-proxy" ]]; then
  as_root "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
fi
if [[ -f "$SAVED_DIR/complete" ]]; then
  # iptables as it was: restore replaces each table the save holds; a table
  # it does not hold did not exist, so it is emptied here and dropped below.
  for family in iptables ip6tables; do
    for table in filter nat mangle raw security; do
      grep -qx "\*$table" "$SAVED_DIR/$family" && continue
      as_root "$family" -t "$table" -F 2>/dev/null || true
      as_root "$family" -t "$table" -X 2>/dev/null || true
    done
    if [[ -s "$SAVED_DIR/$family" ]]; then
      as_root "$family-restore" <"$SAVED_DIR/$family" || nlog "warning: $family-restore failed"
    fi
  done
  # Then drop the nft tables that only this run created.
  if command -v nft >/dev/null; then
    while read -r family table; do
      grep -qx "$family $table" "$SAVED_DIR/nft-tables" || as_root nft delete table "$family" "$table" 2>/dev/null || true
    done < <(as_root nft list tables 2>/dev/null | awk '{print $2, $3}')
  fi
  while IFS='=' read -r key value; do
    as_root sysctl -qw "$key=$value" || nlog "warning: could not restore $key=$value"
  done <"$SAVED_DIR/sysctls"
  # cgroups: each created tree, deepest first (rmdir only removes empty ones).
  while read -r root; do
    for name in "${CGROUP_NAMES[@]}"; do
      [[ -d "$root/$name" ]] || continue
      grep -qx "$root/$name" "$SAVED_DIR/cgroups" && continue
      find "$root/$name" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
  done < <(cgroup_roots)
  for p in "${HARDCODED_PATHS[@]}"; do
    [[ -e "$p" ]] || continue
    grep -qx "$p" "$SAVED_DIR/paths" && continue
    unmount_under "$p/"
    as_root rm -rf "$p"
  done
else
  nlog "warning: no saved host state in $SAVED_DIR; only the node's own pieces were removed"
fi

rm -rf "$RUN_DIR"
if [[ "${SIESTA_KEEP_STATE:-0}" != 1 ]]; then
  rm -rf "$NODE_DIR"
fi
nlog "down in $((SECONDS - started)) s"
