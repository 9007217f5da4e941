//! Running a model, and `rivet_outputs_t`: the tensors a run returns, owned by Rivet.

use std::ffi::{c_char, CString};
use std::ptr;
use std::sync::Arc;

use rivet::{Inputs, TensorView};

use crate::error::{arg, ffi_boundary, ffi_infallible, not_null, rivet_error_t};
use crate::handle::Handle;
use crate::model::{c_string, rivet_model_t};
use crate::options::utf8;
use crate::tensor::rivet_tensor_t;

/// The outputs of one run: a count, each tensor by index or by name, each borrowed from this
/// handle. Created by `rivet_model_run`, freed once with `rivet_outputs_free`, which frees the
/// tensors too (keep one longer with `rivet_tensor_clone`, which shares its data). Independent
/// of the model: it may outlive it. Read-only, so several threads may read one at once.
pub struct rivet_outputs_t {
    tensors: Vec<rivet_tensor_t>,
    names: Arc<[CString]>,
}

/// Runs the model.
///
/// - `inputs` holds `input_count` tensors, borrowed for the call. `input_names` is NULL (inputs
///   are in signature order) or holds `input_count` NUL-terminated names (any order).
/// - On success `*out` receives the outputs, which the caller frees with `rivet_outputs_free`.
///   On failure `*out` is untouched.
/// - Inputs are checked against the signature first: `RIVET_ERROR_INVALID_INPUT` names the
///   input and says expected vs found.
///
/// Thread-safe: one model may run on many threads at once (see the README for what each
/// backend does); input tensors may be shared between concurrent runs.
///
/// # Safety
/// Arrays must be NULL or hold the counts given; every pointer in them live; `out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn rivet_model_run(
    model: *const rivet_model_t,
    input_names: *const *const c_char,
    inputs: *const *const rivet_tensor_t,
    input_count: usize,
    out: *mut *mut rivet_outputs_t,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        not_null(out, "out")?;
        // SAFETY: a non-NULL model lives until rivet_model_free.
        let model = unsafe { arg(model, "model") }?;
        if input_count > 0 && inputs.is_null() {
            return Err(rivet_error_t::invalid_argument(format!(
                "inputs is NULL but input_count is {input_count}"
            )));
        }
        let tensors: &[*const rivet_tensor_t] =
            // SAFETY: non-NULL with `input_count` entries (the caller's contract).
            if input_count == 0 { &[] } else { unsafe { std::slice::from_raw_parts(inputs, input_count) } };
        let mut views: Vec<TensorView<'_>> = Vec::with_capacity(input_count);
        for (i, &t) in tensors.iter().enumerate() {
            // SAFETY: each entry NULL or live (the caller's contract).
            let tensor = unsafe { arg(t, &format!("inputs[{i}]")) }?;
            views.push(tensor.view());
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
        // SAFETY: checked non-NULL; writable by the caller's contract.
        unsafe { outputs_of(model, results).write_to(out) };
        Ok(())
    })
}

/// The outputs handle of a run of `model`.
pub(crate) fn outputs_of(model: &rivet_model_t, results: Vec<rivet::Tensor>) -> rivet_outputs_t {
    // Declared names are shared; a model that names none gets output_0, output_1...
    let names = if results.len() == model.output_names.len() {
        Arc::clone(&model.output_names)
    } else {
        (0..results.len()).map(|i| c_string(&format!("output_{i}"))).collect()
    };
    let tensors = results.into_iter().map(rivet_tensor_t::new).collect();
    rivet_outputs_t { tensors, names }
}

/// Frees the outputs of a run and the tensors borrowed from them. NULL is ignored. Tensors
/// cloned from them with `rivet_tensor_clone` stay valid.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_outputs_free(outputs: *mut rivet_outputs_t) {
    // SAFETY: the caller's contract: NULL, or a live handle Rivet made, given back once.
    unsafe { Handle::free(outputs) }
}

/// Number of output tensors; 0 for NULL.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_outputs_count(outputs: *const rivet_outputs_t) -> usize {
    // SAFETY: a non-NULL handle lives until rivet_outputs_free.
    ffi_infallible(0, || unsafe { outputs.as_ref() }.map_or(0, |o| o.tensors.len()))
}

/// Output `index` (0-based), or NULL when `outputs` is NULL or `index` is out of range.
/// Borrowed from `outputs`: valid until `rivet_outputs_free`; never pass it to
/// `rivet_tensor_free`.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_outputs_get(
    outputs: *const rivet_outputs_t,
    index: usize,
) -> *const rivet_tensor_t {
    ffi_infallible(ptr::null(), || {
        // SAFETY: a non-NULL handle lives until rivet_outputs_free.
        unsafe { outputs.as_ref() }.and_then(|o| o.tensors.get(index)).map_or(ptr::null(), |t| t as *const _)
    })
}

/// The name of output `index` (`output_N` where the model names none), or NULL when `outputs`
/// is NULL or `index` is out of range. Borrowed from `outputs`: valid until
/// `rivet_outputs_free`.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_outputs_name(outputs: *const rivet_outputs_t, index: usize) -> *const c_char {
    ffi_infallible(ptr::null(), || {
        // SAFETY: a non-NULL handle lives until rivet_outputs_free.
        unsafe { outputs.as_ref() }.and_then(|o| o.names.get(index)).map_or(ptr::null(), |n| n.as_ptr())
    })
}

/// The output called `name` into `*out` (borrowed from `outputs`, valid until
/// `rivet_outputs_free`); untouched on failure. An unknown name fails with
/// `RIVET_ERROR_INVALID_ARGUMENT` listing the output names.
///
/// # Safety
/// `outputs` NULL or live; `name` NULL or NUL-terminated; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rivet_outputs_by_name(
    outputs: *const rivet_outputs_t,
    name: *const c_char,
    out: *mut *const rivet_tensor_t,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        not_null(out, "out")?;
        // SAFETY: the caller's contract.
        let outputs = unsafe { arg(outputs, "outputs") }?;
        // SAFETY: the caller's contract.
        let wanted = unsafe { utf8(name, "name") }?;
        let index =
            outputs.names.iter().position(|n| n.to_bytes() == wanted.as_bytes()).ok_or_else(|| {
                let names: Vec<String> =
                    outputs.names.iter().map(|n| n.to_string_lossy().into_owned()).collect();
                rivet_error_t::invalid_argument(format!(
                    "no output is called \"{wanted}\" (outputs: {})",
                    names.join(", ")
                ))
            })?;
        // SAFETY: checked non-NULL; writable by the caller's contract.
        unsafe { *out = &outputs.tensors[index] };
        Ok(())
    })
}
