//! The DLPack 1.x structures (`dlpack.h`), declared here so the ABI can exchange tensors.
//!
//! The header does not get these from cbindgen: `include/rivet.h` carries the upstream C
//! definitions, guarded so that including `dlpack.h` first is fine.

use std::ffi::c_void;

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
