//! DLPack: the 1.x structures (`dlpack.h`), and tensors imported from and exported to it
//! without copying.
//!
//! The header does not get these from cbindgen: `include/rivet.h` carries the upstream C
//! definitions, guarded so that including `dlpack.h` first is fine.

use std::ffi::c_void;
use std::ptr;

use rivet::{DType, StorageKind, Tensor, TensorView};

use crate::error::{arg, ffi_boundary, not_null, rivet_error_t, RIVET_ERROR_INVALID_TENSOR};
use crate::handle::Handle;
use crate::tensor::{read_shape, rivet_tensor_t};

/// DLPack's ABI version.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLPackVersion {
    /// Major version; Rivet accepts 1.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

/// Device of a DLPack tensor.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLDevice {
    /// `kDLCPU` = 1, `kDLCUDA` = 2, ...
    pub device_type: i32,
    /// Device ordinal.
    pub device_id: i32,
}

/// Element type of a DLPack tensor.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DLDataType {
    /// `kDLInt` = 0, `kDLUInt` = 1, `kDLFloat` = 2, `kDLBfloat` = 4, `kDLBool` = 6.
    pub code: u8,
    /// Bits per element.
    pub bits: u8,
    /// Vector lanes; Rivet accepts 1.
    pub lanes: u16,
}

/// A DLPack tensor (not owning).
#[repr(C)]
#[derive(Debug)]
pub struct DLTensor {
    /// Data pointer (plus `byte_offset`).
    pub data: *mut c_void,
    /// Where the data lives.
    pub device: DLDevice,
    /// Rank.
    pub ndim: i32,
    /// Element type.
    pub dtype: DLDataType,
    /// `ndim` sizes.
    pub shape: *mut i64,
    /// `ndim` strides in elements, or NULL for compact row-major.
    pub strides: *mut i64,
    /// Bytes from `data` to the first element.
    pub byte_offset: u64,
}

/// A DLPack tensor with its owner: `deleter(self)` releases it, exactly once.
#[repr(C)]
#[derive(Debug)]
pub struct DLManagedTensorVersioned {
    /// The DLPack version this follows.
    pub version: DLPackVersion,
    /// The producer's context.
    pub manager_ctx: *mut c_void,
    /// Releases the tensor; may be NULL when there is nothing to release.
    pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
    /// `DLPACK_FLAG_BITMASK_READ_ONLY` (1) and `DLPACK_FLAG_BITMASK_IS_COPIED` (2).
    pub flags: u64,
    /// The tensor.
    pub dl_tensor: DLTensor,
}

pub(crate) const KDL_CPU: i32 = 1;
pub(crate) const KDL_INT: u8 = 0;
pub(crate) const KDL_UINT: u8 = 1;
pub(crate) const KDL_FLOAT: u8 = 2;
pub(crate) const KDL_BFLOAT: u8 = 4;
pub(crate) const KDL_BOOL: u8 = 6;
pub(crate) const FLAG_READ_ONLY: u64 = 1;

fn dlpack_dtype(dtype: DType) -> DLDataType {
    let (code, bits) = match dtype {
        DType::F16 => (KDL_FLOAT, 16),
        DType::BF16 => (KDL_BFLOAT, 16),
        DType::F32 => (KDL_FLOAT, 32),
        DType::F64 => (KDL_FLOAT, 64),
        DType::I8 => (KDL_INT, 8),
        DType::I16 => (KDL_INT, 16),
        DType::I32 => (KDL_INT, 32),
        DType::I64 => (KDL_INT, 64),
        DType::U8 => (KDL_UINT, 8),
        DType::Bool => (KDL_BOOL, 8),
    };
    DLDataType { code, bits, lanes: 1 }
}

fn invalid(message: String) -> Box<rivet_error_t> {
    rivet_error_t::new(RIVET_ERROR_INVALID_TENSOR, message)
}

/// The producer's tensor, deleted once when the last Rivet tensor sharing its data is dropped.
struct DlpackOwner(*mut DLManagedTensorVersioned);

// SAFETY: DLPack deleters may be called from any thread; Rivet calls this one exactly once.
unsafe impl Send for DlpackOwner {}
// SAFETY: shared access never touches the pointer; only `delete` (by value) does.
unsafe impl Sync for DlpackOwner {}

