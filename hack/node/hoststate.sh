#!/usr/bin/env bash
# Prints the host-wide state a real node can change, in a stable form, so
# that a run of `up` then `down` can be checked to leave the host as it was:
#
#   hack/node/hoststate.sh > before; make real-up; make real-down
#   hack/node/hoststate.sh > after; diff before after
#
# Links, addresses, routes, iptables (counters dropped), the sysctls and
# paths of hack/node/lib.sh, cgroups of those names, mounts, and processes
# of the node's programs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

section() { printf '## %s\n' "$1"; }

section links
ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort
section addresses
ip -o addr show | awk '{print $2, $3, $4}' | sort
section routes
ip route show table all | grep -v '^local\|^broadcast\|^multicast\|^fe80\|^ff00' | sort
for save in iptables-save ip6tables-save; do
  section "$save"
  if command -v "$save" >/dev/null; then
    # Counters and the timestamps of the comment lines change by themselves.
    as_root "$save" 2>/dev/null | sed -E 's/\[[0-9]+:[0-9]+\]//; /^#/d' || true
  fi
done
section nft-tables
if command -v nft >/dev/null; then as_root nft list tables 2>/dev/null | sort || true; fi
section sysctls
for s in "${SAVED_SYSCTLS[@]}"; do printf '%s = %s\n' "$s" "$(sysctl -n "$s" 2>/dev/null)"; done
section paths
for p in "${HARDCODED_PATHS[@]}"; do [[ -e "$p" ]] && echo "$p"; done
section cgroups
while read -r root; do
  for name in "${CGROUP_NAMES[@]}" docker moby; do
    [[ -d "$root/$name" ]] && echo "$root/$name"
  done
done < <(cgroup_roots)
section mounts
awk '{print $2, $3}' /proc/mounts | grep -E 'containerd|kubelet|docker|netns|siesta|/run/runc' | sort || true
section processes
for prog in kubelet kube-proxy kube-scheduler containerd dockerd socat pause; do
  pgrep -x "$prog" >/dev/null && echo "$prog running"
done
pgrep -f '^[^ ]*containerd-shim' >/dev/null && echo "containerd shims running"
true
