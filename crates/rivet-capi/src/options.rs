//! `rivet_load_options_t`: how a model is loaded, with backends chosen by name and their own
//! options set as `key = value` strings.

use std::ffi::{c_char, CStr};

use rivet::{Backend, Device, LoadOptions};

use crate::error::{ffi_boundary, not_null, rivet_error_t, RIVET_ERROR_INVALID_OPTION};
use crate::handle::Handle;

/// Reads a NUL-terminated UTF-8 argument, or an error naming it.
///
/// # Safety
/// A non-NULL `s` must point to a NUL-terminated string.
pub(crate) unsafe fn utf8<'a>(s: *const c_char, name: &str) -> Result<&'a str, Box<rivet_error_t>> {
    if s.is_null() {
        return Err(rivet_error_t::invalid_argument(format!("{name} is NULL")));
    }
    // SAFETY: the caller's contract.
    unsafe { CStr::from_ptr(s) }
        .to_str()
        .map_err(|_| rivet_error_t::invalid_argument(format!("{name} is not valid UTF-8")))
}

/// Reads a NUL-terminated path argument as the bytes it is (Linux paths need not be UTF-8), or
/// an error naming it.
///
/// # Safety
/// A non-NULL `s` must point to a NUL-terminated string.
pub(crate) unsafe fn path_arg(
    s: *const c_char,
    name: &str,
) -> Result<std::path::PathBuf, Box<rivet_error_t>> {
    use std::os::unix::ffi::OsStrExt;
    if s.is_null() {
        return Err(rivet_error_t::invalid_argument(format!("{name} is NULL")));
    }
    // SAFETY: the caller's contract.
    let bytes = unsafe { CStr::from_ptr(s) }.to_bytes();
    Ok(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}

/// Where a model runs (`RIVET_DEVICE_*`).
pub type rivet_device_t = u32;
/// The CPU.
pub const RIVET_DEVICE_CPU: rivet_device_t = 0;
/// A CUDA GPU (with an ordinal).
pub const RIVET_DEVICE_CUDA: rivet_device_t = 1;

/// Options for `rivet_model_load`. Created by `rivet_load_options_new`, freed by
/// `rivet_load_options_free`. Not for concurrent modification; a `const` one may be read by
/// several loads at once.
pub struct rivet_load_options_t {
    pub(crate) inner: LoadOptions,
}

/// Creates load options with the defaults: backend "auto", CPU, library default threads, no
/// backend options. `*out` receives options the caller frees with `rivet_load_options_free`;
/// untouched on failure.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rivet_load_options_new(out: *mut *mut rivet_load_options_t) -> *mut rivet_error_t {
    ffi_boundary(|| {
        not_null(out, "out")?;
        let options = rivet_load_options_t { inner: LoadOptions::default() };
        // SAFETY: checked non-NULL; writable by the caller's contract.
        unsafe { options.write_to(out) };
        Ok(())
    })
}

/// Frees load options. NULL is ignored.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_load_options_free(options: *mut rivet_load_options_t) {
    // SAFETY: the caller's contract: NULL, or a live handle Rivet made, given back once.
    unsafe { Handle::free(options) }
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

/// Sets the backend by name: "auto" (the default: chosen by the file's format), "tch", "ort",
/// "candle", or the name of a backend registered at run time. `name` is copied. A name that is
/// not registered fails here with `RIVET_ERROR_INVALID_OPTION`, listing the registered ones.
///
/// # Safety
/// `options` must be NULL or live options not used by another call; `name` NULL or
/// NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn rivet_load_options_set_backend(
    options: *mut rivet_load_options_t,
    name: *const c_char,
) -> *mut rivet_error_t {
    with_options(options, |o| {
        // SAFETY: the caller's contract.
        let backend: Backend = unsafe { utf8(name, "name") }?.parse()?;
        if !backend.is_auto() {
            rivet::backend(&backend)?;
        }
        o.backend = backend;
        Ok(())
    })
}

/// Sets an option that belongs to one backend, as strings (all copied): ORT's `optimization`
/// (disable, basic, extended, all) and `instances` (sessions for concurrent runs), tch's `spec`
/// (a spec file path). `backend` NULL means the backend set with `rivet_load_options_set_backend`
/// (an error while that is "auto"). The backend checks its options when it loads: an unknown
/// key or a bad value fails `rivet_model_load` with `RIVET_ERROR_INVALID_OPTION`, naming the key
/// and listing the known ones.
///
/// # Safety
/// As `rivet_load_options_set_backend`; `backend` NULL or NUL-terminated, `key` and `value`
/// NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn rivet_load_options_set_option(
    options: *mut rivet_load_options_t,
    backend: *const c_char,
    key: *const c_char,
    value: *const c_char,
) -> *mut rivet_error_t {
    with_options(options, |o| {
        let backend: Backend = if backend.is_null() {
            if o.backend.is_auto() {
                return Err(rivet_error_t::new(
                    RIVET_ERROR_INVALID_OPTION,
                    "backend is NULL and the options choose no backend (\"auto\"): name the backend \
                     the option is for",
                ));
            }
            o.backend.clone()
        } else {
            // SAFETY: the caller's contract.
            unsafe { utf8(backend, "backend") }?.parse()?
        };
        // SAFETY: the caller's contract.
        let key = unsafe { utf8(key, "key") }?.trim();
        // SAFETY: the caller's contract.
        let value = unsafe { utf8(value, "value") }?.trim();
        if key.is_empty() {
            return Err(rivet_error_t::new(RIVET_ERROR_INVALID_OPTION, "key is empty"));
        }
        o.set_option(&backend, key, value);
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
/// process-wide; for candle it is a pool of that many threads owned by the model.
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

/// Sets the threads used to run independent operators; 0 means the library's default. candle
/// runs nodes one after another and refuses more than 1.
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
