//! Tensors in and out of the protocol: datatype names, shapes, JSON `data` arrays and raw bytes.

use half::{bf16, f16};
use rivet::{DType, Tensor};
use serde_json::Value;

use crate::error::ServeError;

/// Parameters that would change what a request means and that Rivet does not implement
/// (shared memory, classification outputs); a request carrying one is refused.
pub const REFUSED_PARAMETERS: [&str; 3] =
    ["shared_memory_region", "shared_memory_byte_size", "classification"];

/// Refuses the first of `keys` that is a [`REFUSED_PARAMETERS`] entry; `what` names the owner.
pub fn refuse_parameters<'a>(what: &str, mut keys: impl Iterator<Item = &'a str>) -> Result<(), ServeError> {
    match keys.find(|k| REFUSED_PARAMETERS.contains(k)) {
        Some(p) => Err(ServeError::bad(format!("{what}: parameter \"{p}\" is not supported by this server"))),
        None => Ok(()),
    }
}

/// The outputs a request asks for by name, in its order (all of them when it names none).
pub fn requested_outputs<'a, 'n>(
    outputs: &'a [(String, Tensor)],
    wanted: impl ExactSizeIterator<Item = &'n str>,
) -> Result<Vec<&'a (String, Tensor)>, ServeError> {
    if wanted.len() == 0 {
        return Ok(outputs.iter().collect());
    }
    wanted
        .map(|name| {
            outputs.iter().find(|(n, _)| n == name).ok_or_else(|| {
                let names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
                ServeError::bad(format!(
                    "unknown output \"{name}\" (the model's outputs: {})",
                    names.join(", ")
                ))
            })
        })
        .collect()
}

/// A `BYTES` input: its elements as text (`None` for a JSON `null`), row-major, and its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct TextInput {
    /// The input's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its elements.
    pub values: Vec<Option<String>>,
}

/// A request's inputs: tensors, and `BYTES` inputs as text (the raw columns of a model served
/// with a pipeline; other models refuse them).
#[derive(Debug, Default)]
pub struct RequestInputs {
    /// The tensors, in request order.
    pub tensors: Vec<(String, Tensor)>,
    /// The `BYTES` inputs, in request order.
    pub texts: Vec<TextInput>,
}

impl From<Vec<(String, Tensor)>> for RequestInputs {
    fn from(tensors: Vec<(String, Tensor)>) -> RequestInputs {
        RequestInputs { tensors, texts: Vec::new() }
    }
}

/// The protocol's datatype for text.
pub const BYTES: &str = "BYTES";

/// A `BYTES` input from a JSON `data` array (strings or `null`, flat or nested).
pub fn text_from_json(input: &str, shape: &[usize], data: &Value) -> Result<TextInput, ServeError> {
    let count = rivet::element_count(shape)
        .map_err(|_| ServeError::bad(format!("input \"{input}\": shape {shape:?} is too large")))?;
    let mut values = Vec::with_capacity(count.min(1 << 16));
    let mut stack = vec![data];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items.iter().rev()),
            Value::String(text) => values.push(Some(text.clone())),
            Value::Null => values.push(None),
            other => {
                return Err(ServeError::bad(format!(
                    "input \"{input}\": element {}: expected a string (BYTES), got {other}",
                    values.len()
                )))
            }
        }
        if values.len() > count {
            break;
        }
    }
    if values.len() != count {
        let found =
            if values.len() > count { format!("more than {count}") } else { values.len().to_string() };
        return Err(ServeError::bad(format!(
            "input \"{input}\": shape {shape:?} needs {count} elements, data has {found}"
        )));
    }
    Ok(TextInput { name: input.to_owned(), shape: shape.to_vec(), values })
}

