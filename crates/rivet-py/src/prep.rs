//! `rivet.Pipeline` and `rivet.Scorer`: raw tables in, through Arrow's PyCapsule stream
//! interface (`__arrow_c_stream__`: pyarrow Tables and RecordBatchReaders, polars DataFrames,
//! pandas DataFrames), imported without copying primitive columns.

use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyCapsuleMethods, PyDict};
use rivet::{DType, Tensor};
use rivet_prep::arrow::{ArrowArrayStream, RecordBatches};
use rivet_prep::{FittedPipeline, PrepError};

use crate::errors;
use crate::model::{type_name, Model};

/// The head of a C stream struct, as the Arrow C Stream Interface lays it out: enough to mark
/// the producer's copy released once its contents have been moved out.
#[repr(C)]
struct StreamHead {
    get_schema: *const c_void,
    get_next: *const c_void,
    get_last_error: *const c_void,
    release: Option<unsafe extern "C" fn(*mut StreamHead)>,
    private_data: *mut c_void,
}

/// The record batches of an imported stream, moved to the thread that reads them while the
/// GIL is released.
struct Batches(RecordBatches);

// SAFETY: the C Stream Interface lets a consumer call a stream from any thread, one call at a
// time; `Batches` is used by one thread at a time (moved, never shared).
unsafe impl Send for Batches {}

/// Takes the stream `table` exports: a pandas DataFrame without `__arrow_c_stream__` goes
/// through `pyarrow.Table.from_pandas` first.
fn table_batches(table: &Bound<'_, PyAny>) -> PyResult<Batches> {
    let py = table.py();
    let exporter = if table.hasattr(pyo3::intern!(py, "__arrow_c_stream__"))? {
        table.clone()
    } else if is_pandas_frame(table)? {
        let kwargs = PyDict::new(py);
        kwargs.set_item("preserve_index", false)?;
        py.import("pyarrow")?.getattr("Table")?.call_method("from_pandas", (table,), Some(&kwargs))?
    } else {
        return Err(errors::argument(
            py,
            format!(
                "a table must export Arrow's PyCapsule stream interface (__arrow_c_stream__: a pyarrow \
                 Table or RecordBatchReader, a polars DataFrame) or be a pandas DataFrame, got {}",
                type_name(table)
            ),
        ));
    };
    let capsule = exporter.call_method0(pyo3::intern!(py, "__arrow_c_stream__"))?;
    let capsule = capsule
        .cast::<PyCapsule>()
        .map_err(|_| errors::argument(py, "__arrow_c_stream__ returned something other than a PyCapsule"))?;
    let pointer = capsule.pointer_checked(Some(c"arrow_array_stream"))?.as_ptr();
    // SAFETY: a capsule named "arrow_array_stream" holds a C stream struct (the PyCapsule
    // interface's contract). Its contents move out here and the capsule's copy is marked
    // released, so the capsule's destructor releases nothing and the stream has one owner.
    let owned = unsafe {
        let head = pointer.cast::<StreamHead>();
        if (*head).release.is_none() {
            return Err(errors::argument(py, "the Arrow stream is already released"));
        }
        let owned = std::ptr::read(pointer.cast::<ArrowArrayStream>());
        (*head).release = None;
        owned
    };
    // SAFETY: a stream that follows the C Stream Interface (the exporter's contract).
    let batches = unsafe { RecordBatches::import(owned) }.map_err(|e| errors::prep(py, e))?;
    Ok(Batches(batches))
}

fn is_pandas_frame(table: &Bound<'_, PyAny>) -> PyResult<bool> {
    let class = table.get_type();
    let module: String = class.getattr("__module__")?.extract()?;
    Ok(module.starts_with("pandas") && class.name()? == "DataFrame")
}

/// Runs `body` with the GIL released and panics caught.
fn detached<T: Send>(py: Python<'_>, body: impl FnOnce() -> Result<T, PrepError> + Send) -> PyResult<T> {
    match py.detach(|| rivet::panics::catch_quietly(body)) {
        Ok(result) => result.map_err(|e| errors::prep(py, e)),
        Err(payload) => Err(errors::panic(py, &*payload)),
    }
}

/// Rows joined along the first axis: the one part itself, or a copy of them all.
fn join(parts: Vec<Tensor>) -> Result<Tensor, PrepError> {
    match <[Tensor; 1]>::try_from(parts) {
        Ok([one]) => Ok(one),
        Err(parts) => Tensor::concat(&parts.iter().map(Tensor::view).collect::<Vec<_>>())
            .map_err(|e| PrepError::Model(e.to_string())),
    }
}

