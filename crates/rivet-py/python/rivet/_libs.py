"""Finding the native libraries a backend needs, from the Python environment itself.

ONNX Runtime: ``ORT_DYLIB_PATH`` when set, else the ``onnxruntime`` package of this environment
(its ``capi/libonnxruntime.so.*``), else the library the wheel was built against. It is opened
when the first model runs on it, not before.

libtorch: ``LIBTORCH`` (a libtorch directory) when set, else the ``torch`` package of this
environment (its ``lib/``). It is loaded only when a TorchScript model is, so a process that runs
only ONNX never maps it; the wheel does not carry it.

Neither package is imported: they are only located.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from pathlib import Path
from typing import Optional

from ._errors import ModelLoad

_TORCH_LIBRARIES = ("libc10.so", "libtorch_cpu.so", "libtorch.so")
_libtorch_loaded: Optional[Path] = None


def package_dir(name: str) -> Optional[Path]:
    """The folder of the installed package ``name``, without importing it (None when absent)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def prepare_onnxruntime() -> None:
    """Points ONNX Runtime's loader at this environment's onnxruntime package, unless
    ``ORT_DYLIB_PATH`` already names a library."""
    if os.environ.get("ORT_DYLIB_PATH"):
        return
    package = package_dir("onnxruntime")
    if package is None:
        return
    found = sorted((package / "capi").glob("libonnxruntime.so*"))
    if found:
        os.environ["ORT_DYLIB_PATH"] = str(found[-1])


def libtorch_dir() -> Path:
    """The ``lib/`` folder of the libtorch to use; ModelLoad says how to get one when there is none."""
    given = os.environ.get("LIBTORCH")
    if given:
        lib = Path(given) / "lib"
        if not (lib / "libtorch_cpu.so").exists():
            raise ModelLoad(
                f"LIBTORCH is {given}, which has no lib/libtorch_cpu.so: set it to a libtorch 2.13 "
                "directory, or unset it to use this environment's torch package"
            )
        return lib
    package = package_dir("torch")
    if package is None or not (package / "lib" / "libtorch_cpu.so").exists():
        raise ModelLoad(
            "the tch backend needs libtorch 2.13 and this Python environment has none: install it "
            "with `pip install torch==2.13.0`, or set LIBTORCH to a libtorch 2.13 directory"
        )
    return package / "lib"


def prepare_libtorch() -> None:
    """Loads libtorch (once) so that the tch backend library finds it."""
    global _libtorch_loaded
    if _libtorch_loaded is not None:
        return
    lib = libtorch_dir()
    for name in _TORCH_LIBRARIES:
        path = lib / name
        if path.exists():
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    _libtorch_loaded = lib


def is_torchscript(path: str) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip file), as Rivet's format detection says."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def prepare(path: str, backend: str) -> None:
    """Makes ready the libraries that loading ``path`` with ``backend`` may need."""
    if backend in ("auto", "ort"):
        prepare_onnxruntime()
    if backend == "tch" or (backend == "auto" and is_torchscript(path)):
        prepare_libtorch()
