//! Loading models and reading their signatures.

use std::ffi::{c_char, CString};
use std::ptr;
use std::sync::Arc;

use rivet::{LoadOptions, Model, TensorSpec};

use crate::error::{arg, ffi_boundary, ffi_infallible, not_null, rivet_error_t};
use crate::handle::Handle;
use crate::options::{path_arg, rivet_load_options_t};
use crate::tensor::{dtype_code, rivet_dtype_t, RIVET_DTYPE_UNKNOWN};

/// What `rivet_model_input_info` / `rivet_model_output_info` report. Pointers are borrowed
/// from the model and valid until `rivet_model_free`.
#[repr(C)]
pub struct rivet_tensor_info_t {
    /// NUL-terminated UTF-8 name.
    pub name: *const c_char,
    /// `RIVET_DTYPE_*`, or `RIVET_DTYPE_UNKNOWN` when the model does not say.
    pub dtype: rivet_dtype_t,
    /// Number of dimensions, or -1 when the shape is unknown.
    pub rank: i64,
    /// `rank` sizes, -1 for a dynamic dimension; NULL when `rank` is 0 or -1.
    pub shape: *const i64,
}

pub(crate) struct Info {
    pub(crate) name: CString,
    dtype: rivet_dtype_t,
    shape: Option<Vec<i64>>,
}

/// A C string of `text`, without any NUL inside it.
pub(crate) fn c_string(text: &str) -> CString {
    let mut text = text.to_owned();
    text.retain(|c| c != '\0');
    CString::new(text).unwrap_or_default()
}

impl Info {
    fn new(spec: &TensorSpec) -> Info {
        Info {
            name: c_string(&spec.name),
            dtype: spec.dtype.map_or(RIVET_DTYPE_UNKNOWN, dtype_code),
            shape: spec.shape.as_ref().map(|dims| dims.iter().map(|d| d.as_i64()).collect()),
        }
    }

    fn to_c(&self) -> rivet_tensor_info_t {
        rivet_tensor_info_t {
            name: self.name.as_ptr(),
            dtype: self.dtype,
            rank: self.shape.as_ref().map_or(-1, |s| s.len() as i64),
            shape: match &self.shape {
                Some(s) if !s.is_empty() => s.as_ptr(),
                _ => ptr::null(),
            },
        }
    }
}

/// A loaded model. Thread-safe: `rivet_model_run` and the `rivet_model_*` getters may be called
/// from many threads at once on one model. Freed with `rivet_model_free`, once no call uses it.
pub struct rivet_model_t {
    pub(crate) model: Arc<dyn Model>,
    backend: CString,
    inputs: Vec<Info>,
    pub(crate) outputs: Vec<Info>,
    /// The declared output names, shared with every `rivet_outputs_t` of the model.
    pub(crate) output_names: Arc<[CString]>,
    /// The shadow behind the model, when `rivet_shadow_new` made it.
    pub(crate) shadow: Option<Arc<rivet::Shadow>>,
}

impl rivet_model_t {
    /// The handle of `model` (and of the shadow it is, if it is one).
    pub(crate) fn new(model: Arc<dyn Model>, shadow: Option<Arc<rivet::Shadow>>) -> rivet_model_t {
        let signature = model.signature();
        let inputs = signature.inputs.iter().map(Info::new).collect();
        let outputs = signature.outputs.iter().map(Info::new).collect();
        let output_names = signature.outputs.iter().map(|s| c_string(&s.name)).collect();
        let backend = c_string(model.backend().name());
        rivet_model_t { model, backend, inputs, outputs, output_names, shadow }
    }

    /// The Rust model behind the handle (for benchmarks comparing the two APIs).
    pub fn model(&self) -> &dyn Model {
        &*self.model
    }

    /// The shared Rust model behind the handle (to run the same model through another API).
    pub fn shared_model(&self) -> Arc<dyn Model> {
        Arc::clone(&self.model)
    }
}

