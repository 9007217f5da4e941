//! `rivet_tensor_t`: tensors copied from, borrowed from, or exchanged as DLPack with the caller.

use std::ffi::c_void;
use std::ptr;

use rivet::{DType, Tensor, TensorView};

use crate::error::{arg, ffi_boundary, ffi_infallible, not_null, rivet_error_t, RIVET_ERROR_INVALID_TENSOR};
use crate::handle::Handle;

/// An element type (`RIVET_DTYPE_*`). Values are never reused.
pub type rivet_dtype_t = u32;

/// Not known (a model input whose dtype the model does not declare).
pub const RIVET_DTYPE_UNKNOWN: rivet_dtype_t = 0;
/// IEEE half precision.
pub const RIVET_DTYPE_F16: rivet_dtype_t = 1;
/// bfloat16.
pub const RIVET_DTYPE_BF16: rivet_dtype_t = 2;
/// IEEE single precision.
pub const RIVET_DTYPE_F32: rivet_dtype_t = 3;
/// IEEE double precision.
pub const RIVET_DTYPE_F64: rivet_dtype_t = 4;
/// int8_t.
pub const RIVET_DTYPE_I8: rivet_dtype_t = 5;
/// int16_t.
pub const RIVET_DTYPE_I16: rivet_dtype_t = 6;
/// int32_t.
pub const RIVET_DTYPE_I32: rivet_dtype_t = 7;
/// int64_t.
pub const RIVET_DTYPE_I64: rivet_dtype_t = 8;
/// uint8_t.
pub const RIVET_DTYPE_U8: rivet_dtype_t = 9;
/// bool, one byte holding 0 or 1.
pub const RIVET_DTYPE_BOOL: rivet_dtype_t = 10;

/// The C code of a dtype (the values match `DType`'s discriminants).
pub(crate) fn dtype_code(dtype: DType) -> rivet_dtype_t {
    dtype as rivet_dtype_t
}

/// The dtype of a C code, or an error naming the bad value.
pub(crate) fn dtype_from_code(code: rivet_dtype_t) -> Result<DType, Box<rivet_error_t>> {
    DType::ALL.into_iter().find(|d| *d as u32 == code).ok_or_else(|| {
        rivet_error_t::invalid_argument(format!(
            "dtype {code} is not a RIVET_DTYPE_* value (1 to {})",
            DType::ALL.len()
        ))
    })
}

// `rivet_tensor_shape` hands out the `usize` shape as `int64_t`: same size and layout here.
#[cfg(not(target_pointer_width = "64"))]
compile_error!("rivet-capi assumes 64-bit pointers (usize shapes are exposed as int64_t)");

/// A tensor handle: a Rivet [`Tensor`], whose bytes are Rivet's own, shared with other handles
/// (outputs, clones), or foreign (a caller's view, a DLPack import) with one release path.
/// Created by `rivet_tensor_new`, `rivet_tensor_new_view`, `rivet_tensor_from_dlpack` or
/// `rivet_tensor_clone`; freed with `rivet_tensor_free`. Outputs of a run are borrowed from
/// their `rivet_outputs_t` instead.
pub struct rivet_tensor_t {
    pub(crate) tensor: Tensor,
}

impl rivet_tensor_t {
    /// A handle for `tensor`.
    pub(crate) fn new(tensor: Tensor) -> rivet_tensor_t {
        rivet_tensor_t { tensor }
    }

    /// A view of the data.
    pub(crate) fn view(&self) -> TensorView<'_> {
        self.tensor.view()
    }
}

/// Reads a C shape array into sizes, or an error naming the bad entry.
///
/// # Safety
/// A non-NULL `shape` must point to `rank` readable `int64_t`.
pub(crate) unsafe fn read_shape(shape: *const i64, rank: usize) -> Result<Vec<usize>, Box<rivet_error_t>> {
    if rank == 0 {
        return Ok(Vec::new());
    }
    if shape.is_null() {
        return Err(rivet_error_t::invalid_argument(format!("shape is NULL but rank is {rank}")));
    }
    if rank > 64 {
        return Err(rivet_error_t::invalid_argument(format!("rank {rank} is over Rivet's limit of 64")));
    }
    // SAFETY: the caller's contract.
    let dims = unsafe { std::slice::from_raw_parts(shape, rank) };
    dims.iter()
        .enumerate()
        .map(|(i, &d)| {
            usize::try_from(d).map_err(|_| {
                rivet_error_t::new(
                    RIVET_ERROR_INVALID_TENSOR,
                    format!("shape[{i}] is {d}; sizes must be >= 0"),
                )
            })
        })
        .collect()
}

