//! Tensors (owned, shared or over foreign memory) and borrowed views over contiguous, row-major
//! data.

use std::fmt;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::dtype::{DType, Element};
use crate::error::{Error, Result};

/// Alignment, in bytes, of every owned tensor's data (a cache line; enough for any SIMD load).
pub const TENSOR_ALIGNMENT: usize = 64;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u8; TENSOR_ALIGNMENT]);

/// A heap buffer whose start is aligned to [`TENSOR_ALIGNMENT`].
struct AlignedBuffer {
    blocks: Vec<Block>,
    len: usize,
}

impl AlignedBuffer {
    fn zeroed(len: usize) -> Self {
        let blocks = vec![Block([0; TENSOR_ALIGNMENT]); len.div_ceil(TENSOR_ALIGNMENT)];
        AlignedBuffer { blocks, len }
    }

    /// A buffer holding a copy of `bytes`, written once (not zeroed first).
    fn copy_of(bytes: &[u8]) -> Self {
        let count = bytes.len().div_ceil(TENSOR_ALIGNMENT);
        let mut blocks: Vec<Block> = Vec::with_capacity(count);
        // SAFETY: the capacity is `count` blocks, `count * TENSOR_ALIGNMENT >= bytes.len()` bytes
        // that `bytes` cannot overlap (they are new); every one of them is written (the copy,
        // then zeros to the end of the last block) before the length covers them, and a
        // `Block` is plain bytes, valid whatever they hold.
        unsafe {
            let dst = blocks.as_mut_ptr().cast::<u8>();
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len());
            std::ptr::write_bytes(dst.add(bytes.len()), 0, count * TENSOR_ALIGNMENT - bytes.len());
            blocks.set_len(count);
        }
        AlignedBuffer { blocks, len: bytes.len() }
    }

    fn as_bytes(&self) -> &[u8] {
        // SAFETY: the blocks are plain bytes, contiguous, and hold at least `len` of them.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<u8>(), self.len) }
    }

    fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// Number of elements of `shape`, or an error when the product of its non-zero dimensions
/// exceeds `isize::MAX` (the same verdict whatever the order of the dimensions, and an empty
/// tensor whose strides would overflow is refused too).
pub fn element_count(shape: &[usize]) -> Result<usize> {
    // A plain loop: this runs for every tensor made, outputs of every run included.
    let (mut extent, mut fits, mut empty) = (1usize, true, false);
    for &d in shape {
        if d == 0 {
            empty = true;
        } else {
            let (product, overflow) = extent.overflowing_mul(d);
            extent = product;
            fits &= !overflow;
        }
    }
    if !fits || extent > isize::MAX as usize {
        return Err(too_many_elements(shape));
    }
    Ok(if empty { 0 } else { extent })
}

#[cold]
fn too_many_elements(shape: &[usize]) -> Error {
    Error::InvalidTensor(format!("shape {shape:?} has more elements than fit in memory"))
}

fn byte_len(dtype: DType, shape: &[usize]) -> Result<usize> {
    element_count(shape)?
        .checked_mul(dtype.size())
        .ok_or_else(|| Error::InvalidTensor(format!("shape {shape:?} of {dtype} is too large")))
}

fn check_bools(bytes: &[u8]) -> Result<()> {
    match bytes.iter().position(|&b| b > 1) {
        None => Ok(()),
        Some(i) => Err(Error::InvalidTensor(format!(
            "bool tensor holds byte {} at element {i}; bools must be 0 or 1",
            bytes[i]
        ))),
    }
}

/// A release callback for foreign memory: runs exactly once, when the last tensor sharing the
/// memory is dropped (a DLPack deleter, an Arrow `release`, a C++ owner's destructor).
pub type Release = Box<dyn FnOnce() + Send + Sync>;

/// Bytes someone else allocated, kept alive until [`Release`] runs.
struct ForeignBuffer {
    data: *const u8,
    len: usize,
    release: Option<Release>,
}

// SAFETY: the creator of a foreign tensor promises (in `Tensor::from_foreign`'s contract) that the
// bytes stay valid and unchanged until release and may be read from any thread; Rivet only reads
// them.
unsafe impl Send for ForeignBuffer {}
// SAFETY: as above; shared access is read-only.
unsafe impl Sync for ForeignBuffer {}

