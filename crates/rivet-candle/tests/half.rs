//! Float16 and bfloat16 operators that the executor computes wider and rounds once: their
//! results equal the exact result (computed in f64 from the same half-width values) rounded to
//! the type.

use std::path::Path;

use candle_onnx::onnx;
use half::{bf16, f16};
use prost::Message;
use rivet_candle::CandleModel;
use rivet_core::{Model, Tensor};
use rivet_testkit::onnx::{model_of, value};

/// ONNX's element types for float16 and bfloat16.
const FLOAT16: i32 = 10;
const BFLOAT16: i32 = 16;

/// A BatchNormalization node over `[2, 3, 4]` with its four parameters as inputs.
fn batch_norm(elem: i32) -> CandleModel {
    let names = ["x", "scale", "bias", "mean", "var"];
    let inputs = names
        .iter()
        .map(|&n| if n == "x" { value(n, elem, &[2, 3, 4]) } else { value(n, elem, &[3]) })
        .collect();
    let m = model_of(onnx::GraphProto {
        name: "g".into(),
        node: vec![onnx::NodeProto {
            op_type: "BatchNormalization".into(),
            name: "bn".into(),
            input: names.iter().map(|&n| n.into()).collect(),
            output: vec!["y".into()],
            ..Default::default()
        }],
        input: inputs,
        output: vec![value("y", elem, &[])],
        ..Default::default()
    });
    CandleModel::from_bytes(&m.encode_to_vec(), Path::new("half.onnx")).unwrap()
}

/// Values of mixed sign and size, and positive variances.
fn data() -> (Vec<f64>, [Vec<f64>; 4]) {
    let x = (0..24).map(|i| ((i * 37 % 23) as f64 - 11.0) * 0.37).collect();
    let scale = vec![1.7, -0.45, 3.1];
    let bias = vec![0.3, -2.2, 0.0];
    let mean = vec![0.9, -1.3, 2.6];
    let var = vec![0.7, 2.9, 0.05];
    (x, [scale, bias, mean, var])
}

/// `(x - mean) / sqrt(var + eps) * scale + bias` in f64 from values already in the half type.
fn exact(x: &[f64], [scale, bias, mean, var]: &[Vec<f64>; 4]) -> Vec<f64> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = i / 4 % 3;
            (v - mean[c]) / (var[c] + 1e-5f32 as f64).sqrt() * scale[c] + bias[c]
        })
        .collect()
}

macro_rules! check {
    ($t:ty, $elem:expr) => {{
        let (x, params) = data();
        let round = |v: &[f64]| -> Vec<$t> { v.iter().map(|&v| <$t>::from_f64(v)).collect() };
        let widen = |v: &[$t]| -> Vec<f64> { v.iter().map(|v| v.to_f64()).collect() };
        let (xh, ph) = (round(&x), params.clone().map(|p| round(&p)));
        let want = round(&exact(&widen(&xh), &ph.clone().map(|p| widen(&p))));
        let tensors: Vec<Tensor> = std::iter::once(Tensor::from_slice(&[2, 3, 4], &xh).unwrap())
            .chain(ph.iter().map(|p| Tensor::from_slice(&[3], p).unwrap()))
            .collect();
        let refs: Vec<&Tensor> = tensors.iter().collect();
        let out = batch_norm($elem).run(&refs).unwrap();
        let got = out.get(0).unwrap().as_slice::<$t>().unwrap().to_vec();
        assert_eq!(got, want, "{}", stringify!($t));
    }};
}

#[test]
fn half_width_batch_normalization_is_the_exact_result_rounded_once() {
    check!(f16, FLOAT16);
    check!(bf16, BFLOAT16);
}
