//! Tensors across the JavaScript boundary: `{ data: TypedArray, shape: number[], dtype? }` in,
//! the same with `dtype` set out. Both directions copy once: inputs into WebAssembly memory,
//! outputs into arrays of the host's own, which stay valid however the module's memory grows.

use js_sys::{
    Array, BigInt64Array, Float32Array, Float64Array, Int16Array, Int32Array, Int8Array, Object, Reflect,
    Uint16Array, Uint8Array, Uint8ClampedArray,
};
use rivet_core::{element_count, DType, Error, Tensor};
use wasm_bindgen::{JsCast, JsValue};

use crate::errors::{invalid_argument, rivet_error};

/// The typed arrays Rivet reads, by the element type they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrayKind {
    Float32,
    Float64,
    Int8,
    Int16,
    Int32,
    BigInt64,
    Uint8,
    Uint16,
}

impl ArrayKind {
    /// The kind of typed array `value` is, if it is one Rivet reads.
    fn of(value: &JsValue) -> Option<ArrayKind> {
        Some(if value.is_instance_of::<Float32Array>() {
            ArrayKind::Float32
        } else if value.is_instance_of::<Float64Array>() {
            ArrayKind::Float64
        } else if value.is_instance_of::<Int8Array>() {
            ArrayKind::Int8
        } else if value.is_instance_of::<Int16Array>() {
            ArrayKind::Int16
        } else if value.is_instance_of::<Int32Array>() {
            ArrayKind::Int32
        } else if value.is_instance_of::<BigInt64Array>() {
            ArrayKind::BigInt64
        } else if value.is_instance_of::<Uint8Array>() || value.is_instance_of::<Uint8ClampedArray>() {
            ArrayKind::Uint8
        } else if value.is_instance_of::<Uint16Array>() {
            ArrayKind::Uint16
        } else {
            return None;
        })
    }

    /// The JavaScript name of the array type.
    fn name(self) -> &'static str {
        match self {
            ArrayKind::Float32 => "Float32Array",
            ArrayKind::Float64 => "Float64Array",
            ArrayKind::Int8 => "Int8Array",
            ArrayKind::Int16 => "Int16Array",
            ArrayKind::Int32 => "Int32Array",
            ArrayKind::BigInt64 => "BigInt64Array",
            ArrayKind::Uint8 => "Uint8Array",
            ArrayKind::Uint16 => "Uint16Array",
        }
    }

    /// The dtypes this kind of array can carry; the first is the one it means by default.
    fn dtypes(self) -> &'static [DType] {
        match self {
            ArrayKind::Float32 => &[DType::F32],
            ArrayKind::Float64 => &[DType::F64],
            ArrayKind::Int8 => &[DType::I8],
            ArrayKind::Int16 => &[DType::I16],
            ArrayKind::Int32 => &[DType::I32],
            ArrayKind::BigInt64 => &[DType::I64],
            ArrayKind::Uint8 => &[DType::U8, DType::Bool],
            // No default: the bits of a half-precision float say nothing of which one.
            ArrayKind::Uint16 => &[DType::F16, DType::BF16],
        }
    }
}

/// The array kind that holds `dtype`'s outputs.
fn kind_for(dtype: DType) -> ArrayKind {
    match dtype {
        DType::F32 => ArrayKind::Float32,
        DType::F64 => ArrayKind::Float64,
        DType::I8 => ArrayKind::Int8,
        DType::I16 => ArrayKind::Int16,
        DType::I32 => ArrayKind::Int32,
        DType::I64 => ArrayKind::BigInt64,
        DType::U8 | DType::Bool => ArrayKind::Uint8,
        DType::F16 | DType::BF16 => ArrayKind::Uint16,
    }
}

/// An input copied out of JavaScript into aligned memory.
pub(crate) struct HostTensor {
    pub(crate) dtype: DType,
    pub(crate) shape: Vec<usize>,
    /// The bytes, in 8-byte words so that every dtype is aligned.
    words: Vec<u64>,
    len: usize,
}

