"""Rivet's errors: one class per C ABI error code, each a subclass of RivetError.

Every exception Rivet raises carries ``.code`` (the C ABI's ``RIVET_ERROR_*`` value, the C++
API's ``rivet::ErrorCode``) and the message the ``rivet`` CLI prints for the same failure.
Kinds that describe bad arguments are also the matching built-in exception, so ``except
ValueError`` catches a wrong input.
"""


class RivetError(Exception):
    """Base class of every error Rivet raises. ``.code`` is the C ABI's error code."""

    code = 0

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(RivetError, TypeError):
    """An argument of the wrong kind: inputs that are not a dict or list, a table that is not one."""

    code = 1


class InvalidInput(RivetError, ValueError):
    """The inputs do not match the model: count, name, dtype, rank or a dimension (the message names the input)."""

    code = 2


class InvalidTensor(RivetError, ValueError):
    """A tensor's data does not fit its dtype and shape."""

    code = 3


class ModelLoad(RivetError):
    """A model file could not be read, parsed or loaded, or no backend could load it."""

    code = 4


class Unsupported(RivetError):
    """The backend lacks a format, operator, dtype, device or option the model needs."""

    code = 5


class Backend(RivetError):
    """The backend failed while running the model."""

    code = 6


class Io(RivetError, OSError):
    """A file other than the model (an .npy, a spec or pipeline file, a table) could not be read."""

    code = 7


class Panic(RivetError):
    """Rivet hit an internal error (a Rust panic, caught before it reached Python)."""

    code = 8


class InvalidOption(RivetError, ValueError):
    """A load option is malformed, unknown to its backend, or names an unknown backend."""

    code = 9


class Preprocess(RivetError, ValueError):
    """A table does not fit the pipeline (a missing column, a wrong type, an unparsable value), or the model does not fit it."""

    code = 10


# Each class by its code: how the extension module picks the class of an error it raises.
BY_CODE = {cls.code: cls for cls in RivetError.__subclasses__()}

__all__ = [
    "RivetError",
    "InvalidArgument",
    "InvalidInput",
    "InvalidTensor",
    "ModelLoad",
    "Unsupported",
    "Backend",
    "Io",
    "Panic",
    "InvalidOption",
    "Preprocess",
]
