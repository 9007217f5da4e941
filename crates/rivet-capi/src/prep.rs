//! Preprocessing from C: fitted pipelines (`rivet prep fit`'s JSON) applied to Arrow record
//! batches passed through Arrow's C Data Interface, alone or straight into a model.
//!
//! Built with the cargo feature `prep` (on by default); without it every function here fails
//! with `RIVET_ERROR_UNSUPPORTED`, so the header and the symbols stay the same.

use std::ffi::{c_char, c_void, CString};
use std::ptr;

#[cfg(feature = "prep")]
use crate::error::arg;
use crate::error::{ffi_boundary, ffi_infallible, not_null, rivet_error_code_t, rivet_error_t};
use crate::handle::Handle;
use crate::model::rivet_model_t;
use crate::run::rivet_outputs_t;
use crate::tensor::rivet_tensor_t;

/// The table does not fit the pipeline (a missing column, a wrong type, an unparsable value, an
/// unseen category under the "error" policy, a value left missing or infinite: the message
/// names the step, column and row), the pipeline file is malformed, or the Arrow data is not a
/// record batch.
pub const RIVET_ERROR_PREPROCESS: rivet_error_code_t = 10;

/// Arrow's `struct ArrowSchema` (C Data Interface), as the specification lays it out. Declared
/// by `<rivet/arrow.h>` or any other copy of the specification's definitions.
#[repr(C)]
pub struct ArrowSchema {
    /// The type, as a format string (`l` int64, `u` utf8, `+s` struct...).
    pub format: *const c_char,
    /// The field's name, or NULL.
    pub name: *const c_char,
    /// Key-value metadata in the specification's binary layout, or NULL.
    pub metadata: *const c_char,
    /// `ARROW_FLAG_*` bits (2: nullable).
    pub flags: i64,
    /// The number of child schemas.
    pub n_children: i64,
    /// The child schemas.
    pub children: *mut *mut ArrowSchema,
    /// The dictionary's schema for a dictionary-encoded type, else NULL.
    pub dictionary: *mut ArrowSchema,
    /// Releases the schema and its children; NULL once released.
    pub release: Option<unsafe extern "C" fn(*mut ArrowSchema)>,
    /// The producer's own data.
    pub private_data: *mut c_void,
}

/// Arrow's `struct ArrowArray` (C Data Interface), as the specification lays it out.
#[repr(C)]
pub struct ArrowArray {
    /// The number of elements.
    pub length: i64,
    /// The number of nulls, or -1 when not computed.
    pub null_count: i64,
    /// The index in the buffers of the first element.
    pub offset: i64,
    /// The number of buffers.
    pub n_buffers: i64,
    /// The number of child arrays.
    pub n_children: i64,
    /// The buffers (validity first for most types).
    pub buffers: *mut *const c_void,
    /// The child arrays.
    pub children: *mut *mut ArrowArray,
    /// The dictionary of a dictionary-encoded array, else NULL.
    pub dictionary: *mut ArrowArray,
    /// Releases the array, its children and dictionary; NULL once released.
    pub release: Option<unsafe extern "C" fn(*mut ArrowArray)>,
    /// The producer's own data.
    pub private_data: *mut c_void,
}

/// Arrow's `struct ArrowArrayStream` (C Stream Interface), as the specification lays it out.
#[repr(C)]
pub struct ArrowArrayStream {
    get_schema: Option<unsafe extern "C" fn(*mut ArrowArrayStream, *mut ArrowSchema) -> std::ffi::c_int>,
    get_next: Option<unsafe extern "C" fn(*mut ArrowArrayStream, *mut ArrowArray) -> std::ffi::c_int>,
    get_last_error: Option<unsafe extern "C" fn(*mut ArrowArrayStream) -> *const c_char>,
    release: Option<unsafe extern "C" fn(*mut ArrowArrayStream)>,
    private_data: *mut c_void,
}