/// A fitted preprocessing pipeline (written by `rivet prep fit`): raw tables in, float32
/// features out, as `rivet predict` makes them. Thread-safe; the GIL is released while it works.
#[pyclass(frozen, module = "rivet")]
pub struct Pipeline {
    pipeline: Arc<FittedPipeline>,
}

#[pymethods]
impl Pipeline {
    /// Loads a fitted pipeline file (`NAME.pipeline.json`). Raises Io when it cannot be read
    /// and Preprocess when it is malformed.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Pipeline> {
        let pipeline = detached(py, || FittedPipeline::load(&path))?;
        Ok(Pipeline { pipeline: Arc::new(pipeline) })
    }

    /// The names of the features `transform` makes, in column order.
    #[getter]
    fn feature_names(&self) -> Vec<String> {
        self.pipeline.features().to_vec()
    }

    /// Transforms a table into a float32 array of [rows, features].
    ///
    /// `table` exports Arrow's PyCapsule stream interface (a pyarrow Table or RecordBatchReader,
    /// a polars DataFrame) or is a pandas DataFrame. Primitive columns are read without copying.
    /// Raises Preprocess (also a ValueError) naming the column and row when the data does not
    /// fit the pipeline.
    fn transform<'py>(&self, py: Python<'py>, table: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let Batches(batches) = table_batches(table)?;
        let pipeline = Arc::clone(&self.pipeline);
        let features = detached(py, move || {
            let mut parts = Vec::new();
            let mut rows = 0;
            for df in batches {
                let df = df?;
                parts.push(pipeline.transform_rows(&df, rows)?.0);
                rows += df.height();
            }
            if parts.is_empty() {
                return Tensor::zeros(DType::F32, &[0, pipeline.features().len()])
                    .map_err(|e| PrepError::Data(e.to_string()));
            }
            join(parts)
        })?;
        crate::arrays::to_numpy(py, features)
    }

    fn __repr__(&self) -> String {
        format!("Pipeline(features={})", self.pipeline.features().len())
    }
}

/// A model with its fitted pipeline: raw tables in, predictions out, with the same results and
/// errors as `rivet predict`. Thread-safe; the GIL is released while it works.
#[pyclass(frozen, module = "rivet")]
pub struct Scorer {
    scorer: Arc<rivet_prep::Scorer>,
}

#[pymethods]
impl Scorer {
    /// Pairs `model` with `pipeline`. Raises Preprocess when the model does not take the
    /// pipeline's features (one float32 input of [rows, features]).
    #[new]
    fn new(py: Python<'_>, model: &Model, pipeline: &Pipeline) -> PyResult<Scorer> {
        let scorer =
            rivet_prep::Scorer::new(Arc::clone(model.inner()), FittedPipeline::clone(&pipeline.pipeline))
                .map_err(|e| errors::prep(py, e))?;
        Ok(Scorer { scorer: Arc::new(scorer) })
    }

    /// Scores a table (as `Pipeline.transform` takes it): a dict of NumPy arrays by output
    /// name, one row per table row. Raises Preprocess for a table that does not fit the
    /// pipeline or an empty stream, naming what was wrong.
    fn predict<'py>(&self, py: Python<'py>, table: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let Batches(batches) = table_batches(table)?;
        let scorer = Arc::clone(&self.scorer);
        let outputs = detached(py, move || {
            let mut per_output: Vec<Vec<Tensor>> = Vec::new();
            let mut names = Vec::new();
            let mut rows = 0;
            for df in batches {
                let df = df?;
                let outputs = scorer.predict_rows(&df, rows)?;
                rows += df.height();
                names = outputs.names().to_vec();
                per_output.resize_with(outputs.len(), Vec::new);
                for (parts, tensor) in per_output.iter_mut().zip(outputs.into_tensors()) {
                    parts.push(tensor);
                }
            }
            if per_output.is_empty() {
                return Err(PrepError::Data("the table held no record batch".into()));
            }
            let joined = per_output.into_iter().map(join).collect::<Result<Vec<_>, _>>()?;
            Ok(names.into_iter().zip(joined).collect::<Vec<_>>())
        })?;
        let dict = PyDict::new(py);
        for (name, tensor) in outputs {
            dict.set_item(name, crate::arrays::to_numpy(py, tensor)?)?;
        }
        Ok(dict)
    }
}
