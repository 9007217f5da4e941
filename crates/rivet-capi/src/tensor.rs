//! `rivet_tensor_t`: tensors copied from, borrowed from, or exchanged as DLPack with the caller.

use std::ffi::c_void;
use std::ptr;

use rivet::{DType, Tensor, TensorView};

use crate::dlpack::{self, DLDataType, DLManagedTensorVersioned, DLPackVersion, DLTensor};
use crate::error::{arg, ffi_boundary, ffi_infallible, not_null, rivet_error_t, RIVET_ERROR_INVALID_TENSOR};

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

/// Where a tensor's bytes live.
enum Storage {
    /// Rivet owns them.
    Owned(Tensor),
    /// The caller owns them (`rivet_tensor_new_view`).
    Borrowed { data: *const u8, len: usize },
    /// A DLPack producer owns them; its deleter runs when the tensor is freed.
    DLPack { managed: *mut DLManagedTensorVersioned, data: *const u8, len: usize },
}

/// A tensor handle. Created by `rivet_tensor_new`, `rivet_tensor_new_view`,
/// `rivet_tensor_from_dlpack` or `rivet_model_run`; freed with `rivet_tensor_free`.
pub struct rivet_tensor_t {
    dtype: DType,
    /// The shape of borrowed data (owned tensors keep their own).
    shape: Vec<usize>,
    storage: Storage,
}

impl Drop for rivet_tensor_t {
    fn drop(&mut self) {
        if let Storage::DLPack { managed, .. } = self.storage {
            // SAFETY: `managed` was valid when imported, and the deleter runs exactly once, here.
            unsafe {
                if let Some(deleter) = (*managed).deleter {
                    deleter(managed);
                }
            }
        }
    }
}

impl rivet_tensor_t {
    /// A handle owning `tensor`.
    pub(crate) fn owned(tensor: Tensor) -> rivet_tensor_t {
        rivet_tensor_t { dtype: tensor.dtype(), shape: Vec::new(), storage: Storage::Owned(tensor) }
    }

    fn shape(&self) -> &[usize] {
        match &self.storage {
            Storage::Owned(t) => t.shape(),
            _ => &self.shape,
        }
    }

    fn bytes(&self) -> &[u8] {
        match &self.storage {
            Storage::Owned(t) => t.as_bytes(),
            Storage::Borrowed { len: 0, .. } | Storage::DLPack { len: 0, .. } => &[],
            // SAFETY: checked non-NULL with `len` readable bytes at creation; the caller keeps
            // them alive and unchanged while the handle lives (the documented contract).
            Storage::Borrowed { data, len } | Storage::DLPack { data, len, .. } => unsafe {
                std::slice::from_raw_parts(*data, *len)
            },
        }
    }

    /// A view of the data, checked against dtype and shape.
    pub(crate) fn view(&self) -> Result<TensorView<'_>, Box<rivet_error_t>> {
        match &self.storage {
            Storage::Owned(t) => Ok(t.view()),
            _ => TensorView::new(self.dtype, &self.shape, self.bytes()).map_err(Into::into),
        }
    }
}

/// Reads a C shape array into sizes, or an error naming the bad entry.
///
/// # Safety
/// A non-NULL `shape` must point to `rank` readable `int64_t`.
unsafe fn read_shape(shape: *const i64, rank: usize) -> Result<Vec<usize>, Box<rivet_error_t>> {
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
        unsafe { *out = Box::into_raw(Box::new(rivet_tensor_t::owned(tensor))) };
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
        let tensor =
            rivet_tensor_t { dtype, shape, storage: Storage::Borrowed { data: data.cast(), len: byte_len } };
        tensor.view()?;
        // SAFETY: as in rivet_tensor_new.
        unsafe { *out = Box::into_raw(Box::new(tensor)) };
        Ok(())
    })
}

/// Frees a tensor (and, for a DLPack import, calls the producer's deleter). NULL is ignored.
/// Each tensor is freed exactly once, when no call is using it.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_tensor_free(tensor: *mut rivet_tensor_t) {
    if !tensor.is_null() {
        // SAFETY: tensors are only created by Box::into_raw in this crate.
        ffi_infallible((), || drop(unsafe { Box::from_raw(tensor) }));
    }
}

/// The tensor's dtype (`RIVET_DTYPE_*`); `RIVET_DTYPE_UNKNOWN` for NULL. Borrows `tensor`.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_tensor_dtype(tensor: *const rivet_tensor_t) -> rivet_dtype_t {
    // SAFETY: a non-NULL tensor comes from Rivet and lives until rivet_tensor_free.
    ffi_infallible(RIVET_DTYPE_UNKNOWN, || {
        unsafe { tensor.as_ref() }.map_or(RIVET_DTYPE_UNKNOWN, |t| dtype_code(t.dtype))
    })
}

