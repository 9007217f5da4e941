"""Pipeline and Scorer on Arrow tables: scikit-learn's features, PyTorch's probabilities, and the
same answers and errors as `rivet predict`."""

import subprocess
import sys

import numpy as np
import pytest

import rivet
from conftest import CLI, MODELS

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")

TABULAR = MODELS / "tabular"
nan = float("nan")
# The six customers of models/tabular/arrow_case.py, whose references are in cases/arrow/.
ROWS = {
    "customer_id": [900001, 900002, 900003, 900004, 900005, 900006],
    "signup_ts": ["2021-03-14 09:26:53", "2019-12-31 23:59:59", "2024-07-04 12:00:00",
                  "2020-02-29 06:30:00", "2023-11-05 17:45:10", "2022-05-09 00:00:01"],
    "age": [34.5, nan, 999.0, 18.0, 71.2, 45.0],
    "income": [52000.0, 150000.0, nan, 12000.0, 88000.0, 61000.0],
    "balance": [1200.5, -300.0, nan, 0.0, 25000.0, 5000.0],
    "tenure_months": [3, 60, 0, 12, 47, 95],
    "num_products": [2, 1, 4, 3, 2, 1],
    "region": ["north", "south", "islands", "central", "west", "east"],
    "plan": ["basic", "premium", "plus", "basic", "plus", "premium"],
}


def customers():
    frame = pd.DataFrame(ROWS)
    # Missing values as Arrow nulls, as a CSV reader makes them.
    return pa.Table.from_pandas(frame, preserve_index=False)


@pytest.fixture(scope="module")
def pipeline():
    return rivet.Pipeline.load(TABULAR / "tabular.pipeline.json")


@pytest.fixture(scope="module")
def scorer(pipeline):
    return rivet.Scorer(rivet.load(TABULAR / "tabular.onnx", backend="ort"), pipeline)


def close(got, want, tolerance):
    assert got.shape == want.shape
    assert np.all(np.abs(got.astype(np.float64) - want) <= tolerance * (1 + np.abs(want))), np.abs(got - want).max()


def test_features_match_scikit_learn(pipeline):
    features = pipeline.transform(customers())
    assert features.dtype == np.float32 and len(pipeline.feature_names) == features.shape[1] == 16
    close(features, np.load(TABULAR / "cases" / "arrow" / "features.npy"), 1e-6)


def test_predictions_match_pytorch_from_every_kind_of_table(scorer):
    want = np.load(TABULAR / "cases" / "arrow" / "churn_probability.npy")
    table = customers()
    batches = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=4))
    assert batches.schema == table.schema
    kinds = {"table": table, "reader": batches, "pandas": pd.DataFrame(ROWS)}
    for kind, source in kinds.items():
        [(name, got)] = scorer.predict(source).items()
        assert name == "churn_probability", kind
        close(got, want, 1e-5)


def test_a_polars_frame():
    pl = pytest.importorskip("polars", reason="polars (the Python package) is not installed")
    scorer = rivet.Scorer(rivet.load(TABULAR / "tabular.onnx"), rivet.Pipeline.load(TABULAR / "tabular.pipeline.json"))
    [got] = scorer.predict(pl.from_arrow(customers())).values()
    close(got, np.load(TABULAR / "cases" / "arrow" / "churn_probability.npy"), 1e-5)


def test_the_same_scores_as_rivet_predict(scorer, tmp_path):
    generate = [sys.executable, str(TABULAR / "generate.py"), "--rows", "3000", "--seed", "7", "--unseen"]
    subprocess.run([*generate, "--out", str(tmp_path / "customers.parquet")], check=True)
    subprocess.run([str(CLI), "predict", "--model", str(TABULAR / "tabular.onnx"), "--backend", "ort",
                    "--data", str(tmp_path / "customers.parquet"), "--id-column", "customer_id",
                    "--batch-size", "1000", "--out", str(tmp_path / "scores.parquet")],
                   check=True, capture_output=True)
    import pyarrow.parquet as pq

    cli = pq.read_table(tmp_path / "scores.parquet")
    got = scorer.predict(pq.read_table(tmp_path / "customers.parquet"))
    np.testing.assert_array_equal(got["churn_probability"][:, 0], cli.column("churn_probability").to_numpy())


def predict_stderr(table, tmp_path) -> str:
    """What `rivet predict` prints when it fails on `table` (written as Parquet)."""
    import pyarrow.parquet as pq

    pq.write_table(table, tmp_path / "table.parquet")
    done = subprocess.run([str(CLI), "predict", "--model", str(TABULAR / "tabular.onnx"), "--data",
                           str(tmp_path / "table.parquet"), "--out", str(tmp_path / "out.parquet")],
                          capture_output=True, text=True)
    assert done.returncode != 0, done.stdout
    return done.stderr


def test_a_table_that_does_not_fit_fails_as_rivet_predict(scorer, tmp_path):
    table = customers().drop_columns(["income"])
    with pytest.raises(rivet.Preprocess) as raised:
        scorer.predict(table)
    stderr = predict_stderr(table, tmp_path)
    assert f"error: {raised.value}" in stderr, (str(raised.value), stderr)
    assert "income" in str(raised.value) and raised.value.code == 10 and isinstance(raised.value, ValueError)


def test_an_unseen_plan_fails_as_rivet_predict(scorer, tmp_path):
    rows = dict(ROWS, plan=["basic", "premium", "gold", "basic", "plus", "premium"])
    table = pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)
    with pytest.raises(rivet.Preprocess) as raised:
        scorer.predict(table)
    stderr = predict_stderr(table, tmp_path)
    assert f"error: {raised.value}" in stderr, (str(raised.value), stderr)
    assert "gold" in str(raised.value)
    # The scorer keeps working after.
    assert scorer.predict(customers())["churn_probability"].shape == (6, 1)


def test_bad_tables_and_files(pipeline, tmp_path):
    with pytest.raises(rivet.InvalidArgument, match="__arrow_c_stream__"):
        pipeline.transform({"age": [1.0]})
    with pytest.raises(rivet.Io):
        rivet.Pipeline.load(tmp_path / "missing.pipeline.json")
    (tmp_path / "bad.pipeline.json").write_text("{}")
    with pytest.raises(rivet.Preprocess):
        rivet.Pipeline.load(tmp_path / "bad.pipeline.json")
    with pytest.raises(rivet.Preprocess, match="rank 4; a pipeline makes"):
        rivet.Scorer(rivet.load(MODELS / "cnn" / "cnn.onnx"), pipeline)
