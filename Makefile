# Siesta: the two commands a new user needs are `make demo` and `make test`.
# Both install what they need on a fresh Debian 12 machine (Debian packages,
# a Kubernetes 1.20.2 control plane built once and cached in ~/.cache/siesta,
# kubectl and helm) and start the local cluster on 127.0.0.1.

.PHONY: soak fuzz demo test cluster-up node-up cluster-down real-up real-down crd fmt lint bench bench-scale kind-e2e images help test-real pgo

# The toolchain rust-toolchain.toml pins, made available with no download
# on machines that have it installed as `stable` (hack/toolchain.sh), before
# any target runs cargo.
TOOLCHAIN_CHECK := $(shell bash hack/toolchain.sh >&2)
ifneq ($(.SHELLSTATUS),0)
$(error hack/toolchain.sh failed (see above))
endif

# NODE=real makes cluster-up/cluster-down act on the real-node cluster.
NODE ?= process

## demo: local control plane + node agent + Siesta + an example Function
##       (NODE=real: on the real node, with the images from the Dockerfiles)
demo:
	NODE=$(NODE) bash hack/demo.sh

## test: the static gates (as make lint), unit tests, loopback tests, cluster tests, the real-node tier
test:
	bash hack/test.sh

## test-real: only the real-node tier of make test (images, real node, chart e2e, host check)
test-real:
	bash hack/node/test.sh

## bench: proxy cost (HTTP/1.1 and h2c), cold start, buffering, streaming, footprint -> docs/benchmarks.md
##        (BENCH_QUICK=1 for a smoke run, BENCH_1K=1 for the 1,000-Function footprint,
##        BENCH_SECTIONS=proxy,h2 for some sections only: see hack/bench/run.sh)
bench:
	bash hack/bench/run.sh

## pgo: re-train pgo/siesta.profdata, the profile release builds of siesta use
##      (after changing the request path, dependencies or the toolchain: pgo/README.md)
pgo:
	bash hack/pgo/train.sh

## bench-scale: the control plane at N Functions (N=10000; default 100) on the local cluster,
##              release builds; prints the table (SCALE_INTO=docs/benchmarks.md writes it there)
N ?= 100
bench-scale:
	@mkdir -p .bench
	bash hack/bench/scale.sh $(N) | tee .bench/scale-$(N).txt
	python3 hack/bench/scale_report.py .bench/scale-$(N).txt $(if $(SCALE_INTO),--into $(SCALE_INTO))

## cluster-up: install (first time) and start etcd, kube-apiserver, kube-controller-manager
##             (NODE=real: the real-node cluster, as real-up)
cluster-up:
ifeq ($(NODE),real)
	bash hack/node/up.sh
else
	bash hack/cluster/up.sh
endif

## node-up: build and start siesta-devnode, the node agent that runs pods as processes
node-up:
	bash hack/cluster/node-up.sh

## cluster-down: stop everything cluster-up and node-up started, remove the state
##               (NODE=real: as real-down)
cluster-down:
ifeq ($(NODE),real)
	bash hack/node/down.sh
else
	bash hack/cluster/down.sh
endif

## real-up: a real node (kubelet + containerd + kube-proxy + scheduler) with its own control plane, images imported
real-up:
	bash hack/node/up.sh

## real-down: stop the real node and restore every piece of host state it changed
real-down:
	bash hack/node/down.sh

## images: build the Siesta and example images from their Dockerfiles with no pull (own dockerd, local base images) -> ~/.cache/siesta/images/*.tar
images:
	bash hack/images/build.sh

## crd: regenerate both copies of the CRD, crds/function.yaml and charts/siesta/crds/function.yaml, from the Rust types
crd:
	cargo run -q -p siesta -- crd > crds/function.yaml.new
	mv crds/function.yaml.new crds/function.yaml
	cp crds/function.yaml charts/siesta/crds/function.yaml

## fmt: format every workspace crate (cargo fmt --all)
fmt:
	cargo fmt --all

## lint: the static gates make test starts with: fmt check, clippy and rustdoc with warnings denied,
##       cargo deny (licenses, duplicate versions, sources, advisories when reachable), cargo machete
lint:
	bash hack/lint.sh

## kind-e2e: the real-node e2e (tests/e2e/tests/real_node.rs) on a kind cluster (needs docker, kind, kubectl, helm, cargo)
kind-e2e:
	bash hack/kind-e2e.sh

## soak: long and disruptive reliability runs (scale cycles, apiserver outage) on a second local cluster
soak:
	bash hack/soak.sh

## fuzz: 60 s of cargo-fuzz per target (router, duration parser) on stable via RUSTC_BOOTSTRAP
fuzz:
	cargo install --locked cargo-fuzz
	cd tests/fuzz && for t in route duration; do RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none $$t corpus/$$t -- -max_total_time=$${FUZZ_SECONDS:-60} || exit 1; done

## help: list the targets
help:
	@awk '/^## /{sub(/^## /, ""); print}' $(MAKEFILE_LIST)