impl HostTensor {
    /// Reads input `name` from `{ data, shape, dtype? }`. `declared` is the model's dtype for the
    /// input, which settles what a `Uint8Array` (u8 or bool) or `Uint16Array` (f16 or bf16)
    /// holds when `dtype` is not given.
    pub(crate) fn read(name: &str, value: &JsValue, declared: Option<DType>) -> Result<HostTensor, JsValue> {
        if !value.is_object() {
            return Err(invalid_argument(&format!("input \"{name}\" must be an object {{ data, shape }}")));
        }
        let data = Reflect::get(value, &"data".into())?;
        let Some(kind) = ArrayKind::of(&data) else {
            return Err(invalid_argument(&format!(
                "input \"{name}\": data must be a Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, \
                 BigInt64Array, Uint8Array or Uint16Array"
            )));
        };
        let dtype = dtype_of(name, kind, &Reflect::get(value, &"dtype".into())?, declared)?;
        let shape = shape_of(name, &Reflect::get(value, &"shape".into())?)?;
        let bytes: Uint8Array = {
            let array = data.unchecked_ref::<Uint8Array>();
            Uint8Array::new_with_byte_offset_and_length(
                &array.buffer(),
                array.byte_offset(),
                array.byte_length(),
            )
        };
        let count = element_count(&shape).map_err(|e| rivet_error(&e))?;
        let len = bytes.length() as usize;
        if count.checked_mul(dtype.size()) != Some(len) {
            return Err(rivet_error(&Error::InvalidTensor(format!(
                "input \"{name}\": shape {shape:?} holds {count} elements, the {} has {}",
                kind.name(),
                len / dtype.size()
            ))));
        }
        let mut words = vec![0u64; len.div_ceil(8)];
        // SAFETY: the words hold at least `len` bytes, and any bytes are valid u64 bits.
        let target = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), len) };
        bytes.copy_to(target);
        Ok(HostTensor { dtype, shape, words, len })
    }

    /// The tensor's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `words` holds at least `len` initialised bytes.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }
}

/// The dtype of an input: the one named by `dtype` (which the array must be able to hold),
/// else the array's own, else (for the ambiguous kinds) the one the model declares.
fn dtype_of(name: &str, kind: ArrayKind, given: &JsValue, declared: Option<DType>) -> Result<DType, JsValue> {
    let allowed = kind.dtypes();
    if given.is_undefined() || given.is_null() {
        if let Some(d) = declared.filter(|d| allowed.contains(d)) {
            return Ok(d);
        }
        return match kind {
            ArrayKind::Uint16 => Err(invalid_argument(&format!(
                "input \"{name}\": a Uint16Array needs dtype \"f16\" or \"bf16\" to say what its bits are"
            ))),
            _ => Ok(allowed[0]),
        };
    }
    let text = given.as_string().ok_or_else(|| {
        invalid_argument(&format!("input \"{name}\": dtype must be a string such as \"f32\""))
    })?;
    let dtype: DType = text
        .parse()
        .map_err(|e: String| invalid_argument(&format!("input \"{name}\": dtype \"{text}\": {e}")))?;
    if !allowed.contains(&dtype) {
        let holds = allowed.iter().map(|d| d.name()).collect::<Vec<_>>().join(" or ");
        return Err(invalid_argument(&format!(
            "input \"{name}\": dtype {dtype} does not fit a {} (it holds {holds})",
            kind.name()
        )));
    }
    Ok(dtype)
}

/// The dimensions of `shape`, each a whole number from 0 to 2^53 − 1.
fn shape_of(name: &str, shape: &JsValue) -> Result<Vec<usize>, JsValue> {
    let bad = || invalid_argument(&format!("input \"{name}\": shape must be an array of whole numbers ≥ 0"));
    if !Array::is_array(shape) {
        return Err(bad());
    }
    Array::from(shape)
        .iter()
        .map(|d| match d.as_f64() {
            Some(v) if v >= 0.0 && v.fract() == 0.0 && v <= 9_007_199_254_740_991.0 => {
                usize::try_from(v as u64).map_err(|_| bad())
            }
            _ => Err(bad()),
        })
        .collect()
}

/// `{ data, shape, dtype }` for an output, copied into a typed array of the host's.
pub(crate) fn output_object(tensor: &Tensor) -> Result<JsValue, JsValue> {
    let dtype = tensor.dtype();
    let bytes = Uint8Array::new_with_length(tensor.as_bytes().len() as u32);
    bytes.copy_from(tensor.as_bytes());
    let buffer = bytes.buffer();
    let count = tensor.len() as u32;
    let data: JsValue = match kind_for(dtype) {
        ArrayKind::Float32 => Float32Array::new_with_byte_offset_and_length(&buffer, 0, count).into(),
        ArrayKind::Float64 => Float64Array::new_with_byte_offset_and_length(&buffer, 0, count).into(),
        ArrayKind::Int8 => Int8Array::new_with_byte_offset_and_length(&buffer, 0, count).into(),
        ArrayKind::Int16 => Int16Array::new_with_byte_offset_and_length(&buffer, 0, count).into(),
        ArrayKind::Int32 => Int32Array::new_with_byte_offset_and_length(&buffer, 0, count).into(),
        ArrayKind::BigInt64 => BigInt64Array::new_with_byte_offset_and_length(&buffer, 0, count).into(),
        ArrayKind::Uint8 => bytes.into(),
        ArrayKind::Uint16 => Uint16Array::new_with_byte_offset_and_length(&buffer, 0, count).into(),
    };
    let object = Object::new();
    let shape: Array = tensor.shape().iter().map(|&d| JsValue::from_f64(d as f64)).collect();
    Reflect::set(&object, &"data".into(), &data)?;
    Reflect::set(&object, &"shape".into(), &shape)?;
    Reflect::set(&object, &"dtype".into(), &JsValue::from_str(dtype.name()))?;
    Ok(object.into())
}