/// The tensor's rank; 0 for NULL. Borrows `tensor`.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_tensor_rank(tensor: *const rivet_tensor_t) -> usize {
    // SAFETY: a non-NULL tensor comes from Rivet and lives until rivet_tensor_free.
    ffi_infallible(0, || unsafe { tensor.as_ref() }.map_or(0, |t| t.shape().len()))
}

/// The tensor's `rank` sizes; NULL for NULL or a scalar. Borrowed from `tensor`: valid until
/// it is freed.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_tensor_shape(tensor: *const rivet_tensor_t) -> *const i64 {
    ffi_infallible(ptr::null(), || {
        // SAFETY: a non-NULL tensor comes from Rivet and lives until rivet_tensor_free.
        match unsafe { tensor.as_ref() } {
            Some(t) if !t.shape().is_empty() => t.shape().as_ptr().cast::<i64>(),
            _ => ptr::null(),
        }
    })
}

/// The tensor's bytes, row-major; NULL for NULL or an empty tensor. Borrowed from `tensor`:
/// valid until it is freed. For a view this is the caller's own pointer.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_tensor_data(tensor: *const rivet_tensor_t) -> *const c_void {
    ffi_infallible(ptr::null(), || {
        // SAFETY: a non-NULL tensor comes from Rivet and lives until rivet_tensor_free.
        match unsafe { tensor.as_ref() } {
            Some(t) => match &t.storage {
                Storage::Owned(o) if !o.is_empty() => o.as_bytes().as_ptr().cast(),
                Storage::Borrowed { data, len } | Storage::DLPack { data, len, .. } if *len > 0 => {
                    data.cast()
                }
                _ => ptr::null(),
            },
            None => ptr::null(),
        }
    })
}

/// The tensor's size in bytes; 0 for NULL. Borrows `tensor`.
///
/// # Safety
/// Handle arguments must be NULL or live handles created by Rivet.
#[no_mangle]
pub unsafe extern "C" fn rivet_tensor_byte_len(tensor: *const rivet_tensor_t) -> usize {
    // SAFETY: a non-NULL tensor comes from Rivet and lives until rivet_tensor_free.
    ffi_infallible(0, || unsafe { tensor.as_ref() }.map_or(0, |t| t.bytes().len()))
}

/// Size in bytes of one element of `dtype`; 0 for an unknown dtype.
#[no_mangle]
pub extern "C" fn rivet_dtype_size(dtype: rivet_dtype_t) -> usize {
    dtype_from_code(dtype).map_or(0, |d| d.size())
}

fn dlpack_dtype(dtype: DType) -> DLDataType {
    let (code, bits) = match dtype {
        DType::F16 => (dlpack::KDL_FLOAT, 16),
        DType::BF16 => (dlpack::KDL_BFLOAT, 16),
        DType::F32 => (dlpack::KDL_FLOAT, 32),
        DType::F64 => (dlpack::KDL_FLOAT, 64),
        DType::I8 => (dlpack::KDL_INT, 8),
        DType::I16 => (dlpack::KDL_INT, 16),
        DType::I32 => (dlpack::KDL_INT, 32),
        DType::I64 => (dlpack::KDL_INT, 64),
        DType::U8 => (dlpack::KDL_UINT, 8),
        DType::Bool => (dlpack::KDL_BOOL, 8),
    };
    DLDataType { code, bits, lanes: 1 }
}

fn invalid(message: String) -> Box<rivet_error_t> {
    rivet_error_t::new(RIVET_ERROR_INVALID_TENSOR, message)
}