/// A `BYTES` input from the protocol's binary form: each element a 4-byte little-endian length,
/// then that many bytes of UTF-8.
pub fn text_from_raw(input: &str, shape: &[usize], mut bytes: &[u8]) -> Result<TextInput, ServeError> {
    let count = rivet::element_count(shape)
        .map_err(|_| ServeError::bad(format!("input \"{input}\": shape {shape:?} is too large")))?;
    let mut values = Vec::with_capacity(count.min(1 << 16));
    while !bytes.is_empty() {
        let bad =
            |what: String| ServeError::bad(format!("input \"{input}\": element {}: {what}", values.len()));
        let Some((length, rest)) = bytes.split_first_chunk::<4>() else {
            return Err(bad("a length needs 4 bytes".into()));
        };
        let length = u32::from_le_bytes(*length) as usize;
        if length > rest.len() {
            return Err(bad(format!(
                "length {length} runs past the end of the data ({} bytes left)",
                rest.len()
            )));
        }
        let (text, rest) = rest.split_at(length);
        let text = std::str::from_utf8(text).map_err(|e| bad(format!("not UTF-8 text: {e}")))?;
        values.push(Some(text.to_owned()));
        bytes = rest;
    }
    if values.len() != count {
        return Err(ServeError::bad(format!(
            "input \"{input}\": shape {shape:?} needs {count} elements, data has {}",
            values.len()
        )));
    }
    Ok(TextInput { name: input.to_owned(), shape: shape.to_vec(), values })
}

/// The protocol's name for a dtype (`FP32`, `INT64`, `BOOL`...).
pub fn datatype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "FP16",
        DType::BF16 => "BF16",
        DType::F32 => "FP32",
        DType::F64 => "FP64",
        DType::I8 => "INT8",
        DType::I16 => "INT16",
        DType::I32 => "INT32",
        DType::I64 => "INT64",
        DType::U8 => "UINT8",
        DType::Bool => "BOOL",
    }
}

/// The dtype a protocol datatype names; `BYTES` and the wide unsigned types are refused.
pub fn parse_datatype(input: &str, datatype: &str) -> Result<DType, ServeError> {
    let dtype = DType::ALL.into_iter().find(|&d| datatype_name(d) == datatype);
    dtype.ok_or_else(|| {
        let known: Vec<&str> = DType::ALL.iter().map(|&d| datatype_name(d)).collect();
        ServeError::bad(format!(
            "input \"{input}\": datatype \"{datatype}\" is not supported (supported: {})",
            known.join(", ")
        ))
    })
}

/// Model config's `TYPE_*` number for a dtype (Triton's `DataType` enum).
pub fn config_type(dtype: DType) -> i32 {
    match dtype {
        DType::Bool => 1,
        DType::U8 => 2,
        DType::I8 => 6,
        DType::I16 => 7,
        DType::I32 => 8,
        DType::I64 => 9,
        DType::F16 => 10,
        DType::F32 => 11,
        DType::F64 => 12,
        DType::BF16 => 14,
    }
}

/// Model config's `TYPE_*` name for a dtype, as the HTTP config endpoint spells it.
pub fn config_type_name(dtype: DType) -> String {
    format!("TYPE_{}", datatype_name(dtype))
}

/// A request's shape as sizes; negative sizes are refused.
pub fn parse_shape(input: &str, shape: &[i64]) -> Result<Vec<usize>, ServeError> {
    shape
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| {
                ServeError::bad(format!("input \"{input}\": shape {shape:?} has a negative dimension"))
            })
        })
        .collect()
}

/// The number of elements and bytes a shape holds, refusing overflow.
fn sizes(input: &str, dtype: DType, shape: &[usize]) -> Result<(usize, usize), ServeError> {
    let count = rivet::element_count(shape)
        .map_err(|_| ServeError::bad(format!("input \"{input}\": shape {shape:?} is too large")))?;
    let bytes = count
        .checked_mul(dtype.size())
        .ok_or_else(|| ServeError::bad(format!("input \"{input}\": shape {shape:?} is too large")))?;
    Ok((count, bytes))
}

/// A tensor from raw little-endian bytes, whose length must match the shape.
pub fn tensor_from_raw(
    input: &str,
    dtype: DType,
    shape: &[usize],
    bytes: &[u8],
) -> Result<Tensor, ServeError> {
    let (_, expected) = sizes(input, dtype, shape)?;
    if bytes.len() != expected {
        return Err(ServeError::bad(format!(
            "input \"{input}\": {} {shape:?} needs {expected} bytes, got {}",
            datatype_name(dtype),
            bytes.len()
        )));
    }
    Tensor::from_bytes(dtype, shape, bytes).map_err(|e| ServeError::bad(format!("input \"{input}\": {e}")))
}