impl Drop for ForeignBuffer {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

/// Bytes that `owner` alone owns (a backend's output handed over), kept alive with it: the
/// owner and the pointer share one allocation with the reference count.
struct HandedOver<O> {
    data: *const u8,
    len: usize,
    _owner: O,
}

// SAFETY: `Tensor::from_handed_over`'s contract: the bytes are valid while `owner` lives,
// readable from any thread, and used by no one else; the owner itself is Send + Sync.
unsafe impl<O: Send> Send for HandedOver<O> {}
// SAFETY: as above; shared access is read-only.
unsafe impl<O: Sync> Sync for HandedOver<O> {}

/// Where a tensor's bytes live. Shared by every tensor cloned or split from the first one.
trait Buffer: Send + Sync {
    /// All the bytes.
    fn bytes(&self) -> &[u8];
    /// Whether they belong to the tensors sharing this buffer alone (not to a foreign owner
    /// who may still use them).
    fn owned(&self) -> bool;
}

impl Buffer for AlignedBuffer {
    fn bytes(&self) -> &[u8] {
        self.as_bytes()
    }
    fn owned(&self) -> bool {
        true
    }
}

/// `len` bytes at `data`; empty (whatever `data` is) when `len` is 0.
///
/// # Safety
/// When `len > 0`, `data` must point to `len` readable bytes that outlive the returned slice.
unsafe fn raw_bytes<'a>(data: *const u8, len: usize) -> &'a [u8] {
    if len == 0 {
        &[]
    } else {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(data, len) }
    }
}

impl Buffer for ForeignBuffer {
    fn bytes(&self) -> &[u8] {
        // SAFETY: checked non-NULL with `len` readable bytes when the tensor was made; the
        // creator keeps them alive and unchanged until release (from_foreign's contract).
        unsafe { raw_bytes(self.data, self.len) }
    }
    fn owned(&self) -> bool {
        false
    }
}

impl<O: Send + Sync> Buffer for HandedOver<O> {
    fn bytes(&self) -> &[u8] {
        // SAFETY: valid while `owner` lives, which is as long as `self` (from_handed_over).
        unsafe { raw_bytes(self.data, self.len) }
    }
    fn owned(&self) -> bool {
        true
    }
}

/// A shape held inline up to rank 4 (no allocation for most tensors).
type Shape = SmallVec<[usize; 4]>;

/// How a tensor holds its bytes (see [`Tensor::storage_kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    /// Memory this tensor alone uses and owns: Rivet's own buffer, or one a backend handed over
    /// with its output ([`Tensor::from_handed_over`]).
    Owned,
    /// Owned memory as above, shared with other tensors (clones or splits of one tensor).
    Shared,
    /// Memory owned by someone else, released through a callback when the last user drops it.
    Foreign,
}

/// A tensor: dtype, shape and contiguous row-major data.
///
/// The data is immutable once built and reference-counted: `clone` and [`Tensor::split`] share
/// it without copying. It lives in Rivet's own 64-byte-aligned buffer or in foreign memory
/// ([`Tensor::from_foreign`]) whose release callback runs exactly once.
#[derive(Clone)]
pub struct Tensor {
    dtype: DType,
    shape: Shape,
    storage: Arc<dyn Buffer>,
    /// The first of this tensor's bytes, within the storage (kept here so that reading the
    /// data needs no call through the storage's vtable).
    data: *const u8,
    len: usize,
}

// SAFETY: `data` points into `storage`, which is Send + Sync, lives as long as the tensor and is
// never written through it.
unsafe impl Send for Tensor {}
// SAFETY: as above.
unsafe impl Sync for Tensor {}

impl Tensor {
    fn from_buffer(dtype: DType, shape: impl Into<Shape>, buffer: AlignedBuffer) -> Tensor {
        let (data, len) = (buffer.as_bytes().as_ptr(), buffer.len);
        Tensor { dtype, shape: shape.into(), storage: Arc::new(buffer), data, len }
    }

    /// Builds a tensor from elements in row-major order.
    ///
    /// Fails when `data.len()` is not the number of elements of `shape`.
    pub fn from_slice<T: Element>(shape: &[usize], data: &[T]) -> Result<Tensor> {
        Tensor::copied(Shape::from_slice(shape), data)
    }

    /// Like [`Tensor::from_slice`], taking the shape as a `Vec` (which the tensor keeps when
    /// its rank is over 4; smaller shapes are held inline).
    pub fn from_shape_and_slice<T: Element>(shape: Vec<usize>, data: &[T]) -> Result<Tensor> {
        Tensor::copied(Shape::from_vec(shape), data)
    }

