"""``rivet.compare``: the same inputs through several backends, as ``rivet compare`` runs them."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ._errors import RivetError

if TYPE_CHECKING:
    import numpy as np


def _max_diff(actual: np.ndarray, expected: np.ndarray) -> Tuple[float, float]:
    """The largest absolute and relative difference (relative only where |expected| > 1e-6), as
    ``rivet compare`` computes them."""
    import numpy as np

    if actual.shape != expected.shape:
        raise ValueError(f"shape {list(actual.shape)} against {list(expected.shape)}")
    if actual.size == 0:
        return 0.0, 0.0
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    d = np.abs(a - e)
    big = np.abs(e) > 1e-6
    rel = float(np.max(d[big] / np.abs(e[big]))) if big.any() else 0.0
    return float(np.max(d)), rel


def _diff(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> Tuple[float, float]:
    abs_max, rel_max = 0.0, 0.0
    for name, expected in reference.items():
        if name not in outputs:
            raise ValueError(f"no output named {name!r}")
        a, r = _max_diff(outputs[name], expected)
        abs_max, rel_max = max(abs_max, a), max(rel_max, r)
    return abs_max, rel_max


def _first_case(path: Path) -> Optional[Path]:
    cases = path.parent / "cases"
    if not cases.is_dir():
        return None
    folders = sorted(p for p in cases.iterdir() if p.is_dir())
    return folders[0] if folders else None


def _read_case(folder: Path) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    import numpy as np

    inputs, outputs = {}, {}
    for file in sorted(folder.glob("*.npy")):
        stem = file.stem
        if stem.startswith("input."):
            inputs[stem[len("input.") :]] = np.load(file)
        elif stem.startswith("output."):
            outputs[stem[len("output.") :]] = np.load(file)
    return inputs, outputs


def _generate(model: Any, seed: int) -> Dict[str, np.ndarray]:
    """Random inputs from the signature: dynamic dims 1, floats in [-2, 2), integers in [0, 10),
    random bools (NumPy's generator with ``seed``)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    inputs = {}
    for spec in model.inputs:
        if spec.dtype is None or spec.shape is None:
            raise ValueError(f"input {spec.name!r} has no declared dtype and shape: give inputs")
        shape = tuple(1 if d is None else d for d in spec.shape)
        kind = spec.dtype.kind
        if kind == "f":
            inputs[spec.name] = rng.uniform(-2, 2, shape).astype(spec.dtype)
        elif kind == "b":
            inputs[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            inputs[spec.name] = rng.integers(0, 10, shape).astype(spec.dtype)
    return inputs


class Comparison:
    """What ``rivet.compare`` found.

    - ``outputs``: each backend that ran, its outputs (a dict of arrays by name);
    - ``errors``: each backend that could not load or run the model, the error it raised;
    - ``max_abs_diff`` / ``max_rel_diff``: each backend that ran, its largest difference from
      ``reference`` over all outputs (the relative one only where the reference is over 1e-6);
    - ``pairwise``: each pair of backends that ran, their largest absolute difference;
    - ``reference``: where the reference outputs came from (the model's first case folder, or
      the first backend that ran); ``inputs`` the inputs used.
    """

    def __init__(self) -> None:
        self.inputs: Dict[str, np.ndarray] = {}
        self.outputs: Dict[str, Dict[str, np.ndarray]] = {}
        self.errors: Dict[str, RivetError] = {}
        self.max_abs_diff: Dict[str, float] = {}
        self.max_rel_diff: Dict[str, float] = {}
        self.pairwise: Dict[Tuple[str, str], float] = {}
        self.reference = ""

    def __repr__(self) -> str:
        lines = [f"reference: {self.reference}"]
        for backend in list(self.outputs) + list(self.errors):
            if backend in self.errors:
                lines.append(f"{backend:>8}  error: {self.errors[backend]}")
            else:
                lines.append(
                    f"{backend:>8}  max abs diff {self.max_abs_diff[backend]:.3e}  "
                    f"max rel diff {self.max_rel_diff[backend]:.3e}"
                )
        for (a, b), d in self.pairwise.items():
            lines.append(f"{a} vs {b}: max abs diff {d:.3e}")
        return "\n".join(lines)


def compare(
    path: "str | os.PathLike[str]",
    backends: Optional[Sequence[str]] = None,
    inputs: "Optional[Mapping[str, Any] | Sequence[Any]]" = None,
    **options: Any,
) -> Comparison:
    """Runs the model at ``path`` on each of ``backends`` (default: every backend that reads its
    format) with the same inputs, and compares the outputs.

    ``inputs`` as ``Model.run`` takes them; by default, the inputs of the model folder's first
    case (``cases/*/input.NAME.npy``, whose ``output.NAME.npy`` are then the reference, as in
    ``rivet compare``), else random inputs from the signature (NumPy, seed 0). ``options`` are
    ``rivet.load``'s. A backend that cannot load or run the model is listed in ``errors``.
    """
    from . import load
    from ._rivet import backends_for

    path = Path(os.fspath(path))
    result = Comparison()
    reference: Optional[Dict[str, np.ndarray]] = None
    feed: Any = inputs
    if feed is None:
        case = _first_case(path)
        if case is not None:
            feed, expected = _read_case(case)
            result.reference = f"the PyTorch outputs in {case}" if expected else ""
            reference = expected or None
    for backend in list(backends) if backends is not None else backends_for(path):
        try:
            model = load(path, backend, **options)
            if feed is None:
                feed = _generate(model, 0)
            outputs = model.run(feed if isinstance(feed, (dict, list, tuple)) else dict(feed))
        except RivetError as e:
            result.errors[backend] = e
            continue
        result.outputs[backend] = outputs
        if reference is None:
            reference = outputs
            result.reference = f"{backend} (no PyTorch reference in the model's folder)"
        result.max_abs_diff[backend], result.max_rel_diff[backend] = _diff(outputs, reference)
    if isinstance(feed, dict):
        result.inputs = dict(feed)
    ran: List[str] = list(result.outputs)
    for a, b in itertools.combinations(ran, 2):
        result.pairwise[(a, b)] = _diff(result.outputs[a], result.outputs[b])[0]
    return result
