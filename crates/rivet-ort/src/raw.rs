//! A run through ONNX Runtime's C API, for `OrtModel::execute`.
//!
//! `ort`'s safe `Session::run` rebuilds per run what never changes for a model: NUL-terminated
//! copies of every input and output name, a CPU memory description for each input (made and
//! released again), and a reference-counted wrapper per value that reads the output's type and
//! shape back from ONNX Runtime into owned Rust values. On the bundled MLP at batch 1 that is
//! about 1,500 instructions of a 33,000-instruction run (callgrind, `benches/ort_ab.rs`). This
//! module makes the names and the memory description once, at load, and calls `Run` with them
//! directly; each output goes to a Rivet tensor after one type-and-shape query. Everything else
//! (sessions, their options, the signature) still goes through `ort`.

use std::ffi::{c_char, c_void, CString};
use std::ptr::{self, NonNull};

use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::Session;
use ort::sys::{
    ONNXTensorElementDataType as Onnx, ONNXType, OrtApi, OrtStatusPtr, OrtTensorTypeAndShapeInfo, OrtValue,
};
use ort::value::TensorElementType;
use ort::AsPointer;
use smallvec::SmallVec;

use rivet_core::{DType, Error, Result, Tensor, TensorView};

use crate::{dtype_of, hand_over, NAME};

/// What a model's runs hand ONNX Runtime unchanged: the names in session order, as C strings,
/// and the description of the CPU memory its inputs lie in.
pub(crate) struct RunPlan {
    inputs: CNames,
    outputs: CNames,
    cpu: MemoryInfo<'static>,
}

/// Names as C strings and an array of pointers to them, made once.
struct CNames {
    /// Owns what `pointers` points to; never changed after `new`.
    _owned: Box<[CString]>,
    pointers: Box<[*const c_char]>,
}

// SAFETY: the pointers point into `_owned`'s heap buffers, which live as long as the struct and
// are never written after `new`: sharing or sending them is sharing or sending `&[CString]`.
unsafe impl Send for CNames {}
// SAFETY: as for `Send`.
unsafe impl Sync for CNames {}

impl CNames {
    fn new<'a>(names: impl Iterator<Item = &'a str>) -> Result<CNames> {
        let owned = names
            .map(|name| {
                CString::new(name)
                    .map_err(|_| Error::unsupported(NAME, format!("the name {name:?} holds a NUL byte")))
            })
            .collect::<Result<Box<[CString]>>>()?;
        let pointers = owned.iter().map(|name| name.as_ptr()).collect();
        Ok(CNames { _owned: owned, pointers })
    }
}

