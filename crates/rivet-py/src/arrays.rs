//! NumPy in and out, through the array interface (the stable ABI has no buffer protocol before
//! Python 3.11, and the array interface needs nothing of NumPy's C API): its C form,
//! `__array_struct__` (a capsule holding NumPy's `PyArrayInterface`), where NumPy offers it, which
//! costs less per call than the dict of `__array_interface__`.
//!
//! In: a NumPy array is used as it is; anything with `__dlpack__` (a torch tensor) becomes one
//! through `numpy.from_dlpack`, and anything else through `numpy.asarray`, both without a copy
//! where the producer allows. A C-contiguous, aligned, little-endian array is then read in place
//! for the run; any other is copied once (`numpy.array(..., order="C", copy=True)`, little-endian).
//!
//! Out: each output tensor is wrapped in an [`OutputBuffer`] that exposes its bytes through
//! `__array_interface__`, and `numpy.asarray` over it is an array whose `base` keeps the tensor
//! alive: no copy, and the memory is freed when the last array over it goes.

use std::ffi::{c_char, c_int, c_void};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};
use rivet::{DType, StorageKind, Tensor, TensorView};

use crate::errors;

static NUMPY: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
static NDARRAY: PyOnceLock<Py<pyo3::types::PyType>> = PyOnceLock::new();
static ASARRAY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The `numpy` module.
pub(crate) fn numpy(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    NUMPY.get_or_try_init(py, || Ok::<_, PyErr>(py.import("numpy")?.unbind())).map(|m| m.bind(py))
}

/// Rivet's dtype for a NumPy type string (`<f4`, `|b1`...), and whether its bytes need swapping.
fn dtype_of(typestr: &str) -> Option<(DType, bool)> {
    let mut chars = typestr.chars();
    let order = chars.next()?;
    let rest: String = chars.collect();
    let dtype = match rest.as_str() {
        "f2" => DType::F16,
        "f4" => DType::F32,
        "f8" => DType::F64,
        "i1" => DType::I8,
        "i2" => DType::I16,
        "i4" => DType::I32,
        "i8" => DType::I64,
        "u1" => DType::U8,
        "b1" => DType::Bool,
        _ => return None,
    };
    Some((dtype, order == '>' && dtype.size() > 1))
}

/// NumPy's type string for a dtype Rivet hands out (bf16 is widened first: NumPy has none).
fn typestr(dtype: DType) -> &'static str {
    rivet::npy::npy_type(dtype).unwrap_or("<f4")
}

/// The NumPy dtype Rivet hands `dtype` out as (bf16 as float32).
pub(crate) fn numpy_dtype(py: Python<'_>, dtype: DType) -> PyResult<Bound<'_, PyAny>> {
    numpy(py)?.call_method1("dtype", (typestr(dtype),))
}

/// An input array held for one run: the array (kept alive, so its memory is) and where its
/// bytes are.
pub(crate) struct InputArray {
    _array: Py<PyAny>,
    dtype: DType,
    shape: Vec<usize>,
    data: *const u8,
    len: usize,
}

impl InputArray {
    /// A view of the array's bytes, valid while `self` (and so the array) lives.
    pub(crate) fn view(&self) -> rivet::Result<TensorView<'_>> {
        let bytes: &[u8] = if self.len == 0 {
            &[]
        } else {
            // SAFETY: `data` points to `len` bytes of the array `self` keeps alive, C-contiguous
            // (checked in `input_array`); NumPy does not move an array's data while it lives.
            unsafe { std::slice::from_raw_parts(self.data, self.len) }
        };
        TensorView::new(self.dtype, &self.shape, bytes)
    }
}

/// Where an array's bytes are, from its `__array_interface__`: `None` when they cannot be read
/// in place (strided, misaligned or byte-swapped), so the caller copies once.
fn in_place(array: &Bound<'_, PyAny>, what: &str) -> PyResult<Option<InputArray>> {
    let py = array.py();
    let interface = array.getattr(pyo3::intern!(py, "__array_interface__"))?;
    let typestr: String = interface.get_item("typestr")?.extract()?;
    let Some((dtype, swapped)) = dtype_of(&typestr) else {
        let name: String = array.getattr("dtype")?.str()?.extract()?;
        return Err(errors::rivet(
            py,
            rivet::Error::InvalidInput {
                input: None,
                message: format!(
                    "{what}: NumPy dtype {name} has no Rivet dtype (Rivet runs float16, float32, float64, \
                     int8, int16, int32, int64, uint8 and bool)"
                ),
            },
        ));
    };
    let shape: Vec<usize> = interface.get_item("shape")?.extract()?;
    let (address, _readonly): (usize, bool) = interface.get_item("data")?.extract()?;
    let strides = interface.get_item("strides")?;
    let contiguous = strides.is_none();
    let aligned = address % dtype.size() == 0;
    if swapped || !contiguous || !aligned {
        return Ok(None);
    }
    let len = shape.iter().product::<usize>() * dtype.size();
    Ok(Some(InputArray { _array: array.clone().unbind(), dtype, shape, data: address as *const u8, len }))
}

