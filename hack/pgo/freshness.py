#!/usr/bin/env python3
"""How much of pgo/siesta.profdata still fits the code: given the hottest
trained functions (pgo/hot-functions.txt, one mangled name a line) and the
log of a `SIESTA_PGO=check` build of `siesta` (pgo/rustflags.sh), prints

    pgo hot=N matched=M missing=X stale=S

missing: LLVM found no profile for the function (renamed, or the crate's
symbol hashes changed with its features or dependencies); stale: its
control flow changed since the training. Only the workspace's crates show
these warnings (cargo silences registry crates), so the list holds the
activator's own functions."""

import re
import sys

hot_path, log_path = sys.argv[1], sys.argv[2]
hot = [line.strip() for line in open(hot_path) if line.strip() and not line.startswith("#")]
missing, stale = set(), set()
pattern = re.compile(r"(no profile data available for function|hash mismatch\)) (\S+) Hash = ")
for line in open(log_path, errors="replace"):
    m = pattern.search(line)
    if m:
        (missing if m.group(1).startswith("no profile") else stale).add(m.group(2))
miss = sum(1 for name in hot if name in missing)
old = sum(1 for name in hot if name in stale)
print(f"pgo hot={len(hot)} matched={len(hot) - miss - old} missing={miss} stale={old}")