    fn copied<T: Element>(shape: Shape, data: &[T]) -> Result<Tensor> {
        let count = element_count(&shape)?;
        if count != data.len() {
            return Err(Error::InvalidTensor(format!(
                "shape {shape:?} holds {count} elements, got {} values",
                data.len()
            )));
        }
        // SAFETY: every Element is plain data whose bytes are its dtype's representation; bools
        // in a `&[bool]` are 0 or 1.
        let bytes =
            unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) };
        Ok(Tensor::from_buffer(T::DTYPE, shape, AlignedBuffer::copy_of(bytes)))
    }

    /// Builds a tensor by copying raw little-endian bytes of `dtype`.
    ///
    /// Fails when the byte length does not match `shape`, or a bool byte is not 0 or 1.
    pub fn from_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Tensor> {
        check_bytes(dtype, shape, bytes)?;
        Ok(Tensor::from_buffer(dtype, Shape::from_slice(shape), AlignedBuffer::copy_of(bytes)))
    }

    /// A tensor over memory Rivet does not own, without copying it.
    ///
    /// `release` runs exactly once: when the last tensor sharing the memory (clones, splits) is
    /// dropped, or before this function returns an error (bad length, alignment or bool bytes),
    /// so ownership of the memory always passes to Rivet.
    ///
    /// # Safety
    /// `data` must point to `len` bytes that stay valid, unchanged and readable from any thread
    /// until `release` runs. It may be NULL only when `len` is 0.
    pub unsafe fn from_foreign(
        dtype: DType,
        shape: &[usize],
        data: *const u8,
        len: usize,
        release: Release,
    ) -> Result<Tensor> {
        if data.is_null() && len > 0 {
            drop(release);
            return Err(Error::InvalidTensor(format!("data is NULL but {len} bytes were promised")));
        }
        Tensor::over(
            dtype,
            Shape::from_slice(shape),
            Arc::new(ForeignBuffer { data, len, release: Some(release) }),
        )
    }

    /// Like [`Tensor::from_foreign`], for `len` bytes at `data` that `owner` alone owns and
    /// nobody else reads or writes while it lives: a buffer a backend allocated for an output
    /// and handed over with its owner. No copy is made; `owner` is dropped when the last tensor
    /// sharing the bytes is, or before this function returns an error. The tensor owns the
    /// bytes ([`StorageKind::Owned`] while unshared, so a DLPack export is writable), and the
    /// owner lives in the same allocation as the reference count.
    ///
    /// # Safety
    /// `data` must point to `len` bytes that stay valid and readable from any thread while
    /// `owner` lives, and that no one but the tensors sharing them uses. It may be NULL only
    /// when `len` is 0.
    pub unsafe fn from_handed_over<O: Send + Sync + 'static>(
        dtype: DType,
        shape: &[usize],
        data: *const u8,
        len: usize,
        owner: O,
    ) -> Result<Tensor> {
        if data.is_null() && len > 0 {
            return Err(Error::InvalidTensor(format!("data is NULL but {len} bytes were promised")));
        }
        Tensor::over(dtype, Shape::from_slice(shape), Arc::new(HandedOver { data, len, _owner: owner }))
    }

    /// A tensor over all of `storage`, checked against `dtype` and `shape` (dropping the
    /// storage, and so releasing foreign memory, when the check fails).
    fn over(dtype: DType, shape: Shape, storage: Arc<dyn Buffer>) -> Result<Tensor> {
        let bytes = storage.bytes();
        check_bytes(dtype, &shape, bytes)?;
        check_alignment(dtype, bytes)?;
        let (data, len) = (bytes.as_ptr(), bytes.len());
        Ok(Tensor { dtype, shape, storage, data, len })
    }

    /// A tensor of zeros (false for bool).
    pub fn zeros(dtype: DType, shape: &[usize]) -> Result<Tensor> {
        let len = byte_len(dtype, shape)?;
        Ok(Tensor::from_buffer(dtype, Shape::from_slice(shape), AlignedBuffer::zeroed(len)))
    }

    /// Builds a tensor of `dtype` and `shape`, letting `fill` write its bytes.
    ///
    /// Backends use this to copy their output straight into Rivet's buffer.
    pub fn from_fn_bytes(
        dtype: DType,
        shape: &[usize],
        fill: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<Tensor> {
        let mut buffer = AlignedBuffer::zeroed(byte_len(dtype, shape)?);
        fill(buffer.as_bytes_mut())?;
        if dtype == DType::Bool {
            check_bools(buffer.as_bytes())?;
        }
        Ok(Tensor::from_buffer(dtype, Shape::from_slice(shape), buffer))
    }

    /// Joins tensors along the leading dimension (a batch from per-request parts). Every part
    /// must have the same dtype, rank (at least 1) and trailing dimensions. Copies once.
    pub fn concat(parts: &[TensorView<'_>]) -> Result<Tensor> {
        let first = parts.first().ok_or_else(|| Error::InvalidTensor("concat of no tensors".into()))?;
        let Some((_, trailing)) = first.shape().split_first() else {
            return Err(Error::InvalidTensor("concat needs tensors of rank 1 or more, got a scalar".into()));
        };
        let mut rows = 0usize;
        for (i, part) in parts.iter().enumerate() {
            if part.dtype() != first.dtype() {
                return Err(Error::InvalidTensor(format!(
                    "concat: part {i} is {}, part 0 is {}",
                    part.dtype(),
                    first.dtype()
                )));
            }
            match part.shape().split_first() {
                Some((&n, rest)) if rest == trailing => {
                    rows = rows.checked_add(n).ok_or_else(|| {
                        Error::InvalidTensor("concat: the leading dimensions overflow".into())
                    })?
                }
                _ => {
                    return Err(Error::InvalidTensor(format!(
                        "concat: part {i} has shape {:?}, which does not match part 0's trailing \
                         dimensions {trailing:?}",
                        part.shape()
                    )))
                }
            }
        }
        let mut shape = Vec::with_capacity(first.shape().len());
        shape.push(rows);
        shape.extend_from_slice(trailing);
        Tensor::from_fn_bytes(first.dtype(), &shape, |bytes| {
            let mut at = 0;
            for part in parts {
                let src = part.as_bytes();
                bytes[at..at + src.len()].copy_from_slice(src);
                at += src.len();
            }
            Ok(())
        })
    }

    /// Rows `start..end` of the leading dimension, sharing this tensor's memory (no copy).
    pub fn slice_rows(&self, start: usize, end: usize) -> Result<Tensor> {
        let Some((&rows, trailing)) = self.shape.split_first() else {
            return Err(Error::InvalidTensor("cannot take rows of a scalar".into()));
        };
        if start > end || end > rows {
            return Err(Error::InvalidTensor(format!(
                "rows {start}..{end} are out of range for a leading dimension of {rows}"
            )));
        }
        let row_bytes = element_count(trailing)? * self.dtype.size();
        let mut shape = self.shape.clone();
        shape[0] = end - start;
        Ok(Tensor {
            dtype: self.dtype,
            shape,
            storage: Arc::clone(&self.storage),
            // SAFETY: within this tensor's bytes, as `end <= rows`.
            data: unsafe { self.data.add(start * row_bytes) },
            len: (end - start) * row_bytes,
        })
    }

    /// Splits the leading dimension into parts of `rows[i]` rows each (per-request outputs from
    /// a batch). The sizes must add up to the leading dimension. The parts share this tensor's
    /// memory; nothing is copied.
    pub fn split(&self, rows: &[usize]) -> Result<Vec<Tensor>> {
        let leading = self.shape.first().copied().unwrap_or(0);
        let total = rows.iter().try_fold(0usize, |acc, &n| acc.checked_add(n));
        if self.shape.is_empty() || total != Some(leading) {
            return Err(Error::InvalidTensor(format!(
                "split: parts of {rows:?} rows do not add up to the leading dimension of {:?}",
                self.shape
            )));
        }
        let mut start = 0;
        rows.iter()
            .map(|&n| {
                let part = self.slice_rows(start, start + n);
                start += n;
                part
            })
            .collect()
    }

    /// Whether this tensor's memory is its own, shared with other tensors, or foreign.
    pub fn storage_kind(&self) -> StorageKind {
        if !self.storage.owned() {
            StorageKind::Foreign
        } else if Arc::strong_count(&self.storage) > 1 {
            StorageKind::Shared
        } else {
            StorageKind::Owned
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len / self.dtype.size()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw bytes, row-major.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `data` and `len` are this tensor's part of `storage`, alive while `self` is.
        unsafe { raw_bytes(self.data, self.len) }
    }

    /// The elements as a typed slice; fails when `T` is not this tensor's dtype.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        self.view().as_slice()
    }

    /// A borrowed view of this tensor.
    pub fn view(&self) -> TensorView<'_> {
        TensorView { dtype: self.dtype, shape: &self.shape, data: self.as_bytes() }
    }
}