/// Checks that `byte_len` is what dtype and shape need, and that `data` is non-NULL when needed.
fn check_data(
    dtype: DType,
    shape: &[usize],
    data: *const c_void,
    byte_len: usize,
) -> Result<(), Box<rivet_error_t>> {
    let needed = rivet::element_count(shape)?.checked_mul(dtype.size());
    if needed != Some(byte_len) {
        let needed = needed.map_or_else(|| "more than fits in memory".to_owned(), |n| format!("{n} bytes"));
        return Err(rivet_error_t::new(
            RIVET_ERROR_INVALID_TENSOR,
            format!("data is {byte_len} bytes but {dtype}{shape:?} needs {needed}"),
        ));
    }
    if data.is_null() && byte_len > 0 {
        return Err(rivet_error_t::invalid_argument("data is NULL"));
    }
    Ok(())
}

/// Checks the arguments shared by `rivet_tensor_new` and `rivet_tensor_new_view`.
///
/// # Safety
/// As those functions.
unsafe fn tensor_args(
    dtype: rivet_dtype_t,
    shape: *const i64,
    rank: usize,
    data: *const c_void,
    byte_len: usize,
    out: *mut *mut rivet_tensor_t,
) -> Result<(DType, Vec<usize>), Box<rivet_error_t>> {
    not_null(out, "out")?;
    let dtype = dtype_from_code(dtype)?;
    // SAFETY: the caller's contract.
    let shape = unsafe { read_shape(shape, rank) }?;
    check_data(dtype, &shape, data, byte_len)?;
    Ok((dtype, shape))
}

/// Creates a tensor holding a copy of `byte_len` bytes at `data`, row-major.
///
/// - `shape` points to `rank` sizes (may be NULL when `rank` is 0, a scalar); borrowed for the
///   call only. `data` is borrowed for the call only; it may be NULL when `byte_len` is 0.
/// - `byte_len` must equal the element count times the dtype's size, or the call fails with
///   `RIVET_ERROR_INVALID_TENSOR`; bool bytes must be 0 or 1.
/// - On success `*out` receives a tensor the caller owns and frees with `rivet_tensor_free`;
///   on failure `*out` is untouched.
///
/// Thread-safe: may be called from any thread.
///
/// # Safety
/// Pointers must be NULL or valid for the sizes given.
#[no_mangle]
pub unsafe extern "C" fn rivet_tensor_new(
    dtype: rivet_dtype_t,
    shape: *const i64,
    rank: usize,
    data: *const c_void,
    byte_len: usize,
    out: *mut *mut rivet_tensor_t,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        // SAFETY: the caller's contract.
        let (dtype, shape) = unsafe { tensor_args(dtype, shape, rank, data, byte_len, out) }?;
        let bytes: &[u8] = if byte_len == 0 {
            &[]
        } else {
            // SAFETY: non-NULL with `byte_len` readable bytes (the caller's contract).
            unsafe { std::slice::from_raw_parts(data.cast::<u8>(), byte_len) }
        };
        let tensor = Tensor::from_bytes(dtype, &shape, bytes)?;
        // SAFETY: `out` is non-NULL (checked) and writable (the caller's contract).
        unsafe { rivet_tensor_t::new(tensor).write_to(out) };
        Ok(())
    })
}

/// Creates a tensor that borrows `byte_len` bytes at `data` without copying them.
///
/// Same arguments and checks as `rivet_tensor_new`, and `data` must be aligned to the dtype's
/// size. Lifetime rule: the caller keeps `data` alive and unmodified until the tensor is freed
/// with `rivet_tensor_free`; `rivet_tensor_data` returns `data` itself. `shape` is copied.
///
/// Thread-safe: may be called from any thread.
///
/// # Safety
/// Pointers must be NULL or valid for the sizes given, and `data` must outlive the tensor.
#[no_mangle]
pub unsafe extern "C" fn rivet_tensor_new_view(
    dtype: rivet_dtype_t,
    shape: *const i64,
    rank: usize,
    data: *const c_void,
    byte_len: usize,
    out: *mut *mut rivet_tensor_t,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        // SAFETY: the caller's contract.
        let (dtype, shape) = unsafe { tensor_args(dtype, shape, rank, data, byte_len, out) }?;
        // SAFETY: the caller keeps `byte_len` bytes at `data` alive and unchanged until the tensor
        // is freed (the documented contract); nothing is released, the caller owns them.
        let tensor = unsafe { Tensor::from_foreign(dtype, &shape, data.cast(), byte_len, Box::new(|| {})) }?;
        // SAFETY: as in rivet_tensor_new.
        unsafe { rivet_tensor_t::new(tensor).write_to(out) };
        Ok(())
    })
}

