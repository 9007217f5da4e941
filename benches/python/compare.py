"""Rivet against the Python baselines: one line per model x backend x batch, from the JSON of
`rivet bench` and of benches/python/bench.py (what `make bench-compare` runs).

speedup = Python p50 / Rivet p50 (above 1: Rivet is faster). The table is also saved for the
benchmark page (results.py).

Run: .venv/bin/python benches/python/compare.py RIVET.json PYTHON.json [--markdown FILE]
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results  # noqa: E402

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rivet", type=Path)
    parser.add_argument("python", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--command", default="make bench-compare", help="the command shown beside the figures")
    args = parser.parse_args()
    rivet = json.loads(args.rivet.read_text())
    python = json.loads(args.python.read_text())
    ours = {(r["model"], r["backend"], r["batch"]): r for r in rivet["results"]
            if r["concurrency"] == 1 and r["latency_ms"]}
    header = ["model", "backend", "batch", "Rivet p50 ms", "Python p50 ms", "speedup (p50)",
              "Rivet inf/s", "Python inf/s", "speedup (inf/s)"]
    lines = []
    for p in python["results"]:
        r = ours.get((p["model"], p["backend"], p["batch"]))
        if r is None:
            continue
        speedup = p["latency_ms"]["p50"] / r["latency_ms"]["p50"]
        lines.append([
            p["model"], f"{p['backend']} vs {p['runtime']}", str(p["batch"]),
            f"{r['latency_ms']['p50']:.4f}", f"{p['latency_ms']['p50']:.4f}", f"{speedup:.2f}x",
            f"{r['inferences_per_s']:.1f}", f"{p['inferences_per_s']:.1f}",
            f"{r['inferences_per_s'] / p['inferences_per_s']:.2f}x",
        ])
    widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))
    print(fmt(header))
    print(fmt(["-" * w for w in widths]))
    for l in lines:
        print(fmt(l))
    threads = rivet["settings"].get("threads")
    build = rivet.get("build", "release")
    print(f"\n{rivet['cpus']} CPUs, {threads or 'default'} thread(s) per operator, Rivet's {build} build; "
          "speedup = Python / Rivet p50.")
    if args.markdown:
        md = [f"| {' | '.join(header)} |", "|" + "---|" * len(header)]
        md += [f"| {' | '.join(l)} |" for l in lines]
        args.markdown.write_text("\n".join(md) + "\n")
        print(f"markdown: {args.markdown}")
    settings = rivet["settings"]
    results.save(
        "compare", "Rivet against Python's torch.jit and onnxruntime", args.command, header, lines,
        [f"{threads or 'default'} thread(s) per operator, one client, closed loop, "
         f"{settings.get('duration_s')} s per row; the same tensors fed to both sides. "
         "speedup = Python p50 / Rivet p50."])


if __name__ == "__main__":
    main()
