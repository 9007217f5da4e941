#!/usr/bin/env bash
# Runs Rivet's fuzz targets (cargo-fuzz, nightly) and prints one line per target.
#
#   fuzz/run.sh run  SECONDS [TARGET...]   fuzz each target for SECONDS (with FUZZ_RUNS=N
#                                          set: until N executions, SECONDS at most)
#   fuzz/run.sh cmin [TARGET...]           minimize fuzz/corpus/TARGET with what runs found
#                                          (keeping inputs of at most FUZZ_KEEP_BYTES, default
#                                          16384, so the committed corpora stay small)
#
# `run` starts from the committed corpus (fuzz/corpus/TARGET) and writes what it finds to a
# work corpus (target/fuzz/corpus/TARGET), so the committed one changes only through `cmin`.
# Crashes land in fuzz/artifacts/TARGET/; each becomes a fix plus a file in
# fuzz/regressions/TARGET/, which the stable replay test (crates/rivet-fuzz/tests/replay.rs)
# runs in `make test`. Logs: target/fuzz/logs/TARGET.log.
set -euo pipefail
cd "$(dirname "$0")"
ALL=(npy spec torchscript_archive torchscript_code bind tensor candle_onnx pipeline arrow oip_request)
mode=${1:?usage: fuzz/run.sh run SECONDS [TARGET...] | cmin [TARGET...]}
shift
work=../target/fuzz
mkdir -p "$work/logs"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# The fuzz build is nightly's: the stable clippy-driver that lints the workspace's builds
# (.cargo/config.toml) cannot compile it.
export RUSTC_WORKSPACE_WRAPPER=
# Memory limits: libFuzzer reports a crash for any single allocation over 2 GiB or a process
# over 4 GiB, so an allocation sized by an untrusted length field cannot go unnoticed.
LIMITS=(-rss_limit_mb=4096 -malloc_limit_mb=2048 -timeout=10)

case $mode in
run)
  seconds=${1:?seconds}
  shift
  targets=("${@:-${ALL[@]}}")
  [ $# -gt 0 ] || targets=("${ALL[@]}")
  cargo +nightly fuzz build
  printf '%-20s %12s %9s %8s %s\n' target executions exec/s corpus crashes
  for t in "${targets[@]}"; do
    mkdir -p "$work/corpus/$t" "artifacts/$t"
    status=0
    cargo +nightly fuzz run "$t" "$work/corpus/$t" "corpus/$t" -- "${LIMITS[@]}" \
      -max_total_time="$seconds" ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} -print_final_stats=1 >"$work/logs/$t.log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/logs/$t.log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/logs/$t.log" | tail -n 1)
    corpus=$(find "$work/corpus/$t" "corpus/$t" -type f | wc -l)
    crashes=$(find "artifacts/$t" -type f | wc -l)
    printf '%-20s %12s %9s %8s %s\n' "$t" "${execs:-?}" "${rate:-?}" "$corpus" \
      "$crashes$([ "$status" -eq 0 ] || echo " (exit $status, see target/fuzz/logs/$t.log)")"
  done
  ;;
cmin)
  targets=("${@:-${ALL[@]}}")
  [ $# -gt 0 ] || targets=("${ALL[@]}")
  for t in "${targets[@]}"; do
    mkdir -p "$work/corpus/$t" "$work/merged/$t"
    rm -rf "$work/merged/$t" && mkdir -p "$work/merged/$t"
    cargo +nightly fuzz run "$t" "$work/merged/$t" "corpus/$t" "$work/corpus/$t" -- "${LIMITS[@]}" \
      -merge=1 >"$work/logs/$t.cmin.log" 2>&1
    find "$work/merged/$t" -type f -size +"${FUZZ_KEEP_BYTES:-16384}"c -delete
    rm -rf "corpus/$t" && mv "$work/merged/$t" "corpus/$t"
    echo "$t: $(find "corpus/$t" -type f | wc -l) files, $(du -sh "corpus/$t" | cut -f1)"
  done
  ;;
*)
  echo "unknown mode $mode" >&2
  exit 2
  ;;
esac
