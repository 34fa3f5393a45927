#!/usr/bin/env bash
# Makes the toolchain rust-toolchain.toml pins available without a download.
#
# A machine that cannot reach rustup's servers has only the toolchain it came
# with, named `stable`; rustup would then refuse every cargo command in this
# checkout ("toolchain '1.95.0-...' is not installed"). When an installed
# toolchain is exactly the pinned release, it is registered under the pinned
# name (a symlink in rustup's toolchains dir, as `rustup toolchain link` does
# for custom names, which it refuses for release names). Idempotent, silent
# when there is nothing to do. Without rustup (a plain rustc install) it only
# checks the version.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PINNED=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$ROOT/rust-toolchain.toml")
[[ -n "$PINNED" ]] || { echo "[toolchain] error: no channel in rust-toolchain.toml" >&2; exit 1; }

if ! command -v rustup >/dev/null 2>&1; then
  have=$(rustc -V | awk '{print $2}')
  [[ "$have" == "$PINNED" ]] ||
    echo "[toolchain] warning: rustc is $have, rust-toolchain.toml pins $PINNED" >&2
  exit 0
fi

# Outside the checkout, so that the pin itself does not apply to these calls.
cd /
if rustup toolchain list | awk '{print $1}' | grep -q "^$PINNED-"; then
  exit 0
fi
home=$(rustup show home)
for dir in "$home"/toolchains/*/; do
  dir=${dir%/}
  [[ -x "$dir/bin/rustc" ]] || continue
  read -r _ version _ < <("$dir/bin/rustc" -V)
  if [[ "$version" == "$PINNED" ]]; then
    host=$("$dir/bin/rustc" -vV | sed -n 's/^host: //p')
    ln -sfn "$(readlink -f "$dir")" "$home/toolchains/$PINNED-$host"
    echo "[toolchain] registered the installed ${dir##*/} ($version) as $PINNED-$host" >&2
    exit 0
  fi
done
echo "[toolchain] error: rust-toolchain.toml pins $PINNED, which is not installed;" \
  "run \`rustup toolchain install $PINNED\` (needs rustup's servers)" >&2
exit 1
