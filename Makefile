# Rivet's entry points. Each target runs ./bootstrap.sh first, which installs what is missing
# (Debian protoc/cmake, the Python venv with PyTorch and ONNX Runtime) and writes
# .cargo/config.toml; both are idempotent.

SHELL := bash
CARGO ?= cargo
DEMO_MODELS := models/mlp models/cnn models/encoder

PREFIX ?= /usr/local
PROFILE ?= release
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
PKG := crates/rivet-capi/pkg

.PHONY: setup build demo test bench bench-candle bench-compare bench-startup bench-serve bench-prep bench-report lint models install test-c fuzz fuzz-cmin

setup:
	./bootstrap.sh

## One `cargo build --workspace` builds the binaries, librivet and the tch backend library
## (librivet_tch.so); `make test` starts with the same command, so it reuses this build.
build: setup
	$(CARGO) build --workspace

## Runs `rivet bench` over every bundled model on every backend that can load it: the table,
## then where the JSON, Markdown and chart are. Then scores a generated 100,000-row customer
## table with the tabular example (`rivet predict`: pipeline and churn model) into
## target/demo/churn.parquet.
demo: build
	./target/debug/rivet bench $(DEMO_MODELS) --concurrency 1,2 \
	  --json target/demo/bench.json --markdown target/demo/bench.md --plot target/demo/bench.svg
	.venv/bin/python models/tabular/generate.py --rows 100000 --seed 42 --unseen --out target/demo/customers.csv
	./target/debug/rivet predict --model models/tabular/tabular.onnx --data target/demo/customers.csv \
	  --id-column customer_id --out target/demo/churn.parquet

## librivet (the C ABI and the C++ API) and the tch backend library it loads on demand
## (librivet_tch.so, beside it), with headers (rivet.h, rivet.hpp, rivet/cxx.hpp and what it
## includes, cxx's rust/cxx.h), CMake package and pkg-config file under PREFIX. PROFILE=debug installs the debug
## build (what `make test` uses, so CI compiles once).
install: setup
	$(CARGO) build --workspace $(if $(filter release,$(PROFILE)),--release,)
	install -d $(PREFIX)/lib/cmake/Rivet $(PREFIX)/lib/pkgconfig $(PREFIX)/include
	install -m 755 target/$(PROFILE)/librivet.so $(PREFIX)/lib/librivet.so.$(VERSION)
	install -m 755 target/$(PROFILE)/librivet_tch.so $(PREFIX)/lib/librivet_tch.so
	ln -sf librivet.so.$(VERSION) $(PREFIX)/lib/librivet.so.0
	ln -sf librivet.so.0 $(PREFIX)/lib/librivet.so
	install -m 644 target/$(PROFILE)/librivet.a $(PREFIX)/lib/librivet.a
	install -m 644 include/rivet.h include/rivet.hpp $(PREFIX)/include/
	install -d $(PREFIX)/include/rivet $(PREFIX)/include/rust
	install -m 644 include/rivet/cxx.hpp include/rivet/bridge.h include/rivet/scorer.h include/rivet/dlpack.h include/rivet/arrow.h \
	  $(PREFIX)/include/rivet/
	install -m 644 "$$($(CARGO) metadata --format-version 1 --locked | python3 -c \
	  'import json, sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cxx").replace("Cargo.toml", "include/cxx.h"))')" \
	  $(PREFIX)/include/rust/cxx.h
	install -m 644 $(PKG)/RivetConfig.cmake $(PREFIX)/lib/cmake/Rivet/
	sed 's|@VERSION@|$(VERSION)|' $(PKG)/RivetConfigVersion.cmake.in > $(PREFIX)/lib/cmake/Rivet/RivetConfigVersion.cmake
	sed -e 's|@PREFIX@|$(abspath $(PREFIX))|' -e 's|@VERSION@|$(VERSION)|' $(PKG)/rivet.pc.in > $(PREFIX)/lib/pkgconfig/rivet.pc

## The C/C++ examples and tests, built from the installed package with CMake and run by ctest.
C_PREFIX := $(CURDIR)/target/rivet-install
# libtorch as bootstrap.sh chose it (read when used, after setup wrote the file); its
# ATen/dlpack.h is the real dlpack.h the include-order checks compile against.
LIBTORCH_DIR = $(shell sed -n 's/^LIBTORCH = "\(.*\)"/\1/p' .cargo/config.toml)
test-c: setup
	$(MAKE) install PREFIX=$(C_PREFIX) PROFILE=debug
	cmake -S cpp-examples -B target/cpp-build -DCMAKE_PREFIX_PATH=$(C_PREFIX) -DCMAKE_BUILD_TYPE=Debug \
	  -DRIVET_TEST_BACKEND_PATH=$(CURDIR)/target/debug \
	  -DRIVET_DLPACK_INCLUDE=$(LIBTORCH_DIR)/include/ATen
	cmake --build target/cpp-build -j 2
	status=0; cd target/cpp-build && ctest --output-on-failure --verbose || status=1; cd $(CURDIR); \
	echo "== pkg-config consumer: c_quickstart built with \`pkg-config --cflags --libs rivet\`"; \
	PKG_CONFIG_PATH=$(C_PREFIX)/lib/pkgconfig; export PKG_CONFIG_PATH; \
	if cc -std=c11 -Wall -Wextra -Werror -DRIVET_MODELS='"$(CURDIR)/models"' cpp-examples/c_quickstart.c \
	     $$(pkg-config --cflags --libs rivet) -Wl,-rpath,$(C_PREFIX)/lib -o target/cpp-build/c_quickstart_pkgconfig && \
	   cpp-examples/tests/expect_output.sh 'logits f32\[1, 3\]:( -?[0-9]+\.[0-9]+){3}' target/cpp-build/c_quickstart_pkgconfig; \
	then echo "example c_quickstart_pkgconfig: ok"; else echo "example c_quickstart_pkgconfig: FAILED"; status=1; fi; \
	exit $$status

