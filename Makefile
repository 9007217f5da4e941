# Rivet's entry points. Each target runs ./bootstrap.sh first, which installs what is missing
# (Debian protoc/cmake, the Python venv with PyTorch and ONNX Runtime) and writes
# .cargo/config.toml; both are idempotent.

SHELL := bash
CARGO ?= cargo
DEMO_MODELS := models/mlp models/cnn models/encoder

.PHONY: setup build demo test bench lint models

setup:
	./bootstrap.sh

build: setup
	$(CARGO) build --workspace

## Runs `rivet compare` over every bundled model on every backend that can load it.
demo: build
	./target/debug/rivet compare $(DEMO_MODELS)

## Every test of the workspace; ends with one "total: N passed, N failed" line over all test binaries.
test: setup
	@mkdir -p target
	set -o pipefail; $(CARGO) test --workspace 2>&1 | tee target/test.log; status=$$?; \
	awk '/^test result:/ { p += $$4; f += $$6 } END { printf "total: %d passed, %d failed\n", p, f }' target/test.log; \
	exit $$status

## criterion benchmarks (release build): Rivet's overhead against direct library calls.
bench: setup
	$(CARGO) bench --bench overhead

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Re-exports the bundled models and their PyTorch references.
models: setup
	.venv/bin/python models/export.py
