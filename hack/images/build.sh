#!/usr/bin/env bash
# `make images`: build the Siesta image (Dockerfile) and the example
# function's image (examples/hello/Dockerfile) on this machine, pulling
# nothing from any registry, and save them as docker-archive tarballs for
# `ctr -n k8s.io images import`:
#
#   $SIESTA_CACHE/images/siesta.tar   siesta.dev/siesta:$SIESTA_IMAGE_TAG
#   $SIESTA_CACHE/images/hello.tar    siesta.dev/examples/hello:$SIESTA_IMAGE_TAG
#
# How:
#  1. installs the Debian packages it needs if missing (docker.io, containerd,
#     runc, mmdebstrap, ...), with a policy-rc.d that keeps apt from starting
#     services;
#  2. starts a dockerd of its own (not the distro service) in a private mount
#     namespace: data-root $SIESTA_CACHE/docker (layers and the BuildKit cache
#     survive between runs), exec-root, pidfile and socket in /run/siesta-docker,
#     its own managed containerd, no iptables, no ip forwarding, no bridge, and
#     HTTP(S)_PROXY=http://127.0.0.1:9 so that any pull fails at once;
#  3. builds two local stand-ins for the public base images, once (skipped
#     while an image of the same recipe exists):
#       siesta.local/rust-builder:<rust minor>-bookworm  for rust:1.95-bookworm:
#         mmdebstrap bookworm minbase + gcc, libc6-dev, make, ca-certificates,
#         plus this machine's own Rust toolchain ($(rustc --print sysroot))
#         laid out like the official image (CARGO_HOME=/usr/local/cargo,
#         RUSTUP_HOME=/usr/local/rustup), plus this host's CA bundle so cargo
#         can fetch crates through the machine's TLS-intercepting egress;
#       siesta.local/distroless-cc:bookworm  for gcr.io/distroless/cc-debian12:
#         the extracted contents of libc6, libgcc-s1, libgomp1, libstdc++6,
#         libssl3 (no dpkg, no shell), Debian's CA bundle, tzdata, netbase,
#         /etc/passwd and /etc/group with nonroot = 65532;
#  4. builds both Dockerfiles with --build-arg BUILDER_IMAGE/RUNTIME_IMAGE set
#     to the stand-ins and --network host (cargo fetches crates);
#  5. saves each image (tmp file, then mv) and checks it: user 65532, the
#     siesta binary runs (--help, and `crd` against crds/function.yaml), the
#     hello image serves /healthz inside a --network none container;
#  6. stops dockerd by pid, on failure too, and removes what it created:
#     /run/siesta-docker, the docker/moby/buildkit cgroups it made, and the
#     directories it had to create as mount points (see HIDE_DIRS).
#
# Environment: SIESTA_CACHE (default ~/.cache/siesta), SIESTA_IMAGE_TAG
# (default dev; never latest), SIESTA_DOCKER_RUN_DIR (default
# /run/siesta-docker), SIESTA_DEBIAN_MIRROR (default http://deb.debian.org/debian),
# SIESTA_VERBOSE=1 (print the whole build output, not only the steps).
# Logs: $SIESTA_CACHE/logs/{dockerd,images-*}.log. Needs root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SELF="$ROOT/hack/images/build.sh"

CACHE="${SIESTA_CACHE:-$HOME/.cache/siesta}"
TAG="${SIESTA_IMAGE_TAG:-dev}"
RUN_DIR="${SIESTA_DOCKER_RUN_DIR:-/run/siesta-docker}"
MIRROR="${SIESTA_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${MIRROR%/debian}/debian-security"
SUITE=bookworm

DATA_ROOT="$CACHE/docker"
OUT="$CACHE/images"
WORK="$OUT/.work"
LOG_DIR="$CACHE/logs"
DOCKERD_LOG="$LOG_DIR/dockerd.log"
SOCK="$RUN_DIR/docker.sock"
EXEC_ROOT="$RUN_DIR/exec"
PIDFILE="$RUN_DIR/dockerd.pid"

