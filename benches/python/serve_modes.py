"""`make bench-serve` (second part): `rivet serve` against itself in five settings, with
perf_analyzer over gRPC at concurrency 1 and 16, for the MLP and the CNN:

- unbatched;
- dynamic batching, Triton's policy (wait for the delay);
- dynamic batching, the idle-first policy (a batch runs at once while the model is idle);
- unbatched, shadowed by the same model on Candle, every request compared (sample 1.0);
- the same, one request in ten compared (sample 0.1).

All five servers of a model run at once, idle but for the one measured, and take turns at each
concurrency, so every setting sees the same machine. Reports throughput, p50/p99 and server CPU
per request, and the ratios that say what batching gains and what a shadow costs the primary.
Figures, not assertions.
"""

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import results as save_results  # noqa: E402
from serve_bench import (ROOT, children_cpu_seconds, cpu_seconds, free_ports, input_data, perf, spec,  # noqa: E402
                         stop, wait_ready)

MAX_BATCH = 16
DELAY_US = 500
MODES = {
    "unbatched": "",
    "batched, wait for delay": f"max_batch_size = {MAX_BATCH}\n[dynamic_batching]\nmax_queue_delay_us = {DELAY_US}\n",
    "batched, idle first": f"max_batch_size = {MAX_BATCH}\n[dynamic_batching]\nmax_queue_delay_us = {DELAY_US}\n"
                           "policy = \"idle_first\"\n",
    "shadow 1.0": "[shadow]\nmodel = \"twin\"\nsample = 1.0\natol = 1e-4\nrtol = 1e-4\n",
    "shadow 0.1": "[shadow]\nmodel = \"twin\"\nsample = 0.1\natol = 1e-4\nrtol = 1e-4\n",
}


