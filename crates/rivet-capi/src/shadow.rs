//! Shadow mode from C: `rivet_shadow_new` wraps a primary and a candidate model into one
//! `rivet_model_t` that answers with the primary and compares the candidate on a thread of its
//! own (see `rivet::shadow`).

use std::ffi::c_char;
use std::sync::Arc;

use rivet::shadow::{CaptureOptions, Latency};
use rivet::{Shadow, ShadowOptions};

use crate::error::{arg, ffi_boundary, not_null, rivet_error_t, RIVET_ERROR_INVALID_OPTION};
use crate::handle::Handle;
use crate::model::rivet_model_t;
use crate::options::path_arg;

/// How a shadow samples, compares and captures. Created by `rivet_shadow_options_new` (tolerances
/// 1e-5, every request, a queue of 64, no capture), freed by `rivet_shadow_options_free`. Not for
/// concurrent modification.
pub struct rivet_shadow_options_t {
    inner: ShadowOptions,
}

impl Handle for rivet_shadow_options_t {}

/// What a shadow has done so far (`rivet_shadow_stats`). Latencies are in milliseconds over the
/// most recent runs; 0 before any.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct rivet_shadow_stats_t {
    /// Requests the primary answered.
    pub requests: u64,
    /// Requests left out by sampling.
    pub skipped: u64,
    /// Comparisons dropped because the queue was full.
    pub dropped: u64,
    /// Requests compared.
    pub compared: u64,
    /// Compared requests whose every output matched.
    pub matched: u64,
    /// Compared requests with an output outside the tolerance.
    pub diverged: u64,
    /// Requests on which the candidate failed or panicked.
    pub candidate_errors: u64,
    /// Divergent requests captured.
    pub captured: u64,
    /// Captures that could not be written.
    pub capture_errors: u64,
    /// The primary's median run time.
    pub primary_p50_ms: f64,
    /// The primary's 99th-percentile run time.
    pub primary_p99_ms: f64,
    /// The candidate's median run time.
    pub candidate_p50_ms: f64,
    /// The candidate's 99th-percentile run time.
    pub candidate_p99_ms: f64,
}

/// The options a setter changes, or an error when they are NULL.
///
/// # Safety
/// `options` must be NULL or a live handle that nothing else uses during the call.
unsafe fn options_arg<'a>(
    options: *mut rivet_shadow_options_t,
) -> Result<&'a mut rivet_shadow_options_t, Box<rivet_error_t>> {
    // SAFETY: the caller's contract.
    unsafe { options.as_mut() }.ok_or_else(|| rivet_error_t::invalid_argument("options is NULL"))
}

fn invalid_option(message: String) -> Box<rivet_error_t> {
    rivet_error_t::new(RIVET_ERROR_INVALID_OPTION, message)
}

/// Creates shadow options with the defaults. `*out` receives options the caller frees with
/// `rivet_shadow_options_free`; untouched on failure.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rivet_shadow_options_new(
    out: *mut *mut rivet_shadow_options_t,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        not_null(out, "out")?;
        // SAFETY: checked non-NULL; writable by the caller's contract.
        unsafe { rivet_shadow_options_t { inner: ShadowOptions::default() }.write_to(out) };
        Ok(())
    })
}

/// Frees shadow options. NULL is ignored.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_shadow_options_free(options: *mut rivet_shadow_options_t) {
    // SAFETY: the caller's contract.
    unsafe { Handle::free(options) }
}

/// Sets the tolerances: an element matches when `|candidate − primary| ≤ atol + rtol·|primary|`.
/// `RIVET_ERROR_INVALID_OPTION` when either is negative or not a number.
///
/// # Safety
/// `options` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn rivet_shadow_options_set_tolerance(
    options: *mut rivet_shadow_options_t,
    atol: f64,
    rtol: f64,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        // SAFETY: the caller's contract.
        let options = unsafe { options_arg(options) }?;
        if !(atol >= 0.0 && rtol >= 0.0) {
            return Err(invalid_option(format!(
                "tolerances must be 0 or more, got atol {atol} and rtol {rtol}"
            )));
        }
        options.inner.atol = atol;
        options.inner.rtol = rtol;
        Ok(())
    })
}

/// Sets the share of requests compared, from 0 to 1, spread evenly (0.25: every fourth).
///
/// # Safety
/// `options` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn rivet_shadow_options_set_sample(
    options: *mut rivet_shadow_options_t,
    sample: f64,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        // SAFETY: the caller's contract.
        let options = unsafe { options_arg(options) }?;
        if !(0.0..=1.0).contains(&sample) {
            return Err(invalid_option(format!("sample {sample} is not between 0 and 1")));
        }
        options.inner.sample = sample;
        Ok(())
    })
}