/// NumPy's `PyArrayInterface`, the struct `__array_struct__` hands out (numpy's `ndarraytypes.h`).
#[repr(C)]
struct ArrayInterface {
    /// Always 2.
    two: c_int,
    nd: c_int,
    typekind: c_char,
    itemsize: c_int,
    flags: c_int,
    shape: *mut isize,
    strides: *mut isize,
    data: *mut c_void,
    descr: *mut pyo3::ffi::PyObject,
}

/// `ArrayInterface::flags` bits (NumPy's `NPY_ARRAY_*`).
const C_CONTIGUOUS: c_int = 0x1;
const ALIGNED: c_int = 0x100;
const NOTSWAPPED: c_int = 0x200;
const WRITEABLE: c_int = 0x400;

/// Where a NumPy array's bytes are, from its `__array_struct__`: `None` when they cannot be read
/// in place or the dtype is not one Rivet runs (the caller then takes the slower path, which
/// copies or names the dtype in its error).
fn in_place_struct(array: &Bound<'_, PyAny>) -> PyResult<Option<InputArray>> {
    let py = array.py();
    let capsule = array.getattr(pyo3::intern!(py, "__array_struct__"))?;
    if capsule.cast::<pyo3::types::PyCapsule>().is_err() {
        return Ok(None);
    }
    // SAFETY: a capsule object; NumPy names its array-struct capsules NULL.
    let pointer = unsafe { pyo3::ffi::PyCapsule_GetPointer(capsule.as_ptr(), std::ptr::null()) };
    if pointer.is_null() {
        // Not NumPy's capsule after all: clear the error and read the dict form instead.
        let _ = PyErr::take(py);
        return Ok(None);
    }
    // SAFETY: NumPy's capsule holds a PyArrayInterface, valid while the capsule lives (here).
    let interface = unsafe { &*pointer.cast::<ArrayInterface>() };
    let wanted = C_CONTIGUOUS | ALIGNED | NOTSWAPPED;
    if interface.two != 2 || interface.flags & wanted != wanted || interface.nd < 0 {
        return Ok(None);
    }
    let dtype = match (interface.typekind as u8, interface.itemsize) {
        (b'f', 2) => DType::F16,
        (b'f', 4) => DType::F32,
        (b'f', 8) => DType::F64,
        (b'i', 1) => DType::I8,
        (b'i', 2) => DType::I16,
        (b'i', 4) => DType::I32,
        (b'i', 8) => DType::I64,
        (b'u', 1) => DType::U8,
        (b'b', 1) => DType::Bool,
        _ => return Ok(None),
    };
    let shape: Vec<usize> = if interface.nd == 0 {
        Vec::new()
    } else {
        // SAFETY: `nd` dimensions (checked non-negative), valid while the capsule lives.
        unsafe { std::slice::from_raw_parts(interface.shape, interface.nd as usize) }
            .iter()
            .map(|&d| d as usize)
            .collect()
    };
    let len = shape.iter().product::<usize>() * dtype.size();
    Ok(Some(InputArray { _array: array.clone().unbind(), dtype, shape, data: interface.data.cast(), len }))
}

/// Reads one input (`what` names it in messages, made only when one is needed): see the module's
/// documentation.
pub(crate) fn input_array(value: &Bound<'_, PyAny>, what: impl Fn() -> String) -> PyResult<InputArray> {
    let py = value.py();
    let ndarray = NDARRAY.import(py, "numpy", "ndarray")?;
    if value.is_instance(ndarray)? {
        if let Some(found) = in_place_struct(value)? {
            return Ok(found);
        }
    }
    let what = what();
    let what = what.as_str();
    let np = numpy(py)?;
    let array = if value.is_instance(ndarray)? {
        value.clone()
    } else if value.hasattr(pyo3::intern!(py, "__dlpack__"))? {
        np.call_method1("from_dlpack", (value,)).map_err(|e| {
            errors::rivet(
                py,
                rivet::Error::InvalidInput {
                    input: None,
                    message: format!("{what}: cannot be read through __dlpack__: {e}"),
                },
            )
        })?
    } else {
        np.call_method1("asarray", (value,)).map_err(|e| {
            errors::rivet(
                py,
                rivet::Error::InvalidInput { input: None, message: format!("{what}: not an array: {e}") },
            )
        })?
    };
    if let Some(found) = in_place(&array, what)? {
        return Ok(found);
    }
    // One copy, into a new C-contiguous (so aligned) little-endian array.
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", array.getattr("dtype")?.call_method1("newbyteorder", ("<",))?)?;
    kwargs.set_item("order", "C")?;
    kwargs.set_item("copy", true)?;
    let copy = np.call_method("array", (array,), Some(&kwargs))?;
    in_place(&copy, what)?.ok_or_else(|| errors::argument(py, format!("{what}: cannot be made contiguous")))
}