/// A fitted preprocessing pipeline. Read-only once loaded: any number of threads may use one
/// at once. Freed with `rivet_pipeline_free`.
pub struct rivet_pipeline_t {
    #[cfg(feature = "prep")]
    pipeline: rivet_prep::FittedPipeline,
    names: Vec<CString>,
}

#[cfg(not(feature = "prep"))]
fn unavailable() -> Box<rivet_error_t> {
    rivet_error_t::new(
        crate::error::RIVET_ERROR_UNSUPPORTED,
        "this librivet was built without preprocessing (cargo feature `prep` of rivet-capi)",
    )
}

#[cfg(feature = "prep")]
fn prep_error(e: rivet_prep::PrepError) -> Box<rivet_error_t> {
    match e {
        rivet_prep::PrepError::Io(message) => rivet_error_t::new(crate::error::RIVET_ERROR_IO, message),
        other => rivet_error_t::new(RIVET_ERROR_PREPROCESS, other.to_string()),
    }
}

/// Loads a fitted pipeline written by `rivet prep fit` (or `FittedPipeline::save`). `*out`
/// receives a pipeline the caller frees with `rivet_pipeline_free`; untouched on failure
/// (`RIVET_ERROR_IO` for a file that cannot be read, `RIVET_ERROR_PREPROCESS` for a malformed
/// one or another format version).
///
/// Thread-safe: may be called from any thread.
///
/// # Safety
/// `path` must be NULL or NUL-terminated; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rivet_pipeline_load(
    path: *const c_char,
    out: *mut *mut rivet_pipeline_t,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        not_null(out, "out")?;
        // SAFETY: NULL or NUL-terminated (the caller's contract).
        let path = unsafe { crate::options::path_arg(path, "path") }?;
        #[cfg(feature = "prep")]
        {
            let pipeline = rivet_prep::FittedPipeline::load(&path).map_err(prep_error)?;
            let names = pipeline.features().iter().map(|n| crate::model::c_string(n)).collect();
            // SAFETY: checked non-NULL; writable by the caller's contract.
            unsafe { rivet_pipeline_t { pipeline, names }.write_to(out) };
            Ok(())
        }
        #[cfg(not(feature = "prep"))]
        {
            let _ = path;
            Err(unavailable())
        }
    })
}

/// Frees a pipeline. NULL is ignored.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_pipeline_free(pipeline: *mut rivet_pipeline_t) {
    // SAFETY: the caller's contract: NULL, or a live handle Rivet made, given back once.
    unsafe { Handle::free(pipeline) }
}

/// The number of features a transform makes (the tensor's second dimension); 0 for NULL.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_pipeline_feature_count(pipeline: *const rivet_pipeline_t) -> usize {
    // SAFETY: a non-NULL handle lives until rivet_pipeline_free.
    ffi_infallible(0, || unsafe { pipeline.as_ref() }.map_or(0, |p| p.names.len()))
}

/// The name of feature `index`, or NULL when `pipeline` is NULL or `index` out of range.
/// Borrowed from the pipeline: valid until `rivet_pipeline_free`.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_pipeline_feature_name(
    pipeline: *const rivet_pipeline_t,
    index: usize,
) -> *const c_char {
    ffi_infallible(ptr::null(), || {
        // SAFETY: a non-NULL handle lives until rivet_pipeline_free.
        unsafe { pipeline.as_ref() }.and_then(|p| p.names.get(index)).map_or(ptr::null(), |n| n.as_ptr())
    })
}

/// The record batch moved out of the caller's structs, which are marked released. Dropping it
/// runs the release callbacks (once each); imported, it runs them when the data is dropped.
#[cfg(feature = "prep")]
struct Batch {
    array: rivet_prep::arrow::ArrowArray,
    schema: rivet_prep::arrow::ArrowSchema,
}

