"""Python baselines for `rivet bench`: the same models, inputs, thread settings and batch sizes
through Python's onnxruntime and torch.jit, measured the way `rivet bench` measures a closed
loop with one client (warm-up runs, then timed runs until --duration or --iterations).

Inputs are the very tensors Rivet fed: `rivet bench --save-inputs DIR` writes
DIR/MODEL/bBATCH/input.NAME.npy, and this script reads them.

Run (what `make bench-compare` does):
  .venv/bin/python benches/python/bench.py models/mlp models/cnn --inputs target/bench/inputs \\
      --batch 1,8 --threads 1 --duration 3 --warmup 5 --json target/bench/python.json
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np


def percentile(sorted_values, q):
    """Nearest rank, as `rivet bench` computes it."""
    rank = math.ceil(q / 100.0 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def summarize(latencies_s):
    ms = sorted(v * 1e3 for v in latencies_s)
    return {
        "count": len(ms), "min": ms[0], "mean": sum(ms) / len(ms),
        "p50": percentile(ms, 50), "p90": percentile(ms, 90), "p95": percentile(ms, 95),
        "p99": percentile(ms, 99), "max": ms[-1],
    }


def measure(run, warmup, duration, iterations):
    """Closed loop, one client: first run, warm-up, then timed runs."""
    started = time.perf_counter()
    run()
    first_ms = (time.perf_counter() - started) * 1e3
    for _ in range(warmup):
        run()
    latencies = []
    begin = time.perf_counter()
    last = begin
    while True:
        t0 = time.perf_counter()
        if duration is not None and t0 - begin >= duration:
            break
        run()
        last = time.perf_counter()
        latencies.append(last - t0)
        if iterations is not None and len(latencies) >= iterations:
            break
    return first_ms, latencies, last - begin


def load_inputs(folder, names):
    missing = [n for n in names if not (folder / f"input.{n}.npy").exists()]
    if missing:
        sys.exit(f"error: {folder}: no input.{missing[0]}.npy (run `rivet bench --save-inputs` first)")
    return [np.load(folder / f"input.{n}.npy") for n in names]


def ort_runner(path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    started = time.perf_counter()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - started) * 1e3

    def bind(names, arrays):
        feeds = dict(zip(names, arrays))
        return lambda: session.run(None, feeds)

    return load_ms, bind, f"onnxruntime {ort.__version__}"


def torch_runner(path, threads):
    import torch

    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    module = torch.jit.load(str(path))
    module.eval()
    load_ms = (time.perf_counter() - started) * 1e3

    def bind(names, arrays):
        tensors = [torch.from_numpy(a) for a in arrays]

        def run():
            with torch.no_grad():
                return module(*tensors)

        return run

    return load_ms, bind, f"torch {torch.__version__}"


RUNTIMES = {"ort": ("onnx", ort_runner), "tch": ("pt", torch_runner)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="model folders (models/NAME with NAME.onnx/.pt)")
    parser.add_argument("--inputs", type=Path, required=True, help="the --save-inputs folder of rivet bench")
    parser.add_argument("--backend", default="tch,ort", help="tch (torch.jit) and/or ort (onnxruntime)")
    parser.add_argument("--batch", default="1")
    parser.add_argument("--threads", type=int, default=None)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--duration", type=float, default=None)
    group.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    if args.duration is None and args.iterations is None:
        args.duration = 3.0
    batches = [int(b) for b in args.batch.split(",")]
    backends = [b for b in args.backend.split(",") if b]
    for b in backends:
        if b not in RUNTIMES:
            sys.exit(f"error: --backend: expected tch or ort, got {b}")

    rows = []
    for folder in args.models:
        name = folder.name
        spec = json.loads((folder / f"{name}.spec.json").read_text())
        names = [i["name"] for i in spec["inputs"]]
        for backend in backends:
            ext, make = RUNTIMES[backend]
            path = folder / f"{name}.{ext}"
            if not path.exists():
                continue
            load_ms, bind, version = make(path, args.threads)
            for batch in batches:
                arrays = load_inputs(args.inputs / name / f"b{batch}", names)
                first_ms, latencies, elapsed = measure(bind(names, arrays), args.warmup, args.duration, args.iterations)
                rows.append({
                    "model": name, "backend": backend, "runtime": version, "batch": batch,
                    "threads": args.threads, "load_ms": load_ms, "first_inference_ms": first_ms,
                    "iterations": len(latencies), "measured_s": elapsed,
                    "latency_ms": summarize(latencies),
                    "inferences_per_s": len(latencies) / elapsed,
                    "samples_per_s": len(latencies) * batch / elapsed,
                })
                print(f"{name} {version} batch {batch}: p50 {rows[-1]['latency_ms']['p50']:.4f} ms, "
                      f"{rows[-1]['inferences_per_s']:.0f} inf/s", file=sys.stderr)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"python": sys.version.split()[0], "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
