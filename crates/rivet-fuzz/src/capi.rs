//! The `tensor` target: tensors built through the C ABI from arbitrary dtype codes, shapes,
//! byte lengths, alignments and DLPack descriptions, exactly as a C caller would, with the C
//! caller's side of every contract kept (the data pointer is valid for the byte length given).

use std::ffi::{c_void, CStr};
use std::ptr;

use arbitrary::Unstructured;
use rivet_capi::dlpack::{
    rivet_tensor_from_dlpack, rivet_tensor_to_dlpack, DLDataType, DLDevice, DLManagedTensorVersioned,
    DLPackVersion, DLTensor,
};
use rivet_capi::{
    rivet_dtype_size, rivet_error_code, rivet_error_free, rivet_error_message, rivet_error_t,
    rivet_tensor_byte_len, rivet_tensor_clone, rivet_tensor_data, rivet_tensor_dtype, rivet_tensor_free,
    rivet_tensor_new, rivet_tensor_new_view, rivet_tensor_rank, rivet_tensor_shape, rivet_tensor_t,
    RIVET_ERROR_PANIC, RIVET_ERROR_PREPROCESS,
};
use rivet_core::{element_count, DType, Tensor};

/// Tensor construction through the C ABI (`rivet_tensor_new`, `rivet_tensor_new_view`,
/// `rivet_tensor_from_dlpack`) from arbitrary arguments: an error with a code and a message
/// (never the panic code), with the same verdict as Rust's own `Tensor::from_bytes`, or a
/// tensor whose dtype, shape, bytes, clone and DLPack round trip are what was given.
pub fn tensor(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = if u.ratio(1, 3).unwrap_or(false) { from_dlpack(&mut u) } else { from_bytes(&mut u) };
}

/// The message of a C error, after checking it is one, then frees it. `None` for success.
pub(crate) fn take_error(error: *mut rivet_error_t) -> Option<(u32, String)> {
    if error.is_null() {
        return None;
    }
    // SAFETY: a live error handle from Rivet, freed once below.
    unsafe {
        let code = rivet_error_code(error);
        let message = CStr::from_ptr(rivet_error_message(error)).to_string_lossy().into_owned();
        rivet_error_free(error);
        assert_ne!(code, RIVET_ERROR_PANIC, "a panic reached the C ABI: {message}");
        assert!((1..=RIVET_ERROR_PREPROCESS).contains(&code), "error code {code}: {message}");
        assert!(!message.is_empty(), "error code {code} without a message");
        Some((code, message))
    }
}

/// A copy of a live tensor handle's dtype, shape and bytes, read through the C accessors.
///
/// # Safety
/// `handle` is a live tensor handle.
pub(crate) unsafe fn tensor_of(handle: *const rivet_tensor_t) -> Tensor {
    unsafe {
        let code = rivet_tensor_dtype(handle);
        let dtype = DType::ALL.into_iter().find(|d| *d as u32 == code).expect("a known dtype");
        let rank = usize::try_from(rivet_tensor_rank(handle)).expect("a live handle's rank");
        let shape: Vec<usize> = if rank == 0 {
            Vec::new()
        } else {
            std::slice::from_raw_parts(rivet_tensor_shape(handle), rank).iter().map(|&d| d as usize).collect()
        };
        let bytes =
            std::slice::from_raw_parts(rivet_tensor_data(handle).cast::<u8>(), rivet_tensor_byte_len(handle));
        Tensor::from_bytes(dtype, &shape, bytes).expect("a handle's bytes fill its shape")
    }
}

/// A buffer of `len` bytes starting at an address aligned to 64, plus `offset`.
struct Buffer {
    words: Vec<u64>,
    offset: usize,
}

impl Buffer {
    fn new(bytes: &[u8], len: usize, offset: usize) -> Buffer {
        let mut words = vec![0u64; (len + offset).div_ceil(8) + 8];
        // SAFETY: the vector holds at least len + offset bytes.
        let all = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 8) };
        for (i, b) in all[offset..offset + len].iter_mut().enumerate() {
            *b = bytes.get(i).copied().unwrap_or(0);
        }
        Buffer { words, offset }
    }

    fn ptr(&self) -> *const u8 {
        self.words.as_ptr().cast::<u8>().wrapping_add(self.offset)
    }

    fn bytes(&self, len: usize) -> &[u8] {
        // SAFETY: `new` made room for `len` bytes after the offset.
        unsafe { std::slice::from_raw_parts(self.ptr(), len) }
    }
}

