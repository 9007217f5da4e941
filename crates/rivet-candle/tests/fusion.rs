//! The plan's fusions give the bits of the nodes they replace: a MatMul followed by the Add of a
//! bias vector (as `nn.Linear` on a sequence exports) runs as one step, and answers as the two
//! nodes do when the fusion does not apply.

use std::path::Path;

use candle_onnx::onnx;
use prost::Message;
use rivet_candle::CandleModel;
use rivet_core::{ErrorKind, Model, Tensor};
use rivet_testkit::onnx::{model_of, value};

/// A float32 (or float64, `elem` 11) initializer `name` of `dims` holding `values`.
fn initializer(name: &str, elem: i32, dims: &[i64], values: &[f32]) -> onnx::TensorProto {
    let mut t =
        onnx::TensorProto { name: name.into(), dims: dims.to_vec(), data_type: elem, ..Default::default() };
    if elem == 11 {
        t.double_data = values.iter().map(|&v| f64::from(v)).collect();
    } else {
        t.float_data = values.to_vec();
    }
    t
}

fn node(op: &str, inputs: &[&str], output: &str) -> onnx::NodeProto {
    onnx::NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

/// `y = Add(MatMul(x, w), bias)` (the bias first with `bias_first`) for `x` of `[2, 3, 4]` and
/// `w` of `[4, 5]`; with `expose`, the product is a graph output too, so no fusion applies.
fn linear(bias: onnx::TensorProto, bias_first: bool, expose: bool) -> Vec<u8> {
    let w: Vec<f32> = (0..20).map(|i| ((i * 7) % 11) as f32 / 3.0 - 1.5).collect();
    let add = if bias_first { node("Add", &["bias", "m"], "y") } else { node("Add", &["m", "bias"], "y") };
    let mut output = vec![value("y", 1, &[])];
    if expose {
        output.push(value("m", 1, &[]));
    }
    model_of(onnx::GraphProto {
        name: "linear".into(),
        node: vec![node("MatMul", &["x", "w"], "m"), add],
        initializer: vec![initializer("w", 1, &[4, 5], &w), bias],
        input: vec![value("x", 1, &[2, 3, 4])],
        output,
        ..Default::default()
    })
    .encode_to_vec()
}

fn load(bytes: &[u8]) -> CandleModel {
    CandleModel::from_bytes(bytes, Path::new("linear.onnx")).unwrap()
}

/// `y`'s bits for `x`.
fn run(model: &CandleModel, x: &Tensor) -> Vec<u32> {
    let out = model.run(&[x]).unwrap();
    out.get(0).unwrap().as_slice::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn a_matmul_and_the_add_of_its_bias_run_as_one_step_with_the_same_bits() {
    let mut xs: Vec<f32> = (0..24).map(|i| ((i * 13) % 17) as f32 / 7.0 - 1.2).collect();
    xs[5] = f32::NAN;
    xs[9] = f32::INFINITY;
    let x = Tensor::from_slice(&[2, 3, 4], &xs).unwrap();
    let bias = || initializer("bias", 1, &[5], &[0.25, -1.0, 3.5e-3, 1e6, -0.0]);
    let unfused = load(&linear(bias(), false, true));
    assert_eq!(unfused.steps(), 2);
    let want = run(&unfused, &x);
    for first in [false, true] {
        let fused = load(&linear(bias(), first, false));
        assert_eq!(fused.steps(), 1, "bias first: {first}");
        assert_eq!(run(&fused, &x), want, "bias first: {first}");
    }
    // Against plain arithmetic: the f32 sum of the product, then the bias.
    let w: Vec<f32> = (0..20).map(|i| ((i * 7) % 11) as f32 / 3.0 - 1.5).collect();
    let b = [0.25f32, -1.0, 3.5e-3, 1e6, -0.0];
    let got = run(&load(&linear(bias(), false, false)), &x);
    for r in 0..6 {
        for j in 0..5 {
            let sum: f64 = (0..4).map(|p| f64::from(xs[r * 4 + p]) * f64::from(w[p * 5 + j])).sum();
            let want = sum + f64::from(b[j]);
            let g = f64::from(f32::from_bits(got[r * 5 + j]));
            if want.is_nan() {
                assert!(g.is_nan(), "[{r}, {j}]: {g} for NaN");
            } else if want.is_infinite() {
                assert_eq!(g, want, "[{r}, {j}]");
            } else {
                assert!((g - want).abs() <= 1e-5 * want.abs().max(1.0), "[{r}, {j}]: {g} against {want}");
            }
        }
    }
}

#[test]
fn a_bias_that_only_broadcasts_or_a_wider_type_takes_the_adds_own_path() {
    let x = Tensor::from_slice(&[2, 3, 4], &(0..24).map(|i| i as f32 / 5.0).collect::<Vec<_>>()).unwrap();
    // One value for every column: fused into one step, answered by the Add's broadcasting.
    let one = || initializer("bias", 1, &[1], &[0.75]);
    let fused = load(&linear(one(), true, false));
    assert_eq!(fused.steps(), 1);
    assert_eq!(run(&fused, &x), run(&load(&linear(one(), true, true)), &x));
    // A float64 bias on a float32 product is not fused: the Add refuses the mix at load.
    let wide = initializer("bias", 11, &[5], &[1.0; 5]);
    let err = CandleModel::from_bytes(&linear(wide, false, false), Path::new("linear.onnx")).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("Add (opset 17): node \"y\""), "{err}");
}
