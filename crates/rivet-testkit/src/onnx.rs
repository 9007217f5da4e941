//! Small ONNX models built in code, for tests of what a model file may hold.

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