impl RunPlan {
    /// The plan for a session with these input and output names, in the session's order.
    pub(crate) fn new<'a>(
        inputs: impl Iterator<Item = &'a str>,
        outputs: impl Iterator<Item = &'a str>,
    ) -> Result<RunPlan> {
        // The description `ort::value::TensorRef::from_array_view` gives plain CPU memory.
        let cpu = MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Device, MemoryType::Default)
            .map_err(|e| Error::backend(NAME, &e).with_source(e))?;
        Ok(RunPlan { inputs: CNames::new(inputs)?, outputs: CNames::new(outputs)?, cpu })
    }

    /// Runs `session` on `inputs` (in the session's input order) and returns its outputs, in
    /// the session's output order, as Rivet tensors that own ONNX Runtime's buffers.
    pub(crate) fn run(&self, session: &mut Session, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        if inputs.len() != self.inputs.pointers.len() {
            // ONNX Runtime reads a name for every value it gets: never pass more values than names.
            return Err(Error::backend(
                NAME,
                format!("{} inputs were given; the model takes {}", inputs.len(), self.inputs.pointers.len()),
            ));
        }
        let api = ort::api();
        let mut values = Values::new(api);
        for view in inputs {
            values.0.push(self.input(api, view)?);
        }
        let mut outputs = Values::new(api);
        outputs.0.resize(self.outputs.pointers.len(), ptr::null_mut());
        // SAFETY: the session is ours alone for the call (a lease of the pool); the names and
        // values arrays have the lengths passed; each input value describes a view's bytes,
        // which outlive the call, and ONNX Runtime only reads them; `outputs` has a null slot
        // per output name, for ONNX Runtime to fill with values we then own.
        let status = unsafe {
            (api.Run)(
                session.ptr_mut(),
                ptr::null(),
                self.inputs.pointers.as_ptr(),
                values.0.as_ptr().cast::<*const OrtValue>(),
                values.0.len(),
                self.outputs.pointers.as_ptr(),
                self.outputs.pointers.len(),
                outputs.0.as_mut_ptr(),
            )
        };
        check(status)?;
        drop(values);
        let mut tensors = Vec::with_capacity(outputs.0.len());
        for index in 0..outputs.0.len() {
            let raw = std::mem::replace(&mut outputs.0[index], ptr::null_mut());
            let Some(value) = NonNull::new(raw) else {
                return Err(Error::backend(
                    NAME,
                    format!("ONNX Runtime returned no value for output {index}"),
                ));
            };
            let value = OwnedValue { api, value };
            // SAFETY: `value` is an output of the run just made, ours alone.
            tensors.push(unsafe { output_tensor(&self.outputs, index, value, inputs) }?);
        }
        Ok(tensors)
    }

    /// An ONNX Runtime value over `view`'s bytes, without copying them.
    fn input(&self, api: &OrtApi, view: &TensorView<'_>) -> Result<*mut OrtValue> {
        let mut shape = SmallVec::<[i64; 8]>::new();
        for &d in view.shape() {
            shape.push(
                i64::try_from(d).map_err(|_| Error::backend(NAME, format!("dimension {d} is too large")))?,
            );
        }
        let bytes = view.as_bytes();
        let mut value = ptr::null_mut();
        // SAFETY: `bytes` is the view's `bytes.len()` bytes, alive until the run returns (the
        // value is released before `run` returns, see `Values`); ONNX Runtime does not write to
        // an input; `shape` has `shape.len()` dimensions.
        let status = unsafe {
            (api.CreateTensorWithDataAsOrtValue)(
                self.cpu.ptr(),
                bytes.as_ptr().cast_mut().cast::<c_void>(),
                bytes.len(),
                shape.as_ptr(),
                shape.len(),
                element_type(view.dtype()),
                &mut value,
            )
        };
        check(status)?;
        Ok(value)
    }
}

/// The ONNX element type of a Rivet dtype.
fn element_type(dtype: DType) -> Onnx {
    match dtype {
        DType::F16 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16,
        DType::BF16 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16,
        DType::F32 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
        DType::F64 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE,
        DType::I8 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8,
        DType::I16 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16,
        DType::I32 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32,
        DType::I64 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64,
        DType::U8 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8,
        DType::Bool => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL,
    }
}

/// `Ok` for a null status, else the status's message as a backend error (the error takes the
/// status over and releases it).
fn check(status: OrtStatusPtr) -> Result<()> {
    // SAFETY: `status` was just returned by an ONNX Runtime call and is released by nobody else.
    unsafe { ort::Error::result_from_status(status) }.map_err(|e| Error::backend(NAME, &e).with_source(e))
}

/// Values made for one run, released when it ends however it ends (null slots are skipped).
struct Values<'a>(SmallVec<[*mut OrtValue; 4]>, &'a OrtApi);

impl<'a> Values<'a> {
    fn new(api: &'a OrtApi) -> Self {
        Values(SmallVec::new(), api)
    }
}

impl Drop for Values<'_> {
    fn drop(&mut self) {
        for &value in &self.0 {
            if !value.is_null() {
                // SAFETY: each non-null slot is a value this run made or received, released once.
                unsafe { (self.1.ReleaseValue)(value) };
            }
        }
    }
}

/// An ONNX Runtime value that Rivet owns: released when dropped.
struct OwnedValue {
    api: &'static OrtApi,
    value: NonNull<OrtValue>,
}

