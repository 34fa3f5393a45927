#!/usr/bin/env python3
"""How much of pgo/siesta.profdata still fits the code: given the hottest
trained functions (pgo/hot-functions.txt, one mangled name a line) and the
log of a `SIESTA_PGO=check` build of `siesta` (pgo/rustflags.sh), prints

    pgo hot=N matched=M missing=X stale=S

missing: LLVM found no profile for a function of that path. Compared
without the symbol's hash, because the failure this is for changes the
hashes: the crate's features or dependencies changed, every function of it
has a new name, and the old names are simply absent. A generic function
whose other instantiation never ran in training shows up here too, so a
fresh profile may miss one or two. stale: the function's control flow
changed since the training. Only the workspace's crates show these
warnings (cargo silences registry crates), so the list holds the
activator's own functions."""

import re
import sys

HASH = re.compile(r"17h[0-9a-f]{16}E$")
WARNING = re.compile(r"(no profile data available for function|hash mismatch\)) (\S+) Hash = ")


def path(symbol: str) -> str:
    """A legacy-mangled symbol without its hash: the function's path."""
    return HASH.sub("", symbol)


def main() -> None:
    hot_path, log_path = sys.argv[1], sys.argv[2]
    hot = [line.strip() for line in open(hot_path) if line.strip() and not line.startswith("#")]
    missing, stale = set(), set()
    for line in open(log_path, errors="replace"):
        m = WARNING.search(line)
        if m:
            if m.group(1).startswith("no profile"):
                missing.add(path(m.group(2)))
            else:
                stale.add(m.group(2))
    old = sum(1 for name in hot if name in stale)
    miss = sum(1 for name in hot if name not in stale and path(name) in missing)
    print(f"pgo hot={len(hot)} matched={len(hot) - miss - old} missing={miss} stale={old}")


if __name__ == "__main__":
    main()