/// Moves `array` and `schema` out of the caller's hands (both, whenever both are present and
/// unreleased, so that a failed call releases them too).
///
/// # Safety
/// NULL or valid C Data Interface structs.
#[cfg(feature = "prep")]
unsafe fn take_batch(array: *mut ArrowArray, schema: *mut ArrowSchema) -> Result<Batch, Box<rivet_error_t>> {
    // SAFETY: NULL or valid (the caller's contract).
    let (a, s) = unsafe { (array.as_mut(), schema.as_mut()) };
    let a = a.ok_or_else(|| rivet_error_t::invalid_argument("array is NULL"))?;
    let s = s.ok_or_else(|| rivet_error_t::invalid_argument("schema is NULL"))?;
    if a.release.is_none() || s.release.is_none() {
        return Err(rivet_error_t::invalid_argument(format!(
            "{} already released (its release callback is NULL)",
            if a.release.is_none() { "array is" } else { "schema is" }
        )));
    }
    // SAFETY: both layouts are the specification's, field for field; the originals are marked
    // released at once, so exactly one owner remains.
    let batch = unsafe {
        Batch {
            array: ptr::read(ptr::from_mut(a).cast::<rivet_prep::arrow::ArrowArray>()),
            schema: ptr::read(ptr::from_mut(s).cast::<rivet_prep::arrow::ArrowSchema>()),
        }
    };
    a.release = None;
    s.release = None;
    Ok(batch)
}

/// Transforms the batch with the pipeline into an f32 tensor.
#[cfg(feature = "prep")]
fn transform(pipeline: &rivet_pipeline_t, batch: Batch) -> Result<rivet::Tensor, Box<rivet_error_t>> {
    // SAFETY: valid C Data Interface structs (take_batch's caller's contract).
    let df =
        unsafe { rivet_prep::arrow::import_record_batch(batch.array, batch.schema) }.map_err(prep_error)?;
    let (features, _) = pipeline.pipeline.transform(&df).map_err(prep_error)?;
    Ok(features)
}

/// Transforms an Arrow record batch (a struct array of columns, `schema` of format `+s`) with
/// the pipeline. `*out` receives a `[rows, features]` f32 tensor the caller frees with
/// `rivet_tensor_free`; untouched on failure.
///
/// Ownership: Rivet takes `array` and `schema` whenever both are non-NULL and unreleased, also
/// when the call fails. Their release callbacks then run exactly once, by Rivet (`schema`'s
/// during the call, `array`'s once the data is no longer needed, at the latest before this
/// returns), and the caller's structs are marked released (`release` set to NULL) on return.
/// Primitive columns are read in place, not copied.
///
/// Thread-safe: one pipeline may transform on many threads at once.
///
/// # Safety
/// `pipeline` NULL or live; `array` and `schema` NULL or valid C Data Interface structs, `array`
/// laid out as `schema` says; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rivet_pipeline_transform_arrow(
    pipeline: *const rivet_pipeline_t,
    array: *mut ArrowArray,
    schema: *mut ArrowSchema,
    out: *mut *mut rivet_tensor_t,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        #[cfg(feature = "prep")]
        {
            // SAFETY: the caller's contract; taken first so that every failure releases them.
            let batch = unsafe { take_batch(array, schema) }?;
            not_null(out, "out")?;
            // SAFETY: a non-NULL pipeline lives until rivet_pipeline_free.
            let pipeline = unsafe { arg(pipeline, "pipeline") }?;
            let features = transform(pipeline, batch)?;
            // SAFETY: checked non-NULL; writable by the caller's contract.
            unsafe { rivet_tensor_t::new(features).write_to(out) };
            Ok(())
        }
        #[cfg(not(feature = "prep"))]
        {
            let _ = (pipeline, array, schema, out);
            Err(unavailable())
        }
    })
}