/// Loads the model at `path` (NUL-terminated bytes, as Linux paths are: UTF-8 or not).
/// `options` may be NULL for the defaults;
/// it is borrowed for the call only. `*out` receives a model the caller frees with
/// `rivet_model_free`; untouched on failure (`RIVET_ERROR_MODEL_LOAD` names the path and the
/// backend; `RIVET_ERROR_UNSUPPORTED` for formats, operators, dtypes or devices a backend lacks).
///
/// The first model ONNX Runtime loads sets `ORT_DISABLE_TELEMETRY=1` in the process
/// environment, unless the variable is set already: ONNX Runtime's telemetry thread would race
/// its own static destructors at `exit()`. Set it to `0` before loading to keep the thread.
///
/// Thread-safe: may be called from any thread.
///
/// # Safety
/// `path` must be NULL or NUL-terminated; `options` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rivet_model_load(
    path: *const c_char,
    options: *const rivet_load_options_t,
    out: *mut *mut rivet_model_t,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        not_null(out, "out")?;
        // SAFETY: the caller's contract.
        let path = unsafe { path_arg(path, "path") }?;
        // SAFETY: the caller's contract.
        let defaults = LoadOptions::default();
        let options = unsafe { options.as_ref() }.map_or(&defaults, |o| &o.inner);
        let handle = rivet_model_t::new(rivet::load(path, options)?, None);
        // SAFETY: checked non-NULL; writable by the caller's contract.
        unsafe { handle.write_to(out) };
        Ok(())
    })
}

/// Frees a model. NULL is ignored. No other call may be using the model.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_model_free(model: *mut rivet_model_t) {
    // SAFETY: the caller's contract: NULL, or a live handle Rivet made, given back once.
    unsafe { Handle::free(model) }
}

/// The name of the backend that loaded the model ("tch", "ort", "candle" or a registered
/// backend's); "" for NULL. Borrowed from the model: valid until `rivet_model_free`.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_model_backend(model: *const rivet_model_t) -> *const c_char {
    // SAFETY: a non-NULL model lives until rivet_model_free.
    ffi_infallible(c"".as_ptr(), || unsafe { model.as_ref() }.map_or(c"".as_ptr(), |m| m.backend.as_ptr()))
}

/// Number of inputs; 0 for NULL.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_model_input_count(model: *const rivet_model_t) -> usize {
    // SAFETY: as in rivet_model_backend.
    ffi_infallible(0, || unsafe { model.as_ref() }.map_or(0, |m| m.inputs.len()))
}

/// Number of outputs the model declares; 0 for NULL (or when the model does not say).
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_model_output_count(model: *const rivet_model_t) -> usize {
    // SAFETY: as in rivet_model_backend.
    ffi_infallible(0, || unsafe { model.as_ref() }.map_or(0, |m| m.outputs.len()))
}

fn info(
    model: *const rivet_model_t,
    index: usize,
    out: *mut rivet_tensor_info_t,
    outputs: bool,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        not_null(out, "out")?;
        // SAFETY: as in rivet_model_backend.
        let model = unsafe { arg(model, "model") }?;
        let (list, what) = if outputs { (&model.outputs, "output") } else { (&model.inputs, "input") };
        let item = list.get(index).ok_or_else(|| {
            rivet_error_t::invalid_argument(format!(
                "{what} index {index} is out of range (the model has {})",
                list.len()
            ))
        })?;
        // SAFETY: checked non-NULL; writable by the caller's contract.
        unsafe { *out = item.to_c() };
        Ok(())
    })
}

/// Describes input `index` (0-based) into `*out`; untouched on failure.
///
/// # Safety
/// `model` must be NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rivet_model_input_info(
    model: *const rivet_model_t,
    index: usize,
    out: *mut rivet_tensor_info_t,
) -> *mut rivet_error_t {
    info(model, index, out, false)
}

/// Describes output `index` (0-based) into `*out`; untouched on failure.
///
/// # Safety
/// As `rivet_model_input_info`.
#[no_mangle]
pub unsafe extern "C" fn rivet_model_output_info(
    model: *const rivet_model_t,
    index: usize,
    out: *mut rivet_tensor_info_t,
) -> *mut rivet_error_t {
    info(model, index, out, true)
}