## Every test: the workspace's cargo tests (after the same `cargo build --workspace` as `make
## build`, which also builds librivet_tch.so for them; --no-fail-fast, so every test binary runs),
## then the C/C++ suite (test-c), which runs even when cargo tests failed. tests/summary.py then
## prints one line per kind (cargo tests, C/C++ suite tests, examples, memcheck runs), every
## failure by name (a crashed suite included), and "total: N passed, N failed", each test
## counted once however many checks it makes.
test: setup
	@mkdir -p target
	@rm -f target/test-cargo.log target/test-c.log
	set -o pipefail; $(CARGO) build --workspace 2>&1 | tee target/test.log; build=$$?; \
	cargo=; c=; \
	if [ $$build -eq 0 ]; then \
	  $(CARGO) test --workspace --no-fail-fast 2>&1 | tee target/test-cargo.log; cargo=$$?; \
	  $(MAKE) --no-print-directory test-c 2>&1 | tee target/test-c.log; c=$$?; \
	  cat target/test-cargo.log target/test-c.log >> target/test.log; \
	fi; \
	python3 tests/summary.py --build-status $$build --cargo-log target/test-cargo.log $${cargo:+--cargo-status $$cargo} \
	  --c-log target/test-c.log $${c:+--c-status $$c}

## criterion benchmarks (release build; first the tch backend library they load). BENCH picks
## suites: overhead (Rivet vs the direct library call), capi (C ABI and C++ API vs Rust API),
## conversion (tensors in/out of each backend), validation (signature checks); also threads (tch
## on the loading vs another thread), sessions (ORT sessions under 16 clients).
## One group: make bench BENCH=overhead FILTER=overhead/ort
BENCH ?= overhead capi conversion validation
FILTER ?=
bench: setup
	$(CARGO) build --release -p rivet-tch-plugin
	since=$$(date +%s); for b in $(BENCH); do $(CARGO) bench --bench $$b -- $(FILTER) || exit 1; done; \
	python3 benches/python/results.py criterion $(BENCH) --since $$since \
	  --command "make bench BENCH='$(BENCH)'$(if $(FILTER), FILTER=$(FILTER),)"

## Candle's executor against ONNX Runtime (and the candle_onnx::simple_eval path it replaced)
## on the bundled models and ResNet-18, one thread, batch 1 and 8: criterion's timings, then
## the same ratios measured side by side, saved for the benchmark page.
bench-candle: setup
	test -f models/resnet18/resnet18.onnx || .venv/bin/python models/export.py resnet18
	$(CARGO) bench --bench candle -- $(FILTER)
	python3 benches/python/results.py table candle "Candle's executor against ONNX Runtime, side by side (release)" \
	  "make bench-candle$(if $(FILTER), FILTER=$(FILTER),)" target/bench/candle_side_by_side.json

## The benchmark page, docs/benchmarks.md, rendered from the results the bench-* targets saved
## under target/bench-results/ (each target's latest run).
bench-report:
	python3 benches/python/results.py report

## Rivet (release) against Python onnxruntime and torch.jit on the same models, inputs, threads
## and batch sizes; prints the speedup per model x backend x batch. Rivet's table
## (target/bench/rivet.md) also has Candle beside ONNX Runtime (it has no Python twin). Exports the compute-bound
## ResNet-18 first if it is missing. Results under target/bench/.
COMPARE_MODELS ?= models/mlp models/cnn models/encoder models/resnet18
COMPARE_BATCH ?= 1,8,64
COMPARE_THREADS ?= 1
COMPARE_DURATION ?= 3
COMPARE_WARMUP ?= 5
bench-compare: setup
	test -f models/resnet18/resnet18.onnx || .venv/bin/python models/export.py resnet18
	$(CARGO) build --release --workspace
	./target/release/rivet bench $(COMPARE_MODELS) --backend tch,ort,candle --batch $(COMPARE_BATCH) \
	  --threads $(COMPARE_THREADS) --duration $(COMPARE_DURATION) --warmup $(COMPARE_WARMUP) \
	  --save-inputs target/bench/inputs --json target/bench/rivet.json \
	  --markdown target/bench/rivet.md --plot target/bench/rivet.svg
	.venv/bin/python benches/python/bench.py $(COMPARE_MODELS) --inputs target/bench/inputs \
	  --backend tch,ort --batch $(COMPARE_BATCH) --threads $(COMPARE_THREADS) \
	  --duration $(COMPARE_DURATION) --warmup $(COMPARE_WARMUP) --json target/bench/python.json
	.venv/bin/python benches/python/compare.py target/bench/rivet.json target/bench/python.json \
	  --markdown target/bench/compare.md \
	  --command "make bench-compare COMPARE_MODELS='$(COMPARE_MODELS)' COMPARE_BATCH=$(COMPARE_BATCH) COMPARE_THREADS=$(COMPARE_THREADS) COMPARE_DURATION=$(COMPARE_DURATION)"