impl DlpackOwner {
    fn delete(self) {
        // SAFETY: `managed` was valid when imported and is deleted exactly once, here.
        unsafe {
            if let Some(deleter) = (*self.0).deleter {
                deleter(self.0);
            }
        }
    }
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
        if t.device.device_type != KDL_CPU {
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
        let bytes: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: DLPack promises the data at `data + byte_offset` for the shape and dtype.
            unsafe { std::slice::from_raw_parts(data, len) }
        };
        // Every check before taking ownership: a failure leaves `managed` with the caller.
        TensorView::new(dtype, &shape, bytes)?;
        let owner = DlpackOwner(managed);
        let release: rivet::Release = Box::new(move || owner.delete());
        // SAFETY: the producer keeps the data alive until its deleter runs, which `release`
        // calls exactly once; the checks above passed, so this cannot fail.
        let tensor = unsafe { Tensor::from_foreign(dtype, &shape, data, len, release) }?;
        // SAFETY: `out` is non-NULL (checked) and writable (the caller's contract).
        unsafe { rivet_tensor_t::new(tensor).write_to(out) };
        Ok(())
    })
}

/// What a DLPack export owns: the tensor and the shape array DLPack points to. Its handle is
/// the export's `manager_ctx`, freed by the export's deleter.
struct Export {
    managed: DLManagedTensorVersioned,
    _tensor: Box<rivet_tensor_t>,
    _shape: Vec<i64>,
}

impl Handle for Export {}

unsafe extern "C" fn delete_export(managed: *mut DLManagedTensorVersioned) {
    if managed.is_null() {
        return;
    }
    // SAFETY: `manager_ctx` is the Export handle made by rivet_tensor_to_dlpack; the deleter
    // runs once per the DLPack contract.
    unsafe { Export::free((*managed).manager_ctx.cast::<Export>()) };
}

/// Exports a tensor as DLPack without copying its data.
///
/// The tensor handle is always consumed, on success and on failure alike (do not free or use it
/// again), so one cleanup path fits both. On success `*out` receives a
/// `DLManagedTensorVersioned` whose deleter the consumer calls exactly once; the data stays
/// valid until then (for a view or DLPack import, as long as the original owner keeps it). The
/// read-only flag is set for data Rivet does not own or shares with other handles.
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
        not_null(tensor, "tensor")?;
        // SAFETY: a live tensor handle, given to this call (the caller's contract); ownership
        // moves here whatever happens next, and into the export on success.
        let tensor = unsafe { rivet_tensor_t::from_raw(tensor) }.expect("checked non-NULL");
        not_null(out, "out")?;
        let mut shape: Vec<i64> = tensor.tensor.shape().iter().map(|&d| d as i64).collect();
        // Only memory this handle alone owns may be written by the consumer.
        let read_only = tensor.tensor.storage_kind() != StorageKind::Owned;
        let data = tensor.tensor.as_bytes().as_ptr().cast_mut().cast::<c_void>();
        let export = Box::new(Export {
            managed: DLManagedTensorVersioned {
                version: DLPackVersion { major: 1, minor: 1 },
                manager_ctx: ptr::null_mut(),
                deleter: Some(delete_export),
                flags: if read_only { FLAG_READ_ONLY } else { 0 },
                dl_tensor: DLTensor {
                    data,
                    device: DLDevice { device_type: KDL_CPU, device_id: 0 },
                    ndim: shape.len() as i32,
                    dtype: dlpack_dtype(tensor.tensor.dtype()),
                    shape: if shape.is_empty() { ptr::null_mut() } else { shape.as_mut_ptr() },
                    strides: ptr::null_mut(),
                    byte_offset: 0,
                },
            },
            _tensor: tensor,
            _shape: shape,
        });
        let raw = Export::boxed_into_raw(export);
        // SAFETY: `raw` is a fresh, valid allocation; `managed` is its first field.
        unsafe {
            (*raw).managed.manager_ctx = raw.cast();
            *out = ptr::addr_of_mut!((*raw).managed);
        }
        Ok(())
    })
}
