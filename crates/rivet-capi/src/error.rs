//! `rivet_error_t`: what every fallible call returns, and the panic boundary.

use crate::handle::Handle;
use std::ffi::{c_char, CString};
use std::ptr;

/// A stable error code (`RIVET_ERROR_*`). Values are never reused.
pub type rivet_error_code_t = u32;

/// A NULL pointer, an out-of-range enum value, a bad UTF-8 string or a too-small buffer.
pub const RIVET_ERROR_INVALID_ARGUMENT: rivet_error_code_t = 1;
/// The inputs do not match the model's signature (count, name, dtype, rank, dimension).
pub const RIVET_ERROR_INVALID_INPUT: rivet_error_code_t = 2;
/// Tensor data does not match its dtype and shape (byte size, alignment, bool bytes, DLPack).
pub const RIVET_ERROR_INVALID_TENSOR: rivet_error_code_t = 3;
/// A model file is missing, empty, truncated, corrupt, or not loadable by the backend.
pub const RIVET_ERROR_MODEL_LOAD: rivet_error_code_t = 4;
/// The backend does not support a format, dtype, device, operator or option.
pub const RIVET_ERROR_UNSUPPORTED: rivet_error_code_t = 5;
/// The backend failed while running (a libtorch exception, an ONNX Runtime status...).
pub const RIVET_ERROR_BACKEND: rivet_error_code_t = 6;
/// A file other than the model (a spec file) could not be read.
pub const RIVET_ERROR_IO: rivet_error_code_t = 7;
/// Rivet panicked; the panic was caught at the ABI boundary. Please report it.
pub const RIVET_ERROR_PANIC: rivet_error_code_t = 8;
/// A load option is malformed or unknown to its backend (the message lists the known keys), or
/// a backend name is not registered (the message lists the registered ones).
pub const RIVET_ERROR_INVALID_OPTION: rivet_error_code_t = 9;

/// An error: a code and a message. Returned by every fallible call (NULL means success); the
/// caller owns it and frees it with `rivet_error_free`. Not shared between threads.
pub struct rivet_error_t {
    code: rivet_error_code_t,
    message: CString,
}

impl rivet_error_t {
    /// A heap error for the caller to free.
    pub(crate) fn new(code: rivet_error_code_t, message: impl Into<String>) -> Box<rivet_error_t> {
        let mut text = message.into();
        text.retain(|c| c != '\0');
        let message = CString::new(text).unwrap_or_default();
        Box::new(rivet_error_t { code, message })
    }

    /// A `RIVET_ERROR_INVALID_ARGUMENT` error.
    pub(crate) fn invalid_argument(message: impl Into<String>) -> Box<rivet_error_t> {
        rivet_error_t::new(RIVET_ERROR_INVALID_ARGUMENT, message)
    }
}

impl From<rivet::Error> for Box<rivet_error_t> {
    fn from(err: rivet::Error) -> Self {
        // The message carries the causes too: C has no error chain to walk.
        rivet_error_t::new(err.kind().code(), err.message_with_causes())
    }
}

/// Result of the body of an export.
pub(crate) type FfiResult = Result<(), Box<rivet_error_t>>;

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let what = rivet::panics::panic_text(payload);
    format!("internal error (panic caught at the C ABI boundary): {what}")
}

/// Runs the body of a fallible export: an error becomes a `rivet_error_t*`, and a panic becomes
/// `RIVET_ERROR_PANIC` instead of unwinding into C.
pub(crate) fn ffi_boundary(body: impl FnOnce() -> FfiResult) -> *mut rivet_error_t {
    match rivet::panics::catch_quietly(body) {
        Ok(Ok(())) => ptr::null_mut(),
        Ok(Err(err)) => Handle::boxed_into_raw(err),
        Err(payload) => {
            Handle::boxed_into_raw(rivet_error_t::new(RIVET_ERROR_PANIC, panic_message(&*payload)))
        }
    }
}

/// Runs the body of an infallible export, returning `fallback` if it panics.
pub(crate) fn ffi_infallible<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    rivet::panics::catch_quietly(body).unwrap_or(fallback)
}

/// Fails naming `name` when `ptr` is NULL (for out-parameters and handles passed on).
pub(crate) fn not_null<T>(ptr: *const T, name: &str) -> Result<(), Box<rivet_error_t>> {
    if ptr.is_null() {
        Err(rivet_error_t::invalid_argument(format!("{name} is NULL")))
    } else {
        Ok(())
    }
}

/// Turns a possibly-NULL pointer argument into a reference, or an error naming the argument.
///
/// # Safety
/// A non-NULL `ptr` must point to a live, properly aligned `T`.
pub(crate) unsafe fn arg<'a, T>(ptr: *const T, name: &str) -> Result<&'a T, Box<rivet_error_t>> {
    // SAFETY: the caller's contract.
    unsafe { ptr.as_ref() }.ok_or_else(|| rivet_error_t::invalid_argument(format!("{name} is NULL")))
}

/// The error's code (`RIVET_ERROR_*`); 0 for NULL.
///
/// `error` is borrowed. Safe to call from any thread that may use `error`.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_error_code(error: *const rivet_error_t) -> rivet_error_code_t {
    // SAFETY: a non-NULL error comes from Rivet and is alive until rivet_error_free.
    ffi_infallible(0, || unsafe { error.as_ref() }.map_or(0, |e| e.code))
}

/// The error's message: NUL-terminated UTF-8 naming what was wrong; "" for NULL.
///
/// The string is borrowed from `error` and valid until `rivet_error_free(error)`.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_error_message(error: *const rivet_error_t) -> *const c_char {
    // SAFETY: as in rivet_error_code.
    ffi_infallible(c"".as_ptr(), || unsafe { error.as_ref() }.map_or(c"".as_ptr(), |e| e.message.as_ptr()))
}

/// Frees an error. NULL is allowed and ignored. Each error is freed exactly once.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_error_free(error: *mut rivet_error_t) {
    // SAFETY: the caller's contract: NULL, or a live handle Rivet made, given back once.
    unsafe { Handle::free(error) }
}
