//! `rivet` for Python: the extension module `rivet._rivet` that the Python package
//! (`python/rivet/`) wraps.
//!
//! It links the same crates as the `rivet` CLI (the facade with its three backends and
//! preprocessing), so a model answers here exactly as it does there. Importing it loads no
//! backend library: ONNX Runtime is opened when the first model runs on it, and libtorch only
//! when a TorchScript model is loaded (through `librivet_tch.so`, beside this module).
//!
//! Inputs are read in place when they are C-contiguous and aligned (see `arrays.rs`); outputs
//! become NumPy arrays over Rivet's own buffers. Every call that runs a model releases the GIL,
//! and no panic crosses into Python: it becomes `rivet.Panic`.

use pyo3::prelude::*;

mod arrays;
mod errors;
mod model;
mod prep;

/// The backends this build knows, in the order `backend="auto"` tries them.
#[pyfunction]
fn backends() -> Vec<String> {
    rivet::backends().iter().map(|b| b.name().to_owned()).collect()
}

/// The backends that read the format of the model at `path`, in the order `backend="auto"`
/// tries them.
#[pyfunction]
fn backends_for(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Vec<String>> {
    let format = rivet::format::detect_format(&path, "auto").map_err(|e| errors::rivet(py, e))?;
    let names = rivet::backends_for(format, &rivet::LoadOptions::default());
    Ok(names.iter().map(|b| b.name().to_owned()).collect())
}

/// The extension module.
#[pymodule]
fn _rivet(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(backends, m)?)?;
    m.add_function(wrap_pyfunction!(backends_for, m)?)?;
    m.add_function(wrap_pyfunction!(model::load, m)?)?;
    m.add_class::<model::Model>()?;
    m.add_class::<model::TensorInfo>()?;
    m.add_class::<arrays::OutputBuffer>()?;
    m.add_class::<prep::Pipeline>()?;
    m.add_class::<prep::Scorer>()?;
    Ok(())
}