/// Frees a tensor (and, for a DLPack import, calls the producer's deleter once no other handle
/// shares the data). NULL is ignored. Each tensor is freed exactly once, when no call is using
/// it. Never pass a tensor borrowed from `rivet_outputs_t`.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_tensor_free(tensor: *mut rivet_tensor_t) {
    // SAFETY: the caller's contract: NULL, or a live handle Rivet made, given back once.
    unsafe { Handle::free(tensor) }
}

/// The tensor's dtype (`RIVET_DTYPE_*`); `RIVET_DTYPE_UNKNOWN` for NULL. Borrows `tensor`.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_tensor_dtype(tensor: *const rivet_tensor_t) -> rivet_dtype_t {
    // SAFETY: a non-NULL tensor comes from Rivet and lives until rivet_tensor_free.
    ffi_infallible(RIVET_DTYPE_UNKNOWN, || {
        unsafe { tensor.as_ref() }.map_or(RIVET_DTYPE_UNKNOWN, |t| dtype_code(t.tensor.dtype()))
    })
}

/// The tensor's rank (0 for a scalar), or -1 for NULL: the type and the -1 of
/// `rivet_tensor_info_t.rank`, so a scalar and a missing tensor are told apart. Borrows
/// `tensor`.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_tensor_rank(tensor: *const rivet_tensor_t) -> i64 {
    // SAFETY: a non-NULL tensor comes from Rivet and lives until rivet_tensor_free.
    ffi_infallible(-1, || unsafe { tensor.as_ref() }.map_or(-1, |t| t.tensor.shape().len() as i64))
}

/// The tensor's `rank` sizes; NULL for NULL or a scalar (tell them apart by
/// `rivet_tensor_rank`). Borrowed from `tensor`: valid until
/// it is freed.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_tensor_shape(tensor: *const rivet_tensor_t) -> *const i64 {
    ffi_infallible(ptr::null(), || {
        // SAFETY: a non-NULL tensor comes from Rivet and lives until rivet_tensor_free.
        match unsafe { tensor.as_ref() } {
            Some(t) if !t.tensor.shape().is_empty() => t.tensor.shape().as_ptr().cast::<i64>(),
            _ => ptr::null(),
        }
    })
}

/// The tensor's bytes, row-major; NULL only for NULL. For an empty tensor (a zero dimension)
/// the pointer is non-NULL but addresses no bytes: read `rivet_tensor_byte_len` of them, none.
/// Borrowed from `tensor`: valid until it is freed. For a non-empty view this is the caller's
/// own pointer.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_tensor_data(tensor: *const rivet_tensor_t) -> *const c_void {
    ffi_infallible(ptr::null(), || {
        // SAFETY: a non-NULL tensor comes from Rivet and lives until rivet_tensor_free.
        // A slice's pointer is never NULL, also for no bytes.
        unsafe { tensor.as_ref() }.map_or(ptr::null(), |t| t.tensor.as_bytes().as_ptr().cast())
    })
}

/// The tensor's size in bytes; 0 for NULL. Borrows `tensor`.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_tensor_byte_len(tensor: *const rivet_tensor_t) -> usize {
    // SAFETY: a non-NULL tensor comes from Rivet and lives until rivet_tensor_free.
    ffi_infallible(0, || unsafe { tensor.as_ref() }.map_or(0, |t| t.tensor.as_bytes().len()))
}

/// A new handle to the same tensor, sharing its data (nothing is copied): how to keep an
/// output after its `rivet_outputs_t` is freed. `*out` receives a tensor the caller frees with
/// `rivet_tensor_free`; untouched on failure. The data is released when the last handle
/// sharing it is freed.
///
/// Thread-safe: may be called from any thread, also on a tensor other threads read.
///
/// # Safety
/// `tensor` must be NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rivet_tensor_clone(
    tensor: *const rivet_tensor_t,
    out: *mut *mut rivet_tensor_t,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        not_null(out, "out")?;
        // SAFETY: the caller's contract.
        let tensor = unsafe { arg(tensor, "tensor") }?;
        let copy = rivet_tensor_t::new(tensor.tensor.clone());
        // SAFETY: checked non-NULL; writable by the caller's contract.
        unsafe { copy.write_to(out) };
        Ok(())
    })
}

/// Size in bytes of one element of `dtype`; 0 for an unknown dtype.
#[no_mangle]
pub extern "C" fn rivet_dtype_size(dtype: rivet_dtype_t) -> usize {
    dtype_from_code(dtype).map_or(0, |d| d.size())
}