/// Imports a DLPack tensor without copying its data.
///
/// Accepts DLPack 1.x, CPU memory, one lane, compact row-major strides (or NULL strides) and
/// the dtypes Rivet has. On success the tensor takes ownership of `managed`: its deleter is
/// called exactly once, by `rivet_tensor_free`, and the caller must not use `managed` again. On
/// failure nothing is taken: `managed` still belongs to the caller and `*out` is untouched.
///
/// Thread-safe: may be called from any thread.
///
/// # Safety
/// `managed` must be NULL or a valid DLPack tensor whose data stays alive until its deleter runs.
#[no_mangle]
pub unsafe extern "C" fn rivet_tensor_from_dlpack(
    managed: *mut DLManagedTensorVersioned,
    out: *mut *mut rivet_tensor_t,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        not_null(out, "out")?;
        // SAFETY: the caller's contract.
        let m = unsafe { arg(managed, "managed")? };
        if m.version.major != 1 {
            return Err(invalid(format!(
                "DLPack version {}.{}; Rivet reads 1.x",
                m.version.major, m.version.minor
            )));
        }
        let t = &m.dl_tensor;
        if t.device.device_type != dlpack::KDL_CPU {
            return Err(invalid(format!("DLPack device type {} is not CPU (1)", t.device.device_type)));
        }
        let dtype = DType::ALL.into_iter().find(|d| dlpack_dtype(*d) == t.dtype).ok_or_else(|| {
            invalid(format!(
                "DLPack dtype code {} bits {} lanes {} has no Rivet dtype",
                t.dtype.code, t.dtype.bits, t.dtype.lanes
            ))
        })?;
        let rank = usize::try_from(t.ndim).map_err(|_| invalid(format!("DLPack ndim is {}", t.ndim)))?;
        // SAFETY: DLPack guarantees `ndim` sizes at `shape`.
        let shape = unsafe { read_shape(t.shape, rank) }?;
        if !t.strides.is_null() && rank > 0 {
            // SAFETY: DLPack guarantees `ndim` strides when `strides` is non-NULL.
            let strides = unsafe { std::slice::from_raw_parts(t.strides, rank) };
            let mut expected = 1i64;
            for axis in (0..rank).rev() {
                if shape[axis] > 1 && strides[axis] != expected {
                    return Err(invalid(format!(
                        "DLPack strides {strides:?} are not compact row-major for shape {shape:?}"
                    )));
                }
                expected = expected.saturating_mul(shape[axis] as i64);
            }
        }
        let len = rivet::element_count(&shape)?
            .checked_mul(dtype.size())
            .ok_or_else(|| invalid(format!("DLPack shape {shape:?} is too large")))?;
        let offset =
            usize::try_from(t.byte_offset).map_err(|_| invalid("DLPack byte_offset is too large".into()))?;
        if t.data.is_null() && len > 0 {
            return Err(rivet_error_t::invalid_argument("DLPack data is NULL"));
        }
        let data = t.data.cast::<u8>().wrapping_add(offset).cast_const();
        let tensor = rivet_tensor_t { dtype, shape, storage: Storage::Borrowed { data, len } };
        tensor.view()?;
        // Only now take ownership: a failure above leaves `managed` with the caller.
        let mut tensor = tensor;
        tensor.storage = Storage::DLPack { managed, data, len };
        // SAFETY: as in rivet_tensor_new.
        unsafe { *out = Box::into_raw(Box::new(tensor)) };
        Ok(())
    })
}

/// What a DLPack export owns: the tensor and the shape array DLPack points to.
struct Export {
    managed: DLManagedTensorVersioned,
    _tensor: Box<rivet_tensor_t>,
    _shape: Vec<i64>,
}

unsafe extern "C" fn delete_export(managed: *mut DLManagedTensorVersioned) {
    if managed.is_null() {
        return;
    }
    // SAFETY: `manager_ctx` is the Box<Export> made by rivet_tensor_to_dlpack; the deleter runs
    // once per the DLPack contract.
    let _ = std::panic::catch_unwind(|| unsafe {
        drop(Box::from_raw((*managed).manager_ctx.cast::<Export>()));
    });
}

/// Exports a tensor as DLPack without copying its data.
///
/// On success the tensor handle is consumed (do not free or use it again) and `*out` receives a
/// `DLManagedTensorVersioned` whose deleter the consumer calls exactly once; the data stays
/// valid until then (for a view or DLPack import, as long as the original owner keeps it). The
/// read-only flag is set for data Rivet does not own. On failure the tensor is untouched and
/// still the caller's.
///
/// Thread-safe for distinct tensors.
///
/// # Safety
/// `tensor` must be NULL or a live tensor not used by another call.
#[no_mangle]
pub unsafe extern "C" fn rivet_tensor_to_dlpack(
    tensor: *mut rivet_tensor_t,
    out: *mut *mut DLManagedTensorVersioned,
) -> *mut rivet_error_t {
    ffi_boundary(|| {
        not_null(out, "out")?;
        not_null(tensor, "tensor")?;
        // SAFETY: non-NULL and ours (the caller's contract); ownership moves into the export.
        let tensor = unsafe { Box::from_raw(tensor) };
        let mut shape: Vec<i64> = tensor.shape().iter().map(|&d| d as i64).collect();
        let read_only = !matches!(tensor.storage, Storage::Owned(_));
        let data = tensor.bytes().as_ptr().cast_mut().cast::<c_void>();
        let export = Box::new(Export {
            managed: DLManagedTensorVersioned {
                version: DLPackVersion { major: 1, minor: 1 },
                manager_ctx: ptr::null_mut(),
                deleter: Some(delete_export),
                flags: if read_only { dlpack::FLAG_READ_ONLY } else { 0 },
                dl_tensor: DLTensor {
                    data,
                    device: dlpack::DLDevice { device_type: dlpack::KDL_CPU, device_id: 0 },
                    ndim: shape.len() as i32,
                    dtype: dlpack_dtype(tensor.dtype),
                    shape: if shape.is_empty() { ptr::null_mut() } else { shape.as_mut_ptr() },
                    strides: ptr::null_mut(),
                    byte_offset: 0,
                },
            },
            _tensor: tensor,
            _shape: shape,
        });
        let raw = Box::into_raw(export);
        // SAFETY: `raw` is a fresh, valid allocation; `managed` is its first field.
        unsafe {
            (*raw).managed.manager_ctx = raw.cast();
            *out = ptr::addr_of_mut!((*raw).managed);
        }
        Ok(())
    })
}