def start(rivet, model, mode, work):
    repo = work / f"{model}-{len(list(work.iterdir()))}"
    (repo / model).mkdir(parents=True)
    onnx = ROOT / "models" / model / f"{model}.onnx"
    (repo / model / "model.onnx").symlink_to(onnx)
    (repo / model / "config.toml").write_text('backend = "ort"\nthreads = 1\ninstances = 1\n' + MODES[mode])
    if mode.startswith("shadow"):
        (repo / "twin").mkdir()
        (repo / "twin" / "model.onnx").symlink_to(onnx)
        (repo / "twin" / "config.toml").write_text('backend = "candle"\nthreads = 1\n')
    http, grpc, metrics = free_ports(3)
    proc = subprocess.Popen([rivet, "serve", "--model-repository", repo, "--host", "127.0.0.1",
                             "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(grpc, proc, "rivet serve")
    return proc, grpc, metrics


def shadow_counts(metrics_port, model):
    """{outcome: count} of the model's shadow comparisons, from /metrics."""
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("rivet_shadow_comparisons_total{") and f'model="{model}"' in line:
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            counts[outcome] = int(float(line.rsplit(" ", 1)[1]))
    return counts


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rivet", required=True)
    parser.add_argument("--perf-analyzer", required=True)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json", type=pathlib.Path, default=ROOT / "target/bench/serve-modes.json")
    args = parser.parse_args()
    concurrency = [int(c) for c in args.concurrency.split(",")]
    rivet = str(pathlib.Path(args.rivet).resolve())
    perf_analyzer = str(pathlib.Path(args.perf_analyzer).resolve())

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        for model in args.models.split(","):
            data = input_data(model, work)
            single = [f"{t['name']}:1," + ",".join(str(d) for d in t["shape"][1:]) for t in spec(model)["inputs"]]
            servers = {}
            try:
                for mode in MODES:
                    servers[mode] = start(rivet, model, mode, work)
                for c in concurrency:
                    for mode, (proc, port, metrics_port) in servers.items():
                        # A batched model declares its batch dimension: perf_analyzer sends batch 1.
                        shape = [] if mode.startswith("batched") else [a for s in single for a in ("--shape", s)]
                        wall, cpu, client = time.time(), cpu_seconds(proc.pid), children_cpu_seconds()
                        r = perf(perf_analyzer, model, port, c, shape, args.seconds, data)
                        wall = time.time() - wall
                        per_request = lambda seconds: seconds / wall / r["throughput"] * 1e6  # noqa: E731
                        r["server_cpu_us"] = per_request(cpu_seconds(proc.pid) - cpu)
                        r["perf_analyzer_cpu_us"] = per_request(children_cpu_seconds() - client)
                        if mode.startswith("shadow"):
                            r["shadow"] = shadow_counts(metrics_port, model)
                        r.update(model=model, mode=mode, concurrency=c)
                        results.append(r)
                        print(f"{model:4} {mode:24} c={c:2} {r['throughput']:9.1f} infer/s  p50 {r['p50_us']:6} us  "
                              f"p99 {r['p99_us']:6} us  server CPU {r['server_cpu_us']:6.1f} us/request"
                              + (f"  shadow {r['shadow']}" if "shadow" in r else ""), flush=True)
            finally:
                for proc, _, _ in servers.values():
                    stop(proc)

    def get(model, mode, c):
        return next(r for r in results if (r["model"], r["mode"], r["concurrency"]) == (model, mode, c))

    summary, notes = {}, []
    for model in args.models.split(","):
        base = {c: get(model, "unbatched", c) for c in concurrency}
        for policy in ("wait for delay", "idle first"):
            for c in concurrency:
                r = get(model, f"batched, {policy}", c)
                both = lambda x: x["server_cpu_us"] + x["perf_analyzer_cpu_us"]  # noqa: E731
                summary[f"{model}/batched, {policy}/c={c}"] = {
                    "throughput_ratio": r["throughput"] / base[c]["throughput"],
                    "p50_ratio": r["p50_us"] / base[c]["p50_us"],
                    "cpu_ratio": r["server_cpu_us"] / base[c]["server_cpu_us"],
                    # Server and client share the cores: throughput is bounded by the cores over
                    # their CPU per request together, so batching can gain at most this.
                    "bound_ratio": both(base[c]) / both(r),
                }
        for sample in ("1.0", "0.1"):
            for c in concurrency:
                r = get(model, f"shadow {sample}", c)
                summary[f"{model}/shadow {sample}/c={c}"] = {
                    "throughput_ratio": r["throughput"] / base[c]["throughput"],
                    "p50_ratio": r["p50_us"] / base[c]["p50_us"],
                    "p99_ratio": r["p99_us"] / base[c]["p99_us"],
                }
    print()
    for key, ratios in summary.items():
        print(f"{key}: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"results": results, "summary": summary}, indent=2))
    rows = []
    for r in results:
        ratios = summary.get(f"{r['model']}/{r['mode']}/c={r['concurrency']}", {})
        rows.append([r["model"], r["mode"], r["concurrency"], f"{r['throughput']:.0f}",
                     f"{r['p50_us']} / {r['p99_us']}", f"{r['server_cpu_us']:.1f}",
                     " · ".join(f"{k.split('_')[0]} {v:.2f}×" for k, v in ratios.items()) or "(baseline)"])
    notes.append(f"perf_analyzer over gRPC on the same machine; ORT, one instance, one intra-op thread; batching: "
                 f"max batch {MAX_BATCH}, {DELAY_US} µs delay; the shadow is the same ONNX file on Candle "
                 "(one thread), unbatched.")
    notes.append("bound: the throughput gain this machine allows a setting, the CPU per request of server and "
                 "perf_analyzer together, unbatched over this setting (they share the cores).")
    notes.append("Ratios are against the unbatched server at the same concurrency, measured in the same run: "
                 "throughput, p50 and p99 latency, and server CPU per request (its CPU seconds per second "
                 "over the throughput).")
    save_results.save(
        "serve-modes", "`rivet serve` batching policies and the cost of a shadow, perf_analyzer over gRPC",
        "make bench-serve",
        ["model", "setting", "concurrency", "infer/s", "p50 / p99 µs", "server CPU µs per request",
         "against unbatched"], rows, notes)
    print(f"results: {args.json}")


if __name__ == "__main__":
    sys.exit(main())
