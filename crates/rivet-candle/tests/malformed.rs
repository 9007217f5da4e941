//! Malformed models and hostile values: refused at load or failed at run with an error naming
//! what was wrong, never a panic or an unbounded allocation.

use std::path::Path;

use candle_onnx::onnx;
use prost::Message;
use rivet_candle::CandleModel;
use rivet_core::{ErrorKind, Model, Tensor};
use rivet_testkit::onnx::{model_of, value};

/// A one-node model (opset 17): `op` named `name` from `inputs` to `y`.
fn one_node(op: &str, name: &str, inputs: Vec<onnx::ValueInfoProto>) -> Vec<u8> {
    let model = model_of(onnx::GraphProto {
        name: "g".into(),
        node: vec![onnx::NodeProto {
            op_type: op.into(),
            name: name.into(),
            input: inputs.iter().map(|i| i.name.clone()).collect(),
            output: vec!["y".into()],
            ..Default::default()
        }],
        input: inputs,
        output: vec![value("y", 1, &[])],
        ..Default::default()
    });
    model.encode_to_vec()
}

/// `y = ConstantOfShape(shape)` (float zeros), the shape given at run time.
fn constant_of_shape() -> CandleModel {
    let bytes = one_node("ConstantOfShape", "fill", vec![value("shape", 7, &[2])]);
    CandleModel::from_bytes(&bytes, Path::new("fill.onnx")).unwrap()
}

/// Found by fuzzing (`fuzz/regressions/candle_onnx/gemm_without_b`): a Gemm given only A was
/// indexed past its inputs while planning.
#[test]
fn a_missing_required_input_is_refused_at_load() {
    let bytes = one_node("Gemm", "g0", vec![value("a", 1, &[2, 2])]);
    let err = CandleModel::from_bytes(&bytes, Path::new("gemm.onnx")).err().expect("Gemm needs B");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert_eq!(
        err.to_string(),
        "candle: unsupported gemm.onnx: the Candle executor does not implement Gemm (opset 17): node \"g0\": input 1 is required"
    );
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

/// A Loop given only its trip count: ONNX requires the condition's slot (possibly empty) too.
#[test]
fn a_loop_without_its_condition_slot_is_refused_at_load() {
    let body = onnx::GraphProto {
        name: "body".into(),
        node: vec![onnx::NodeProto {
            op_type: "Identity".into(),
            input: vec!["c".into()],
            output: vec!["c_out".into()],
            ..Default::default()
        }],
        input: vec![value("i", 7, &[]), value("c", 9, &[])],
        output: vec![value("c_out", 9, &[])],
        ..Default::default()
    };
    let model = model_of(onnx::GraphProto {
        name: "g".into(),
        node: vec![onnx::NodeProto {
            op_type: "Loop".into(),
            name: "l".into(),
            input: vec!["m".into()],
            output: vec![],
            attribute: vec![onnx::AttributeProto {
                name: "body".into(),
                r#type: onnx::attribute_proto::AttributeType::Graph as i32,
                g: Some(body),
                ..Default::default()
            }],
            ..Default::default()
        }],
        input: vec![value("m", 7, &[])],
        output: vec![value("m", 7, &[])],
        ..Default::default()
    });
    let err = CandleModel::from_bytes(&model.encode_to_vec(), Path::new("loop.onnx")).err().expect("refused");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert_eq!(
        err.to_string(),
        "candle: unsupported loop.onnx: the Candle executor does not implement Loop (opset 17): node \"l\": Loop takes M and cond (either may be empty) before its loop-carried values"
    );
}
