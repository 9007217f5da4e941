//! Element types: ONNX's, as the executor represents them in Candle tensors.

use candle_core::DType as CDType;
use candle_onnx::onnx::tensor_proto::DataType;
use rivet_core::DType;

/// An element type the executor can hold. Candle has no boolean tensors: a `Bool` value is a
/// `u8` tensor holding 0 or 1, and the plan remembers that it is boolean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ty {
    /// ONNX `BOOL`, held as `u8` 0/1.
    Bool,
    /// ONNX `UINT8`.
    U8,
    /// ONNX `INT8`. Candle has no 8-bit signed tensors: an `I8` value is an `i16` tensor whose
    /// elements stay within `i8`'s range; every step writing one wraps its results into that
    /// range (two's complement), as 8-bit arithmetic would.
    I8,
    /// ONNX `INT16`.
    I16,
    /// ONNX `INT32`.
    I32,
    /// ONNX `INT64`.
    I64,
    /// ONNX `UINT32`.
    U32,
    /// ONNX `FLOAT16`.
    F16,
    /// ONNX `BFLOAT16`.
    BF16,
    /// ONNX `FLOAT`.
    F32,
    /// ONNX `DOUBLE`.
    F64,
}

impl Ty {
    /// The type of an ONNX element-type code, or `None` for one Candle cannot hold (strings,
    /// 16/64-bit unsigned, complex, 8- and 4-bit floats).
    pub fn from_onnx(code: i32) -> Option<Ty> {
        Some(match DataType::try_from(code).ok()? {
            DataType::Bool => Ty::Bool,
            DataType::Uint8 => Ty::U8,
            DataType::Int8 => Ty::I8,
            DataType::Int16 => Ty::I16,
            DataType::Int32 => Ty::I32,
            DataType::Int64 => Ty::I64,
            DataType::Uint32 => Ty::U32,
            DataType::Float16 => Ty::F16,
            DataType::Bfloat16 => Ty::BF16,
            DataType::Float => Ty::F32,
            DataType::Double => Ty::F64,
            _ => return None,
        })
    }

    /// The ONNX name of an element-type code, for messages.
    pub fn onnx_name(code: i32) -> String {
        DataType::try_from(code).map_or_else(|_| format!("type {code}"), |d| format!("{d:?}").to_lowercase())
    }

    /// The Candle dtype holding values of this type.
    pub fn candle(self) -> CDType {
        match self {
            Ty::Bool | Ty::U8 => CDType::U8,
            Ty::I8 | Ty::I16 => CDType::I16,
            Ty::I32 => CDType::I32,
            Ty::I64 => CDType::I64,
            Ty::U32 => CDType::U32,
            Ty::F16 => CDType::F16,
            Ty::BF16 => CDType::BF16,
            Ty::F32 => CDType::F32,
            Ty::F64 => CDType::F64,
        }
    }

    /// Rivet's dtype for this type (`None` for `u32`, which Rivet tensors do not carry).
    pub fn rivet(self) -> Option<DType> {
        Some(match self {
            Ty::Bool => DType::Bool,
            Ty::U8 => DType::U8,
            Ty::I8 => DType::I8,
            Ty::I16 => DType::I16,
            Ty::I32 => DType::I32,
            Ty::I64 => DType::I64,
            Ty::U32 => return None,
            Ty::F16 => DType::F16,
            Ty::BF16 => DType::BF16,
            Ty::F32 => DType::F32,
            Ty::F64 => DType::F64,
        })
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, Ty::F16 | Ty::BF16 | Ty::F32 | Ty::F64)
    }

    /// Whether this is an integer type (boolean excluded).
    pub fn is_int(self) -> bool {
        matches!(self, Ty::U8 | Ty::I8 | Ty::I16 | Ty::I32 | Ty::I64 | Ty::U32)
    }

    /// Whether this is a number type (integer or float).
    pub fn is_numeric(self) -> bool {
        self.is_float() || self.is_int()
    }

    /// Lower-case name, as ONNX writes it in operator docs.
    pub fn name(self) -> &'static str {
        match self {
            Ty::Bool => "bool",
            Ty::U8 => "uint8",
            Ty::I8 => "int8",
            Ty::I16 => "int16",
            Ty::I32 => "int32",
            Ty::I64 => "int64",
            Ty::U32 => "uint32",
            Ty::F16 => "float16",
            Ty::BF16 => "bfloat16",
            Ty::F32 => "float",
            Ty::F64 => "double",
        }
    }
}

impl std::fmt::Display for Ty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
