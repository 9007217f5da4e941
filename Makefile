# Rivet's entry points. Each target runs ./bootstrap.sh first, which installs what is missing
# (Debian protoc/cmake, the Python venv with PyTorch and ONNX Runtime) and writes
# .cargo/config.toml; both are idempotent.

SHELL := bash
, := ,
CARGO ?= cargo
DEMO_MODELS := models/mlp models/cnn models/encoder

PREFIX ?= /usr/local
PROFILE ?= release
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
PKG := crates/rivet-capi/pkg

.PHONY: setup build python test-python wasm test-wasm bench-wasm demo test bench bench-candle bench-compare bench-startup bench-serve bench-prep bench-python bench-report bench-smoke lint models install test-c fuzz fuzz-cmin

setup:
	./bootstrap.sh

## One `cargo build --workspace` builds the binaries, librivet and the tch backend library
## (librivet_tch.so); `make test` starts with the same command, so it reuses this build.
build: setup
	$(CARGO) build --workspace

## The Python package (crates/rivet-py): maturin builds the abi3 wheel from the dev build that
## `make build` made (only the extension module itself is compiled again), with the tch backend
## library beside the module, and installs it into the project venv. target/wheels/ keeps it.
python: build
	cp target/debug/librivet_tch.so crates/rivet-py/python/rivet/librivet_tch.so
	.venv/bin/maturin build --profile dev --manifest-path crates/rivet-py/Cargo.toml \
	  --interpreter .venv/bin/python --compatibility linux --strip --out target/wheels
	.venv/bin/python -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps \
	  target/wheels/rivet-$(VERSION)-*.whl

## The Python package's tests (pytest, crates/rivet-py/tests) on the wheel `make python` installs.
test-python: python
	.venv/bin/python -m pytest crates/rivet-py/tests -p no:cacheprovider -q -rfEs