# Only the Debian docker.io 20.10 client: /usr/local/bin/docker may be another
# one (without buildx, which BuildKit needs in newer clients).
DOCKER_BIN=/usr/bin/docker
DEAD_PROXY=http://127.0.0.1:9
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
APT_PACKAGES=(docker.io containerd runc mmdebstrap debian-archive-keyring
  ca-certificates util-linux curl)
# Paths written whatever the flags say: dockerd's plugin sockets (/run/docker),
# the containerd shims' sockets (/run/containerd/s), containerd's "opt" plugin
# (/opt/containerd), and BuildKit's runc state (runc's default root /run/runc).
# Inside dockerd's mount namespace each gets a tmpfs, so nothing lands on the
# host; a missing one is created as a mount point and removed at the end.
HIDE_DIRS=(/run/docker /run/containerd /run/runc /opt/containerd)
# Default paths of docker, containerd and runc: none should appear on the host
# because of this script; cleanup_host says so if one did.
WATCH_PATHS=("${HIDE_DIRS[@]}" /var/lib/docker /var/lib/containerd /var/lib/buildkit
  /run/docker.sock /run/docker.pid /etc/docker/key.json /etc/docker/daemon.json)
# cgroup names dockerd, BuildKit and containerd create (cgroupfs driver).
CGROUP_NAMES=(docker moby buildkit)

PROJECT_IMAGE="siesta.dev/siesta:$TAG"
HELLO_IMAGE="siesta.dev/examples/hello:$TAG"
RUNTIME_IMAGE=siesta.local/distroless-cc:bookworm
BUILDER_PACKAGES=ca-certificates,gcc,libc6-dev,make
RUNTIME_PACKAGES=libc6,libgcc-s1,libgomp1,libstdc++6,libssl3
# Extracted without their dependencies (debconf, perl, openssl): data only.
RUNTIME_DATA_PACKAGES=(ca-certificates tzdata netbase)

