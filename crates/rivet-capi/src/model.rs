//! Loading models, their signatures, and running them.

use std::ffi::{c_char, CStr, CString};
use std::path::PathBuf;
use std::ptr;

use rivet::{Backend, Device, GraphOptimization, Inputs, LoadOptions, Model, TensorSpec, TensorView};

use crate::error::{arg, ffi_boundary, ffi_infallible, not_null, rivet_error_t};
use crate::tensor::{dtype_code, rivet_dtype_t, rivet_tensor_t, RIVET_DTYPE_UNKNOWN};

/// Which backend loads a model (`RIVET_BACKEND_*`).
pub type rivet_backend_t = u32;
/// Chosen by the file's format (TorchScript: tch; ONNX: ort, then candle).
pub const RIVET_BACKEND_AUTO: rivet_backend_t = 0;
/// libtorch (TorchScript).
pub const RIVET_BACKEND_TCH: rivet_backend_t = 1;
/// ONNX Runtime (ONNX).
pub const RIVET_BACKEND_ORT: rivet_backend_t = 2;
/// Candle (ONNX, pure Rust).
pub const RIVET_BACKEND_CANDLE: rivet_backend_t = 3;

/// Where a model runs (`RIVET_DEVICE_*`).
pub type rivet_device_t = u32;
/// The CPU.
pub const RIVET_DEVICE_CPU: rivet_device_t = 0;
/// A CUDA GPU (with an ordinal).
pub const RIVET_DEVICE_CUDA: rivet_device_t = 1;

/// ONNX Runtime graph optimization level (`RIVET_OPTIMIZATION_*`).
pub type rivet_optimization_t = u32;
/// No graph rewrites.
pub const RIVET_OPTIMIZATION_DISABLE: rivet_optimization_t = 0;
/// Constant folding and redundant node removal.
pub const RIVET_OPTIMIZATION_BASIC: rivet_optimization_t = 1;
/// Basic plus node fusions.
pub const RIVET_OPTIMIZATION_EXTENDED: rivet_optimization_t = 2;
/// Everything (the default).
pub const RIVET_OPTIMIZATION_ALL: rivet_optimization_t = 3;

fn backend_from_code(code: rivet_backend_t) -> Result<Backend, Box<rivet_error_t>> {
    match code {
        RIVET_BACKEND_AUTO => Ok(Backend::Auto),
        RIVET_BACKEND_TCH => Ok(Backend::Tch),
        RIVET_BACKEND_ORT => Ok(Backend::Ort),
        RIVET_BACKEND_CANDLE => Ok(Backend::Candle),
        other => Err(rivet_error_t::invalid_argument(format!(
            "backend {other} is not a RIVET_BACKEND_* value (0 to 3)"
        ))),
    }
}

fn backend_code(backend: Backend) -> rivet_backend_t {
    match backend {
        Backend::Auto => RIVET_BACKEND_AUTO,
        Backend::Tch => RIVET_BACKEND_TCH,
        Backend::Ort => RIVET_BACKEND_ORT,
        Backend::Candle => RIVET_BACKEND_CANDLE,
    }
}

/// Reads a NUL-terminated UTF-8 argument, or an error naming it.
///
/// # Safety
/// A non-NULL `s` must point to a NUL-terminated string.
unsafe fn utf8<'a>(s: *const c_char, name: &str) -> Result<&'a str, Box<rivet_error_t>> {
    if s.is_null() {
        return Err(rivet_error_t::invalid_argument(format!("{name} is NULL")));
    }
    // SAFETY: the caller's contract.
    unsafe { CStr::from_ptr(s) }
        .to_str()
        .map_err(|_| rivet_error_t::invalid_argument(format!("{name} is not valid UTF-8")))
}

/// Options for `rivet_model_load`. Created by `rivet_load_options_new`, freed by
/// `rivet_load_options_free`. Not for concurrent modification; a `const` one may be read by
/// several loads at once.
pub struct rivet_load_options_t {
    inner: LoadOptions,
}