/// Checks that `bytes` is exactly what `dtype` and `shape` need, and that bools are 0 or 1.
fn check_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<()> {
    // The usual case with no formatting code in the way: every tensor made passes here.
    let fits = element_count(shape).ok().and_then(|n| n.checked_mul(dtype.size())) == Some(bytes.len());
    if !fits {
        return Err(bytes_mismatch(dtype, shape, bytes.len()));
    }
    if dtype == DType::Bool {
        check_bools(bytes)?;
    }
    Ok(())
}

/// Why `len` bytes are not what `dtype` and `shape` need.
#[cold]
fn bytes_mismatch(dtype: DType, shape: &[usize], len: usize) -> Error {
    match byte_len(dtype, shape) {
        Ok(expected) => Error::InvalidTensor(format!("{dtype}{shape:?} needs {expected} bytes, got {len}")),
        Err(e) => e,
    }
}

/// Checks that `bytes` starts at an address aligned to the element size.
fn check_alignment(dtype: DType, bytes: &[u8]) -> Result<()> {
    if !bytes.is_empty() && !(bytes.as_ptr() as usize).is_multiple_of(dtype.size()) {
        return Err(misaligned(dtype, bytes.as_ptr()));
    }
    Ok(())
}

#[cold]
fn misaligned(dtype: DType, at: *const u8) -> Error {
    Error::InvalidTensor(format!(
        "{dtype} data must be aligned to {} bytes, address {at:p} is not",
        dtype.size()
    ))
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.view().fmt(f)
    }
}