log() { printf '[images] %s\n' "$*"; }
die() { printf '[images] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# mmdebstrap hooks (--customize-hook for the builder, --extract-hook for the
# runtime). mmdebstrap runs them on the host as `build.sh __hook-* ROOTFS`,
# with the environment main exports.

hook_builder() {
  local root=$1 tc="$1/usr/local/rustup/toolchains/$RUST_TOOLCHAIN" b
  mkdir -p "$tc" "$root/usr/local/cargo/bin"
  # bin, lib (rustc, LLVM, the std rlibs), libexec, etc; not share/ (docs).
  cp -a "$RUST_SYSROOT"/bin "$RUST_SYSROOT"/lib "$tc/"
  local d
  for d in libexec etc; do [[ -d "$RUST_SYSROOT/$d" ]] && cp -a "$RUST_SYSROOT/$d" "$tc/"; done
  # Where rustup's proxies are in the official image.
  for b in "$tc"/bin/*; do
    ln -s "../../rustup/toolchains/$RUST_TOOLCHAIN/bin/${b##*/}" "$root/usr/local/cargo/bin/${b##*/}"
  done
  # The host's bundle: Debian's CAs plus the egress proxy's, for cargo.
  install -m 0644 "$HOST_CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
  chroot "$root" /usr/local/cargo/bin/rustc --version
  chroot "$root" /usr/local/cargo/bin/cargo --version
}

# Runs as --extract-hook (the extract variant runs no customize hooks), while
# apt is still set up in the chroot: the data packages come from the same
# mirror. finish_runtime_rootfs removes apt's and dpkg's traces afterwards.
hook_runtime() {
  local root=$1 dl="$1/tmp/siesta-debs" f
  mkdir -p "$dl"
  (cd "$dl" && APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-get download -q -o APT::Sandbox::User=root "${RUNTIME_DATA_PACKAGES[@]}")
  for f in "$dl"/*.deb; do dpkg-deb -x "$f" "$root"; done
  rm -rf "$dl"
  # What update-ca-certificates would write (Debian's Mozilla set); no
  # interception CA here: this image is what ships.
  mkdir -p "$root/etc/ssl/certs"
  for f in "$root"/usr/share/ca-certificates/mozilla/*.crt; do sed -e '$a\' "$f"; done \
    >"$root/etc/ssl/certs/ca-certificates.crt"
  # Users and groups as in distroless (nonroot = 65532), no shells.
  cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
  chmod 0644 "$root/etc/passwd" "$root/etc/group"
  cat >"$root/etc/os-release" <<'EOF'
PRETTY_NAME="Distroless-like stand-in (siesta.local), Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION_CODENAME=bookworm
ID=debian
EOF
  install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"
  install -d -m 0700 "$root/root"
}

# finish_runtime_rootfs DIR: after mmdebstrap, keep what the image needs.
finish_runtime_rootfs() {
  local root=$1
  # Nothing is "installed" here: no apt, no dpkg database, no docs. /dev,
  # /etc/hostname and /etc/resolv.conf come from the container runtime.
  rm -rf "$root/etc/apt" "$root/var/lib/apt" "$root/var/cache/apt" "$root/var/lib/dpkg" \
    "$root/var/log/apt" "$root/etc/dpkg" "$root/usr/share/ca-certificates" \
    "$root/usr/sbin/update-ca-certificates" "$root/etc/ca-certificates" \
    "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/lintian" "$root/usr/share/bug" \
    "$root/etc/hostname" "$root/etc/resolv.conf" "$root/etc/fstab"
  rm -f "$root"/var/log/*.log
  find "$root/dev" -mindepth 1 -delete
  install -d -m 1777 "$root/tmp"
  # The ld.so cache an installed libc-bin would leave.
  ldconfig -r "$root"
}

case "${1:-}" in
  # A hook writes /etc/passwd, /etc/group and more under its root: never let
  # an empty or / root make that the host's own (it once replaced /etc/group).
  __hook-builder|__hook-runtime)
    root_dir="$(realpath -m -- "${2:-}")"
    if [[ -z "${2:-}" || "$root_dir" == / || ! -d "$root_dir/usr" ]]; then
      echo "images: refusing to run ${1#__} on root ${2:-<empty>}" >&2; exit 1
    fi ;;&
  __hook-builder) hook_builder "$root_dir"; exit ;;
  __hook-runtime) hook_runtime "$root_dir"; exit ;;
  "") ;;
  *) die "usage: $0 (no arguments)" ;;
esac

# ---------------------------------------------------------------------------
# Steps and their times.

STEP_TIMES=()
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
# timed LABEL COMMAND...: run COMMAND as one step, print and record its time.
timed() {
  local label=$1 t0 t
  shift
  printf '\n==> %s\n' "$label"
  t0=$(now)
  "$@"
  t=$(secs "$t0" "$(now)")
  printf '<== %s: %s s\n' "$label" "$t"
  STEP_TIMES+=("$(printf '%8s s  %s' "$t" "$label")")
}

# ---------------------------------------------------------------------------
# Host packages.

POLICY_RC_CREATED=0
ensure_packages() {
  local p missing=()
  for p in "${APT_PACKAGES[@]}"; do
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" == installed ]] || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    log "present: ${APT_PACKAGES[*]}"
    return
  fi
  log "installing: ${missing[*]}"
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    # apt must not start the distro's docker/containerd services.
    printf '#!/bin/sh\n# hack/images/build.sh: no service starts while it installs packages\nexit 101\n' \
      >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=1
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  remove_policy_rc
}
remove_policy_rc() {
  if ((POLICY_RC_CREATED)); then
    rm -f /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=0
  fi
}

# ---------------------------------------------------------------------------
# dockerd of our own.

DOCKERD_PID=""
DOCKERD_MNTNS=""
RUN_DIR_CREATED=0
CREATED_DIRS=()
CGROUPS_BEFORE=""
CGROUPS_SNAPSHOT=0
PATHS_BEFORE=""
PATHS_CHECK=0

# Existing cgroup dirs with the names dockerd and friends use, anywhere in the
# hierarchies (the cgroupfs driver makes them at the root; relative parents
# land under the caller's own cgroup).
list_cgroups() {
  local args=() n
  for n in "${CGROUP_NAMES[@]}"; do args+=(-name "$n" -o); done
  unset 'args[${#args[@]}-1]'
  find /sys/fs/cgroup -mindepth 2 -maxdepth 6 -type d \( "${args[@]}" \) -prune 2>/dev/null | sort
}

start_dockerd() {
  local d
  ((${#SOCK} < 100 && ${#EXEC_ROOT} + 40 < 100)) || die "$RUN_DIR is too long for unix socket paths"
  if [[ -e "$RUN_DIR" ]]; then
    if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      die "a dockerd from a previous run is still up (pid $(cat "$PIDFILE"), $RUN_DIR)"
    fi
    rm -rf --one-file-system "$RUN_DIR"
  fi
  mkdir -m 0700 "$RUN_DIR"
  RUN_DIR_CREATED=1
  mkdir -p "$DATA_ROOT" "$LOG_DIR" "$RUN_DIR/client"
  CGROUPS_BEFORE=$(list_cgroups)
  CGROUPS_SNAPSHOT=1
  for d in "${WATCH_PATHS[@]}"; do [[ -e "$d" ]] && PATHS_BEFORE+="$d"$'\n'; done
  PATHS_CHECK=1
  for d in "${HIDE_DIRS[@]}"; do
    if [[ ! -e "$d" ]]; then
      mkdir -m 0711 "$d"
      CREATED_DIRS+=("$d")
    fi
  done
  cat >"$RUN_DIR/daemon.json" <<EOF
{
  "data-root": "$DATA_ROOT",
  "exec-root": "$EXEC_ROOT",
  "pidfile": "$PIDFILE",
  "hosts": ["unix://$SOCK"],
  "deprecated-key-path": "$DATA_ROOT/key.json",
  "storage-driver": "overlay2",
  "iptables": false,
  "ip6tables": false,
  "ip-forward": false,
  "ip-masq": false,
  "bridge": "none",
  "userland-proxy": false,
  "oom-score-adjust": 0,
  "features": {"buildkit": true},
  "builder": {"gc": {"enabled": true, "defaultKeepStorage": "20GB"}}
}
EOF
  printf '\n=== %s dockerd start\n' "$(date -Is)" >>"$DOCKERD_LOG"
  # unshare execs sh, which mounts the tmpfs and execs dockerd: $! is dockerd.
  # HOME is set for dockerd's own sake; its proxy variables reach dockerd and
  # its containerd only (BuildKit does not hand them to RUN steps).
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    HTTP_PROXY="$DEAD_PROXY" HTTPS_PROXY="$DEAD_PROXY" http_proxy="$DEAD_PROXY" https_proxy="$DEAD_PROXY" \
    unshare --mount --propagation private -- /bin/sh -c '
      for d in '"${HIDE_DIRS[*]}"'; do
        mount -t tmpfs -o mode=0711,size=16m siesta-docker-hide "$d" || exit 1
      done
      exec "$@"' sh /usr/sbin/dockerd --config-file "$RUN_DIR/daemon.json" >>"$DOCKERD_LOG" 2>&1 &
  DOCKERD_PID=$!
  local i
  for ((i = 0; i < 300; i++)); do
    kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -30 "$DOCKERD_LOG" >&2; die "dockerd exited (log: $DOCKERD_LOG)"; }
    docker info >/dev/null 2>&1 && break
    sleep 0.2
  done
  ((i < 300)) || { tail -30 "$DOCKERD_LOG" >&2; die "dockerd did not answer in 60 s (log: $DOCKERD_LOG)"; }
  [[ "$(cat "$PIDFILE")" == "$DOCKERD_PID" ]] || die "dockerd pidfile says $(cat "$PIDFILE"), started $DOCKERD_PID"
  DOCKERD_MNTNS=$(readlink "/proc/$DOCKERD_PID/ns/mnt")
  [[ "$DOCKERD_MNTNS" != "$(readlink /proc/self/ns/mnt)" ]] || die "dockerd is not in a mount namespace of its own"
  log "dockerd pid $DOCKERD_PID, $(docker info -f 'server {{.ServerVersion}}, {{.Driver}}, cgroup {{.CgroupDriver}} v{{.CgroupVersion}}'), data-root $DATA_ROOT"
}

# Processes still in dockerd's mount namespace: its containerd, shims, runc.
ns_pids() {
  local p
  [[ -n "$DOCKERD_MNTNS" ]] || return 0
  for p in /proc/[0-9]*; do
    [[ "$(readlink "$p/ns/mnt" 2>/dev/null)" == "$DOCKERD_MNTNS" ]] || continue
    case "$(cat "$p/comm" 2>/dev/null)" in
      dockerd | containerd* | runc | docker-init | docker-proxy) echo "${p#/proc/}" ;;
    esac
  done
}

stop_dockerd() {
  local i pids
  if [[ -n "$DOCKERD_PID" ]]; then
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then
      kill -TERM "$DOCKERD_PID"
      for ((i = 0; i < 600; i++)); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$DOCKERD_PID" 2>/dev/null; then
        log "dockerd $DOCKERD_PID did not stop in 60 s: SIGKILL"
        kill -KILL "$DOCKERD_PID" 2>/dev/null || true
      fi
    fi
    wait "$DOCKERD_PID" 2>/dev/null || true
    DOCKERD_PID=""
  fi
  pids=$(ns_pids)
  if [[ -n "$pids" ]]; then
    log "stopping what dockerd left: $(echo $pids)"
    kill -TERM $pids 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do [[ -z "$(ns_pids)" ]] && break; sleep 0.1; done
    pids=$(ns_pids)
    [[ -z "$pids" ]] || kill -KILL $pids 2>/dev/null || true
  fi
  DOCKERD_MNTNS=""
}

cleanup_host() {
  local cg d left
  # cgroups created during this run (rmdir only removes empty ones).
  if ((CGROUPS_SNAPSHOT)); then
    while read -r cg; do
      [[ -n "$cg" ]] || continue
      grep -qxF "$cg" <<<"$CGROUPS_BEFORE" && continue
      find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
      if [[ -d "$cg" ]]; then log "warning: could not remove cgroup $cg"; else log "removed cgroup $cg"; fi
    done < <(list_cgroups)
    CGROUPS_SNAPSHOT=0
  fi
  if ((RUN_DIR_CREATED)); then
    rm -rf --one-file-system "$RUN_DIR"
    RUN_DIR_CREATED=0
  fi
  local shared=""
  for d in "${CREATED_DIRS[@]}"; do
    # Not empty: something else on the host (a node's containerd) uses it now.
    rmdir "$d" 2>/dev/null || { log "$d: created here as a mount point, now in use by another process: left in place"; shared+="$d"$'\n'; }
  done
  CREATED_DIRS=()
  rm -rf --one-file-system "$WORK"
  if ((PATHS_CHECK)); then
    for d in "${WATCH_PATHS[@]}"; do
      [[ -e "$d" ]] && ! grep -qxF "$d" <<<"$PATHS_BEFORE$shared" && log "warning: $d appeared during this run"
    done
    PATHS_CHECK=0
  fi
  # Every mount of this run lived in dockerd's (or mmdebstrap's) namespace.
  left=$(awk -v a="$DATA_ROOT" -v b="$RUN_DIR" -v c="$WORK" \
    'index($5, a) == 1 || index($5, b) == 1 || index($5, c) == 1 { print $5 }' /proc/self/mountinfo)
  [[ -z "$left" ]] || log "warning: mounts left on the host: $left"
}

on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  if ((rc != 0)) && [[ -n "$DOCKERD_PID" ]]; then
    log "failed (exit $rc); dockerd log: $DOCKERD_LOG"
  fi
  stop_dockerd
  cleanup_host
  remove_policy_rc
  exit "$rc"
}

# ---------------------------------------------------------------------------
# Stand-in base images.

# has_image REF RECIPE: the image exists and was made from this recipe.
has_image() {
  [[ "$(docker image inspect -f '{{.Comment}}' "$1" 2>/dev/null)" == "$2" ]]
}

# mmdebstrap in a private mount namespace: the /proc, /sys and /dev it mounts
# into the chroot (root mode) cannot outlive it.
mmdebstrap_private() {
  mkdir -p "$WORK"
  TMPDIR="$WORK" unshare --mount --propagation private -- mmdebstrap --mode=root "$@"
}

SOURCES=()
build_builder_standin() {
  local recipe=$1 tar="$WORK/rust-builder.tar"
  if has_image "$BUILDER_IMAGE" "$recipe"; then
    log "$BUILDER_IMAGE: present"
    return
  fi
  export RUST_SYSROOT RUST_TOOLCHAIN HOST_CA_BUNDLE
  mmdebstrap_private --variant=minbase --format=tar --include="$BUILDER_PACKAGES" \
    --customize-hook="bash \"$SELF\" __hook-builder \"\$1\"" \
    "$SUITE" "$tar" "${SOURCES[@]}"
  log "importing $(du -h "$tar" | cut -f1) as $BUILDER_IMAGE"
  docker import --message "$recipe" \
    --change "ENV RUSTUP_HOME=/usr/local/rustup" \
    --change "ENV CARGO_HOME=/usr/local/cargo" \
    --change "ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV RUST_VERSION=$RUST_VERSION" \
    --change 'CMD ["bash"]' \
    "$tar" "$BUILDER_IMAGE" >/dev/null
  rm -f "$tar"
}

build_runtime_standin() {
  local recipe=$1 dir="$WORK/distroless-cc"
  if has_image "$RUNTIME_IMAGE" "$recipe"; then
    log "$RUNTIME_IMAGE: present"
    return
  fi
  rm -rf --one-file-system "$dir"
  mmdebstrap_private --variant=extract --format=directory --include="$RUNTIME_PACKAGES" \
    --extract-hook="bash \"$SELF\" __hook-runtime \"\$1\"" \
    "$SUITE" "$dir" "${SOURCES[@]}"
  finish_runtime_rootfs "$dir"
  log "importing $(du -sh "$dir" | cut -f1) as $RUNTIME_IMAGE"
  tar -C "$dir" --numeric-owner -cf - . |
    docker import --message "$recipe" \
      --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
      --change "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
      --change "USER 65532" \
      --change "WORKDIR /home/nonroot" \
      - "$RUNTIME_IMAGE" >/dev/null
  rm -rf --one-file-system "$dir"
}

# ---------------------------------------------------------------------------
# Project images.

# build_image NAME DOCKERFILE REF
build_image() {
  local name=$1 dockerfile=$2 ref=$3 logf="$LOG_DIR/images-$1.log" rc
  printf '\n=== %s docker build %s\n' "$(date -Is)" "$ref" >>"$logf"
  set +e
  docker build --progress=plain --network host \
    --build-arg BUILDER_IMAGE="$BUILDER_IMAGE" --build-arg RUNTIME_IMAGE="$RUNTIME_IMAGE" \
    -f "$dockerfile" -t "$ref" "$ROOT" 2>&1 | tee -a "$logf" |
    if [[ "${SIESTA_VERBOSE:-0}" == 1 ]]; then cat; else
      grep --line-buffered -E '^#[0-9]+ (\[|CACHED|DONE [0-9.]+s$)|^#[0-9]+ .*(Compiling siesta|Compiling hello|Finished)' || true
    fi
  rc=${PIPESTATUS[0]}
  set -e
  ((rc == 0)) || { tail -40 "$logf" >&2; die "docker build of $ref failed (log: $logf)"; }
}

# save_image NAME REF: $OUT/NAME.tar, rewritten only when the image changed.
save_image() {
  local name=$1 ref=$2 tar="$OUT/$1.tar" id
  id=$(docker image inspect -f '{{.Id}}' "$ref")
  if [[ -f "$tar" && "$(cat "$tar.id" 2>/dev/null)" == "$id" ]]; then
    log "$tar: up to date ($id)"
    return
  fi
  rm -f "$tar.tmp"
  docker save -o "$tar.tmp" "$ref"
  mv -f "$tar.tmp" "$tar"
  echo "$id" >"$tar.id"
  log "$tar: $(du -h "$tar" | cut -f1), $ref ($id)"
}

RUN_FLAGS=(--network none --read-only --cap-drop ALL --security-opt no-new-privileges --user 65532:65532)
verify_images() {
  local ref user cid pid i out
  for ref in "$PROJECT_IMAGE" "$HELLO_IMAGE"; do
    user=$(docker image inspect -f '{{.Config.User}}' "$ref")
    [[ "$user" == 65532:65532 || "$user" == 65532 ]] || die "$ref runs as '$user', not 65532"
    log "$ref: user $user, entrypoint $(docker image inspect -f '{{json .Config.Entrypoint}}' "$ref"), $(docker image inspect -f '{{.Size}}' "$ref" | awk '{ printf "%.1f MB", $1 / 1e6 }')"
  done
  log "docker run ${RUN_FLAGS[*]} $PROJECT_IMAGE --help"
  docker run --rm "${RUN_FLAGS[@]}" "$PROJECT_IMAGE" --help | sed 's/^/    /'
  if docker run --rm "${RUN_FLAGS[@]}" "$PROJECT_IMAGE" crd | cmp -s - "$ROOT/crds/function.yaml"; then
    log "siesta crd in the image = crds/function.yaml"
  else
    log "warning: siesta crd in the image differs from crds/function.yaml (make crd?)"
  fi
  # hello: serve /healthz in a --network none container; reach it through the
  # container's own loopback (nsenter into its network namespace only).
  cid=$(docker run -d "${RUN_FLAGS[@]}" "$HELLO_IMAGE")
  pid=$(docker inspect -f '{{.State.Pid}}' "$cid")
  out=""
  for ((i = 0; i < 50; i++)); do
    out=$(nsenter -t "$pid" -n curl -fsS --max-time 2 http://127.0.0.1:8080/healthz 2>/dev/null) && break
    sleep 0.1
  done
  if [[ -z "$out" ]]; then
    docker logs "$cid" >&2 || true
    docker rm -f "$cid" >/dev/null
    die "$HELLO_IMAGE did not answer /healthz"
  fi
  log "$HELLO_IMAGE: GET /healthz -> $out; GET / -> $(nsenter -t "$pid" -n curl -fsS --max-time 2 http://127.0.0.1:8080/ | head -c 200)"
  docker stop -t 10 "$cid" >/dev/null
  log "$HELLO_IMAGE: exit code $(docker inspect -f '{{.State.ExitCode}}' "$cid") after SIGTERM"
  docker rm "$cid" >/dev/null
  # The archives: names kept, as `ctr -n k8s.io images import` will see them.
  for ref in siesta hello; do
    log "$OUT/$ref.tar: RepoTags $(tar -xOf "$OUT/$ref.tar" manifest.json | sed -n 's/.*"RepoTags":\(\[[^]]*\]\).*/\1/p')"
  done
}

# ---------------------------------------------------------------------------

main() {
  [[ "$(id -u)" == 0 ]] || die "needs root (it runs dockerd and mmdebstrap)"
  [[ "$TAG" != latest ]] || die "SIESTA_IMAGE_TAG=latest would make the kubelet try a pull; use another tag"
  command -v rustc >/dev/null || die "rustc not found: the builder stand-in copies this machine's Rust toolchain"
  mkdir -p "$OUT" "$LOG_DIR"
  exec 9>"$OUT/.lock"
  flock -n 9 || die "another hack/images/build.sh is running"

  RUST_SYSROOT=$(rustc --print sysroot)
  RUST_VERSION=$(rustc --version | awk '{ print $2 }')
  local host
  host=$(rustc -vV | sed -n 's/^host: //p')
  RUST_TOOLCHAIN="$RUST_VERSION-$host"
  BUILDER_IMAGE="siesta.local/rust-builder:${RUST_VERSION%.*}-bookworm"
  [[ "${RUST_VERSION%.*}" == 1.95 ]] || log "warning: the machine's Rust is $RUST_VERSION; the Dockerfile's default builder is rust:1.95"
  SOURCES=("deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main")

  # Recipes: a stand-in is rebuilt when its recipe changes (this script's
  # hooks, the package lists, the toolchain, the host CA bundle).
  local hooks_sum builder_recipe runtime_recipe
  hooks_sum=$(sed -n '/^hook_builder()/,/^case /p' "$SELF" | sha256sum | cut -c1-12)
  builder_recipe="siesta stand-in for rust:${RUST_VERSION%.*}-bookworm: $SUITE minbase +$BUILDER_PACKAGES, $(rustc -vV | sed -n 's/^commit-hash: //p' | cut -c1-12) $RUST_TOOLCHAIN, ca $(sha256sum "$HOST_CA_BUNDLE" | cut -c1-12), hooks $hooks_sum"
  runtime_recipe="siesta stand-in for distroless cc-debian12:nonroot: $SUITE extract $RUNTIME_PACKAGES + ${RUNTIME_DATA_PACKAGES[*]}, hooks $hooks_sum"

  export DOCKER_HOST="unix://$SOCK" DOCKER_CONFIG="$RUN_DIR/client" DOCKER_BUILDKIT=1
  unset DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
  trap on_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  local t0
  t0=$(now)
  timed "Debian packages" ensure_packages
  timed "dockerd up" start_dockerd
  timed "stand-in $BUILDER_IMAGE" build_builder_standin "$builder_recipe"
  timed "stand-in $RUNTIME_IMAGE" build_runtime_standin "$runtime_recipe"
  timed "docker build $PROJECT_IMAGE" build_image siesta "$ROOT/Dockerfile" "$PROJECT_IMAGE"
  timed "docker build $HELLO_IMAGE" build_image hello "$ROOT/examples/hello/Dockerfile" "$HELLO_IMAGE"
  timed "docker save" eval 'save_image siesta "$PROJECT_IMAGE"; save_image hello "$HELLO_IMAGE"; docker image prune -f >/dev/null'
  timed "verify" verify_images
  printf '\n'
  docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E '^siesta\.' | sed 's/^/    /'
  timed "dockerd down, host cleaned" eval 'stop_dockerd; cleanup_host'
  printf '\nsteps:\n'
  printf '  %s\n' "${STEP_TIMES[@]}"
  printf '  %8s s  total\n' "$(secs "$t0" "$(now)")"
  printf '\nimport on a node: ctr -n k8s.io images import %s/siesta.tar (and hello.tar)\n' "$OUT"
}

docker() { "$DOCKER_BIN" "$@"; }

main "$@"