/// Creates load options with the defaults: auto backend, CPU, library default threads, all
/// graph optimizations, one ORT session. `*out` receives options the caller frees with
/// `rivet_load_options_free`; untouched on failure.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rivet_load_options_new(out: *mut *mut rivet_load_options_t) -> *mut rivet_error_t {
    ffi_boundary(|| {
        not_null(out, "out")?;
        let options = Box::new(rivet_load_options_t { inner: LoadOptions::default() });
        // SAFETY: checked non-NULL; writable by the caller's contract.
        unsafe { *out = Box::into_raw(options) };
        Ok(())
    })
}

/// Frees load options. NULL is ignored.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_load_options_free(options: *mut rivet_load_options_t) {
    if !options.is_null() {
        // SAFETY: options are only created by Box::into_raw in rivet_load_options_new.
        ffi_infallible((), || drop(unsafe { Box::from_raw(options) }));
    }
}

/// Runs `f` on the options, or fails naming a NULL.
fn with_options(
    options: *mut rivet_load_options_t,
    f: impl FnOnce(&mut LoadOptions) -> Result<(), Box<rivet_error_t>>,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        // SAFETY: a non-NULL pointer comes from rivet_load_options_new and is not shared
        // mutably (the documented contract).
        let options =
            unsafe { options.as_mut() }.ok_or_else(|| rivet_error_t::invalid_argument("options is NULL"))?;
        f(&mut options.inner)
    })
}

/// Sets the backend (`RIVET_BACKEND_*`).
///
/// # Safety
/// `options` must be NULL or live options not used by another call.
#[no_mangle]
pub unsafe extern "C" fn rivet_load_options_set_backend(
    options: *mut rivet_load_options_t,
    backend: rivet_backend_t,
) -> *mut rivet_error_t {
    with_options(options, |o| {
        o.backend = backend_from_code(backend)?;
        Ok(())
    })
}

/// Sets the device: `RIVET_DEVICE_CPU` (ordinal ignored) or `RIVET_DEVICE_CUDA` with an ordinal.
///
/// # Safety
/// As `rivet_load_options_set_backend`.
#[no_mangle]
pub unsafe extern "C" fn rivet_load_options_set_device(
    options: *mut rivet_load_options_t,
    device: rivet_device_t,
    ordinal: u32,
) -> *mut rivet_error_t {
    with_options(options, |o| {
        o.device = match device {
            RIVET_DEVICE_CPU => Device::Cpu,
            RIVET_DEVICE_CUDA => Device::Cuda(ordinal as usize),
            other => {
                return Err(rivet_error_t::invalid_argument(format!(
                    "device {other} is not a RIVET_DEVICE_* value (0 or 1)"
                )))
            }
        };
        Ok(())
    })
}

/// Sets the threads used inside one operator; 0 means the library's default. For tch this is
/// process-wide; candle refuses it (it reads `RAYON_NUM_THREADS`).
///
/// # Safety
/// As `rivet_load_options_set_backend`.
#[no_mangle]
pub unsafe extern "C" fn rivet_load_options_set_intra_op_threads(
    options: *mut rivet_load_options_t,
    threads: usize,
) -> *mut rivet_error_t {
    with_options(options, |o| {
        o.intra_op_threads = (threads > 0).then_some(threads);
        Ok(())
    })
}

/// Sets the threads used to run independent operators; 0 means the library's default.
///
/// # Safety
/// As `rivet_load_options_set_backend`.
#[no_mangle]
pub unsafe extern "C" fn rivet_load_options_set_inter_op_threads(
    options: *mut rivet_load_options_t,
    threads: usize,
) -> *mut rivet_error_t {
    with_options(options, |o| {
        o.inter_op_threads = (threads > 0).then_some(threads);
        Ok(())
    })
}

