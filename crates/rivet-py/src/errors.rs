//! Rivet's errors as Python exceptions: `rivet.RivetError` and one subclass per C ABI code,
//! defined in `rivet/_errors.py`, each carrying the code as `.code` and the message the CLI
//! prints.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

/// The C ABI's code for an argument of the wrong kind (not a Rivet error kind of its own).
pub(crate) const INVALID_ARGUMENT: u32 = 1;
/// The C ABI's code for a panic caught at the boundary.
pub(crate) const PANIC: u32 = 8;
/// The C ABI's code for a preprocessing error.
pub(crate) const PREPROCESS: u32 = 10;
/// The C ABI's code for an I/O error.
const IO: u32 = 7;

/// `rivet._errors.BY_CODE`: each exception class by its code.
static BY_CODE: PyOnceLock<Py<PyDict>> = PyOnceLock::new();

/// The exception for `code` with `message`: the class `rivet._errors` gives that code.
pub(crate) fn raise(py: Python<'_>, code: u32, message: impl Into<String>) -> PyErr {
    let message = message.into();
    let class = BY_CODE
        .import(py, "rivet._errors", "BY_CODE")
        .and_then(|classes| classes.get_item(code))
        .and_then(|class| class.map(|c| c.cast_into::<PyType>().map_err(PyErr::from)).transpose());
    match class {
        Ok(Some(class)) => PyErr::from_type(class, message),
        Ok(None) => PyRuntimeError::new_err(format!("Rivet error {code}: {message}")),
        Err(e) => e,
    }
}

/// The exception for a Rivet error: its kind's code and its message.
pub(crate) fn rivet(py: Python<'_>, error: rivet::Error) -> PyErr {
    raise(py, error.kind().code(), error.to_string())
}

/// The exception for a preprocessing error: `Io` for files, `Preprocess` otherwise (as the C ABI).
pub(crate) fn prep(py: Python<'_>, error: rivet_prep::PrepError) -> PyErr {
    match error {
        rivet_prep::PrepError::Io(message) => raise(py, IO, message),
        other => raise(py, PREPROCESS, other.to_string()),
    }
}

/// The exception for a panic caught while running Rivet.
pub(crate) fn panic(py: Python<'_>, payload: &(dyn std::any::Any + Send)) -> PyErr {
    raise(py, PANIC, format!("Rivet panicked: {}", rivet::panics::panic_text(payload)))
}

/// The exception for an argument of the wrong kind.
pub(crate) fn argument(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, INVALID_ARGUMENT, message)
}
