//! Sizes taken from a model's values are bounded: a run that would allocate more than
//! `MAX_TENSOR_BYTES` for one tensor fails with an error naming the shape, and the model keeps
//! working for sane inputs.

use std::path::Path;

use candle_onnx::onnx;
use prost::Message;
use rivet_candle::CandleModel;
use rivet_core::{ErrorKind, Model, Tensor};

fn value(name: &str, elem: i32, dims: &[i64]) -> onnx::ValueInfoProto {
    onnx::ValueInfoProto {
        name: name.into(),
        r#type: Some(onnx::TypeProto {
            value: Some(onnx::type_proto::Value::TensorType(onnx::type_proto::Tensor {
                elem_type: elem,
                shape: Some(onnx::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| onnx::tensor_shape_proto::Dimension {
                            value: Some(onnx::tensor_shape_proto::dimension::Value::DimValue(d)),
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

/// `y = ConstantOfShape(shape)` (float zeros), the shape given at run time.
fn constant_of_shape() -> CandleModel {
    let model = onnx::ModelProto {
        ir_version: 8,
        opset_import: vec![onnx::OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(onnx::GraphProto {
            name: "g".into(),
            node: vec![onnx::NodeProto {
                op_type: "ConstantOfShape".into(),
                name: "fill".into(),
                input: vec!["shape".into()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            input: vec![value("shape", 7, &[2])],
            output: vec![onnx::ValueInfoProto { name: "y".into(), ..value("y", 1, &[]) }],
            ..Default::default()
        }),
        ..Default::default()
    };
    CandleModel::from_bytes(&model.encode_to_vec(), Path::new("fill.onnx")).unwrap()
}

#[test]
fn a_shape_from_the_input_cannot_allocate_without_bound() {
    let model = constant_of_shape();
    let huge = Tensor::from_slice(&[2], &[1i64 << 20, 1 << 20]).unwrap();
    let err = model.run(&[&huge]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend);
    assert!(
        err.to_string().ends_with(
            "ConstantOfShape \"fill\": a tensor of shape [1048576, 1048576] would exceed 1024 MiB"
        ),
        "{err}"
    );
    let sane = Tensor::from_slice(&[2], &[2i64, 3]).unwrap();
    let out = model.run(&[&sane]).unwrap();
    assert_eq!(out.get(0).unwrap().shape(), &[2, 3]);
    assert_eq!(out.get(0).unwrap().as_slice::<f32>().unwrap(), &[0.0; 6]);
}
