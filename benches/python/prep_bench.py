"""Rivet's preprocessing and batch scoring against pandas + scikit-learn (+ onnxruntime) on the
tabular example, on one generated table as CSV and as Parquet (`make bench-prep`).

Both sides are fitted on the same 20,000-row training table beforehand (Rivet's committed
models/tabular/tabular.pipeline.json; tabular_sklearn.fit pickled), so what is timed is what a
production job does: read the table, transform it, (score it,) write the result.

- preprocessing: `rivet prep transform` against `tabular_sklearn.py transform`, each writing a
  [rows, 16] f32 .npy;
- end to end: `rivet predict --backend ort` against `tabular_sklearn.py predict` (pandas,
  scikit-learn, onnxruntime), each writing customer_id and churn_probability as Parquet;
- a wide table (wide_sklearn.py: 63 columns, a third categorical, as CSV): `rivet prep
  transform` against a scikit-learn ColumnTransformer, each fitted on 20,000 rows of it.

Every run is its own process; wall time and peak RSS (GNU time's %M) are the medians of
--repeat runs, the two sides alternating, after one untimed round that warms the page cache. Outputs are checked to agree within 1e-6 before any figure is
printed. Prints a table with the ratios and saves it for the benchmark page (results.py); --json
writes every figure.

usage: prep_bench.py --rivet target/release/rivet [--rows 1000000] [--wide-rows 200000] [--repeat 3]
                     [--json FILE]
"""

import argparse
import json
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "models" / "tabular"))
sys.path.insert(0, str(HERE))
import generate  # noqa: E402
import results as save_results  # noqa: E402
import tabular_sklearn  # noqa: E402
import wide_sklearn  # noqa: E402

TOLERANCE = 1e-6