// SAFETY: an output value is a plain CPU tensor that ONNX Runtime keeps no other reference to;
// reading it, and releasing it once, are safe from any thread.
unsafe impl Send for OwnedValue {}
// SAFETY: as for `Send`: nothing mutates the value while it is shared.
unsafe impl Sync for OwnedValue {}

impl Drop for OwnedValue {
    fn drop(&mut self) {
        // SAFETY: the value is ours alone and released only here.
        unsafe { (self.api.ReleaseValue)(self.value.as_ptr()) };
    }
}

/// Releases a type-and-shape description when dropped.
struct ShapeInfo<'a>(*mut OrtTensorTypeAndShapeInfo, &'a OrtApi);

impl Drop for ShapeInfo<'_> {
    fn drop(&mut self) {
        // SAFETY: made by `GetTensorTypeAndShape` for us, released once.
        unsafe { (self.1.ReleaseTensorTypeAndShapeInfo)(self.0) };
    }
}

/// Output `index` of a run as a Rivet tensor that takes `value` over (see
/// [`crate::take_output`] for why the buffer may outlive the session; an output lying in an
/// input is copied).
///
/// # Safety
/// `value` must be an output of a finished run, referenced by nothing else.
unsafe fn output_tensor(
    names: &CNames,
    index: usize,
    value: OwnedValue,
    inputs: &[TensorView<'_>],
) -> Result<Tensor> {
    let api = value.api;
    let raw = value.value.as_ptr();
    let name = || names._owned[index].to_string_lossy();
    let mut kind = ONNXType::ONNX_TYPE_UNKNOWN;
    // SAFETY: `raw` is a live value; `kind` is written.
    check(unsafe { (api.GetValueType)(raw, &mut kind) })?;
    if kind != ONNXType::ONNX_TYPE_TENSOR {
        return Err(Error::unsupported(NAME, format!("output \"{}\" is not a tensor", name())));
    }
    let mut info = ptr::null_mut();
    // SAFETY: `raw` is a live tensor value; `info` is written and released by `ShapeInfo`.
    check(unsafe { (api.GetTensorTypeAndShape)(raw, &mut info) })?;
    let info = ShapeInfo(info, api);
    let mut ty = Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    let mut rank = 0usize;
    // SAFETY: `info` is live; each out-parameter is written.
    check(unsafe { (api.GetTensorElementType)(info.0, &mut ty) })?;
    check(unsafe { (api.GetDimensionsCount)(info.0, &mut rank) })?;
    let mut dims = SmallVec::<[i64; 8]>::from_elem(0, rank);
    // SAFETY: `dims` has room for the `rank` dimensions.
    check(unsafe { (api.GetDimensions)(info.0, dims.as_mut_ptr(), rank) })?;
    drop(info);
    let element = TensorElementType::from(ty);
    let dtype = dtype_of(element).ok_or_else(|| {
        Error::unsupported(NAME, format!("output \"{}\" has element type {element:?}", name()))
    })?;
    let mut shape = SmallVec::<[usize; 8]>::with_capacity(rank);
    let mut count = 1usize;
    for &d in &dims {
        let d = usize::try_from(d)
            .map_err(|_| Error::backend(NAME, format!("output \"{}\" has dimension {d}", name())))?;
        count = count
            .checked_mul(d)
            .ok_or_else(|| Error::backend(NAME, format!("output \"{}\" is too large", name())))?;
        shape.push(d);
    }
    let len = count * dtype.size();
    let mut data: *mut c_void = ptr::null_mut();
    // SAFETY: `raw` is a live tensor value; `data` is written.
    check(unsafe { (api.GetTensorMutableData)(raw, &mut data) })?;
    // SAFETY: `data` is the value's `len` bytes (its element count times the element size),
    // made by ONNX Runtime for this run's output, which `value` alone holds.
    unsafe { hand_over(dtype, &shape, data.cast_const().cast::<u8>(), len, value, inputs) }
}
