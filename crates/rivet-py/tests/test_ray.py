"""Batch scoring on Ray Data: examples/python/ray_batch.py on a local 2-CPU cluster gives the
predictions `rivet predict` gives on the same rows."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import CLI, MODELS, ROOT

pytest.importorskip("ray", reason="ray (the Python package) is not installed")
pq = pytest.importorskip("pyarrow.parquet")

TABULAR = MODELS / "tabular"


def test_the_example_scores_a_parquet_folder_as_rivet_predict(tmp_path):
    folder = tmp_path / "customers"
    folder.mkdir()
    for part, seed in enumerate([11, 12, 13]):
        subprocess.run([sys.executable, str(TABULAR / "generate.py"), "--rows", "2500", "--seed", str(seed),
                        "--unseen", "--first-id", str(100_000 + 10_000 * part),
                        "--out", str(folder / f"part{part}.parquet")], check=True)
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "python" / "ray_batch.py"), "--input", str(folder),
                           "--output", str(tmp_path / "scores"), "--batch-size", "1000"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "scored 7500 rows" in done.stdout, done.stdout

    ray_scores = pq.read_table(tmp_path / "scores").to_pandas().set_index("customer_id").sort_index()
    assert list(ray_scores.columns) == ["churn_probability"] and len(ray_scores) == 7500
    expected = []
    for part in sorted(folder.iterdir()):
        out = tmp_path / f"{part.stem}.scores.parquet"
        subprocess.run([str(CLI), "predict", "--model", str(TABULAR / "tabular.onnx"), "--data", str(part),
                        "--id-column", "customer_id", "--out", str(out)], check=True, capture_output=True)
        expected.append(pq.read_table(out).to_pandas())
    import pandas as pd

    cli_scores = pd.concat(expected).set_index("customer_id").sort_index()
    assert ray_scores.index.equals(cli_scores.index)
    np.testing.assert_array_equal(ray_scores["churn_probability"].to_numpy(), cli_scores["churn_probability"].to_numpy())