/// Raw table in, predictions out: transforms an Arrow record batch with the pipeline and runs
/// the model on the features (its one input). `*out` receives the outputs, freed with
/// `rivet_outputs_free`; untouched on failure. Ownership of `array` and `schema` as in
/// `rivet_pipeline_transform_arrow`. Errors: `RIVET_ERROR_PREPROCESS` for the table, the
/// model's own codes for the run (`RIVET_ERROR_INVALID_INPUT` when the features do not fit its
/// signature).
///
/// Thread-safe: as `rivet_model_run` and `rivet_pipeline_transform_arrow`.
///
/// # Safety
/// As `rivet_pipeline_transform_arrow`; `model` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rivet_model_predict_arrow(
    model: *const rivet_model_t,
    pipeline: *const rivet_pipeline_t,
    array: *mut ArrowArray,
    schema: *mut ArrowSchema,
    out: *mut *mut rivet_outputs_t,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        #[cfg(feature = "prep")]
        {
            // SAFETY: the caller's contract; taken first so that every failure releases them.
            let batch = unsafe { take_batch(array, schema) }?;
            not_null(out, "out")?;
            // SAFETY: non-NULL handles live until their *_free.
            let (model, pipeline) = unsafe { (arg(model, "model")?, arg(pipeline, "pipeline")?) };
            let features = transform(pipeline, batch)?;
            let results = model.model.run_tensors(rivet::Inputs::Positional(vec![features.view()]))?;
            let outputs = crate::run::outputs_of(model, results);
            // SAFETY: checked non-NULL; writable by the caller's contract.
            unsafe { outputs.write_to(out) };
            Ok(())
        }
        #[cfg(not(feature = "prep"))]
        {
            let _ = (model, pipeline, array, schema, out);
            Err(unavailable())
        }
    })
}

/// Moves `stream` out of the caller's hands and opens it (a failure releases it).
///
/// # Safety
/// NULL or a valid C Stream Interface struct.
#[cfg(feature = "prep")]
unsafe fn take_stream(
    stream: *mut ArrowArrayStream,
) -> Result<rivet_prep::arrow::RecordBatches, Box<rivet_error_t>> {
    // SAFETY: NULL or valid (the caller's contract).
    let s = unsafe { stream.as_mut() }.ok_or_else(|| rivet_error_t::invalid_argument("stream is NULL"))?;
    if s.release.is_none() {
        return Err(rivet_error_t::invalid_argument(
            "stream is already released (its release callback is NULL)",
        ));
    }
    // SAFETY: the layout is the specification's, field for field; the original is marked
    // released at once, so exactly one owner remains.
    let owned = unsafe { ptr::read(ptr::from_mut(s).cast::<rivet_prep::arrow::ArrowArrayStream>()) };
    s.release = None;
    // SAFETY: a valid stream (the caller's contract).
    unsafe { rivet_prep::arrow::RecordBatches::import(owned) }.map_err(prep_error)
}

/// Every batch of the stream transformed, in order, with rows numbered across batches.
#[cfg(feature = "prep")]
fn stream_features(
    pipeline: &rivet_pipeline_t,
    batches: rivet_prep::arrow::RecordBatches,
    mut each: impl FnMut(rivet::Tensor) -> Result<(), Box<rivet_error_t>>,
) -> Result<usize, Box<rivet_error_t>> {
    let mut rows = 0;
    for df in batches {
        let df = df.map_err(prep_error)?;
        let (features, _) = pipeline.pipeline.transform_rows(&df, rows).map_err(prep_error)?;
        rows += df.height();
        each(features)?;
    }
    Ok(rows)
}