/// Sets how many ONNX Runtime sessions serve concurrent runs (at least 1).
///
/// # Safety
/// As `rivet_load_options_set_backend`.
#[no_mangle]
pub unsafe extern "C" fn rivet_load_options_set_instances(
    options: *mut rivet_load_options_t,
    instances: usize,
) -> *mut rivet_error_t {
    with_options(options, |o| {
        if instances == 0 {
            return Err(rivet_error_t::invalid_argument("instances is 0; at least one is needed"));
        }
        o.instances = instances;
        Ok(())
    })
}

/// Sets the ONNX Runtime graph optimization level (`RIVET_OPTIMIZATION_*`).
///
/// # Safety
/// As `rivet_load_options_set_backend`.
#[no_mangle]
pub unsafe extern "C" fn rivet_load_options_set_optimization(
    options: *mut rivet_load_options_t,
    level: rivet_optimization_t,
) -> *mut rivet_error_t {
    with_options(options, |o| {
        o.optimization = match level {
            RIVET_OPTIMIZATION_DISABLE => GraphOptimization::Disable,
            RIVET_OPTIMIZATION_BASIC => GraphOptimization::Basic,
            RIVET_OPTIMIZATION_EXTENDED => GraphOptimization::Extended,
            RIVET_OPTIMIZATION_ALL => GraphOptimization::All,
            other => {
                return Err(rivet_error_t::invalid_argument(format!(
                    "optimization {other} is not a RIVET_OPTIMIZATION_* value (0 to 3)"
                )))
            }
        };
        Ok(())
    })
}

/// Sets the spec file for a TorchScript model (NULL: the sidecar `NAME.spec.json`). `path` is
/// copied.
///
/// # Safety
/// As `rivet_load_options_set_backend`; `path` must be NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn rivet_load_options_set_spec_path(
    options: *mut rivet_load_options_t,
    path: *const c_char,
) -> *mut rivet_error_t {
    with_options(options, |o| {
        o.spec_path = if path.is_null() {
            None
        } else {
            // SAFETY: the caller's contract.
            Some(PathBuf::from(unsafe { utf8(path, "path") }?))
        };
        Ok(())
    })
}

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

struct Info {
    name: CString,
    dtype: rivet_dtype_t,
    shape: Option<Vec<i64>>,
}

impl Info {
    fn new(spec: &TensorSpec) -> Info {
        let mut name = spec.name.clone();
        name.retain(|c| c != '\0');
        Info {
            name: CString::new(name).unwrap_or_default(),
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
    model: Box<dyn Model>,
    inputs: Vec<Info>,
    outputs: Vec<Info>,
}

impl rivet_model_t {
    /// The Rust model behind the handle (for benchmarks comparing the two APIs).
    pub fn model(&self) -> &dyn Model {
        &*self.model
    }
}

/// Loads the model at `path` (NUL-terminated UTF-8). `options` may be NULL for the defaults;
/// it is borrowed for the call only. `*out` receives a model the caller frees with
/// `rivet_model_free`; untouched on failure (`RIVET_ERROR_MODEL_LOAD` names the path and the
/// backend; `RIVET_ERROR_UNSUPPORTED` for formats, operators, dtypes or devices a backend lacks).
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
        let path = unsafe { utf8(path, "path") }?;
        // SAFETY: the caller's contract.
        let defaults = LoadOptions::default();
        let options = unsafe { options.as_ref() }.map_or(&defaults, |o| &o.inner);
        let model = rivet::load(path, options)?;
        let signature = model.signature();
        let inputs = signature.inputs.iter().map(Info::new).collect();
        let outputs = signature.outputs.iter().map(Info::new).collect();
        let handle = Box::new(rivet_model_t { model, inputs, outputs });
        // SAFETY: checked non-NULL; writable by the caller's contract.
        unsafe { *out = Box::into_raw(handle) };
        Ok(())
    })
}

/// Frees a model. NULL is ignored. No other call may be using the model.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_model_free(model: *mut rivet_model_t) {
    if !model.is_null() {
        // SAFETY: models are only created by Box::into_raw in rivet_model_load.
        ffi_infallible((), || drop(unsafe { Box::from_raw(model) }));
    }
}