/// A borrowed tensor: dtype, shape and contiguous row-major bytes owned by someone else.
///
/// Nothing is copied when a view is made; the data must outlive the view.
#[derive(Clone, Copy, PartialEq)]
pub struct TensorView<'a> {
    dtype: DType,
    shape: &'a [usize],
    data: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// A view over `data`, which must hold exactly the bytes of `dtype` and `shape`, start at an
    /// address aligned to the element size, and (for bool) hold only 0 or 1.
    pub fn new(dtype: DType, shape: &'a [usize], data: &'a [u8]) -> Result<TensorView<'a>> {
        check_bytes(dtype, shape, data)?;
        check_alignment(dtype, data)?;
        Ok(TensorView { dtype, shape, data })
    }

    /// A view over typed elements.
    pub fn from_slice<T: Element>(shape: &'a [usize], data: &'a [T]) -> Result<TensorView<'a>> {
        // SAFETY: Elements are plain data; the slice's bytes live as long as the slice.
        let bytes =
            unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) };
        TensorView::new(T::DTYPE, shape, bytes)
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    /// Whether the view has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The raw bytes, row-major.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// The elements as a typed slice; fails when `T` is not this view's dtype.
    pub fn as_slice<T: Element>(&self) -> Result<&'a [T]> {
        if T::DTYPE != self.dtype {
            return Err(Error::InvalidTensor(format!("tensor holds {}, not {}", self.dtype, T::DTYPE)));
        }
        if self.data.is_empty() {
            return Ok(&[]);
        }
        // SAFETY: constructors checked the length, the alignment (owned buffers are 64-byte
        // aligned) and, for bool, that every byte is 0 or 1.
        Ok(unsafe { std::slice::from_raw_parts(self.data.as_ptr().cast::<T>(), self.len()) })
    }

    /// Copies the view into an owned tensor.
    pub fn to_tensor(&self) -> Tensor {
        Tensor::from_buffer(self.dtype, Shape::from_slice(self.shape), AlignedBuffer::copy_of(self.data))
    }
}

