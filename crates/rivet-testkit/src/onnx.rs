//! Small ONNX models built in code, for tests of what a model file may hold, and the node
//! suite's tensor files read as Rivet tensors.

use std::path::Path;

use rivet_core::{DType, Tensor};

use candle_onnx::onnx::{
    self, tensor_shape_proto::dimension::Value as DimValue, type_proto, GraphProto, ModelProto,
    ValueInfoProto,
};

/// A tensor value `name` of ONNX element type `elem` (1 is float) and fixed `dims`.
pub fn value(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(onnx::TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem,
                shape: Some(onnx::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| onnx::tensor_shape_proto::Dimension {
                            value: Some(DimValue::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A model (opset 17, IR 8) of `graph`.
pub fn model_of(graph: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![onnx::OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(graph),
        ..Default::default()
    }
}

/// A serialized TensorProto (as numpy_helper writes it: raw little-endian data) as a Rivet
/// tensor, or `None` for an element type Rivet tensors do not carry.
pub fn read_tensor(path: &Path) -> Option<Tensor> {
    let bytes = std::fs::read(path).unwrap();
    let proto = <onnx::TensorProto as prost::Message>::decode(bytes.as_slice()).unwrap();
    let dtype = match proto.data_type {
        1 => DType::F32,
        2 => DType::U8,
        3 => DType::I8,
        5 => DType::I16,
        6 => DType::I32,
        7 => DType::I64,
        9 => DType::Bool,
        10 => DType::F16,
        11 => DType::F64,
        16 => DType::BF16,
        _ => return None,
    };
    let shape: Vec<usize> = proto.dims.iter().map(|&d| d as usize).collect();
    let count: usize = shape.iter().product();
    if count == 0 || !proto.raw_data.is_empty() {
        return Some(Tensor::from_bytes(dtype, &shape, &proto.raw_data).unwrap());
    }
    // Typed fields (make_tensor without raw data): re-encode little-endian.
    let mut bytes = Vec::new();
    match dtype {
        DType::F32 => proto.float_data.iter().for_each(|v| bytes.extend(v.to_le_bytes())),
        DType::F64 => proto.double_data.iter().for_each(|v| bytes.extend(v.to_le_bytes())),
        DType::I64 => proto.int64_data.iter().for_each(|v| bytes.extend(v.to_le_bytes())),
        DType::I32 => proto.int32_data.iter().for_each(|v| bytes.extend(v.to_le_bytes())),
        DType::I16 | DType::F16 | DType::BF16 => {
            proto.int32_data.iter().for_each(|&v| bytes.extend((v as u16).to_le_bytes()))
        }
        DType::U8 | DType::I8 | DType::Bool => proto.int32_data.iter().for_each(|&v| bytes.push(v as u8)),
    }
    Tensor::from_bytes(dtype, &shape, &bytes).ok()
}
