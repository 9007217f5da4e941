//! `rivet.load` and `rivet.Model`.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyTuple};
use rivet::{Backend, Dim, Inputs, LoadOptions, TensorSpec};

use crate::arrays::{self, InputArray};
use crate::errors;

/// Load options from `rivet.load`'s keyword arguments: `threads`, `inter_op_threads`, `device`,
/// `instances` (`ort.instances`), `spec` (`tch.spec`), `auto_order`, and any backend's own
/// option as the CLI's `-O` takes it (`"ort.optimization"`, or a bare key when one backend is
/// named).
fn load_options(
    py: Python<'_>,
    backend: &Backend,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<LoadOptions> {
    let mut load = LoadOptions::with_backend(backend.clone());
    let Some(options) = options else {
        return Ok(load);
    };
    let invalid = |key: &str, message: String| {
        errors::rivet(py, rivet::Error::InvalidOption { backend: None, key: key.to_owned(), message })
    };
    for (key, value) in options.iter() {
        let key: String = key.extract()?;
        if key == "auto_order" {
            let names: Vec<String> = value
                .extract()
                .map_err(|_| invalid(&key, "option auto_order: expected a list of backend names".into()))?;
            load.auto_order = names
                .iter()
                .map(|n| n.parse::<Backend>())
                .collect::<rivet::Result<_>>()
                .map_err(|e| errors::rivet(py, e))?;
            continue;
        }
        // Values as the CLI reads them: text, with Python's booleans as true/false.
        let text: String = if value.is_instance_of::<PyBool>() {
            if value.is_truthy()? { "true" } else { "false" }.to_owned()
        } else {
            value.str()?.extract()?
        };
        let count = |text: &str| {
            text.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                invalid(&key, format!("option {key}: expected a positive integer, got \"{text}\""))
            })
        };
        match key.as_str() {
            "threads" => load.intra_op_threads = Some(count(&text)?),
            "inter_op_threads" => load.inter_op_threads = Some(count(&text)?),
            "device" => {
                load.device =
                    text.parse().map_err(|e: String| invalid(&key, format!("option device: {e}")))?
            }
            "instances" => load.set_option(&Backend::ORT, "instances", text),
            "spec" => load.set_option(&Backend::TCH, "spec", text),
            _ => load.set_option_str(&format!("{key}={text}"), backend).map_err(|e| errors::rivet(py, e))?,
        }
    }
    Ok(load)
}

/// Loads a model (the Python package's `rivet.load` prepares the backend libraries, then calls
/// this).
#[pyfunction]
#[pyo3(signature = (path, backend = "auto", options = None))]
pub(crate) fn load(
    py: Python<'_>,
    path: PathBuf,
    backend: &str,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<Model> {
    let backend: Backend = backend.parse().map_err(|e| errors::rivet(py, e))?;
    let options = load_options(py, &backend, options)?;
    let loaded = py.detach(|| rivet::panics::catch_quietly(|| rivet::load_explained(&path, &options)));
    let loaded = match loaded {
        Ok(result) => result.map_err(|e| errors::rivet(py, e))?,
        Err(payload) => return Err(errors::panic(py, &*payload)),
    };
    let skipped = loaded.skipped.into_iter().map(|(name, why)| (name.to_string(), why.to_string())).collect();
    Ok(Model { model: loaded.model, path, skipped })
}

/// An input or output of a model: its name, NumPy dtype (None when the model does not say) and
/// shape (a tuple with None for each dynamic dimension; None when the rank is unknown).
#[pyclass(frozen, module = "rivet")]
pub struct TensorInfo {
    /// The name the model gives it.
    #[pyo3(get)]
    name: String,
    /// Its NumPy dtype, or None when the model does not declare one.
    #[pyo3(get)]
    dtype: Py<PyAny>,
    /// Its shape: a tuple with None for each dynamic dimension, or None when unknown.
    #[pyo3(get)]
    shape: Py<PyAny>,
}

#[pymethods]
impl TensorInfo {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "TensorInfo(name={:?}, dtype={}, shape={})",
            self.name,
            self.dtype.bind(py).repr()?,
            self.shape.bind(py).repr()?
        ))
    }
}

fn tensor_info(py: Python<'_>, spec: &TensorSpec) -> PyResult<TensorInfo> {
    let dtype = match spec.dtype {
        Some(dtype) => arrays::numpy_dtype(py, dtype)?.unbind(),
        None => py.None(),
    };
    let shape = match &spec.shape {
        Some(dims) => {
            let dims: Vec<Option<usize>> = dims.iter().map(Dim::fixed).collect();
            PyTuple::new(py, dims)?.into_any().unbind()
        }
        None => py.None(),
    };
    Ok(TensorInfo { name: spec.name.clone(), dtype, shape })
}

/// A loaded model. Thread-safe: any number of Python threads may call `run` at once (the GIL
/// is released while the model runs).
#[pyclass(frozen, module = "rivet")]
pub struct Model {
    model: Arc<dyn rivet::Model>,
    path: PathBuf,
    skipped: Vec<(String, String)>,
}

