"""Rivet from Python: ONNX and TorchScript models on ONNX Runtime, libtorch or Candle, with
Rivet's preprocessing, answering exactly as the ``rivet`` CLI, the C ABI and ``rivet serve`` do.

>>> import numpy as np, rivet
>>> model = rivet.load("models/mlp/mlp.onnx", threads=1)
>>> model.run({"features": np.zeros((1, 16), np.float32)})["logits"].shape
(1, 3)

Importing ``rivet`` loads no backend library: ONNX Runtime is opened when a model first runs on
it, libtorch only when a TorchScript model is loaded (from this environment's ``torch`` package or
``LIBTORCH``). Runs release the GIL, so Python threads scale.
"""

from __future__ import annotations

import os
from typing import Any

from . import _errors, _libs
from ._compare import Comparison, compare
from ._errors import (
    Backend,
    InvalidArgument,
    InvalidInput,
    InvalidOption,
    InvalidTensor,
    Io,
    ModelLoad,
    Panic,
    Preprocess,
    RivetError,
    Unsupported,
)
from ._rivet import Model, Pipeline, Scorer, TensorInfo, __version__, backends
from ._rivet import load as _load


def load(path: "str | os.PathLike[str]", backend: str = "auto", **options: Any) -> Model:
    """Loads the model at ``path`` (a ``.onnx`` or TorchScript ``.pt`` file).

    ``backend`` is ``"auto"`` (by format: tch for TorchScript; ort, then candle for ONNX), or
    one of ``rivet.backends()``. Under ``"auto"``, ``Model.skipped`` lists the backends tried
    first and why each could not load the model.

    ``options`` are the CLI's load options: ``threads`` (intra-op threads), ``inter_op_threads``,
    ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``), ``instances`` (ONNX Runtime sessions for
    concurrent runs), ``spec`` (a TorchScript model's spec file), ``auto_order`` (a list of
    backend names), and any backend's own option as ``-O`` takes it, with the backend in the key
    (``**{"ort.optimization": "basic"}``) or bare when one backend is named. Values are given
    as Python values (``threads=1``) and read as the CLI reads their text.

    Raises ModelLoad when the file cannot be loaded (naming the path and backend), Unsupported
    when the backend lacks what the model needs, InvalidOption for a bad option.
    """
    path = os.fspath(path)
    _libs.prepare(path, backend)
    return _load(path, backend, options)


__all__ = [
    "__version__",
    "load",
    "backends",
    "compare",
    "Comparison",
    "Model",
    "TensorInfo",
    "Pipeline",
    "Scorer",
    *_errors.__all__,
]
