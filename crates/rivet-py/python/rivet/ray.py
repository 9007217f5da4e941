"""Batch scoring on Ray Data: a predictor for ``Dataset.map_batches``.

>>> import ray, rivet.ray
>>> scores = ray.data.read_parquet("customers/").map_batches(
...     rivet.ray.Predictor,
...     fn_constructor_kwargs={"model": "/models/tabular.onnx", "id_column": "customer_id"},
...     batch_format="pyarrow",
...     concurrency=2,
... )
>>> scores.write_parquet("scores/")

Ray makes one ``Predictor`` per worker (``concurrency`` of them), so the model and its pipeline
are loaded once per worker, then every batch that worker gets is scored through them: Arrow in,
Arrow out, as ``rivet predict`` scores a file. Nothing here imports Ray: the class is plain
Python that Ray calls. Paths must be readable from every worker (absolute, or on shared storage).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from . import Pipeline, Scorer, load


def output_columns(outputs: "dict[str, Any]") -> "dict[str, Any]":
    """Predictions as columns, named as ``rivet predict`` names them: ``NAME`` for an output of
    ``[rows]`` or ``[rows, 1]``, ``NAME_0``, ``NAME_1``... for ``[rows, k]``."""
    columns = {}
    for name, array in outputs.items():
        if array.ndim == 1:
            columns[name] = array
        elif array.ndim == 2 and array.shape[1] == 1:
            columns[name] = array[:, 0]
        elif array.ndim == 2:
            for k in range(array.shape[1]):
                columns[f"{name}_{k}"] = array[:, k]
        else:
            raise ValueError(f"output {name!r} has shape {list(array.shape)}; predictions are [rows] or [rows, k]")
    return columns


class Predictor:
    """Scores pyarrow batches with a model and its fitted pipeline; for
    ``map_batches(Predictor, fn_constructor_kwargs=..., batch_format="pyarrow", concurrency=N)``.

    ``model`` is the model file; ``pipeline`` its fitted pipeline (default: ``NAME.pipeline.json``
    beside the model, as ``rivet predict`` looks for it); ``id_column`` a column copied from each
    input batch to its predictions, first; ``backend`` and ``options`` as ``rivet.load`` takes
    them (``threads=1`` suits one worker per CPU).
    """

    def __init__(
        self,
        model: "str | os.PathLike[str]",
        pipeline: "Optional[str | os.PathLike[str]]" = None,
        id_column: Optional[str] = None,
        backend: str = "auto",
        **options: Any,
    ) -> None:
        model = Path(model)
        if pipeline is None:
            pipeline = model.with_name(f"{model.stem}.pipeline.json")
        self.scorer = Scorer(load(model, backend, **options), Pipeline.load(pipeline))
        self.id_column = id_column

    def __call__(self, batch: Any) -> Any:
        """Predictions for one batch (a pyarrow Table): the id column, then one column per output."""
        import pyarrow as pa

        columns = {}
        if self.id_column is not None:
            columns[self.id_column] = batch.column(self.id_column)
        columns.update(output_columns(self.scorer.predict(batch)))
        return pa.table(columns)