/// An output tensor, exposed to NumPy through `__array_interface__` (see the module's
/// documentation). Not made directly: `Model.run` returns NumPy arrays over these.
#[pyclass(frozen, weakref, module = "rivet._rivet")]
pub struct OutputBuffer {
    tensor: Tensor,
    writable: bool,
}

/// What an output's `__array_struct__` capsule holds: the interface (first, so that the capsule's
/// pointer is a pointer to it) and the shape it points to.
#[repr(C)]
struct Exported {
    /// Read by NumPy through the capsule's pointer.
    #[allow(dead_code)]
    interface: ArrayInterface,
    _shape: Vec<isize>,
}

/// Frees an `__array_struct__` capsule's contents.
unsafe extern "C" fn free_exported(capsule: *mut pyo3::ffi::PyObject) {
    // SAFETY: called once by Python on a capsule made by `__array_struct__` (NULL name).
    let pointer = unsafe { pyo3::ffi::PyCapsule_GetPointer(capsule, std::ptr::null()) };
    if !pointer.is_null() {
        // SAFETY: made from a Box<Exported> in `__array_struct__`.
        drop(unsafe { Box::from_raw(pointer.cast::<Exported>()) });
    }
}

#[pymethods]
impl OutputBuffer {
    /// The array interface's C form over the tensor's bytes (what NumPy reads first). The array
    /// NumPy makes from it keeps this buffer as its `base`.
    #[getter]
    fn __array_struct__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let dtype = self.tensor.dtype();
        let typekind = match dtype {
            DType::F16 | DType::BF16 | DType::F32 | DType::F64 => b'f',
            DType::I8 | DType::I16 | DType::I32 | DType::I64 => b'i',
            DType::U8 => b'u',
            DType::Bool => b'b',
        };
        let mut shape: Vec<isize> = self.tensor.shape().iter().map(|&d| d as isize).collect();
        let flags = C_CONTIGUOUS | ALIGNED | NOTSWAPPED | if self.writable { WRITEABLE } else { 0 };
        let interface = ArrayInterface {
            two: 2,
            nd: shape.len() as c_int,
            typekind: typekind as c_char,
            itemsize: dtype.size() as c_int,
            flags,
            shape: shape.as_mut_ptr(),
            // C-contiguous: NumPy computes the strides.
            strides: std::ptr::null_mut(),
            data: self.tensor.as_bytes().as_ptr().cast_mut().cast(),
            descr: std::ptr::null_mut(),
        };
        let exported = Box::into_raw(Box::new(Exported { interface, _shape: shape }));
        // SAFETY: a valid pointer, freed once by `free_exported` when the capsule goes.
        let capsule =
            unsafe { pyo3::ffi::PyCapsule_New(exported.cast(), std::ptr::null(), Some(free_exported)) };
        if capsule.is_null() {
            // SAFETY: the capsule was not made, so nothing else owns `exported`.
            drop(unsafe { Box::from_raw(exported) });
            return Err(PyErr::fetch(py));
        }
        // SAFETY: a new reference to a capsule.
        Ok(unsafe { Bound::from_owned_ptr(py, capsule) })
    }

    /// The array interface (version 3) over the tensor's bytes.
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("version", 3)?;
        dict.set_item("shape", PyTuple::new(py, self.tensor.shape())?)?;
        dict.set_item("typestr", typestr(self.tensor.dtype()))?;
        dict.set_item("data", (self.tensor.as_bytes().as_ptr() as usize, !self.writable))?;
        Ok(dict)
    }
}

/// A NumPy array over `tensor`'s bytes, without copying (bf16, which NumPy lacks, is widened
/// to float32 exactly; an empty tensor becomes a new empty array).
pub(crate) fn to_numpy(py: Python<'_>, tensor: Tensor) -> PyResult<Bound<'_, PyAny>> {
    let np = numpy(py)?;
    let tensor = if tensor.dtype() == DType::BF16 {
        let wide: Vec<f32> = tensor
            .as_slice::<half::bf16>()
            .map_err(|e| errors::rivet(py, e))?
            .iter()
            .map(|v| v.to_f32())
            .collect();
        Tensor::from_slice(tensor.shape(), &wide).map_err(|e| errors::rivet(py, e))?
    } else {
        tensor
    };
    if tensor.is_empty() {
        let shape = PyTuple::new(py, tensor.shape())?;
        return np.call_method1("empty", (shape, typestr(tensor.dtype())));
    }
    // Writable only when no other tensor shares the bytes.
    let writable = tensor.storage_kind() == StorageKind::Owned;
    let buffer = Bound::new(py, OutputBuffer { tensor, writable })?;
    ASARRAY.import(py, "numpy", "asarray")?.call1((buffer,))
}