def measure(command: list[str]) -> tuple[float, float]:
    """Runs `command` once; returns (wall seconds, peak RSS MiB). The peak comes from GNU time
    (`/usr/bin/time -f %M`), which runs the command as its own small child: the kernel keeps a
    process's peak across exec, so a child forked from this Python process (which holds the
    generated table) would report this process's memory as its own."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        start = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *command],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{done.stderr.decode(errors='replace')}")
        rss.seek(0)
        return wall, int(rss.read().split()[-1]) / 1024


def median_runs(commands: dict[str, list[str]], repeat: int) -> dict[str, tuple[float, float]]:
    """Runs the commands alternately `repeat` times; medians of wall time and peak RSS."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for i in range(repeat + 1):
        for name, command in commands.items():
            measured = measure(command)
            if i > 0:  # the first round only warms the page cache
                runs[name].append(measured)
    return {name: (statistics.median(w for w, _ in r), statistics.median(m for _, m in r)) for name, r in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rivet", required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--wide-rows", type=int, default=200_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rivet = str(Path(args.rivet).resolve())
    python = sys.executable
    twin = str(HERE / "tabular_sklearn.py")
    pipeline = str(ROOT / "models" / "tabular" / "tabular.pipeline.json")
    model = str(ROOT / "models" / "tabular" / "tabular.onnx")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fitted = tmp / "sklearn.pkl"
        with open(fitted, "wb") as f:
            pickle.dump(tabular_sklearn.fit(generate.generate(20_000, seed=1, label=True)), f)
        print(f"generating {args.rows:,} rows (seed 11, with unseen regions)...", flush=True)
        table = generate.generate(args.rows, seed=11, unseen=True)
        table.to_csv(tmp / "data.csv", index=False, na_rep="")
        table.to_parquet(tmp / "data.parquet", index=False)
        del table
        sizes = {fmt: (tmp / f"data.{fmt}").stat().st_size / 2**20 for fmt in ("csv", "parquet")}

        results = []
        for fmt in ("csv", "parquet"):
            data = str(tmp / f"data.{fmt}")
            prep = median_runs({
                "rivet": [rivet, "prep", "transform", "--pipeline", pipeline, "--data", data,
                          "--out", str(tmp / "rivet.npy")],
                "python": [python, twin, "transform", str(fitted), data, str(tmp / "python.npy")],
            }, args.repeat)
            a, b = np.load(tmp / "rivet.npy"), np.load(tmp / "python.npy")
            diff = float(np.abs(a.astype(np.float64) - b).max())
            if a.shape != b.shape or diff > TOLERANCE:
                sys.exit(f"{fmt}: features differ: {a.shape} vs {b.shape}, max |diff| {diff}")
            score = median_runs({
                "rivet": [rivet, "predict", "--model", model, "--pipeline", pipeline, "--backend", "ort",
                          "--data", data, "--out", str(tmp / "rivet.parquet"), "--id-column", "customer_id"],
                "python": [python, twin, "predict", str(fitted), model, data, str(tmp / "python.parquet"),
                           "customer_id"],
            }, args.repeat)
            r, p = pd.read_parquet(tmp / "rivet.parquet"), pd.read_parquet(tmp / "python.parquet")
            if list(r.columns) != list(p.columns) or not (r["customer_id"] == p["customer_id"]).all():
                sys.exit(f"{fmt}: prediction tables differ: {list(r.columns)} vs {list(p.columns)}")
            pdiff = float(np.abs(r["churn_probability"].to_numpy(np.float64) - p["churn_probability"]).max())
            if pdiff > TOLERANCE:
                sys.exit(f"{fmt}: predictions differ by {pdiff}")
            for job, measured, d in (("preprocess", prep, diff), ("predict", score, pdiff)):
                results.append({
                    "format": fmt, "job": job, "rows": args.rows, "input_mib": round(sizes[fmt], 1),
                    "rivet_s": measured["rivet"][0], "python_s": measured["python"][0],
                    "rivet_rss_mib": measured["rivet"][1], "python_rss_mib": measured["python"][1],
                    "speedup": measured["python"][0] / measured["rivet"][0],
                    "rss_ratio": measured["rivet"][1] / measured["python"][1],
                    "max_abs_diff": d,
                })

        # The wide table: 63 columns, a third categorical, fitted on 20,000 rows by each side.
        wide = str(HERE / "wide_sklearn.py")
        subprocess.run([python, wide, "generate", "20000", "1", str(tmp / "wide_train.csv")], check=True)
        subprocess.run([python, wide, "generate", str(args.wide_rows), "11", str(tmp / "wide.csv")], check=True)
        (tmp / "wide_spec.json").write_text(json.dumps(wide_sklearn.SPEC))
        subprocess.run([rivet, "prep", "fit", "--spec", str(tmp / "wide_spec.json"), "--data",
                        str(tmp / "wide_train.csv"), "--out", str(tmp / "wide.pipeline.json")], check=True)
        subprocess.run([python, wide, "fit", str(tmp / "wide_train.csv"), str(tmp / "wide.pkl")], check=True)
        data = str(tmp / "wide.csv")
        prep = median_runs({
            "rivet": [rivet, "prep", "transform", "--pipeline", str(tmp / "wide.pipeline.json"), "--data", data,
                      "--out", str(tmp / "rivet.npy")],
            "python": [python, wide, "transform", str(tmp / "wide.pkl"), data, str(tmp / "python.npy")],
        }, args.repeat)
        a, b = np.load(tmp / "rivet.npy"), np.load(tmp / "python.npy")
        diff = float(np.abs(a.astype(np.float64) - b).max()) if a.shape == b.shape else float("inf")
        if diff > TOLERANCE:
            sys.exit(f"wide: features differ: {a.shape} vs {b.shape}, max |diff| {diff}")
        results.append({
            "format": "csv", "job": f"wide ({a.shape[1]})", "rows": args.wide_rows,
            "input_mib": round((tmp / "wide.csv").stat().st_size / 2**20, 1),
            "rivet_s": prep["rivet"][0], "python_s": prep["python"][0],
            "rivet_rss_mib": prep["rivet"][1], "python_rss_mib": prep["python"][1],
            "speedup": prep["python"][0] / prep["rivet"][0], "rss_ratio": prep["rivet"][1] / prep["python"][1],
            "max_abs_diff": diff,
        })

    print(f"\n{args.rows:,} rows ({args.wide_rows:,} wide), median of {args.repeat} runs each, outputs agree within {TOLERANCE:g}")
    header = f"{'job':<11}{'input':<9}{'rivet s':>9}{'python s':>10}{'speedup':>9}" \
             f"{'rivet MiB':>11}{'python MiB':>12}{'RSS ratio':>11}{'max |diff|':>12}"
    print(header)
    for r in results:
        print(f"{r['job']:<11}{r['format']:<9}{r['rivet_s']:>9.2f}{r['python_s']:>10.2f}{r['speedup']:>8.2f}x"
              f"{r['rivet_rss_mib']:>11.0f}{r['python_rss_mib']:>12.0f}{r['rss_ratio']:>10.2f}x{r['max_abs_diff']:>12.1e}")
    save_results.save(
        "prep", "Preprocessing and batch scoring against pandas + scikit-learn",
        f"make bench-prep PREP_ROWS={args.rows} PREP_WIDE_ROWS={args.wide_rows} PREP_REPEAT={args.repeat}",
        ["job", "input", "Rivet s", "Python s", "speedup", "Rivet peak RSS MiB", "Python peak RSS MiB",
         "RSS ratio", "max abs difference"],
        [[r["job"], f"{r['format']} ({r['input_mib']} MiB)", f"{r['rivet_s']:.2f}", f"{r['python_s']:.2f}",
          f"{r['speedup']:.2f}×", f"{r['rivet_rss_mib']:.0f}", f"{r['python_rss_mib']:.0f}", f"{r['rss_ratio']:.2f}×",
          f"{r['max_abs_diff']:.1e}"] for r in results],
        [f"{args.rows:,} generated rows ({args.wide_rows:,} for the wide table); medians of {args.repeat} runs after a warm-up round, each a whole "
         "process (Python's imports included); `preprocess` is `rivet prep transform` against "
         "`tabular_sklearn.py transform`, `predict` is `rivet predict --backend ort` against pandas, "
         "scikit-learn and onnxruntime; `wide (N)` is `rivet prep transform` of wide_sklearn.py's 63-column "
         "table (N features) against its scikit-learn ColumnTransformer."])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