/// A tensor from a JSON `data` array, flat or nested in row-major order.
pub fn tensor_from_json(
    input: &str,
    dtype: DType,
    shape: &[usize],
    data: &Value,
) -> Result<Tensor, ServeError> {
    let (count, bytes) = sizes(input, dtype, shape)?;
    // The shape is the client's word: reserve at most 64 KiB up front and let the buffer grow
    // with the elements actually present, so a huge shape over a short `data` is refused by
    // its count instead of attempting a huge allocation.
    let mut out = Vec::with_capacity(bytes.min(1 << 16));
    let mut seen = 0usize;
    let mut stack = vec![data];
    // Depth-first over nested arrays, left to right (the stack holds them reversed).
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items.iter().rev()),
            scalar => {
                if seen == count {
                    seen += 1;
                    break;
                }
                push_json_element(&mut out, dtype, scalar)
                    .map_err(|what| ServeError::bad(format!("input \"{input}\": element {seen}: {what}")))?;
                seen += 1;
            }
        }
    }
    if seen != count || !stack.is_empty() {
        let found = if seen > count { format!("more than {count}") } else { seen.to_string() };
        return Err(ServeError::bad(format!(
            "input \"{input}\": shape {shape:?} needs {count} elements, data has {found}"
        )));
    }
    Tensor::from_bytes(dtype, shape, &out).map_err(|e| ServeError::bad(format!("input \"{input}\": {e}")))
}

/// Appends one JSON element as `dtype`'s bytes; a 400 saying why when it does not fit.
fn push_json_element(out: &mut Vec<u8>, dtype: DType, value: &Value) -> Result<(), ServeError> {
    fn int<T: TryFrom<i64> + TryFrom<u64>>(value: &Value, name: &str) -> Result<T, ServeError> {
        let out_of_range = || ServeError::bad(format!("{value} is out of range for {name}"));
        match (value.as_i64(), value.as_u64()) {
            (Some(v), _) => T::try_from(v).map_err(|_| out_of_range()),
            (None, Some(v)) => T::try_from(v).map_err(|_| out_of_range()),
            _ => Err(ServeError::bad(format!("expected an integer ({name}), got {value}"))),
        }
    }
    // JSON has no NaN: `null` stands for it, as in answers.
    let float = |value: &Value| match value {
        Value::Null => Ok(f64::NAN),
        _ => value.as_f64().ok_or_else(|| ServeError::bad(format!("expected a number, got {value}"))),
    };
    match dtype {
        DType::F32 => out.extend_from_slice(&(float(value)? as f32).to_le_bytes()),
        DType::F64 => out.extend_from_slice(&float(value)?.to_le_bytes()),
        DType::F16 => out.extend_from_slice(&f16::from_f64(float(value)?).to_le_bytes()),
        DType::BF16 => out.extend_from_slice(&bf16::from_f64(float(value)?).to_le_bytes()),
        DType::I8 => out.extend_from_slice(&int::<i8>(value, "INT8")?.to_le_bytes()),
        DType::I16 => out.extend_from_slice(&int::<i16>(value, "INT16")?.to_le_bytes()),
        DType::I32 => out.extend_from_slice(&int::<i32>(value, "INT32")?.to_le_bytes()),
        DType::I64 => out.extend_from_slice(&int::<i64>(value, "INT64")?.to_le_bytes()),
        DType::U8 => out.push(int::<u8>(value, "UINT8")?),
        DType::Bool => match value {
            Value::Bool(b) => out.push(u8::from(*b)),
            _ => return Err(ServeError::bad(format!("expected true or false (BOOL), got {value}"))),
        },
    }
    Ok(())
}

