"""Scores a folder of Parquet files with Rivet on a Ray cluster and writes the predictions as
Parquet, one row per input row: the id column, then the model's outputs.

Without --address it starts a local cluster of --num-cpus CPUs (separate worker processes, Ray's
own object store); with --address it joins that cluster, unchanged otherwise. Paths are made
absolute here; on a real cluster they must be readable from every node (shared storage).

usage: python examples/python/ray_batch.py --input DIR --output DIR
           [--model models/tabular/tabular.onnx] [--id-column customer_id]
           [--address ray://HOST:10001] [--num-cpus 2] [--concurrency 2] [--batch-size 8192]
"""

import argparse
import time
from pathlib import Path

import ray

import rivet.ray

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True, type=Path, help="a folder of Parquet files")
    ap.add_argument("--output", required=True, type=Path, help="the folder for the predictions")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "tabular" / "tabular.onnx")
    ap.add_argument("--pipeline", type=Path, help="default: NAME.pipeline.json beside the model")
    ap.add_argument("--id-column", default="customer_id")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--address", help="a running cluster (ray://HOST:PORT, or auto); default: a local one")
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local cluster")
    ap.add_argument("--concurrency", type=int, default=2, help="workers, each with its own model")
    ap.add_argument("--batch-size", type=int, default=8192, help="rows per batch")
    args = ap.parse_args()

    if args.address:
        ray.init(address=args.address)
    else:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False)
    started = time.perf_counter()
    predictor_args = {
        "model": str(args.model.resolve()),
        "pipeline": str(args.pipeline.resolve()) if args.pipeline else None,
        "id_column": args.id_column,
        "backend": args.backend,
        "threads": 1,
    }
    scores = ray.data.read_parquet(str(args.input.resolve())).map_batches(
        rivet.ray.Predictor,
        fn_constructor_kwargs=predictor_args,
        batch_format="pyarrow",
        batch_size=args.batch_size,
        compute=ray.data.ActorPoolStrategy(size=args.concurrency),
        # Half a CPU each, so that reading the files keeps a share of a small cluster's CPUs.
        num_cpus=0.5,
    )
    scores.write_parquet(str(args.output.resolve()))
    rows = ray.data.read_parquet(str(args.output.resolve())).count()
    print(f"scored {rows} rows into {args.output} in {time.perf_counter() - started:.1f} s")
    ray.shutdown()


if __name__ == "__main__":
    main()
