//! The random operators: draws within their distribution (checked on fixed seeds, so these
//! tests are deterministic), seeds honoured, and bad attributes refused at load.

use std::path::Path;

use candle_onnx::onnx;
use onnx::attribute_proto::AttributeType;
use prost::Message;
use rivet_candle::CandleModel;
use rivet_core::{DType, ErrorKind, Model, Tensor};
use rivet_testkit::onnx::{model_of, value};

enum A {
    F(f32),
    I(i64),
    Is(Vec<i64>),
}

/// A one-node model (opset 17) of `op` with `attrs`, inputs `inputs`, output `y` of `out`.
fn model(
    op: &str,
    attrs: &[(&str, A)],
    inputs: Vec<onnx::ValueInfoProto>,
    out: i32,
) -> Result<CandleModel, rivet_core::Error> {
    let attribute = attrs
        .iter()
        .map(|(name, a)| {
            let mut p = onnx::AttributeProto { name: (*name).into(), ..Default::default() };
            match a {
                A::F(f) => (p.r#type, p.f) = (AttributeType::Float as i32, *f),
                A::I(i) => (p.r#type, p.i) = (AttributeType::Int as i32, *i),
                A::Is(v) => (p.r#type, p.ints) = (AttributeType::Ints as i32, v.clone()),
            }
            p
        })
        .collect();
    let m = model_of(onnx::GraphProto {
        name: "g".into(),
        node: vec![onnx::NodeProto {
            op_type: op.into(),
            name: "r".into(),
            input: inputs.iter().map(|i| i.name.clone()).collect(),
            output: vec!["y".into()],
            attribute,
            ..Default::default()
        }],
        input: inputs,
        output: vec![value("y", out, &[])],
        ..Default::default()
    });
    CandleModel::from_bytes(&m.encode_to_vec(), Path::new("random.onnx"))
}

fn run(m: &CandleModel, inputs: &[&Tensor]) -> Tensor {
    m.run(inputs).unwrap().get(0).unwrap().clone()
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (mean, (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt())
}

#[test]
fn uniform_draws_cover_their_range_and_a_seed_repeats_them() {
    let attrs =
        [("low", A::F(2.0)), ("high", A::F(5.0)), ("seed", A::F(3.0)), ("shape", A::Is(vec![200, 100]))];
    let m = model("RandomUniform", &attrs, vec![], 1).unwrap();
    let y = run(&m, &[]);
    assert_eq!((y.dtype(), y.shape()), (DType::F32, &[200usize, 100][..]));
    let v: Vec<f64> = y.as_slice::<f32>().unwrap().iter().map(|&x| x as f64).collect();
    assert!(v.iter().all(|&x| (2.0..5.0).contains(&x)));
    let (mean, std) = mean_std(&v);
    // 20,000 draws of U(2, 5): mean 3.5 (standard error 0.006), deviation sqrt(0.75).
    assert!((mean - 3.5).abs() < 0.03, "{mean}");
    assert!((std - 0.75f64.sqrt()).abs() < 0.02, "{std}");
    assert!(v.iter().cloned().fold(f64::INFINITY, f64::min) < 2.01);
    assert!(v.iter().cloned().fold(f64::NEG_INFINITY, f64::max) > 4.99);
    assert_eq!(run(&m, &[]), y, "a seeded generator repeats its draws");

    let unseeded = model("RandomUniform", &[("shape", A::Is(vec![64]))], vec![], 1).unwrap();
    assert_ne!(run(&unseeded, &[]), run(&unseeded, &[]), "without a seed, runs differ");
}

#[test]
fn normal_like_draws_take_the_input_shape_and_type() {
    let attrs = [("mean", A::F(1.0)), ("scale", A::F(2.0)), ("seed", A::F(11.0))];
    let m = model("RandomNormalLike", &attrs, vec![value("x", 11, &[100, 100])], 11).unwrap();
    let x = Tensor::from_slice(&[100, 100], &vec![0.0f64; 10_000]).unwrap();
    let y = run(&m, &[&x]);
    assert_eq!((y.dtype(), y.shape()), (DType::F64, &[100usize, 100][..]));
    let (mean, std) = mean_std(y.as_slice::<f64>().unwrap());
    // 10,000 draws of N(1, 2²): standard error of the mean 0.02.
    assert!((mean - 1.0).abs() < 0.1, "{mean}");
    assert!((std - 2.0).abs() < 0.06, "{std}");
}

#[test]
fn bernoulli_draws_follow_their_probabilities() {
    let m = model("Bernoulli", &[("seed", A::F(5.0)), ("dtype", A::I(9))], vec![value("p", 1, &[10_002])], 9)
        .unwrap();
    let mut p = vec![0.3f32; 10_002];
    (p[0], p[1]) = (0.0, 1.0);
    let y = run(&m, &[&Tensor::from_slice(&[10_002], &p).unwrap()]);
    assert_eq!(y.dtype(), DType::Bool);
    let b = y.as_bytes();
    assert_eq!((b[0], b[1]), (0, 1), "p = 0 never draws, p = 1 always does");
    let rate = b[2..].iter().map(|&v| v as f64).sum::<f64>() / 10_000.0;
    // Standard error sqrt(0.21 / 10,000) = 0.0046.
    assert!((rate - 0.3).abs() < 0.025, "{rate}");
}

#[test]
fn bad_random_attributes_are_refused_at_load() {
    let refusal = |op: &str, attrs: &[(&str, A)], inputs: Vec<onnx::ValueInfoProto>| {
        let err = model(op, attrs, inputs, 1).err().expect("refused");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        err.to_string()
    };
    let msg = refusal("RandomUniform", &[("dtype", A::I(6)), ("shape", A::Is(vec![2]))], vec![]);
    assert!(msg.ends_with("RandomUniform (opset 17): node \"r\": dtype int32 is not a float type"), "{msg}");
    let msg = refusal(
        "RandomUniform",
        &[("low", A::F(1.0)), ("high", A::F(1.0)), ("shape", A::Is(vec![2]))],
        vec![],
    );
    assert!(msg.ends_with("node \"r\": low 1 and high 1 do not make a range"), "{msg}");
    let msg = refusal("RandomNormal", &[], vec![]);
    assert!(msg.ends_with("node \"r\": shape is required"), "{msg}");
    let msg = refusal("RandomNormalLike", &[("scale", A::F(-1.0))], vec![value("x", 1, &[2])]);
    assert!(msg.ends_with("node \"r\": mean 0 and scale -1 do not make a distribution"), "{msg}");
}