fn arbitrary_shape(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<i64>> {
    let rank = if u.ratio(1, 16)? { u.int_in_range(0..=80usize)? } else { u.int_in_range(0..=5usize)? };
    (0..rank).map(|_| if u.ratio(1, 8)? { u.arbitrary::<i64>() } else { u.int_in_range(0..=7i64) }).collect()
}

/// The byte length dtype and shape need, by Rivet's own counting rule, when there is one.
fn needed_len(dtype_size: usize, shape: &[i64]) -> Option<usize> {
    let dims: Vec<usize> = shape.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<_>>()?;
    element_count(&dims).ok()?.checked_mul(dtype_size)
}

fn from_bytes(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let code: u32 = if u.ratio(1, 16)? { u.arbitrary()? } else { u.int_in_range(0..=11)? };
    let shape = arbitrary_shape(u)?;
    let null_shape = !shape.is_empty() && u.ratio(1, 32)?;
    // SAFETY: a plain function of a number.
    let size = rivet_dtype_size(code);
    let needed = needed_len(size, &shape);
    let byte_len = match (u.int_in_range(0..=5u8)?, needed) {
        (0, _) => u.int_in_range(0..=64usize)?,
        (1, _) => u.arbitrary::<usize>()?,
        (_, Some(n)) => n,
        (_, None) => u.int_in_range(0..=64usize)?,
    };
    // Keep the caller's contract: the pointer is valid for `byte_len` bytes, or the length
    // mismatches and Rivet must refuse without reading (then a short buffer stands in).
    let backed = byte_len <= 1 << 20;
    if !backed && needed == Some(byte_len) {
        return Ok(());
    }
    let offset = if u.ratio(1, 8)? { u.int_in_range(1..=7usize)? } else { 0 };
    let contents = u.bytes(u.len().min(byte_len.min(1 << 20)))?;
    let buffer = Buffer::new(contents, if backed { byte_len } else { 64 }, offset);
    let data: *const c_void = if byte_len == 0 && u.ratio(1, 2)? { ptr::null() } else { buffer.ptr().cast() };
    let view = u.arbitrary::<bool>()?;
    let shape_ptr = if null_shape { ptr::null() } else { shape.as_ptr() };
    let mut out: *mut rivet_tensor_t = ptr::null_mut();
    // SAFETY: every pointer is valid for the sizes given (or the call must refuse without
    // reading, see above); `buffer` outlives the view, freed before the end of this function.
    let error = unsafe {
        if view {
            rivet_tensor_new_view(code, shape_ptr, shape.len(), data, byte_len, &mut out)
        } else {
            rivet_tensor_new(code, shape_ptr, shape.len(), data, byte_len, &mut out)
        }
    };
    // The verdict Rust's own constructor gives the same arguments.
    let reference = DType::ALL
        .into_iter()
        .find(|d| *d as u32 == code)
        .filter(|_| !null_shape && backed && (byte_len == 0 || !data.is_null()))
        .and_then(|dtype| {
            let dims: Vec<usize> = shape.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<_>>()?;
            let bytes = if byte_len == 0 { &[][..] } else { buffer.bytes(byte_len) };
            if shape.len() > 64 {
                return None;
            }
            if view {
                rivet_core::TensorView::new(dtype, &dims, bytes).ok().map(|v| v.to_tensor())
            } else {
                Tensor::from_bytes(dtype, &dims, bytes).ok()
            }
        });
    match take_error(error) {
        Some((_, message)) => {
            assert!(out.is_null(), "out set on failure");
            assert!(reference.is_none(), "C ABI refused what Rust accepts: {message}");
        }
        None => {
            let reference = reference.expect("C ABI accepted what Rust refuses");
            assert!(!out.is_null());
            // SAFETY: a live handle, freed by `check_handle`.
            unsafe { check_handle(out, &reference, view.then_some(data)) };
        }
    }
    Ok(())
}

/// Checks every accessor of a live handle against `expected`, clones it, exports it as DLPack
/// and imports that back, then frees everything.
///
/// # Safety
/// `handle` is a live tensor handle, consumed here.
unsafe fn check_handle(handle: *mut rivet_tensor_t, expected: &Tensor, view_of: Option<*const c_void>) {
    unsafe {
        assert_eq!(rivet_tensor_dtype(handle), expected.dtype() as u32);
        assert_eq!(rivet_tensor_rank(handle), expected.shape().len() as i64);
        let shape = rivet_tensor_shape(handle);
        if expected.shape().is_empty() {
            assert!(shape.is_null());
        } else {
            let shape = std::slice::from_raw_parts(shape.cast::<usize>(), expected.shape().len());
            assert_eq!(shape, expected.shape());
        }
        assert_eq!(rivet_tensor_byte_len(handle), expected.as_bytes().len());
        let data = rivet_tensor_data(handle);
        assert!(!data.is_null(), "data is NULL only for a NULL handle");
        if !expected.as_bytes().is_empty() {
            assert_eq!(
                std::slice::from_raw_parts(data.cast::<u8>(), expected.as_bytes().len()),
                expected.as_bytes()
            );
            if let Some(caller) = view_of {
                assert_eq!(data, caller, "a view hands back the caller's pointer");
            }
        }
        let mut clone: *mut rivet_tensor_t = ptr::null_mut();
        assert!(take_error(rivet_tensor_clone(handle, &mut clone)).is_none());
        assert_eq!(rivet_tensor_byte_len(clone), expected.as_bytes().len());
        rivet_tensor_free(handle);
        let mut managed: *mut DLManagedTensorVersioned = ptr::null_mut();
        assert!(take_error(rivet_tensor_to_dlpack(clone, &mut managed)).is_none(), "export");
        let mut back: *mut rivet_tensor_t = ptr::null_mut();
        assert!(take_error(rivet_tensor_from_dlpack(managed, &mut back)).is_none(), "import of an export");
        assert_eq!(rivet_tensor_dtype(back), expected.dtype() as u32);
        assert_eq!(rivet_tensor_byte_len(back), expected.as_bytes().len());
        rivet_tensor_free(back);
    }
}

/// Deleter of the DLPack tensors this target makes: counts calls in `manager_ctx`.
unsafe extern "C" fn count_delete(managed: *mut DLManagedTensorVersioned) {
    // SAFETY: manager_ctx points at the counter of `from_dlpack`, alive until it checks it.
    unsafe { *(*managed).manager_ctx.cast::<u32>() += 1 };
}

fn from_dlpack(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let mut shape = arbitrary_shape(u)?;
    let ndim: i32 = if u.ratio(1, 16)? { u.arbitrary()? } else { shape.len() as i32 };
    let rank = usize::try_from(ndim).unwrap_or(0).min(shape.len());
    let mut strides: Vec<i64> = (0..shape.len())
        .map(|_| if u.ratio(1, 4)? { u.arbitrary::<i64>() } else { u.int_in_range(0..=64i64) })
        .collect::<arbitrary::Result<_>>()?;
    let compact = u.arbitrary::<bool>()?;
    if compact {
        let mut stride = 1i64;
        for axis in (0..rank).rev() {
            strides[axis] = stride;
            stride = stride.saturating_mul(shape[axis].max(1));
        }
    }
    let dtype = if u.ratio(1, 8)? {
        DLDataType { code: u.arbitrary()?, bits: u.arbitrary()?, lanes: u.arbitrary()? }
    } else {
        let (code, bits) = *u.choose(&[
            (0u8, 8u8),
            (0, 16),
            (0, 32),
            (0, 64),
            (1, 8),
            (2, 16),
            (2, 32),
            (2, 64),
            (4, 16),
            (6, 8),
        ])?;
        DLDataType { code, bits, lanes: 1 }
    };
    let elem = usize::from(dtype.bits / 8).max(1);
    let needed = needed_len(elem, &shape[..rank]);
    // The producer's promise: `data + byte_offset` holds the tensor. Only describe tensors whose
    // bytes this buffer really holds, unless Rivet must refuse them before reading.
    let byte_offset: u64 = if u.ratio(1, 8)? { u.int_in_range(0..=16u64)? } else { 0 };
    let len = match needed {
        Some(n) if n <= 1 << 20 => n,
        _ => {
            // Too large to back: only shapes Rivet's count refuses are tried.
            if needed.is_some() {
                return Ok(());
            }
            0
        }
    };
    let contents = u.bytes(u.len().min(len))?;
    let buffer = Buffer::new(contents, len + byte_offset as usize, 0);
    let null_data = len == 0 && u.arbitrary::<bool>()?;
    let version = if u.ratio(1, 16)? {
        DLPackVersion { major: u.arbitrary()?, minor: 0 }
    } else {
        DLPackVersion { major: 1, minor: 0 }
    };
    let device_type = if u.ratio(1, 16)? { u.arbitrary()? } else { 1 };
    let mut deleted = 0u32;
    let mut managed = DLManagedTensorVersioned {
        version,
        manager_ctx: (&mut deleted as *mut u32).cast(),
        deleter: Some(count_delete),
        flags: 0,
        dl_tensor: DLTensor {
            data: if null_data { ptr::null_mut() } else { buffer.ptr().cast_mut().cast() },
            device: DLDevice { device_type, device_id: 0 },
            ndim,
            dtype,
            shape: if shape.is_empty() { ptr::null_mut() } else { shape.as_mut_ptr() },
            strides: if u.arbitrary::<bool>()? { ptr::null_mut() } else { strides.as_mut_ptr() },
            byte_offset,
        },
    };
    if usize::try_from(ndim).is_ok_and(|n| n > shape.len()) {
        // DLPack promises `ndim` sizes at `shape`; a larger ndim than the array would be the
        // producer's bug, not an input Rivet can check.
        return Ok(());
    }
    let mut out: *mut rivet_tensor_t = ptr::null_mut();
    // SAFETY: the description is true to `buffer` (checked above) and the deleter counts.
    let error = unsafe { rivet_tensor_from_dlpack(&mut managed, &mut out) };
    match take_error(error) {
        Some(_) => {
            assert!(out.is_null());
            assert_eq!(deleted, 0, "a refused import must leave the tensor with its producer");
        }
        None => {
            // SAFETY: a live handle.
            unsafe {
                let len = rivet_tensor_byte_len(out);
                assert_eq!(rivet_tensor_rank(out), rank as i64);
                assert_eq!(rivet_dtype_size(rivet_tensor_dtype(out)), usize::from(dtype.bits / 8));
                if len > 0 {
                    let data = rivet_tensor_data(out).cast::<u8>();
                    assert_eq!(data, buffer.ptr().wrapping_add(byte_offset as usize));
                }
                assert_eq!(deleted, 0);
                rivet_tensor_free(out);
            }
            assert_eq!(deleted, 1, "the deleter runs exactly once, at free");
        }
    }
    Ok(())
}
