# One image for every Siesta component: `siesta controller`, `siesta
# activator`, `siesta crd`. The Helm chart selects the component by args.
#
#   docker build -t ghcr.io/siesta-dev/siesta:0.1.0 .
#
# Build context: the repository root (the whole Cargo workspace is needed to
# resolve it; .dockerignore keeps target dirs, .git and cluster state out).
# Needs BuildKit (for the cache mounts); there is no `# syntax=` line, so the
# builder's built-in frontend is used and nothing is pulled for it.
#
# The base images are build arguments whose defaults are the public images.
# `make images` (hack/images/build.sh) builds offline with local stand-ins:
#   --build-arg BUILDER_IMAGE=siesta.local/rust-builder:1.95-bookworm
#   --build-arg RUNTIME_IMAGE=siesta.local/distroless-cc:bookworm
ARG BUILDER_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILDER_IMAGE} AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and incremental build between runs; the
# binary is copied out of the (mounted) target dir in the same step.
# Profile-guided: pgo/rustflags.sh names the profile in pgo/ (pgo/README.md).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    RUSTFLAGS="$(sh pgo/rustflags.sh /src)" cargo build --release --locked -p siesta \
 && install -D -m 0755 target/release/siesta /out/siesta \
 && install -D -m 0755 target/release/kubectl-siesta /out/kubectl-siesta

# distroless/cc: glibc and libgcc only, no shell, runs as uid 65532.
FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="siesta" \
      org.opencontainers.image.description="Scale-to-zero HTTP functions for Kubernetes: controller and activator" \
      org.opencontainers.image.source="https://github.com/siesta-dev/siesta" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/siesta /siesta
# The kubectl plugin rides along, to be copied out: see README, "Debugging
# with kubectl siesta".
COPY --from=builder /out/kubectl-siesta /kubectl-siesta
USER 65532:65532
# activator traffic, controller admin, activator admin
EXPOSE 8080 9090 9091
ENTRYPOINT ["/siesta"]
