//! Owned tensors and borrowed views over contiguous, row-major data.

use std::fmt;

use crate::dtype::{DType, Element};
use crate::error::{Error, Result};

/// Alignment, in bytes, of every owned tensor's data (a cache line; enough for any SIMD load).
pub const TENSOR_ALIGNMENT: usize = 64;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u8; TENSOR_ALIGNMENT]);

/// A heap buffer whose start is aligned to [`TENSOR_ALIGNMENT`].
#[derive(Clone)]
struct AlignedBuffer {
    blocks: Vec<Block>,
    len: usize,
}

impl AlignedBuffer {
    fn zeroed(len: usize) -> Self {
        let blocks = vec![Block([0; TENSOR_ALIGNMENT]); len.div_ceil(TENSOR_ALIGNMENT)];
        AlignedBuffer { blocks, len }
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

/// Number of elements of `shape`, or an error when the product overflows.
pub fn element_count(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::InvalidTensor(format!("shape {shape:?} has more elements than fit in memory")))
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

/// An owned tensor: dtype, shape and contiguous row-major data aligned to 64 bytes.
#[derive(Clone)]
pub struct Tensor {
    dtype: DType,
    shape: Vec<usize>,
    data: AlignedBuffer,
}

impl Tensor {
    /// Builds a tensor from elements in row-major order.
    ///
    /// Fails when `data.len()` is not the number of elements of `shape`.
    pub fn from_slice<T: Element>(shape: &[usize], data: &[T]) -> Result<Tensor> {
        let count = element_count(shape)?;
        if count != data.len() {
            return Err(Error::InvalidTensor(format!(
                "shape {shape:?} holds {count} elements, got {} values",
                data.len()
            )));
        }
        // SAFETY: every Element is plain data whose bytes are its dtype's representation.
        let bytes =
            unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) };
        Tensor::from_bytes(T::DTYPE, shape, bytes)
    }

    /// Like [`Tensor::from_slice`], taking ownership of `shape` (saves an allocation when the
    /// caller built the shape anyway, as backends copying their outputs do).
    pub fn from_shape_and_slice<T: Element>(shape: Vec<usize>, data: &[T]) -> Result<Tensor> {
        let count = element_count(&shape)?;
        if count != data.len() {
            return Err(Error::InvalidTensor(format!(
                "shape {shape:?} holds {count} elements, got {} values",
                data.len()
            )));
        }
        let mut buffer = AlignedBuffer::zeroed(std::mem::size_of_val(data));
        // SAFETY: every Element is plain data whose bytes are its dtype's representation; bools
        // in a `&[bool]` are 0 or 1.
        let bytes =
            unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) };
        buffer.as_bytes_mut().copy_from_slice(bytes);
        Ok(Tensor { dtype: T::DTYPE, shape, data: buffer })
    }

    /// Builds a tensor by copying raw little-endian bytes of `dtype`.
    ///
    /// Fails when the byte length does not match `shape`, or a bool byte is not 0 or 1.
    pub fn from_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Tensor> {
        let expected = byte_len(dtype, shape)?;
        if bytes.len() != expected {
            return Err(Error::InvalidTensor(format!(
                "{dtype}{shape:?} needs {expected} bytes, got {}",
                bytes.len()
            )));
        }
        if dtype == DType::Bool {
            check_bools(bytes)?;
        }
        let mut data = AlignedBuffer::zeroed(expected);
        data.as_bytes_mut().copy_from_slice(bytes);
        Ok(Tensor { dtype, shape: shape.to_vec(), data })
    }

    /// A tensor of zeros (false for bool).
    pub fn zeros(dtype: DType, shape: &[usize]) -> Result<Tensor> {
        let len = byte_len(dtype, shape)?;
        Ok(Tensor { dtype, shape: shape.to_vec(), data: AlignedBuffer::zeroed(len) })
    }

    /// Builds a tensor of `dtype` and `shape`, letting `fill` write its bytes.
    ///
    /// Backends use this to copy their output straight into Rivet's buffer.
    pub fn from_fn_bytes(
        dtype: DType,
        shape: &[usize],
        fill: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<Tensor> {
        let mut tensor = Tensor::zeros(dtype, shape)?;
        fill(tensor.data.as_bytes_mut())?;
        if dtype == DType::Bool {
            check_bools(tensor.data.as_bytes())?;
        }
        Ok(tensor)
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
        self.data.len / self.dtype.size()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.len == 0
    }

    /// The raw bytes, row-major.
    pub fn as_bytes(&self) -> &[u8] {
        self.data.as_bytes()
    }

    /// The elements as a typed slice; fails when `T` is not this tensor's dtype.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        self.view().as_slice()
    }

    /// A borrowed view of this tensor.
    pub fn view(&self) -> TensorView<'_> {
        TensorView { dtype: self.dtype, shape: &self.shape, data: self.data.as_bytes() }
    }
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
        let expected = byte_len(dtype, shape)?;
        if data.len() != expected {
            return Err(Error::InvalidTensor(format!(
                "{dtype}{shape:?} needs {expected} bytes, got {}",
                data.len()
            )));
        }
        if !data.is_empty() && !(data.as_ptr() as usize).is_multiple_of(dtype.size()) {
            return Err(Error::InvalidTensor(format!(
                "{dtype} data must be aligned to {} bytes, address {:p} is not",
                dtype.size(),
                data.as_ptr()
            )));
        }
        if dtype == DType::Bool {
            check_bools(data)?;
        }
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
        let mut data = AlignedBuffer::zeroed(self.data.len());
        data.as_bytes_mut().copy_from_slice(self.data);
        Tensor { dtype: self.dtype, shape: self.shape.to_vec(), data }
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
    use half::bf16;

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
}