/// A tensor's elements as a flat JSON array (non-finite floats become `null`: JSON has no NaN).
pub fn tensor_to_json(tensor: &Tensor) -> Value {
    let bytes = tensor.as_bytes();
    macro_rules! each {
        ($t:ty, $n:literal, $f:expr) => {
            bytes
                .chunks_exact($n)
                .map(|c| $f(<$t>::from_le_bytes(c.try_into().expect("chunk size"))))
                .collect()
        };
    }
    let float = |v: f64| serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number);
    match tensor.dtype() {
        DType::F32 => each!(f32, 4, |v: f32| float(v as f64)),
        DType::F64 => each!(f64, 8, float),
        DType::F16 => each!(f16, 2, |v: f16| float(v.to_f64())),
        DType::BF16 => each!(bf16, 2, |v: bf16| float(v.to_f64())),
        DType::I8 => each!(i8, 1, Value::from),
        DType::I16 => each!(i16, 2, Value::from),
        DType::I32 => each!(i32, 4, Value::from),
        DType::I64 => each!(i64, 8, Value::from),
        DType::U8 => bytes.iter().map(|&b| Value::from(b)).collect(),
        DType::Bool => bytes.iter().map(|&b| Value::Bool(b != 0)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(result: Result<Tensor, ServeError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn json_data_flat_or_nested_and_every_mismatch_named() {
        let nested = tensor_from_json("x", DType::F32, &[2, 2], &json!([[1, 2.5], [3, -4]])).unwrap();
        assert_eq!(nested.as_slice::<f32>().unwrap(), &[1.0, 2.5, 3.0, -4.0]);
        let flat = tensor_from_json("x", DType::I64, &[3], &json!([1, -2, 9007199254740993i64])).unwrap();
        assert_eq!(flat.as_slice::<i64>().unwrap(), &[1, -2, 9007199254740993]);
        let flags = tensor_from_json("m", DType::Bool, &[2], &json!([true, false])).unwrap();
        assert_eq!(flags.as_bytes(), &[1, 0]);
        assert_eq!(tensor_to_json(&nested), json!([1.0, 2.5, 3.0, -4.0]));
        assert_eq!(tensor_to_json(&flags), json!([true, false]));

        assert_eq!(
            message(tensor_from_json("x", DType::F32, &[2, 2], &json!([1, 2, 3]))),
            "input \"x\": shape [2, 2] needs 4 elements, data has 3"
        );
        assert_eq!(
            message(tensor_from_json("x", DType::F32, &[2], &json!([1, 2, 3]))),
            "input \"x\": shape [2] needs 2 elements, data has more than 2"
        );
        assert_eq!(
            message(tensor_from_json("x", DType::U8, &[2], &json!([1, 300]))),
            "input \"x\": element 1: 300 is out of range for UINT8"
        );
        assert_eq!(
            message(tensor_from_json("x", DType::I32, &[1], &json!(["7"]))),
            "input \"x\": element 0: expected an integer (INT32), got \"7\""
        );
        assert_eq!(
            message(tensor_from_json("m", DType::Bool, &[1], &json!([1]))),
            "input \"m\": element 0: expected true or false (BOOL), got 1"
        );
        // 4 TiB by its shape, one element by its data: refused by count (this used to reserve
        // the shape's bytes first, and the failed allocation aborted the server).
        assert_eq!(
            message(tensor_from_json("x", DType::F32, &[1 << 40], &json!([1]))),
            "input \"x\": shape [1099511627776] needs 1099511627776 elements, data has 1"
        );
    }

    #[test]
    fn text_from_json_or_length_prefixed_bytes_and_every_mismatch_named() {
        let text = text_from_json("c", &[3, 1], &json!([["a"], [null], ["é"]])).unwrap();
        assert_eq!(text.values, [Some("a".to_owned()), None, Some("é".to_owned())]);
        assert_eq!(text.shape, [3, 1]);
        let mut raw = Vec::new();
        for s in ["ab", "", "é"] {
            raw.extend_from_slice(&(s.len() as u32).to_le_bytes());
            raw.extend_from_slice(s.as_bytes());
        }
        let text = text_from_raw("c", &[3], &raw).unwrap();
        assert_eq!(text.values, [Some("ab".to_owned()), Some(String::new()), Some("é".to_owned())]);
        assert_eq!(
            text_from_json("c", &[2], &json!(["a", 1])).unwrap_err().to_string(),
            "input \"c\": element 1: expected a string (BYTES), got 1"
        );
        assert_eq!(
            text_from_json("c", &[2], &json!(["a", "b", "c"])).unwrap_err().to_string(),
            "input \"c\": shape [2] needs 2 elements, data has more than 2"
        );
        assert_eq!(
            text_from_raw("c", &[4], &raw).unwrap_err().to_string(),
            "input \"c\": shape [4] needs 4 elements, data has 3"
        );
        assert_eq!(
            text_from_raw("c", &[1], &[9, 0, 0, 0, b'x']).unwrap_err().to_string(),
            "input \"c\": element 0: length 9 runs past the end of the data (1 bytes left)"
        );
        assert_eq!(
            text_from_raw("c", &[1], &[1, 0, 0, 0, 0xff]).unwrap_err().to_string(),
            "input \"c\": element 0: not UTF-8 text: invalid utf-8 sequence of 1 bytes from index 0"
        );
        assert_eq!(
            text_from_raw("c", &[1], &[1, 0]).unwrap_err().to_string(),
            "input \"c\": element 0: a length needs 4 bytes"
        );
        // JSON has no NaN: null stands for it in float inputs.
        let floats = tensor_from_json("x", DType::F64, &[2], &json!([1.5, null])).unwrap();
        let values = floats.as_slice::<f64>().unwrap();
        assert!(values[0] == 1.5 && values[1].is_nan());
    }

    #[test]
    fn requested_outputs_keep_the_request_order_and_unknown_names_are_refused() {
        let t = Tensor::zeros(DType::F32, &[1]).unwrap();
        let outputs = vec![("a".to_owned(), t.clone()), ("b".to_owned(), t)];
        let names = |wanted: &[&str]| -> Vec<String> {
            requested_outputs(&outputs, wanted.iter().copied())
                .unwrap()
                .iter()
                .map(|(n, _)| n.clone())
                .collect()
        };
        assert_eq!(names(&[]), ["a", "b"]);
        assert_eq!(names(&["b", "a"]), ["b", "a"]);
        assert_eq!(
            requested_outputs(&outputs, ["c"].into_iter()).unwrap_err().to_string(),
            "unknown output \"c\" (the model's outputs: a, b)"
        );
        assert_eq!(
            refuse_parameters("input \"x\"", ["binary_data_size", "shared_memory_region"].into_iter())
                .unwrap_err()
                .to_string(),
            "input \"x\": parameter \"shared_memory_region\" is not supported by this server"
        );
    }

    #[test]
    fn raw_bytes_must_fill_the_shape_and_names_are_the_protocols() {
        let t = tensor_from_raw("x", DType::F16, &[2], &[0, 60, 0, 64]).unwrap();
        assert_eq!(tensor_to_json(&t), json!([1.0, 2.0]));
        assert_eq!(
            message(tensor_from_raw("x", DType::F32, &[2, 3], &[0; 20])),
            "input \"x\": FP32 [2, 3] needs 24 bytes, got 20"
        );
        assert_eq!(
            message(tensor_from_raw("x", DType::F32, &[usize::MAX, 2], &[])),
            format!("input \"x\": shape [{}, 2] is too large", usize::MAX)
        );
        assert_eq!(
            parse_datatype("s", "BYTES").unwrap_err().to_string(),
            "input \"s\": datatype \"BYTES\" is not supported (supported: FP16, BF16, FP32, FP64, INT8, \
             INT16, INT32, INT64, UINT8, BOOL)"
        );
        assert_eq!(
            parse_shape("x", &[1, -1]).unwrap_err().to_string(),
            "input \"x\": shape [1, -1] has a negative dimension"
        );
        for d in DType::ALL {
            assert_eq!(parse_datatype("x", datatype_name(d)).unwrap(), d);
        }
        assert_eq!(config_type_name(DType::F32), "TYPE_FP32");
        assert_eq!(config_type(DType::BF16), 14);
    }
}