## Rivet for WebAssembly (crates/rivet-wasm): the Candle executor built for wasm32-unknown-unknown
## twice, with SIMD (+simd128) and without, each optimised by wasm-opt when Debian's binaryen is
## there (before wasm-bindgen: binaryen 108 cannot read the reference-type instructions that
## wasm-bindgen adds), then through the wasm-bindgen-cli release equal to the wasm-bindgen
## crate's (installed under target/tools on first use), into an npm package in target/wasm/pkg/
## (index.js picks the build the engine can run). The scalar build has a target directory of its own.
WASM_BINDGEN_VERSION := $(shell sed -n 's/^wasm-bindgen = "=\([^"]*\)".*/\1/p' crates/rivet-wasm/Cargo.toml)
WASM_BINDGEN := target/tools/bin/wasm-bindgen
WASM_PKG := target/wasm/pkg
WASM_BUILD := $(CARGO) build -p rivet-wasm --target wasm32-unknown-unknown --profile wasm
WASM_OPT_FEATURES := --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue
wasm: setup
	@rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown || \
	  { echo "wasm: rustup could not fetch the wasm32-unknown-unknown target: run 'rustup target add wasm32-unknown-unknown' where the network allows, then again"; exit 1; }
	@test "$$($(WASM_BINDGEN) --version 2>/dev/null)" = "wasm-bindgen $(WASM_BINDGEN_VERSION)" || \
	  $(CARGO) install --quiet --root target/tools wasm-bindgen-cli --version =$(WASM_BINDGEN_VERSION)
	RUSTFLAGS="-C target-feature=+simd128" $(WASM_BUILD)
	$(WASM_BUILD) --target-dir target/wasm-scalar
	rm -rf $(WASM_PKG) && mkdir -p $(WASM_PKG)
	@for build in rivet:target rivet_scalar:target/wasm-scalar; do name=$${build%%:*}; dir=$${build#*:}; \
	  raw=$$dir/wasm32-unknown-unknown/wasm/rivet_wasm.wasm; \
	  if [ target/wasm/$$name.wasm -nt $$raw ]; then :; \
	  elif command -v wasm-opt >/dev/null; then echo "wasm-opt -O3 $$raw"; \
	    wasm-opt -O3 $(WASM_OPT_FEATURES) $$raw -o target/wasm/$$name.wasm || exit 1; \
	  else echo "wasm: wasm-opt not found (Debian package binaryen): $$name is not post-optimised"; cp $$raw target/wasm/$$name.wasm; fi; \
	  $(WASM_BINDGEN) --target web --out-dir $(WASM_PKG) --out-name $$name target/wasm/$$name.wasm || exit 1; done
	cp crates/rivet-wasm/js/index.js crates/rivet-wasm/js/index.d.ts $(WASM_PKG)/
	python3 crates/rivet-wasm/js/package.py $(VERSION) $(WASM_PKG)
	@ls -l $(WASM_PKG)/*.wasm

## The WebAssembly package's tests under Node (`node --test`, crates/rivet-wasm/tests): the
## bundled models on both builds, the JavaScript API, a sample of the ONNX node suite against
## the native executor (whose side native_fixtures writes first), and examples/web/ in headless
## Chromium over the DevTools protocol (a screenshot lands in target/wasm/web.png), and the
## TypeScript declarations under tsc (TypeScript from npm, under target/wasm/tools).
TYPESCRIPT_VERSION := 5.9.3
test-wasm: wasm
	test -f target/wasm/tools/node_modules/typescript/package.json && \
	  grep -q '"version": "$(TYPESCRIPT_VERSION)"' target/wasm/tools/node_modules/typescript/package.json || \
	  npm install --prefix target/wasm/tools --no-save --silent typescript@$(TYPESCRIPT_VERSION)
	test -f target/onnx-node-tests/manifest.json || .venv/bin/python models/onnx_node_tests.py target/onnx-node-tests
	$(CARGO) build --workspace --examples --quiet
	./target/debug/examples/native_fixtures target/onnx-node-tests crates/rivet-wasm/tests/node_suite.sample target/wasm/node-suite
	node --experimental-websocket --no-warnings --test crates/rivet-wasm/tests/*.test.mjs

## Runs `rivet bench` over every bundled model on every backend that can load it: the table,
## then where the JSON, Markdown and chart are. It runs the dev build that `make build` made,
## whose dependencies, backends and CLI are compiled as in release (Cargo.toml's profiles), and
## its table says so. Then scores a generated 100,000-row customer
## table with the tabular example (`rivet predict`: pipeline and churn model) into
## target/demo/churn.parquet. Last, the Python package (`make python`) runs
## examples/python/quickstart.py: each backend from Python against PyTorch itself.
demo: python
	./target/debug/rivet bench $(DEMO_MODELS) --concurrency 1,2 \
	  --json target/demo/bench.json --markdown target/demo/bench.md --plot target/demo/bench.svg
	.venv/bin/python models/tabular/generate.py --rows 100000 --seed 42 --unseen --out target/demo/customers.csv
	./target/debug/rivet predict --model models/tabular/tabular.onnx --data target/demo/customers.csv \
	  --id-column customer_id --out target/demo/churn.parquet
	.venv/bin/python examples/python/quickstart.py

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
## then the C/C++ suite (test-c) and the Python package's (test-python), which run even when cargo
## tests failed. tests/summary.py then prints one line per kind (cargo tests, C/C++ suite tests,
## examples, memcheck runs, Python tests), every failure by name (a crashed suite included), and "total: N passed, N failed", each test
## counted once however many checks it makes.
test: setup
	@mkdir -p target
	@rm -f target/test-cargo.log target/test-c.log target/test-python.log target/test-wasm.log
	set -o pipefail; $(CARGO) build --workspace 2>&1 | tee target/test.log; build=$$?; \
	cargo=; c=; py=; wasm=; \
	if [ $$build -eq 0 ]; then \
	  $(CARGO) test --workspace --no-fail-fast 2>&1 | tee target/test-cargo.log; cargo=$$?; \
	  $(MAKE) --no-print-directory test-c 2>&1 | tee target/test-c.log; c=$$?; \
	  $(MAKE) --no-print-directory test-python 2>&1 | tee target/test-python.log; py=$$?; \
	  $(MAKE) --no-print-directory test-wasm 2>&1 | tee target/test-wasm.log; wasm=$$?; \
	  cat target/test-cargo.log target/test-c.log target/test-python.log target/test-wasm.log >> target/test.log; \
	fi; \
	python3 tests/summary.py --build-status $$build --cargo-log target/test-cargo.log $${cargo:+--cargo-status $$cargo} \
	  --c-log target/test-c.log $${c:+--c-status $$c} --python-log target/test-python.log $${py:+--python-status $$py} \
	  --wasm-log target/test-wasm.log $${wasm:+--wasm-status $$wasm}

## SMOKE=1 runs a bench-* target to prove that it works, not to measure: on the dev build that
## `make test` made (no release build), with one model and a few iterations; its results go
## under target/bench-smoke/ and never onto the benchmark page. `make bench-smoke` runs every
## bench-* target so (CI does, after the tests).
SMOKE ?=
BUILD_DIR = target/$(if $(SMOKE),debug,release)
BUILD_FLAGS = $(if $(SMOKE),,--release)
BENCH_OUT = target/$(if $(SMOKE),bench-smoke,bench)
ifneq ($(SMOKE),)
export RIVET_BENCH_RESULTS := $(CURDIR)/target/bench-smoke/results
export CRITERION_HOME := $(CURDIR)/target/bench-smoke/criterion
export RIVET_BENCH_DIR := $(CURDIR)/target/bench-smoke
export RIVET_BENCH_BUILD := dev
endif
# criterion's own flags for a smoke run: benchmark mode (under `cargo test`), briefly.
CRITERION_SMOKE := --bench --warm-up-time 0.01 --measurement-time 0.05 --sample-size 10 --nresamples 100 --noplot

## criterion benchmarks (release build; first the tch backend library they load). BENCH picks
## suites: overhead (Rivet vs the direct library call), capi (C ABI and C++ API vs Rust API),
## conversion (tensors in/out of each backend), validation (signature checks); also threads (tch
## on the loading vs another thread), sessions (ORT sessions under 16 clients).
## One group: make bench BENCH=overhead FILTER=overhead/ort
BENCH ?= overhead capi conversion validation
FILTER ?=
bench: setup
	$(if $(SMOKE),$(CARGO) build --workspace,$(CARGO) build --release -p rivet-tch-plugin)
	since=$$(date +%s); for b in $(BENCH); do \
	  $(CARGO) $(if $(SMOKE),test,bench) --bench $$b -- $(if $(SMOKE),$(CRITERION_SMOKE)) $(FILTER) || exit 1; done; \
	python3 benches/python/results.py criterion $(BENCH) --since $$since \
	  --command "make bench BENCH='$(BENCH)'$(if $(FILTER), FILTER=$(FILTER),)"

## Candle's executor against ONNX Runtime (and the candle_onnx::simple_eval path it replaced)
## on the bundled models and ResNet-18: criterion's timings at one thread, batch 1 and 8, then
## the ratios measured side by side at 1 and 2 threads (each backend with the same count) and
## Candle's own cost of a thread setting, saved for the benchmark page.
CANDLE_FILTER = $(if $(SMOKE),candle/mlp/b1,$(FILTER))
bench-candle: setup
	$(if $(SMOKE),,test -f models/resnet18/resnet18.onnx || .venv/bin/python models/export.py resnet18)
	$(if $(SMOKE),RIVET_SIDE_BY_SIDE_ROUNDS=2 $(CARGO) test,$(CARGO) bench) --bench candle -- \
	  $(if $(SMOKE),$(CRITERION_SMOKE)) $(CANDLE_FILTER)
	python3 benches/python/results.py table candle "Candle's executor against ONNX Runtime, side by side" \
	  "make bench-candle$(if $(FILTER), FILTER=$(FILTER),)" $(BENCH_OUT)/candle_side_by_side.json

## The benchmark page, docs/benchmarks.md, rendered from the results the bench-* targets saved
## under target/bench-results/ (each target's latest run). With SMOKE=1, the smoke runs' page,
## target/bench-smoke/benchmarks.md.
bench-report:
	python3 benches/python/results.py report $(if $(SMOKE),--out $(BENCH_OUT)/benchmarks.md)

## Rivet (release) against Python onnxruntime and torch.jit on the same models, inputs, threads
## and batch sizes; prints the speedup per model x backend x batch. Rivet's table
## (target/bench/rivet.md) also has Candle beside ONNX Runtime (it has no Python twin). Exports the compute-bound
## ResNet-18 first if it is missing. Results under target/bench/.
COMPARE_MODELS ?= $(if $(SMOKE),models/mlp,models/mlp models/cnn models/encoder models/resnet18)
COMPARE_BATCH ?= $(if $(SMOKE),1,1$(,)8$(,)64)
COMPARE_DURATION ?= $(if $(SMOKE),0.2,3)
COMPARE_WARMUP ?= $(if $(SMOKE),1,5)
COMPARE_THREADS ?= 1
bench-compare: setup
	$(if $(filter models/resnet18,$(COMPARE_MODELS)),test -f models/resnet18/resnet18.onnx || .venv/bin/python models/export.py resnet18)
	$(CARGO) build $(BUILD_FLAGS) --workspace
	./$(BUILD_DIR)/rivet bench $(COMPARE_MODELS) --backend tch,ort,candle --batch $(COMPARE_BATCH) \
	  --threads $(COMPARE_THREADS) --duration $(COMPARE_DURATION) --warmup $(COMPARE_WARMUP) \
	  --save-inputs $(BENCH_OUT)/inputs --json $(BENCH_OUT)/rivet.json \
	  --markdown $(BENCH_OUT)/rivet.md --plot $(BENCH_OUT)/rivet.svg
	.venv/bin/python benches/python/bench.py $(COMPARE_MODELS) --inputs $(BENCH_OUT)/inputs \
	  --backend tch,ort --batch $(COMPARE_BATCH) --threads $(COMPARE_THREADS) \
	  --duration $(COMPARE_DURATION) --warmup $(COMPARE_WARMUP) --json $(BENCH_OUT)/python.json
	.venv/bin/python benches/python/compare.py $(BENCH_OUT)/rivet.json $(BENCH_OUT)/python.json \
	  --markdown $(BENCH_OUT)/compare.md \
	  --command "make bench-compare COMPARE_MODELS='$(COMPARE_MODELS)' COMPARE_BATCH=$(COMPARE_BATCH) COMPARE_THREADS=$(COMPARE_THREADS) COMPARE_DURATION=$(COMPARE_DURATION)"

## Start-up cost (release build): `rivet --version`, and one-shot `rivet run` of the bundled MLP
## (ONNX on ort, TorchScript on tch) against the same job in Python and, for ONNX, done by ONNX
## Runtime alone (the floor); prints the medians and the ratios to Python.
STARTUP_REPEAT ?= $(if $(SMOKE),1,7)
bench-startup: setup
	$(if $(SMOKE),$(CARGO) build --workspace --all-targets,$(CARGO) build --release --workspace)
	$(if $(SMOKE),,$(CARGO) build --release -p rivet-ort --example ort_alone)
	.venv/bin/python benches/python/oneshot.py --rivet $(BUILD_DIR)/rivet --ort-alone $(BUILD_DIR)/examples/ort_alone \
	  --repeat $(STARTUP_REPEAT) --json $(BENCH_OUT)/oneshot.json

## `rivet serve` (release) against MLServer serving the same ONNX models through onnxruntime,
## both driven by perf_analyzer over gRPC at concurrency 1, 4 and 16, with and without dynamic
## batching; prints throughput, p50/p99 and the ratios. MLServer gets a venv of its own
## (target/mlserver-venv) on first use: its pins clash with the project venv's.
MLSERVER_VENV := target/mlserver-venv
SERVE_MODELS ?= $(if $(SMOKE),mlp,mlp$(,)cnn)
SERVE_CONCURRENCY ?= $(if $(SMOKE),1,1$(,)4$(,)16)
SERVE_SECONDS ?= $(if $(SMOKE),0.5,2)
SERVE_MODES_CONCURRENCY ?= $(if $(SMOKE),1,1$(,)16)
bench-serve: setup
	$(CARGO) build $(BUILD_FLAGS) --workspace
	test -x $(MLSERVER_VENV)/bin/mlserver || { python3 -m venv $(MLSERVER_VENV) && \
	  $(MLSERVER_VENV)/bin/pip install --quiet --disable-pip-version-check mlserver==1.7.1 onnxruntime==1.31.1; }
	.venv/bin/python benches/python/serve_bench.py --rivet $(BUILD_DIR)/rivet \
	  --mlserver-venv $(MLSERVER_VENV) --perf-analyzer .venv/perf_analyzer/perf_analyzer \
	  --models $(SERVE_MODELS) --concurrency $(SERVE_CONCURRENCY) --seconds $(SERVE_SECONDS) \
	  --json $(BENCH_OUT)/serve.json
	.venv/bin/python benches/python/serve_modes.py --rivet $(BUILD_DIR)/rivet \
	  --perf-analyzer .venv/perf_analyzer/perf_analyzer --models $(SERVE_MODELS) \
	  --concurrency $(SERVE_MODES_CONCURRENCY) --seconds $(SERVE_SECONDS) --json $(BENCH_OUT)/serve-modes.json

## Preprocessing and batch scoring (release build) against pandas + scikit-learn (+ onnxruntime)
## on a generated PREP_ROWS-row table as CSV and as Parquet, and on a wide 63-column table of
## PREP_WIDE_ROWS rows (a third categorical): checks the outputs agree within 1e-6, then prints
## wall time and peak RSS of each side and the ratios.
PREP_ROWS ?= $(if $(SMOKE),2000,1000000)
PREP_WIDE_ROWS ?= $(if $(SMOKE),2000,200000)
PREP_REPEAT ?= $(if $(SMOKE),1,3)
bench-prep: setup
	$(CARGO) build $(BUILD_FLAGS) --workspace
	.venv/bin/python benches/python/prep_bench.py --rivet $(BUILD_DIR)/rivet --rows $(PREP_ROWS) \
	  --wide-rows $(PREP_WIDE_ROWS) --repeat $(PREP_REPEAT) --json $(BENCH_OUT)/prep.json

## The Python package (the wheel `make python` builds from the dev profile, whose Rivet crates are
## optimised as in release) against onnxruntime's and torch's own Python bindings per call, its
## scaling over Python threads, `import rivet` against `import onnxruntime`, and batch scoring on
## a local 2-CPU Ray cluster against the same job in pandas + scikit-learn + onnxruntime
## (PY_RAY_ROWS rows of the tabular example, generated once under target/bench/python/).
PY_ROUNDS ?= $(if $(SMOKE),2,30)
PY_CALLS ?= $(if $(SMOKE),20,2000)
PY_SECONDS ?= $(if $(SMOKE),0.2,2)
PY_IMPORT_REPEAT ?= $(if $(SMOKE),1,7)
PY_RAY_ROWS ?= $(if $(SMOKE),4000,1000000)
bench-python: python
	RIVET_BENCH_BUILD=dev .venv/bin/python benches/python/python_bench.py --rounds $(PY_ROUNDS) --calls $(PY_CALLS) \
	  --seconds $(PY_SECONDS) --import-repeat $(PY_IMPORT_REPEAT) --ray-rows $(PY_RAY_ROWS) --work $(BENCH_OUT)/python \
	  --command "make bench-python$(if $(SMOKE), SMOKE=1,)"

## Rivet's WebAssembly package (make wasm) against onnxruntime-web ORT_WEB_VERSION (npm, its wasm
## backend at one thread, installed under target/wasm/bench on first use): per-run time on
## WASM_MODELS at batch 1 and 8 side by side in one Node process and in one headless Chromium
## page, cold start, the .wasm bytes raw and gzipped, and native Rivet (Candle and ORT, `rivet
## bench --threads 1` on the very same inputs) for the cost of WebAssembly itself.
ORT_WEB_VERSION := 1.31.1
WASM_MODELS ?= $(if $(SMOKE),mlp,mlp$(,)cnn$(,)encoder$(,)resnet18)
WASM_BATCHES ?= $(if $(SMOKE),1,1$(,)8)
WASM_SECONDS ?= $(if $(SMOKE),0.2,2)
WASM_ROUNDS ?= $(if $(SMOKE),2,5)
WASM_COLD_REPEAT ?= $(if $(SMOKE),1,3)
bench-wasm: wasm
	$(if $(SMOKE),,test -f models/resnet18/resnet18.onnx || .venv/bin/python models/export.py resnet18)
	$(CARGO) build $(BUILD_FLAGS) --workspace
	test -f target/wasm/bench/node_modules/onnxruntime-web/package.json && \
	  grep -q '"version": "$(ORT_WEB_VERSION)"' target/wasm/bench/node_modules/onnxruntime-web/package.json || \
	  npm install --prefix target/wasm/bench --no-save --silent onnxruntime-web@$(ORT_WEB_VERSION)
	node --experimental-websocket --no-warnings benches/wasm/wasm_bench.mjs --rivet $(BUILD_DIR)/rivet \
	  --ort target/wasm/bench/node_modules/onnxruntime-web --work $(BENCH_OUT)/wasm --models $(WASM_MODELS) \
	  --batches $(WASM_BATCHES) --seconds $(WASM_SECONDS) --rounds $(WASM_ROUNDS) --cold-repeat $(WASM_COLD_REPEAT)
	python3 benches/python/results.py table wasm-run "WebAssembly: Rivet against onnxruntime-web, per run" \
	  "make bench-wasm" $(BENCH_OUT)/wasm/wasm-run.json
	python3 benches/python/results.py table wasm-cold "WebAssembly: cold start" "make bench-wasm" $(BENCH_OUT)/wasm/wasm-cold.json
	python3 benches/python/results.py table wasm-size "WebAssembly: the .wasm files" "make bench-wasm" $(BENCH_OUT)/wasm/wasm-size.json

## Every bench-* target with SMOKE=1, each to the end however the others fared, one line each;
## fails when any does.
BENCH_TARGETS := bench bench-candle bench-compare bench-startup bench-serve bench-prep bench-python bench-wasm bench-report
bench-smoke: setup
	@status=0; for t in $(BENCH_TARGETS); do \
	  if $(MAKE) --no-print-directory $$t SMOKE=1 BENCH="$(BENCH) threads sessions"; then echo "== $$t (smoke): ok"; \
	  else echo "== $$t (smoke): FAILED"; status=1; fi; done; exit $$status

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