/// The backend that loaded the model (`RIVET_BACKEND_*`); `RIVET_BACKEND_AUTO` for NULL.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_model_backend(model: *const rivet_model_t) -> rivet_backend_t {
    // SAFETY: a non-NULL model lives until rivet_model_free.
    ffi_infallible(RIVET_BACKEND_AUTO, || {
        unsafe { model.as_ref() }.map_or(RIVET_BACKEND_AUTO, |m| backend_code(m.model.backend()))
    })
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

/// Runs the model.
///
/// - `inputs` holds `input_count` tensors, borrowed for the call. `input_names` is NULL (inputs
///   are in signature order) or holds `input_count` NUL-terminated names (any order).
/// - `outputs` has room for `output_capacity` tensors. On success the first `n` entries receive
///   new tensors the caller owns (free each with `rivet_tensor_free`) and `*output_count`
///   (if not NULL) receives `n`. If the model returns more than `output_capacity` tensors the
///   call fails with `RIVET_ERROR_INVALID_ARGUMENT`. On failure nothing is written.
/// - Inputs are checked against the signature first: `RIVET_ERROR_INVALID_INPUT` names the
///   input and says expected vs found.
///
/// Thread-safe: one model may run on many threads at once (see the README for what each
/// backend does); input tensors may be shared between concurrent runs.
///
/// # Safety
/// Arrays must be NULL or hold the counts given; every pointer in them live.
#[no_mangle]
pub unsafe extern "C" fn rivet_model_run(
    model: *const rivet_model_t,
    input_names: *const *const c_char,
    inputs: *const *const rivet_tensor_t,
    input_count: usize,
    outputs: *mut *mut rivet_tensor_t,
    output_capacity: usize,
    output_count: *mut usize,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        // SAFETY: as in rivet_model_backend.
        let model = unsafe { arg(model, "model") }?;
        if input_count > 0 && inputs.is_null() {
            return Err(rivet_error_t::invalid_argument(format!(
                "inputs is NULL but input_count is {input_count}"
            )));
        }
        if outputs.is_null() && output_capacity > 0 {
            return Err(rivet_error_t::invalid_argument("outputs is NULL but output_capacity is not 0"));
        }
        let tensors: &[*const rivet_tensor_t] =
            // SAFETY: non-NULL with `input_count` entries (the caller's contract).
            if input_count == 0 { &[] } else { unsafe { std::slice::from_raw_parts(inputs, input_count) } };
        let mut views: Vec<TensorView<'_>> = Vec::with_capacity(input_count);
        for (i, &t) in tensors.iter().enumerate() {
            // SAFETY: each entry NULL or live (the caller's contract).
            let tensor = unsafe { arg(t, &format!("inputs[{i}]")) }?;
            views.push(tensor.view()?);
        }
        let bound = if input_names.is_null() {
            Inputs::Positional(views)
        } else {
            // SAFETY: non-NULL with `input_count` entries (the caller's contract).
            let names = unsafe { std::slice::from_raw_parts(input_names, input_count) };
            let mut named = Vec::with_capacity(input_count);
            for (i, (&name, view)) in names.iter().zip(views).enumerate() {
                // SAFETY: each entry NULL or NUL-terminated (the caller's contract).
                named.push((unsafe { utf8(name, &format!("input_names[{i}]")) }?, view));
            }
            Inputs::Named(named)
        };
        let results = model.model.run_tensors(bound)?;
        if results.len() > output_capacity {
            return Err(rivet_error_t::invalid_argument(format!(
                "outputs has room for {output_capacity} tensor(s), the model returned {}",
                results.len()
            )));
        }
        let count = results.len();
        for (i, tensor) in results.into_iter().enumerate() {
            // SAFETY: `outputs` has `output_capacity` >= count writable entries.
            unsafe { *outputs.add(i) = Box::into_raw(Box::new(rivet_tensor_t::owned(tensor))) };
        }
        // SAFETY: NULL or writable (the caller's contract).
        if let Some(n) = unsafe { output_count.as_mut() } {
            *n = count;
        }
        Ok(())
    })
}