impl Model {
    /// The Rust model, for the scorer.
    pub(crate) fn inner(&self) -> &Arc<dyn rivet::Model> {
        &self.model
    }
}

#[pymethods]
impl Model {
    /// The model's inputs, in positional order (a list of TensorInfo).
    #[getter]
    fn inputs(&self, py: Python<'_>) -> PyResult<Vec<TensorInfo>> {
        self.model.signature().inputs.iter().map(|s| tensor_info(py, s)).collect()
    }

    /// The model's outputs, in the order `run` returns them (a list of TensorInfo).
    #[getter]
    fn outputs(&self, py: Python<'_>) -> PyResult<Vec<TensorInfo>> {
        self.model.signature().outputs.iter().map(|s| tensor_info(py, s)).collect()
    }

    /// The backend that runs the model ("tch", "ort", "candle" or a registered one).
    #[getter]
    fn backend(&self) -> String {
        self.model.backend().to_string()
    }

    /// The file the model was loaded from.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The backends `backend="auto"` tried before this one, each with why it could not load the
    /// model (an empty list when the first candidate loaded it).
    #[getter]
    fn skipped(&self) -> Vec<(String, String)> {
        self.skipped.clone()
    }

    /// Runs the model.
    ///
    /// `inputs` is a dict of arrays by input name, or a list (or tuple) of arrays in the order of
    /// `inputs`. An array is a NumPy array, anything with `__dlpack__` (a torch tensor on the
    /// CPU) or anything NumPy can read without copying (`__array_interface__`, the buffer
    /// protocol). A C-contiguous, aligned array is read in place; any other is copied once.
    /// Do not write to an input array from another thread while the run lasts.
    ///
    /// Returns a dict of NumPy arrays by output name, in output order. Each array owns the
    /// buffer the backend wrote (no copy); the memory is freed when the last array over it goes.
    ///
    /// Raises InvalidInput (also a ValueError) when the inputs do not match the model, naming
    /// the input, and the backend's own error kinds when the run fails.
    fn run<'py>(&self, py: Python<'py>, inputs: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let signature = self.model.signature();
        let mut names: Vec<String> = Vec::new();
        let mut arrays: Vec<InputArray> = Vec::new();
        let named = if let Ok(dict) = inputs.cast::<PyDict>() {
            for (key, value) in dict.iter() {
                let name: String = key.extract().map_err(|_| {
                    errors::argument(py, format!("input names must be strings, got {}", type_name(&key)))
                })?;
                arrays.push(arrays::input_array(&value, || format!("input \"{name}\""))?);
                names.push(name);
            }
            true
        } else if inputs.is_instance_of::<PyList>() || inputs.is_instance_of::<PyTuple>() {
            for (index, value) in inputs.try_iter()?.enumerate() {
                let value = value?;
                let what = || match signature.inputs.get(index) {
                    Some(spec) => format!("input \"{}\"", spec.name),
                    None => format!("input {index}"),
                };
                arrays.push(arrays::input_array(&value, what)?);
            }
            false
        } else {
            return Err(errors::argument(
                py,
                format!(
                    "inputs must be a dict of arrays by input name or a list of arrays in input order, got {}",
                    type_name(inputs)
                ),
            ));
        };
        let views = arrays.iter().map(InputArray::view).collect::<rivet::Result<Vec<_>>>();
        let views = views.map_err(|e| errors::rivet(py, e))?;
        let inputs = if named {
            Inputs::Named(names.iter().map(String::as_str).zip(views).collect())
        } else {
            Inputs::Positional(views)
        };
        let model = &self.model;
        let result = py.detach(|| rivet::panics::catch_quietly(|| model.run_inputs(inputs)));
        let outputs = match result {
            Ok(outputs) => outputs.map_err(|e| errors::rivet(py, e))?,
            Err(payload) => return Err(errors::panic(py, &*payload)),
        };
        drop(arrays);
        outputs_dict(py, outputs)
    }

    fn __repr__(&self) -> String {
        format!(
            "Model(path={:?}, backend={:?})",
            self.path.display().to_string(),
            self.model.backend().to_string()
        )
    }
}

/// Outputs as a dict of NumPy arrays by name, in order, each over its tensor's own buffer.
pub(crate) fn outputs_dict(py: Python<'_>, outputs: rivet::Outputs) -> PyResult<Bound<'_, PyDict>> {
    let names = outputs.names().to_vec();
    let dict = PyDict::new(py);
    for (name, tensor) in names.into_iter().zip(outputs.into_tensors()) {
        dict.set_item(name, arrays::to_numpy(py, tensor)?)?;
    }
    Ok(dict)
}

/// The Python type name of a value, for messages.
pub(crate) fn type_name(value: &Bound<'_, PyAny>) -> String {
    value.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "an unknown type".into())
}
