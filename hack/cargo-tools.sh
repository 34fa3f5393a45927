#!/usr/bin/env bash
# Installs the cargo plugins the test gates use, at pinned versions, from
# crates.io into ~/.cache/siesta/tools/cargo/NAME-VERSION (built once, reused
# while present), and prints the bin dirs to put on PATH, one a line.
#
#   cargo-deny     licenses, banned/duplicate versions, sources (deny.toml)
#   cargo-machete  dependencies a package declares and never uses
#
# Measured on this project's 2-core machine, with other builds running:
# cargo-deny 756 s, cargo-machete 307 s (first time only; 17.7 min together).
set -euo pipefail
SIESTA_CACHE="${SIESTA_CACHE:-$HOME/.cache/siesta}"
TOOLS=(
  "cargo-deny 0.20.2"
  "cargo-machete 0.9.2"
)

for tool in "${TOOLS[@]}"; do
  read -r name version <<<"$tool"
  root="$SIESTA_CACHE/tools/cargo/$name-$version"
  if [[ ! -x "$root/bin/$name" ]]; then
    printf '[cargo-tools] installing %s %s into %s (first time only)\n' "$name" "$version" "$root" >&2
    start=$SECONDS
    # Its own target dir, so the workspace's cache is not disturbed; removed
    # after, only the binary is kept.
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/siesta-cargo-tools.XXXXXX")
    # Outside the checkout: the tool builds with the machine's default
    # toolchain, not under this project's pin or its .cargo/config.toml.
    (cd "$tmp" && CARGO_TARGET_DIR="$tmp/target" \
      cargo install --locked --quiet --root "$root.partial" "$name" --version "$version") || {
      rm -rf "$tmp" "$root.partial"
      printf '[cargo-tools] error: could not install %s %s from crates.io\n' "$name" "$version" >&2
      exit 1
    }
    rm -rf "$tmp" "$root"
    mv "$root.partial" "$root"
    printf '[cargo-tools] %s %s installed in %ss\n' "$name" "$version" "$((SECONDS - start))" >&2
  fi
  printf '%s\n' "$root/bin"
done
