#!/bin/sh
# The RUSTFLAGS of every release build of `siesta` that users run or that
# `make bench` measures: the Dockerfile, hack/bench/run.sh, hack/bench/scale.sh.
#
#   RUSTFLAGS="$(sh pgo/rustflags.sh "$PWD")" cargo build --release --locked -p siesta
#
# Profile-guided optimisation from pgo/siesta.profdata (hack/pgo/train.sh
# trains it; pgo/README.md says how and why). A function the profile does not
# know (new, or changed since the training) is compiled as without a profile,
# silently: -no-pgo-warn-mismatch. SIESTA_PGO=0 prints nothing, for a
# build without the profile to compare with. SIESTA_PGO=check has LLVM warn
# instead about every function it finds no profile for or a stale one
# (the same code is generated): `make bench` counts how many of the profile's
# hottest functions (pgo/hot-functions.txt) are among them.
#
# Build `-p siesta` on its own: built together with other packages (hello,
# siesta-bench), cargo unifies their features, the shared crates get other
# symbol names, and the profile no longer matches them.
root=${1:?usage: sh pgo/rustflags.sh REPOSITORY_ROOT}
case "${SIESTA_PGO:-1}" in
  0) ;;
  check) printf '%s\n' "-Cprofile-use=$root/pgo/siesta.profdata -Cllvm-args=-pgo-warn-missing-function" ;;
  *) printf '%s\n' "-Cprofile-use=$root/pgo/siesta.profdata -Cllvm-args=-no-pgo-warn-mismatch" ;;
esac