## Start-up cost (release build): `rivet --version`, and one-shot `rivet run` of the bundled MLP
## (ONNX on ort, TorchScript on tch) against the same job in Python and, for ONNX, done by ONNX
## Runtime alone (the floor); prints the medians and the ratios to Python.
bench-startup: setup
	$(CARGO) build --release --workspace
	$(CARGO) build --release -p rivet-ort --example ort_alone
	.venv/bin/python benches/python/oneshot.py --rivet target/release/rivet --json target/bench/oneshot.json

## `rivet serve` (release) against MLServer serving the same ONNX models through onnxruntime,
## both driven by perf_analyzer over gRPC at concurrency 1, 4 and 16, with and without dynamic
## batching; prints throughput, p50/p99 and the ratios. MLServer gets a venv of its own
## (target/mlserver-venv) on first use: its pins clash with the project venv's.
MLSERVER_VENV := target/mlserver-venv
bench-serve: setup
	$(CARGO) build --release --workspace
	test -x $(MLSERVER_VENV)/bin/mlserver || { python3 -m venv $(MLSERVER_VENV) && \
	  $(MLSERVER_VENV)/bin/pip install --quiet --disable-pip-version-check mlserver==1.7.1 onnxruntime==1.31.1; }
	.venv/bin/python benches/python/serve_bench.py --rivet target/release/rivet \
	  --mlserver-venv $(MLSERVER_VENV) --perf-analyzer .venv/perf_analyzer/perf_analyzer

## Preprocessing and batch scoring (release build) against pandas + scikit-learn (+ onnxruntime)
## on a generated PREP_ROWS-row table as CSV and as Parquet, and on a wide 63-column table of
## PREP_WIDE_ROWS rows (a third categorical): checks the outputs agree within 1e-6, then prints
## wall time and peak RSS of each side and the ratios.
PREP_ROWS ?= 1000000
PREP_WIDE_ROWS ?= 200000
PREP_REPEAT ?= 3
bench-prep: setup
	$(CARGO) build --release --workspace
	.venv/bin/python benches/python/prep_bench.py --rivet target/release/rivet --rows $(PREP_ROWS) \
	  --wide-rows $(PREP_WIDE_ROWS) --repeat $(PREP_REPEAT) --json target/bench/prep.json

## Formatting, clippy and the API docs, each with warnings as errors. Clippy's lints come from
## the build itself (bootstrap.sh makes clippy-driver the compiler of the workspace's crates),
## so after `make test` this compiles only the bench targets and replays the warnings of the
## rest: any warning fails it.
lint: setup
	$(CARGO) fmt --all -- --check
	@grep -q '^rustc-workspace-wrapper' .cargo/config.toml || \
	  { echo "lint: clippy is not installed (rustup component add clippy; then ./bootstrap.sh)"; exit 1; }
	@mkdir -p target
	set -o pipefail; $(CARGO) build --workspace --all-targets 2>&1 | tee target/lint.log
	@if grep -q '^\(warning\|error\)' target/lint.log; then \
	  echo "lint: the build has warnings (above; clippy's name each lint)"; exit 1; fi
	set -o pipefail; RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace 2>&1 | tee target/lint-doc.log
	@if grep -q '^warning' target/lint-doc.log; then echo "lint: cargo doc warns (above)"; exit 1; fi

## Re-exports the bundled models and their PyTorch references.
models: setup
	.venv/bin/python models/export.py

## Fuzzing (nightly toolchain, cargo-fuzz installed on first use): every target in fuzz/ for
## FUZZ_SECONDS each (FUZZ_RUNS=N stops a target after N executions), one line per target.
## New inputs go to target/fuzz/corpus/; crashes to fuzz/artifacts/ (see fuzz/run.sh).
FUZZ_SECONDS ?= 60
fuzz: setup
	fuzz/run.sh run $(FUZZ_SECONDS) $(FUZZ_TARGETS)

## Merges what fuzzing found into the committed corpora, minimized (libFuzzer's -merge=1).
fuzz-cmin: setup
	fuzz/run.sh cmin $(FUZZ_TARGETS)
