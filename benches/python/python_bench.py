"""The `rivet` Python package against the engines Python users run today, in one process each,
side by side (`make bench-python`):

1. per call, the bundled MLP at batch 1 and 64, one thread: `rivet` on ort against
   `onnxruntime.InferenceSession.run`, `rivet` on tch against `torch.jit`, `rivet` on candle
   beside both. Contenders take turns in blocks of calls; each figure is the median over rounds
   of a block's time per call, and each ratio the median of the per-round ratios;
2. threads: calls per second of 2 Python threads on one ort model (2 instances) against 1;
3. `import rivet` against `import onnxruntime` in a fresh interpreter: wall time and peak RSS;
4. the wheel's size;
5. Ray Data on a local 2-CPU cluster: a Parquet folder of the tabular example scored by
   `rivet.ray.Predictor` against the same job written with pandas, scikit-learn and onnxruntime
   in `map_batches`: rows per second, and peak RSS summed over the map workers.

Prints the tables and saves them for the benchmark page (benches/python/results.py). Reports
figures; asserts nothing.

usage: .venv/bin/python benches/python/python_bench.py [--rounds N] [--calls N] [--seconds S]
           [--import-repeat N] [--ray-rows N] [--work DIR]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODELS = ROOT / "models"
sys.path.insert(0, str(HERE))
import results as save_results  # noqa: E402


def per_call(contenders: dict, rounds: int, calls: int) -> dict:
    """Seconds per call of each contender: blocks of `calls` calls, contenders in turn, `rounds`
    times; returns each contender's list of per-round figures."""
    for call in contenders.values():
        for _ in range(max(10, calls // 10)):
            call()
    seen = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, call in contenders.items():
            started = time.perf_counter()
            for _ in range(calls):
                call()
            seen[name].append((time.perf_counter() - started) / calls)
    return seen


def ratio(over: list, under: list) -> float:
    """The median of the per-round ratios over ÷ under."""
    return statistics.median(o / u for o, u in zip(over, under))


def calls_section(rounds: int, calls: int) -> tuple:
    import onnxruntime as ort
    import torch

    import rivet

    torch.set_num_threads(1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(MODELS / "mlp" / "mlp.onnx"), options, providers=["CPUExecutionProvider"])
    jit = torch.jit.load(str(MODELS / "mlp" / "mlp.pt")).eval()
    on_ort = rivet.load(MODELS / "mlp" / "mlp.onnx", backend="ort", threads=1)
    on_tch = rivet.load(MODELS / "mlp" / "mlp.pt", backend="tch", threads=1)
    on_candle = rivet.load(MODELS / "mlp" / "mlp.onnx", backend="candle", threads=1)
    rows = []
    for batch in (1, 64):
        x = np.random.default_rng(0).standard_normal((batch, 16), dtype=np.float32)

        def torch_jit(x=x):
            with torch.inference_mode():
                return jit(torch.from_numpy(x)).numpy()

        contenders = {
            "rivet ort": lambda x=x: on_ort.run({"features": x}),
            "onnxruntime": lambda x=x: session.run(None, {"features": x}),
            "rivet tch": lambda x=x: on_tch.run({"features": x}),
            "torch.jit": torch_jit,
            "rivet candle": lambda x=x: on_candle.run({"features": x}),
        }
        seen = per_call(contenders, rounds, calls)
        us = {name: statistics.median(v) * 1e6 for name, v in seen.items()}
        rows.append([
            f"mlp/b{batch}",
            f"{us['rivet ort']:.1f}", f"{us['onnxruntime']:.1f}",
            f"{ratio(seen['onnxruntime'], seen['rivet ort']):.2f}",
            f"{us['rivet tch']:.1f}", f"{us['torch.jit']:.1f}",
            f"{ratio(seen['torch.jit'], seen['rivet tch']):.2f}",
            f"{us['rivet candle']:.1f}",
        ])
    columns = ["model/batch", "rivet ort µs", "onnxruntime µs", "speedup vs onnxruntime",
               "rivet tch µs", "torch.jit µs", "speedup vs torch.jit", "rivet candle µs"]
    return columns, rows


def threads_section(seconds: float) -> tuple:
    import rivet

    model = rivet.load(MODELS / "cnn" / "cnn.onnx", backend="ort", instances=2, threads=1)
    [image] = model.inputs
    x = np.random.default_rng(0).standard_normal((8, *image.shape[1:]), dtype=np.float32)
    for _ in range(20):
        model.run({image.name: x})

    def throughput(threads: int) -> float:
        counts = [0] * threads
        stop = threading.Event()

        def loop(k):
            while not stop.is_set():
                model.run({image.name: x})
                counts[k] += 1

        workers = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
        started = time.perf_counter()
        for w in workers:
            w.start()
        time.sleep(seconds)
        stop.set()
        for w in workers:
            w.join()
        return sum(counts) / (time.perf_counter() - started)

    one, two = [], []
    for _ in range(3):
        one.append(throughput(1))
        two.append(throughput(2))
    one_t, two_t = statistics.median(one), statistics.median(two)
    rows = [["cnn/b8, ort, instances=2, threads=1", f"{one_t:.0f}", f"{two_t:.0f}", f"{ratio(two, one):.2f}"]]
    return ["model", "1 thread, calls/s", "2 threads, calls/s", "2 ÷ 1"], rows


IMPORT_PROBE = """
import time
started = time.perf_counter()
import {module}
elapsed = time.perf_counter() - started
peak = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]
print(elapsed, peak)
"""


def import_section(repeat: int) -> tuple:
    figures = {}
    for module in ("rivet", "onnxruntime", "numpy"):
        inside, wall, rss = [], [], []
        for _ in range(repeat):
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", IMPORT_PROBE.format(module=module)],
                                  capture_output=True, text=True, check=True)
            wall.append(time.perf_counter() - started)
            seconds, kib = done.stdout.split()
            inside.append(float(seconds))
            rss.append(int(kib))
        figures[module] = (statistics.median(inside) * 1e3, statistics.median(wall) * 1e3, statistics.median(rss) / 1024)
    rows = [[m, f"{i:.0f}", f"{w:.0f}", f"{r:.1f}"] for m, (i, w, r) in figures.items()]
    rows.append(["rivet ÷ onnxruntime"] + [f"{a / b:.2f}" for a, b in zip(figures["rivet"], figures["onnxruntime"])])
    return ["python -c 'import M'", "import ms", "process wall ms", "peak RSS MiB (VmHWM)"], rows


class RssWatch:
    """Peak RSS of each Ray map worker (a process titled ray::MapWorker), sampled every 50 ms."""

    def __init__(self) -> None:
        self.peaks = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def watch(self) -> None:
        while not self.stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    title = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if b"MapWorker" not in title:
                        continue
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            kib = int(line.split()[1])
                            self.peaks[pid] = max(self.peaks.get(pid, 0), kib)
                except OSError:
                    continue
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def total_mib(self) -> float:
        return sum(self.peaks.values()) / 1024


class IdOnly:
    """A map that does no work, for Ray Data's own cost: the id column back."""

    def __call__(self, batch):
        import pyarrow as pa

        return pa.table({"customer_id": batch.column("customer_id")})


class SklearnPredictor:
    """The same job without Rivet: pandas, the fitted scikit-learn twin of the pipeline, and
    onnxruntime, one instance per worker."""

    def __init__(self, fitted, model: str) -> None:
        import onnxruntime as ort

        sys.path.insert(0, str(HERE))
        import tabular_sklearn

        self.transform = tabular_sklearn.transform
        self.fitted = fitted
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def __call__(self, batch):
        import pyarrow as pa

        frame = batch.to_pandas()
        features = self.transform(self.fitted, frame).astype(np.float32)
        [probability] = self.session.run(None, {self.session.get_inputs()[0].name: features})
        return pa.table({"customer_id": frame["customer_id"].to_numpy(), "churn_probability": probability[:, 0]})


def ray_section(rows: int, folder: Path) -> tuple:
    import ray

    import rivet.ray

    sys.path.insert(0, str(MODELS / "tabular"))
    sys.path.insert(0, str(HERE))
    import generate
    import tabular_sklearn

    data = folder / "customers"
    files = 4
    if not data.is_dir() or sum(1 for _ in data.glob("*.parquet")) != files or \
            (folder / "rows").read_text() != str(rows):
        data.mkdir(parents=True, exist_ok=True)
        for part in range(files):
            frame = generate.generate(rows // files, seed=100 + part, unseen=True, first_id=100_000 + part * rows)
            frame.to_parquet(data / f"part{part}.parquet", index=False)
        (folder / "rows").write_text(str(rows))
    fitted = tabular_sklearn.fit(generate.generate(20_000, seed=1, label=True))

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    model = str(MODELS / "tabular" / "tabular.onnx")
    jobs = {
        "rivet.ray.Predictor": (rivet.ray.Predictor, {"model": model, "id_column": "customer_id", "threads": 1}),
        "pandas + scikit-learn + onnxruntime": (SklearnPredictor, {"fitted": fitted, "model": model}),
        "Ray Data alone (a map that returns the id column)": (IdOnly, {}),
    }
    def run(predictor, kwargs) -> tuple:
        with RssWatch() as watch:
            started = time.perf_counter()
            # Two blocks per worker to start with, and large batches: Ray's own cost per block and
            # per batch is the same on every side.
            count = ray.data.read_parquet(str(data), override_num_blocks=2 * files).map_batches(
                predictor, fn_constructor_kwargs=kwargs, batch_format="pyarrow", batch_size=65536,
                compute=ray.data.ActorPoolStrategy(size=2), num_cpus=0.5,
            ).count()
            elapsed = time.perf_counter() - started
        assert count == rows, (predictor, count)
        return rows / elapsed, watch.total_mib()

    figures = {name: [] for name in jobs}
    try:
        run(IdOnly, {})  # the cluster's first job starts its worker processes: not measured
        for _ in range(2):
            for name, (predictor, kwargs) in jobs.items():
                figures[name].append(run(predictor, kwargs))
    finally:
        ray.shutdown()
    # The faster of each job's two runs (a cluster's noise only slows a run down).
    figures = {name: max(runs) for name, runs in figures.items()}
    rivet_rate, rivet_mib = figures["rivet.ray.Predictor"]
    base_rate, base_mib = figures["pandas + scikit-learn + onnxruntime"]
    table = [[name, f"{rate:,.0f}", f"{mib:.0f}"] for name, (rate, mib) in figures.items()]
    table.append(["rivet ÷ pandas + scikit-learn + onnxruntime", f"{rivet_rate / base_rate:.2f}", f"{rivet_mib / base_mib:.2f}"])
    return ["job (2 workers, local 2-CPU cluster)", "rows/s", "peak RSS MiB, workers summed"], table


def wheel_section() -> tuple:
    import zipfile

    wheels = sorted((ROOT / "target" / "wheels").glob("rivet-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        return ["file", "MB"], [["no wheel in target/wheels (make python builds it)", "-"]]
    wheel = wheels[-1]
    rows = [[f"{wheel.name} (compressed)", f"{wheel.stat().st_size / 1e6:.1f}"]]
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            if info.filename.endswith(".so"):
                rows.append([f"{info.filename} (installed)", f"{info.file_size / 1e6:.1f}"])
    return ["file", "MB"], rows


def markdown(columns: list, rows: list) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=2.0, help="each throughput measurement")
    ap.add_argument("--import-repeat", type=int, default=7)
    ap.add_argument("--ray-rows", type=int, default=1_000_000)
    ap.add_argument("--work", type=Path, default=ROOT / "target" / "bench" / "python")
    ap.add_argument("--command", default="make bench-python")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    sections = [
        ("calls", "rivet against onnxruntime and torch.jit per call, one thread", calls_section(args.rounds, args.calls),
         "Speedup: the other engine's time per call ÷ rivet's (above 1: rivet is faster); medians of "
         f"{args.rounds} rounds of {args.calls} calls, contenders taking turns."),
        ("threads", "Python threads on one model", threads_section(args.seconds),
         "Calls per second of one Python thread against two on one model; medians of 3 measurements "
         f"of {args.seconds} s each."),
        ("import", "import rivet against import onnxruntime", import_section(args.import_repeat),
         f"A fresh interpreter importing the module, median of {args.import_repeat}; numpy alone for scale."),
        ("wheel", "the wheel", wheel_section(),
         "The wheel `make python` builds (symbols stripped); libtorch and ONNX Runtime are not in it."),
        ("ray", f"batch scoring on Ray Data, {args.ray_rows:,} rows", ray_section(args.ray_rows, args.work),
         "The tabular example's Parquet folder (4 files, read as 8 blocks, batches of 65,536 rows) "
         "scored by 2 map workers; the same table, pipeline and model on both sides; the faster of two "
         "runs each, taking turns, after a warm-up job. The Ray Data alone job's map does no work: "
         "its rate bounds what any predictor reaches on this cluster."),
    ]
    for key, title, (columns, rows), note in sections:
        print(f"\n{title}\n{markdown(columns, rows)}\n{note}")
        save_results.save(f"python-{key}", f"Python: {title}", args.command, columns, rows, [note])


if __name__ == "__main__":
    main()
