"""`make bench-serve`: perf_analyzer against `rivet serve` and, side by side, against MLServer
(the Python OIP server) running the same ONNX model through onnxruntime (mlserver/), over gRPC,
at concurrency 1, 4 and 16 (--concurrency), with and without dynamic batching, for the MLP and the CNN.

Both servers get one model instance with one intra-op thread. The two servers take turns at
each point, so both see the same machine. Prints the table and the ratios, writes
target/bench/serve.json and saves the table for the benchmark page (results.py). Figures, not
assertions.
"""

import argparse
import csv
import json
import os
import pathlib
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import results as save_results  # noqa: E402

MAX_BATCH = 16
DELAY_US = 500


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_ready(port, proc, what, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before it was ready")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            time.sleep(1.0)  # ports open before the models finish loading on MLServer
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{what} was not ready after {timeout} s")


def spec(model):
    return json.loads((ROOT / "models" / model / f"{model}.spec.json").read_text())


def start_rivet(rivet, model, batching, work):
    repo = work / f"rivet-{model}-{batching}"
    (repo / model).mkdir(parents=True)
    (repo / model / "model.onnx").symlink_to(ROOT / "models" / model / f"{model}.onnx")
    config = 'backend = "ort"\nthreads = 1\ninstances = 1\n'
    if batching:
        config += f"max_batch_size = {MAX_BATCH}\n[dynamic_batching]\nmax_queue_delay_us = {DELAY_US}\n"
    (repo / model / "config.toml").write_text(config)
    http, grpc, metrics = free_ports(3)
    proc = subprocess.Popen([rivet, "serve", "--model-repository", repo, "--host", "127.0.0.1",
                             "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(grpc, proc, "rivet serve")
    return proc, grpc


def start_mlserver(venv, model, batching, work):
    folder = work / f"mlserver-{model}-{batching}"
    (folder / model).mkdir(parents=True)
    http, grpc, metrics = free_ports(3)
    (folder / "settings.json").write_text(json.dumps({
        "http_port": http, "grpc_port": grpc, "metrics_port": metrics,
        # MLServer 1.7.1's worker processes die at start here ("no current event loop"), so
        # the model runs in the server process.
        "parallel_workers": 0, "debug": False}))
    s = spec(model)
    settings = {
        "name": model, "implementation": "onnx_runtime.OnnxModel",
        "parameters": {"uri": str(ROOT / "models" / model / f"{model}.onnx"), "extra": {"threads": 1}},
        "inputs": [{"name": t["name"], "datatype": "FP32", "shape": [-1 if isinstance(d, str) else d for d in t["shape"]]}
                   for t in s["inputs"]],
        "outputs": [{"name": t["name"], "datatype": "FP32", "shape": [-1 if isinstance(d, str) else d for d in t["shape"]]}
                    for t in s["outputs"]],
    }
    if batching:
        settings.update({"max_batch_size": MAX_BATCH, "max_batch_time": DELAY_US / 1e6})
    (folder / model / "model-settings.json").write_text(json.dumps(settings))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benches/python/mlserver")}
    proc = subprocess.Popen([venv / "bin/python", ROOT / "benches/python/mlserver/serve.py", folder],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=folder)
    wait_ready(grpc, proc, "MLServer")
    return proc, grpc


def input_data(model, work):
    """perf_analyzer's input file holding the model's first reference case (random bytes can be
    NaN, which MLServer cannot encode in its answer)."""
    import numpy as np
    case = sorted((ROOT / "models" / model / "cases").iterdir())[0]
    data = {p.name[len("input."):-4]: np.load(p)[:1].ravel().tolist() for p in case.glob("input.*.npy")}
    path = work / f"{model}-input.json"
    path.write_text(json.dumps({"data": [data]}))
    return path


def perf(perf_analyzer, model, port, concurrency, shape_args, seconds, data):
    """One perf_analyzer point. When the machine is too noisy for perf_analyzer to call its
    measurement stable, the window is doubled and the point measured again, up to twice; the
    window used is returned with the figures."""
    for attempt in range(3):
        window_ms = int(seconds * 1000) << attempt
        with tempfile.NamedTemporaryFile(suffix=".csv") as out:
            run = subprocess.run(
                [perf_analyzer, "-m", model, "-u", f"127.0.0.1:{port}", "-i", "grpc", *shape_args,
                 "--input-data", str(data),
                 "--concurrency-range", str(concurrency), "-p", str(window_ms), "-f", out.name],
                capture_output=True, text=True, timeout=600,
                env={"LD_LIBRARY_PATH": str(pathlib.Path(perf_analyzer).parent)})
            if run.returncode == 0:
                row = next(csv.DictReader(open(out.name)))
                return {"throughput": float(row["Inferences/Second"]), "p50_us": int(row["p50 latency"]),
                        "p99_us": int(row["p99 latency"]), "window_ms": window_ms}
        if "Failed to obtain stable measurement" not in run.stdout + run.stderr or attempt == 2:
            raise SystemExit(f"perf_analyzer failed on {model} at {port}: {run.stdout[-2000:]}{run.stderr[-2000:]}")
        print(f"  (no stable measurement in {window_ms} ms windows at c={concurrency}: measuring again "
              f"with {2 * window_ms} ms)", flush=True)


def cpu_seconds(pid):
    """User plus system CPU time a running process has used so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rivet", required=True)
    parser.add_argument("--mlserver-venv", required=True, type=pathlib.Path)
    parser.add_argument("--perf-analyzer", required=True)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--concurrency", default="1,4,16", help="perf_analyzer's concurrency levels, comma-separated")
    parser.add_argument("--seconds", type=float, default=2.0, help="perf_analyzer's measurement window")
    parser.add_argument("--json", type=pathlib.Path, default=ROOT / "target/bench/serve.json")
    args = parser.parse_args()
    args.mlserver_venv = args.mlserver_venv.resolve()
    concurrency = [int(c) for c in args.concurrency.split(",")]
    args.rivet = str(pathlib.Path(args.rivet).resolve())
    args.perf_analyzer = str(pathlib.Path(args.perf_analyzer).resolve())

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        for model in args.models.split(","):
            data = input_data(model, work)
            single = [f"{t['name']}:1," + ",".join(str(d) for d in t["shape"][1:]) for t in spec(model)["inputs"]]
            for batching in (False, True):
                servers = {}
                servers["rivet"] = start_rivet(args.rivet, model, batching, work)
                servers["mlserver"] = start_mlserver(args.mlserver_venv, model, batching, work)
                try:
                    for c in concurrency:
                        for name, (proc, port) in servers.items():
                            # A batched Rivet model declares its batch dimension (max_batch_size > 0):
                            # perf_analyzer then sends batch 1 of the declared shape by itself.
                            shape = [] if (name == "rivet" and batching) else [a for s in single for a in ("--shape", s)]
                            # CPU per request, the server's and perf_analyzer's (which shares the
                            # machine): CPU seconds per second of the run, over the throughput.
                            wall, server_cpu, client_cpu = time.time(), cpu_seconds(proc.pid), children_cpu_seconds()
                            r = perf(args.perf_analyzer, model, port, c, shape, args.seconds, data)
                            wall = time.time() - wall
                            per_request = lambda cpu: cpu / wall / r["throughput"] * 1e6
                            r["server_cpu_us"] = per_request(cpu_seconds(proc.pid) - server_cpu)
                            r["perf_analyzer_cpu_us"] = per_request(children_cpu_seconds() - client_cpu)
                            r.update(server=name, model=model, batching=batching, concurrency=c)
                            results.append(r)
                            print(f"{model:4} batching={str(batching):5} c={c:2} {name:8} "
                                  f"{r['throughput']:9.1f} infer/s  p50 {r['p50_us']:6} us  p99 {r['p99_us']:6} us  "
                                  f"CPU per request: server {r['server_cpu_us']:5.1f} us, perf_analyzer "
                                  f"{r['perf_analyzer_cpu_us']:5.1f} us", flush=True)
                finally:
                    for proc, _ in servers.values():
                        stop(proc)

    def get(server, model, batching, c):
        return next(r for r in results if (r["server"], r["model"], r["batching"], r["concurrency"]) ==
                    (server, model, batching, c))

    print("\n| model | batching | concurrency | Rivet infer/s | MLServer infer/s | throughput ratio | "
          "Rivet p50/p99 (us) | MLServer p50/p99 (us) | p99 ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for model in args.models.split(","):
        for batching in (False, True):
            for c in concurrency:
                r, m = get("rivet", model, batching, c), get("mlserver", model, batching, c)
                ratio, p99 = r["throughput"] / m["throughput"], r["p99_us"] / m["p99_us"]
                print(f"| {model} | {'on' if batching else 'off'} | {c} | {r['throughput']:.0f} | "
                      f"{m['throughput']:.0f} | {ratio:.2f}x | {r['p50_us']}/{r['p99_us']} | "
                      f"{m['p50_us']}/{m['p99_us']} | {p99:.2f} |")
                summary[f"{model}/batching={batching}/c={c}"] = {"throughput_ratio": ratio, "p99_ratio": p99}
    if "mlp" in args.models.split(",") and 16 in concurrency:
        off, on = get("rivet", "mlp", False, 16), get("rivet", "mlp", True, 16)
        gain = on["throughput"] / off["throughput"]
        print(f"dynamic batching, MLP at concurrency 16: {gain:.2f}x the unbatched throughput")
        # With server and client sharing the machine's cores, throughput is at most the cores
        # over their CPU per request together: the gain batching can bring is bounded by the
        # ratio of those sums.
        bound = (off["server_cpu_us"] + off["perf_analyzer_cpu_us"]) / (on["server_cpu_us"] + on["perf_analyzer_cpu_us"])
        print(f"  CPU per request, server + perf_analyzer: {off['server_cpu_us']:.1f} + "
              f"{off['perf_analyzer_cpu_us']:.1f} us unbatched, {on['server_cpu_us']:.1f} + "
              f"{on['perf_analyzer_cpu_us']:.1f} us batched: the gain this machine allows is about {bound:.2f}x")
        summary["mlp_batching_gain_c16"] = gain
        summary["mlp_batching_bound_c16"] = bound
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"results": results, "summary": summary}, indent=2))
    rows = []
    for model in args.models.split(","):
        for batching in (False, True):
            for c in concurrency:
                r, m = get("rivet", model, batching, c), get("mlserver", model, batching, c)
                rows.append([model, "on" if batching else "off", c, f"{r['throughput']:.0f}", f"{m['throughput']:.0f}",
                             f"{r['throughput'] / m['throughput']:.2f}×", f"{r['p50_us']} / {r['p99_us']}",
                             f"{m['p50_us']} / {m['p99_us']}", f"{r['server_cpu_us']:.1f}"])
    notes = ["perf_analyzer over gRPC on the same machine as the server; one model instance with one "
             f"intra-op thread on both; batching: max batch {MAX_BATCH}, {DELAY_US} µs delay on both.",
             "Server CPU per request is the server's CPU seconds per second of the run over the throughput."]
    if "mlp_batching_gain_c16" in summary:
        notes.append(f"Dynamic batching on the MLP at concurrency 16: {summary['mlp_batching_gain_c16']:.2f}× the "
                     f"unbatched throughput; with perf_analyzer on the same cores, this machine allows about "
                     f"{summary['mlp_batching_bound_c16']:.2f}× (the CPU per request of server and client together, "
                     "unbatched over batched).")
    save_results.save(
        "serve", "`rivet serve` against MLServer 1.7.1 (onnxruntime), perf_analyzer over gRPC",
        "make bench-serve",
        ["model", "batching", "concurrency", "Rivet infer/s", "MLServer infer/s", "ratio", "Rivet p50 / p99 µs",
         "MLServer p50 / p99 µs", "Rivet server CPU µs per request"], rows, notes)
    print(f"results: {args.json}")


if __name__ == "__main__":
    sys.exit(main())
