#!/usr/bin/env bash
# Installs what the real node needs, on a fresh Debian 12 machine; heavy
# results are cached under $SIESTA_CACHE and reused:
#   - Debian: containerd, runc, the CNI plugins, socat, conntrack, iptables,
#     nftables, gcc (for the pause binary);
#   - kubelet, kube-proxy, kube-scheduler 1.20.2: built by
#     hack/cluster/install.sh in the same build as the control plane;
#   - the sandbox ("pause") image, built from the Kubernetes tree's pause.c
#     as a static binary and packed without any engine ($SIESTA_CACHE/node).
# The Siesta and example images themselves come from `make images`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODE_PACKAGES=(containerd runc containernetworking-plugins socat conntrack iptables nftables
  gcc libc6-dev python3 iproute2)

missing=()
for p in "${NODE_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  nlog "installing Debian packages: ${missing[*]}"
  # No init system may start a distro containerd on the default socket.
  policy=/usr/sbin/policy-rc.d made_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"; made_policy=1
  fi
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  ((made_policy)) && as_root rm -f "$policy"
fi

bash "$SIESTA_ROOT/hack/cluster/install.sh"
for b in kubelet kube-proxy kube-scheduler; do
  [[ -x "$K8S_BIN/$b" ]] || ndie "$K8S_BIN/$b missing after the Kubernetes build"
done

pause_tar="$SIESTA_CACHE/node/pause.tar"
if [[ ! -f "$pause_tar" ]]; then
  src="$SIESTA_CACHE/k8s-$K8S_VERSION/src/pause.c"
  [[ -f "$src" ]] || ndie "$src missing: remove $K8S_BIN and run hack/cluster/install.sh again (it keeps pause.c from the source tree)"
  work=$(mktemp -d)
  mkdir -p "$work/rootfs" "$SIESTA_CACHE/node"
  gcc -Os -Wall -Werror -static -DVERSION=v3.2-siesta -o "$work/rootfs/pause" "$src"
  strip "$work/rootfs/pause"
  python3 "$SIESTA_ROOT/hack/node/pack-image.py" --rootfs "$work/rootfs" --ref "$PAUSE_IMAGE" \
    --entrypoint /pause --user 65535 "$pause_tar.tmp"
  mv "$pause_tar.tmp" "$pause_tar"
  rm -rf "$work"
  nlog "sandbox image $PAUSE_IMAGE packed at $pause_tar"
fi