/// Transforms every record batch of an Arrow C stream (`struct ArrowArrayStream`, whose schema
/// is a struct of columns) with the pipeline. `*out` receives one `[rows, features]` f32
/// tensor of all the batches in order (`[0, features]` for a stream without rows), freed with
/// `rivet_tensor_free`; untouched on failure. Rows in error messages count across batches.
///
/// Ownership: Rivet takes `stream` whenever it is non-NULL and unreleased, also when the call
/// fails; its release callback runs exactly once, before this returns, and the caller's struct
/// is marked released. Each batch is released once it is transformed, so memory holds one
/// batch and the features.
///
/// Thread-safe: one pipeline may transform on many threads at once.
///
/// # Safety
/// `pipeline` NULL or live; `stream` NULL or a valid C Stream Interface struct whose batches
/// follow the C Data Interface; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rivet_pipeline_transform_arrow_stream(
    pipeline: *const rivet_pipeline_t,
    stream: *mut ArrowArrayStream,
    out: *mut *mut rivet_tensor_t,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        #[cfg(feature = "prep")]
        {
            // SAFETY: the caller's contract; taken first so that every failure releases it.
            let batches = unsafe { take_stream(stream) }?;
            not_null(out, "out")?;
            // SAFETY: a non-NULL pipeline lives until rivet_pipeline_free.
            let pipeline = unsafe { arg(pipeline, "pipeline") }?;
            let mut parts = Vec::new();
            stream_features(pipeline, batches, |features| {
                parts.push(features);
                Ok(())
            })?;
            let features = if parts.is_empty() {
                rivet::Tensor::zeros(rivet::DType::F32, &[0, pipeline.names.len()])?
            } else {
                rivet::Tensor::concat(&parts.iter().map(|t| t.view()).collect::<Vec<_>>())?
            };
            // SAFETY: checked non-NULL; writable by the caller's contract.
            unsafe { rivet_tensor_t::new(features).write_to(out) };
            Ok(())
        }
        #[cfg(not(feature = "prep"))]
        {
            let _ = (pipeline, stream, out);
            Err(unavailable())
        }
    })
}

/// Raw tables in, predictions out, for a whole Arrow C stream: each record batch through the
/// pipeline and the model, the outputs of all batches joined along rows. `*out` receives them,
/// freed with `rivet_outputs_free`; untouched on failure. A stream without batches is an error
/// (`RIVET_ERROR_PREPROCESS`). Ownership of `stream` as in
/// `rivet_pipeline_transform_arrow_stream`.
///
/// Thread-safe: as `rivet_model_run`.
///
/// # Safety
/// As `rivet_pipeline_transform_arrow_stream`; `model` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn rivet_model_predict_arrow_stream(
    model: *const rivet_model_t,
    pipeline: *const rivet_pipeline_t,
    stream: *mut ArrowArrayStream,
    out: *mut *mut rivet_outputs_t,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        #[cfg(feature = "prep")]
        {
            // SAFETY: the caller's contract; taken first so that every failure releases it.
            let batches = unsafe { take_stream(stream) }?;
            not_null(out, "out")?;
            // SAFETY: non-NULL handles live until their *_free.
            let (model, pipeline) = unsafe { (arg(model, "model")?, arg(pipeline, "pipeline")?) };
            let mut per_output: Vec<Vec<rivet::Tensor>> = Vec::new();
            stream_features(pipeline, batches, |features| {
                let results = model.model.run_tensors(rivet::Inputs::Positional(vec![features.view()]))?;
                per_output.resize_with(results.len(), Vec::new);
                for (parts, tensor) in per_output.iter_mut().zip(results) {
                    parts.push(tensor);
                }
                Ok(())
            })?;
            if per_output.is_empty() {
                return Err(rivet_error_t::new(
                    RIVET_ERROR_PREPROCESS,
                    "the Arrow stream held no record batch",
                ));
            }
            let joined = per_output
                .iter()
                .map(|parts| rivet::Tensor::concat(&parts.iter().map(|t| t.view()).collect::<Vec<_>>()))
                .collect::<rivet::Result<Vec<_>>>()?;
            // SAFETY: checked non-NULL; writable by the caller's contract.
            unsafe { crate::run::outputs_of(model, joined).write_to(out) };
            Ok(())
        }
        #[cfg(not(feature = "prep"))]
        {
            let _ = (model, pipeline, stream, out);
            Err(unavailable())
        }
    })
}
