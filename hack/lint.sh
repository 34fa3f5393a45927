#!/usr/bin/env bash
# `make lint`, and the first part of `make test`: the static gates. Each is
# a hard failure: formatting, clippy with warnings denied, rustdoc with
# warnings denied, cargo-deny (licenses, duplicate versions, sources,
# advisories where the database can be had) and unused dependencies.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> [%ss] %s\n' "$SECONDS" "$*"; }

# The toolchain rust-toolchain.toml pins, with no download where it is
# installed as `stable` (see the script).
bash hack/toolchain.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy -q --workspace --all-targets -- -D warnings

step "cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc -q --workspace --no-deps

step "cargo deny (deny.toml) and cargo machete (unused dependencies)"
# Pinned versions from crates.io, built once into $SIESTA_CACHE/tools/cargo.
cargo_tools_path=$(bash hack/cargo-tools.sh | paste -sd:)
PATH="$cargo_tools_path:$PATH" cargo deny check licenses bans sources
# The advisory database is a git repository on GitHub: checked when it can be
# fetched, said so when it cannot (machines with only package-registry access).
if PATH="$cargo_tools_path:$PATH" timeout 120 cargo deny --log-level error fetch db >/dev/null 2>&1; then
  PATH="$cargo_tools_path:$PATH" cargo deny check --disable-fetch advisories
else
  echo "cargo deny: the advisory database (github.com/rustsec/advisory-db) cannot be fetched from here; advisories not checked"
fi
PATH="$cargo_tools_path:$PATH" cargo machete