impl fmt::Debug for TensorView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({}{:?})", self.dtype, self.shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_dimensions_get_one_verdict_whatever_their_order() {
        let huge = 1usize << 40;
        for shape in [[0, huge, huge], [huge, 0, huge], [huge, huge, 0]] {
            let err = element_count(&shape).unwrap_err().to_string();
            assert!(err.contains("has more elements than fit in memory"), "{shape:?}: {err}");
        }
        assert_eq!(element_count(&[0, huge]).unwrap(), 0);
        assert_eq!(element_count(&[huge, 0]).unwrap(), 0);
        assert_eq!(element_count(&[3, 0, 5]).unwrap(), 0);
        assert_eq!(element_count(&[]).unwrap(), 1);
        assert_eq!(element_count(&[2, 3]).unwrap(), 6);
    }
    use half::bf16;

    #[test]
    fn a_copy_holds_the_bytes_aligned_with_zeros_after_them() {
        for len in [0usize, 1, 63, 64, 65, 200] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
            let buffer = AlignedBuffer::copy_of(&bytes);
            assert_eq!(buffer.as_bytes(), &bytes[..], "{len} bytes");
            assert_eq!(buffer.blocks.len(), len.div_ceil(TENSOR_ALIGNMENT));
            assert_eq!(buffer.blocks.as_ptr() as usize % TENSOR_ALIGNMENT, 0);
            let padding = buffer.blocks.iter().flat_map(|b| b.0).skip(len);
            assert!(padding.into_iter().all(|b| b == 0), "{len} bytes: the padding is zeros");
        }
    }

    #[test]
    fn owned_data_is_aligned_and_round_trips() {
        let t = Tensor::from_slice(&[2, 3], &[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!(t.as_bytes().as_ptr() as usize % TENSOR_ALIGNMENT, 0);
        assert_eq!(t.as_slice::<f64>().unwrap(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(t.len(), 6);
        let b = Tensor::from_slice(&[2], &[bf16::from_f32(1.5), bf16::from_f32(-2.0)]).unwrap();
        assert_eq!(b.as_slice::<bf16>().unwrap()[0].to_f32(), 1.5);
    }

    #[test]
    fn wrong_lengths_types_and_bools_are_rejected() {
        let err = Tensor::from_slice(&[2, 2], &[1.0f32; 3]).unwrap_err();
        assert_eq!(err.to_string(), "invalid tensor: shape [2, 2] holds 4 elements, got 3 values");
        let t = Tensor::from_slice(&[1], &[7i64]).unwrap();
        let err = t.as_slice::<f32>().unwrap_err();
        assert_eq!(err.to_string(), "invalid tensor: tensor holds i64, not f32");
        let err = Tensor::from_bytes(DType::Bool, &[2], &[1, 2]).unwrap_err();
        assert!(err.to_string().contains("byte 2 at element 1"), "{err}");
        let err = Tensor::from_bytes(DType::F32, &[usize::MAX, 2], &[]).unwrap_err();
        assert!(err.to_string().contains("more elements than fit"), "{err}");
    }

    #[test]
    fn views_do_not_copy_and_check_alignment() {
        let data = [1u32, 2, 3, 4];
        let bytes: &[u8] = unsafe { std::slice::from_raw_parts(data.as_ptr().cast(), 16) };
        let shape = [2usize];
        let view = TensorView::new(DType::I32, &[4], bytes).unwrap();
        assert_eq!(view.as_bytes().as_ptr(), bytes.as_ptr());
        let err = TensorView::new(DType::I32, &shape, &bytes[1..9]).unwrap_err();
        assert!(err.to_string().contains("aligned to 4 bytes"), "{err}");
        assert_eq!(view.to_tensor().as_slice::<i32>().unwrap(), &[1, 2, 3, 4]);
    }

    #[test]
    fn clones_and_splits_share_memory_and_concat_joins_rows() {
        let t = Tensor::from_slice(&[3, 2], &[1i32, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(t.storage_kind(), StorageKind::Owned);
        let c = t.clone();
        assert_eq!(c.as_bytes().as_ptr(), t.as_bytes().as_ptr());
        assert_eq!(t.storage_kind(), StorageKind::Shared);
        let parts = t.split(&[1, 0, 2]).unwrap();
        assert_eq!(parts[0].shape(), &[1, 2]);
        assert_eq!(parts[1].shape(), &[0, 2]);
        assert!(parts[1].is_empty());
        assert_eq!(parts[2].as_slice::<i32>().unwrap(), &[3, 4, 5, 6]);
        assert_eq!(parts[2].as_bytes().as_ptr(), t.as_bytes()[8..].as_ptr());
        let err = t.split(&[1, 1]).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid tensor: split: parts of [1, 1] rows do not add up to the leading dimension of [3, 2]"
        );
        let joined = Tensor::concat(&[parts[2].view(), parts[0].view()]).unwrap();
        assert_eq!(joined.shape(), &[3, 2]);
        assert_eq!(joined.as_slice::<i32>().unwrap(), &[3, 4, 5, 6, 1, 2]);
        let other = Tensor::from_slice(&[1, 3], &[0i32; 3]).unwrap();
        let err = Tensor::concat(&[t.view(), other.view()]).unwrap_err().to_string();
        assert!(err.contains("part 1 has shape [1, 3]") && err.contains("trailing dimensions [2]"), "{err}");
        let f = Tensor::from_slice(&[1, 2], &[0f32; 2]).unwrap();
        let err = Tensor::concat(&[t.view(), f.view()]).unwrap_err().to_string();
        assert_eq!(err, "invalid tensor: concat: part 1 is f32, part 0 is i32");
        assert!(t.slice_rows(2, 4).unwrap_err().to_string().contains("rows 2..4 are out of range"));
    }

    #[test]
    fn foreign_memory_is_released_exactly_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static RELEASED: AtomicUsize = AtomicUsize::new(0);
        let data: &'static [f32] = Box::leak(vec![1.0f32, 2.0, 3.0, 4.0].into_boxed_slice());
        let release: Release = Box::new(|| {
            RELEASED.fetch_add(1, Ordering::SeqCst);
        });
        // SAFETY: the leaked slice lives forever.
        let t =
            unsafe { Tensor::from_foreign(DType::F32, &[2, 2], data.as_ptr().cast(), 16, release) }.unwrap();
        assert_eq!(t.storage_kind(), StorageKind::Foreign);
        assert_eq!(t.as_bytes().as_ptr(), data.as_ptr().cast());
        let rows = t.split(&[1, 1]).unwrap();
        let copy = t.clone();
        drop(t);
        drop(copy);
        assert_eq!(RELEASED.load(Ordering::SeqCst), 0, "parts still use the memory");
        assert_eq!(rows[1].as_slice::<f32>().unwrap(), &[3.0, 4.0]);
        drop(rows);
        assert_eq!(RELEASED.load(Ordering::SeqCst), 1);
        // A bad length is an error, and the memory is released at once.
        static RELEASED_BAD: AtomicUsize = AtomicUsize::new(0);
        let release: Release = Box::new(|| {
            RELEASED_BAD.fetch_add(1, Ordering::SeqCst);
        });
        // SAFETY: as above.
        let err =
            unsafe { Tensor::from_foreign(DType::F32, &[3], data.as_ptr().cast(), 16, release) }.unwrap_err();
        assert_eq!(err.to_string(), "invalid tensor: f32[3] needs 12 bytes, got 16");
        assert_eq!(RELEASED_BAD.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn handed_over_memory_is_owned_and_its_owner_dropped_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static DROPPED: AtomicUsize = AtomicUsize::new(0);
        struct Owner(Vec<i32>);
        impl Drop for Owner {
            fn drop(&mut self) {
                DROPPED.fetch_add(1, Ordering::SeqCst);
            }
        }
        let owner = Owner(vec![1, 2, 3, 4, 5, 6]);
        let ptr = owner.0.as_ptr().cast::<u8>();
        // SAFETY: the Vec's buffer lives, unchanged, as long as the owner.
        let t = unsafe { Tensor::from_handed_over(DType::I32, &[3, 2], ptr, 24, owner) }.unwrap();
        assert_eq!(t.storage_kind(), StorageKind::Owned);
        assert_eq!(t.as_bytes().as_ptr(), ptr, "not copied");
        let rows = t.split(&[2, 1]).unwrap();
        assert_eq!(t.storage_kind(), StorageKind::Shared);
        drop(t);
        assert_eq!(rows[1].as_slice::<i32>().unwrap(), &[5, 6]);
        assert_eq!(DROPPED.load(Ordering::SeqCst), 0, "a part still uses the memory");
        drop(rows);
        assert_eq!(DROPPED.load(Ordering::SeqCst), 1);
        // A shape that does not fit the bytes is an error, and the owner is dropped at once.
        let owner = Owner(vec![1, 2]);
        let ptr = owner.0.as_ptr().cast::<u8>();
        // SAFETY: as above.
        let err = unsafe { Tensor::from_handed_over(DType::I32, &[3], ptr, 8, owner) }.unwrap_err();
        assert_eq!(err.to_string(), "invalid tensor: i32[3] needs 12 bytes, got 8");
        assert_eq!(DROPPED.load(Ordering::SeqCst), 2);
    }
}
