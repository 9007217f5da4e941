//! Reading ONNX protobuf pieces: tensors (initializers, attribute tensors, test data) into
//! Candle tensors.

use candle_core::{Device, Tensor as CTensor};
use candle_onnx::onnx::{tensor_proto::DataLocation, TensorProto};
use half::{bf16, f16};

use crate::ty::Ty;

/// Decodes `N`-byte little-endian values.
fn le<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N).map(|c| f(c.try_into().expect("chunks_exact gives N bytes"))).collect()
}

/// Why a tensor proto cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// A type Candle cannot hold, or data kept in an external file: a valid model this
    /// executor does not run.
    Unsupported(String),
    /// Dims and data that disagree: a malformed model.
    Invalid(String),
}

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtoError::Unsupported(why) | ProtoError::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ProtoError {}

impl From<ProtoError> for crate::ops::Refusal {
    fn from(e: ProtoError) -> crate::ops::Refusal {
        crate::ops::Refusal::from(e.to_string())
    }
}

/// A tensor proto as a Candle tensor, with its ONNX type. Refuses (with the reason) types Candle
/// cannot hold, external data, and data whose length disagrees with the dims.
pub fn tensor_from_proto(t: &TensorProto) -> Result<(CTensor, Ty), ProtoError> {
    use ProtoError::{Invalid, Unsupported};
    let label = if t.name.is_empty() { "tensor".to_string() } else { format!("tensor \"{}\"", t.name) };
    let ty = Ty::from_onnx(t.data_type).ok_or_else(|| {
        Unsupported(format!(
            "{label} has element type {}, which Candle cannot hold",
            Ty::onnx_name(t.data_type)
        ))
    })?;
    if t.data_location == DataLocation::External as i32 || !t.external_data.is_empty() {
        return Err(Unsupported(format!(
            "{label} keeps its data in an external file, which is not supported"
        )));
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    let mut count: usize = 1;
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| Invalid(format!("{label} has a negative dimension {d}")))?;
        count = count.checked_mul(d).ok_or_else(|| Invalid(format!("{label}: element count overflows")))?;
        dims.push(d);
    }
    let raw = &t.raw_data;
    let dev = &Device::Cpu;
    let size = match ty {
        Ty::Bool | Ty::U8 | Ty::I8 => 1,
        Ty::I16 | Ty::F16 | Ty::BF16 => 2,
        Ty::I32 | Ty::U32 | Ty::F32 => 4,
        Ty::I64 | Ty::F64 => 8,
    };
    let stored = if !raw.is_empty() {
        if !raw.len().is_multiple_of(size) {
            return Err(Invalid(format!(
                "{label}: {} raw bytes is not a whole number of {ty} values",
                raw.len()
            )));
        }
        raw.len() / size
    } else {
        match ty {
            Ty::F32 => t.float_data.len(),
            Ty::F64 => t.double_data.len(),
            Ty::I64 => t.int64_data.len(),
            Ty::U32 => t.uint64_data.len(),
            _ => t.int32_data.len(),
        }
    };
    if stored != count {
        return Err(Invalid(format!("{label} has dims {:?} ({count} values) but holds {stored}", t.dims)));
    }
    let e = |e: candle_core::Error| Invalid(format!("{label}: {e}"));
    let tensor = if !raw.is_empty() {
        match ty {
            Ty::Bool => {
                CTensor::from_vec(raw.iter().map(|&b| u8::from(b != 0)).collect::<Vec<u8>>(), dims, dev)
            }
            Ty::U8 => CTensor::from_vec(raw.clone(), dims, dev),
            Ty::I8 => {
                CTensor::from_vec(raw.iter().map(|&b| i16::from(b as i8)).collect::<Vec<i16>>(), dims, dev)
            }
            Ty::I16 => CTensor::from_vec(le(raw, i16::from_le_bytes), dims, dev),
            Ty::I32 => CTensor::from_vec(le(raw, i32::from_le_bytes), dims, dev),
            Ty::I64 => CTensor::from_vec(le(raw, i64::from_le_bytes), dims, dev),
            Ty::U32 => CTensor::from_vec(le(raw, u32::from_le_bytes), dims, dev),
            Ty::F16 => CTensor::from_vec(le(raw, |b| f16::from_bits(u16::from_le_bytes(b))), dims, dev),
            Ty::BF16 => CTensor::from_vec(le(raw, |b| bf16::from_bits(u16::from_le_bytes(b))), dims, dev),
            Ty::F32 => CTensor::from_vec(le(raw, f32::from_le_bytes), dims, dev),
            Ty::F64 => CTensor::from_vec(le(raw, f64::from_le_bytes), dims, dev),
        }
    } else {
        let i32s = &t.int32_data;
        match ty {
            Ty::Bool => {
                CTensor::from_vec(i32s.iter().map(|&v| u8::from(v != 0)).collect::<Vec<u8>>(), dims, dev)
            }
            Ty::U8 => CTensor::from_vec(i32s.iter().map(|&v| v as u8).collect::<Vec<u8>>(), dims, dev),
            Ty::I8 => {
                CTensor::from_vec(i32s.iter().map(|&v| i16::from(v as i8)).collect::<Vec<i16>>(), dims, dev)
            }
            Ty::I16 => CTensor::from_vec(i32s.iter().map(|&v| v as i16).collect::<Vec<i16>>(), dims, dev),
            Ty::I32 => CTensor::from_vec(i32s.clone(), dims, dev),
            Ty::I64 => CTensor::from_vec(t.int64_data.clone(), dims, dev),
            Ty::U32 => {
                CTensor::from_vec(t.uint64_data.iter().map(|&v| v as u32).collect::<Vec<u32>>(), dims, dev)
            }
            Ty::F16 => CTensor::from_vec(
                i32s.iter().map(|&v| f16::from_bits(v as u16)).collect::<Vec<_>>(),
                dims,
                dev,
            ),
            Ty::BF16 => CTensor::from_vec(
                i32s.iter().map(|&v| bf16::from_bits(v as u16)).collect::<Vec<_>>(),
                dims,
                dev,
            ),
            Ty::F32 => CTensor::from_vec(t.float_data.clone(), dims, dev),
            Ty::F64 => CTensor::from_vec(t.double_data.clone(), dims, dev),
        }
    }
    .map_err(e)?;
    Ok((tensor, ty))
}