/// Sets how many comparisons may be pending at once, the one the candidate is running included
/// (at least 1); beyond it comparisons are dropped and counted.
///
/// # Safety
/// `options` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn rivet_shadow_options_set_queue(
    options: *mut rivet_shadow_options_t,
    queue: usize,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        // SAFETY: the caller's contract.
        let options = unsafe { options_arg(options) }?;
        if queue == 0 {
            return Err(invalid_option("the queue must hold at least 1 request".into()));
        }
        options.inner.queue = queue;
        Ok(())
    })
}

/// Captures divergent requests into `dir` (NUL-terminated path, created when missing), keeping
/// at most `max_count` of them and `max_bytes` bytes, the oldest going first.
///
/// # Safety
/// `options` must be NULL or a live handle; `dir` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn rivet_shadow_options_set_capture(
    options: *mut rivet_shadow_options_t,
    dir: *const c_char,
    max_count: usize,
    max_bytes: u64,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        // SAFETY: the caller's contract.
        let options = unsafe { options_arg(options) }?;
        // SAFETY: the caller's contract.
        let dir = unsafe { path_arg(dir, "dir") }?;
        options.inner.capture = Some(CaptureOptions { dir, max_count, max_bytes });
        Ok(())
    })
}

/// Wraps `primary` and `candidate` into one model that answers with the primary and runs the
/// candidate on the same inputs on a thread of its own. Both are borrowed: the shadow keeps its
/// own references, so either may be freed afterwards. `options` may be NULL for the defaults.
/// `*out` receives a model usable with every `rivet_model_*` call, freed with
/// `rivet_model_free` (which waits for the comparison in progress); untouched on failure
/// (`RIVET_ERROR_INVALID_INPUT` when the two signatures differ, naming how).
///
/// # Safety
/// `primary`, `candidate` and `options` must be NULL or live handles; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rivet_shadow_new(
    primary: *const rivet_model_t,
    candidate: *const rivet_model_t,
    options: *const rivet_shadow_options_t,
    out: *mut *mut rivet_model_t,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        not_null(out, "out")?;
        // SAFETY: the caller's contract.
        let (primary, candidate) = unsafe { (arg(primary, "primary")?, arg(candidate, "candidate")?) };
        // SAFETY: the caller's contract.
        let options = unsafe { options.as_ref() }.map_or_else(ShadowOptions::default, |o| o.inner.clone());
        let shadow = Arc::new(Shadow::new(primary.shared_model(), candidate.shared_model(), options)?);
        let handle = rivet_model_t::new(shadow.clone(), Some(shadow));
        // SAFETY: checked non-NULL; writable by the caller's contract.
        unsafe { handle.write_to(out) };
        Ok(())
    })
}

/// Writes the shadow's counts and latencies to `*out`. `RIVET_ERROR_INVALID_ARGUMENT` when
/// `model` is not a shadow. Thread-safe.
///
/// # Safety
/// `model` must be NULL or a live handle; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rivet_shadow_stats(
    model: *const rivet_model_t,
    out: *mut rivet_shadow_stats_t,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        not_null(out, "out")?;
        // SAFETY: the caller's contract.
        let shadow = shadow_of(unsafe { arg(model, "model")? })?;
        let s = shadow.stats();
        let (p, c): (Latency, Latency) = (s.primary_latency, s.candidate_latency);
        let stats = rivet_shadow_stats_t {
            requests: s.requests,
            skipped: s.skipped,
            dropped: s.dropped,
            compared: s.compared,
            matched: s.matched,
            diverged: s.diverged,
            candidate_errors: s.candidate_errors,
            captured: s.captured,
            capture_errors: s.capture_errors,
            primary_p50_ms: p.p50_ms,
            primary_p99_ms: p.p99_ms,
            candidate_p50_ms: c.p50_ms,
            candidate_p99_ms: c.p99_ms,
        };
        // SAFETY: checked non-NULL; writable by the caller's contract.
        unsafe { out.write(stats) };
        Ok(())
    })
}

/// Waits until every queued comparison is done. `RIVET_ERROR_INVALID_ARGUMENT` when `model` is
/// not a shadow.
///
/// # Safety
/// `model` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn rivet_shadow_flush(model: *const rivet_model_t) -> *mut rivet_error_t {
    ffi_boundary(|| {
        // SAFETY: the caller's contract.
        shadow_of(unsafe { arg(model, "model")? })?.flush();
        Ok(())
    })
}

fn shadow_of(model: &rivet_model_t) -> Result<&Shadow, Box<rivet_error_t>> {
    model.shadow.as_deref().ok_or_else(|| {
        rivet_error_t::invalid_argument("model is not a shadow (make one with rivet_shadow_new)")
    })
}
