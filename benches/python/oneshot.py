"""Start-up cost, measured as whole processes: `rivet --version`, and a one-shot run of the
bundled MLP through `rivet run` against the same job in Python (oneshot_ort.py,
oneshot_torch.py) and, for ONNX, done by ONNX Runtime alone (the `ort_alone` example of
rivet-ort: `ort` with default session options and nothing of Rivet's but reading and writing
the .npy files). The last is the floor under Rivet's figures: what ONNX Runtime itself costs. Each command runs --repeat times (after one untimed run that warms the page
cache); the median wall time and the median peak RSS (the child's ru_maxrss, from wait4) are
reported, with the Rivet/Python ratios, and saved for the benchmark page (results.py). Peak RSS comes from GNU
time (`/usr/bin/time -f %M`), which runs each command as its own small child: the kernel keeps
a process's peak across exec, so a child forked from this Python process would report Python's
memory as its own.

  python benches/python/oneshot.py --rivet target/release/rivet
      [--ort-alone target/release/examples/ort_alone] [--repeat 7] [--json FILE]
"""


import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import results as save_results  # noqa: E402


def measure(command, repeat):
    """Median wall seconds and median peak RSS (MiB) of `command` over `repeat` runs."""
    walls, peaks = [], []
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        for i in range(repeat + 1):
            timed = ["/usr/bin/time", "-f", "%M", "-o", rss.name, *command]
            started = time.perf_counter()
            done = subprocess.run(timed, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            wall = time.perf_counter() - started
            if done.returncode != 0:
                sys.exit(f"{' '.join(command)} failed: {done.stderr.decode(errors='replace').strip()}")
            if i > 0:  # the first run only warms the page cache
                walls.append(wall)
                rss.seek(0)
                peaks.append(int(rss.read().split()[-1]) / 1024.0)
    return statistics.median(walls), statistics.median(peaks)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rivet", default=str(ROOT / "target/release/rivet"))
    parser.add_argument("--ort-alone", default=str(ROOT / "target/release/examples/ort_alone"))
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args()

    x = ROOT / "models/mlp/cases/b1/input.features.npy"
    out = Path(tempfile.mkdtemp(prefix="rivet-oneshot-"))
    jobs = {
        "version": [args.rivet, "--version"],
        "rivet_ort": [args.rivet, "run", ROOT / "models/mlp/mlp.onnx", "--backend", "ort", "-i", x, "-o", out / "r"],
        "python_ort": [args.python, HERE / "oneshot_ort.py", ROOT / "models/mlp/mlp.onnx", out / "p", x],
        "ort_alone": [args.ort_alone, ROOT / "models/mlp/mlp.onnx", out / "a", x],
        "rivet_tch": [args.rivet, "run", ROOT / "models/mlp/mlp.pt", "--backend", "tch", "-i", x, "-o", out / "r"],
        "python_torch": [args.python, HERE / "oneshot_torch.py", ROOT / "models/mlp/mlp.pt", out / "p", x],
    }
    results = {name: measure([str(c) for c in command], args.repeat) for name, command in jobs.items()}
    ort_wall = results["rivet_ort"][0] / results["python_ort"][0]
    ort_rss = results["rivet_ort"][1] / results["python_ort"][1]
    tch_wall = results["rivet_tch"][0] / results["python_torch"][0]
    floor_rss = results["ort_alone"][1] / results["python_ort"][1]
    print(f"median of {args.repeat} runs each (wall time, peak RSS):")
    for name, (wall, rss) in results.items():
        print(f"  {name:13} {wall * 1e3:8.1f} ms {rss:8.1f} MiB")
    python_of = {"rivet_ort": "python_ort", "ort_alone": "python_ort", "rivet_tch": "python_torch"}
    labels = {
        "version": "`rivet --version`",
        "rivet_ort": "one-shot MLP, ONNX: `rivet run --backend ort`",
        "ort_alone": "the same job by ONNX Runtime alone (`ort_alone` example)",
        "python_ort": "the same job in Python (onnxruntime)",
        "rivet_tch": "one-shot MLP, TorchScript: `rivet run --backend tch`",
        "python_torch": "the same job in Python (torch.jit)",
    }
    rows = []
    for name, (wall, rss) in results.items():
        ratio = ""
        if name in python_of:
            p_wall, p_rss = results[python_of[name]]
            ratio = f"{wall / p_wall:.2f}× / {rss / p_rss:.2f}×"
        rows.append([labels[name], f"{wall * 1e3:.1f}", f"{rss:.1f}", ratio])
    print(f"Rivet / Python: ONNX wall {ort_wall:.2f}x, peak RSS {ort_rss:.2f}x (ONNX Runtime alone {floor_rss:.2f}x); "
          f"TorchScript wall {tch_wall:.2f}x")
    save_results.save(
        "startup", "Start-up: one-shot runs against Python", "make bench-startup",
        ["job", "wall ms (median)", "peak RSS MiB (median)", "wall / peak RSS against Python"], rows,
        [f"Median of {args.repeat} runs each after one untimed run; every job is a whole process, "
         "its peak RSS from GNU time."])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "repeat": args.repeat,
            "runs": {k: {"wall_ms": w * 1e3, "peak_rss_mib": r} for k, (w, r) in results.items()},
            "ratios": {"ort_wall": ort_wall, "ort_rss": ort_rss, "ort_alone_rss": floor_rss, "tch_wall": tch_wall},
        }, indent=2))


if __name__ == "__main__":
    main()
