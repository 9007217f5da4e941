# Types of the rivet package (the extension module's classes and the Python functions around it).
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ._errors import (
    Backend as Backend,
    InvalidArgument as InvalidArgument,
    InvalidInput as InvalidInput,
    InvalidOption as InvalidOption,
    InvalidTensor as InvalidTensor,
    Io as Io,
    ModelLoad as ModelLoad,
    Panic as Panic,
    Preprocess as Preprocess,
    RivetError as RivetError,
    Unsupported as Unsupported,
)

__version__: str

_Array = Any  # a NumPy array, anything with __dlpack__ or the array interface
_Inputs = Union[Mapping[str, _Array], Sequence[_Array]]
_Table = Any  # anything with __arrow_c_stream__, or a pandas DataFrame

class TensorInfo:
    """An input or output of a model."""

    @property
    def name(self) -> str: ...
    @property
    def dtype(self) -> Optional[np.dtype[Any]]: ...
    @property
    def shape(self) -> Optional[Tuple[Optional[int], ...]]: ...

class Model:
    """A loaded model; thread-safe."""

    @property
    def inputs(self) -> List[TensorInfo]: ...
    @property
    def outputs(self) -> List[TensorInfo]: ...
    @property
    def backend(self) -> str: ...
    @property
    def path(self) -> os.PathLike[str]: ...
    @property
    def skipped(self) -> List[Tuple[str, str]]: ...
    def run(self, inputs: _Inputs) -> Dict[str, np.ndarray[Any, Any]]: ...

class Pipeline:
    """A fitted preprocessing pipeline."""

    @staticmethod
    def load(path: Union[str, os.PathLike[str]]) -> Pipeline: ...
    @property
    def feature_names(self) -> List[str]: ...
    def transform(self, table: _Table) -> np.ndarray[Any, np.dtype[np.float32]]: ...

class Scorer:
    """A model with its fitted pipeline."""

    def __init__(self, model: Model, pipeline: Pipeline) -> None: ...
    def predict(self, table: _Table) -> Dict[str, np.ndarray[Any, Any]]: ...

class Comparison:
    """What compare found."""

    inputs: Dict[str, np.ndarray[Any, Any]]
    outputs: Dict[str, Dict[str, np.ndarray[Any, Any]]]
    errors: Dict[str, RivetError]
    max_abs_diff: Dict[str, float]
    max_rel_diff: Dict[str, float]
    pairwise: Dict[Tuple[str, str], float]
    reference: str

def load(path: Union[str, os.PathLike[str]], backend: str = "auto", **options: Any) -> Model: ...
def backends() -> List[str]: ...
def compare(
    path: Union[str, os.PathLike[str]],
    backends: Optional[Sequence[str]] = None,
    inputs: Optional[_Inputs] = None,
    **options: Any,
) -> Comparison: ...
