//! The plan's fusions give the bits of the nodes they replace: a MatMul followed by the Add of a
//! bias vector (as `nn.Linear` on a sequence exports) runs as one step, and answers as the two
//! nodes do when the fusion does not apply; so do a Conv, the Add of a residual and a Relu, and
//! a Conv, a Relu and a 2×2 max pool.

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

/// A residual block's end: `y = Relu(Add(Conv(x, w[, b]), r))` (the Relu with `relu`, the
/// residual first with `residual_first`), for `x` of `[2, c, hw, hw]`, 16 output channels, a
/// `k`×`k` window padded to keep the size, and `r` of `r_dims` in element type `r_elem`. With
/// `expose`, the convolution's output is a graph output too, so no fusion applies.
struct Block {
    hw: i64,
    k: i64,
    c: i64,
    bias: bool,
    residual_first: bool,
    relu: bool,
    expose: bool,
    r_dims: Vec<i64>,
    r_elem: i32,
}

impl Block {
    fn new(hw: i64, k: i64) -> Block {
        Block {
            hw,
            k,
            c: 16,
            bias: true,
            residual_first: false,
            relu: true,
            expose: false,
            r_dims: vec![2, 16, hw, hw],
            r_elem: 1,
        }
    }

    fn model(&self) -> Vec<u8> {
        let (c, m, k) = (self.c, 16i64, self.k);
        let w: Vec<f32> = (0..m * c * k * k).map(|i| ((i * 7) % 23) as f32 / 40.0 - 0.27).collect();
        let b: Vec<f32> = (0..m).map(|i| (i % 5) as f32 / 4.0 - 0.5).collect();
        let mut conv = node("Conv", if self.bias { &["x", "w", "b"] } else { &["x", "w"] }, "c");
        let ints = |name: &str, v: Vec<i64>| onnx::AttributeProto {
            name: name.into(),
            r#type: onnx::attribute_proto::AttributeType::Ints as i32,
            ints: v,
            ..Default::default()
        };
        conv.attribute = vec![ints("kernel_shape", vec![k, k]), ints("pads", vec![k / 2; 4])];
        let add =
            if self.residual_first { node("Add", &["r", "c"], "s") } else { node("Add", &["c", "r"], "s") };
        let mut nodes = vec![conv, add];
        let mut output = vec![value("s", 1, &[])];
        if self.relu {
            nodes.push(node("Relu", &["s"], "y"));
            output = vec![value("y", 1, &[])];
        }
        if self.expose {
            output.push(value("c", 1, &[]));
        }
        let mut inits = vec![initializer("w", 1, &[m, c, k, k], &w)];
        if self.bias {
            inits.push(initializer("b", 1, &[m], &b));
        }
        model_of(onnx::GraphProto {
            name: "block".into(),
            node: nodes,
            initializer: inits,
            input: vec![value("x", 1, &[2, c, self.hw, self.hw]), value("r", self.r_elem, &self.r_dims)],
            output,
            ..Default::default()
        })
        .encode_to_vec()
    }
}

/// The first output's bits for `x` and `r`.
fn run2(model: &CandleModel, x: &Tensor, r: &Tensor) -> Vec<u32> {
    let out = model.run(&[x, r]).unwrap();
    out.get(0).unwrap().as_slice::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn a_conv_the_add_of_a_residual_and_a_relu_run_as_one_step_with_the_same_bits() {
    // 8 wide: the row kernel; 7 and 14 wide: the channel kernel (on AVX-512, its row tiles of
    // 28, 14 and 7 positions); 28 wide with 48 channels: on AVX2, the channel kernel's steps
    // in chunks; a 1×1 window: im2col and gemm, which answer through the Add's and the Relu's
    // own kernels; 5 wide: the channel kernel with both images side by side.
    for (hw, k, c) in [(8, 3, 16), (7, 3, 16), (14, 3, 16), (28, 3, 48), (6, 1, 16), (5, 3, 16)] {
        let len = (2 * 16 * hw * hw) as usize;
        let mut xs: Vec<f32> = (0..2 * c * hw * hw).map(|i| ((i * 13) % 17) as f32 / 7.0 - 1.2).collect();
        xs[5] = f32::NAN;
        let mut rs: Vec<f32> = (0..len).map(|i| ((i * 5) % 19) as f32 / 6.0 - 1.6).collect();
        rs[len - 1] = f32::INFINITY;
        rs[len / 2] = -0.0;
        let x = Tensor::from_slice(&[2, c as usize, hw as usize, hw as usize], &xs).unwrap();
        let r = Tensor::from_slice(&[2, 16, hw as usize, hw as usize], &rs).unwrap();
        for bias in [true, false] {
            for relu in [true, false] {
                let block = Block { bias, relu, c, ..Block::new(hw, k) };
                let unfused = load(&Block { expose: true, ..block }.model());
                assert_eq!(unfused.steps(), 2 + usize::from(relu));
                let want = run2(&unfused, &x, &r);
                for residual_first in [false, true] {
                    let case = format!("{hw}×{hw}, k {k}, bias {bias}, relu {relu}, first {residual_first}");
                    let fused = load(&Block { residual_first, bias, relu, c, ..Block::new(hw, k) }.model());
                    assert_eq!(fused.steps(), 1, "{case}");
                    let got = run2(&fused, &x, &r);
                    assert_eq!(got.len(), want.len(), "{case}");
                    let differ = got.iter().zip(&want).position(|(a, b)| a != b);
                    assert_eq!(differ, None, "{case}: the first output that differs");
                }
            }
        }
        // Against plain arithmetic at one output: channel 3 of image 1 at the centre.
        let got = run2(&load(&Block { c, ..Block::new(hw, k) }.model()), &x, &r);
        let w = |i: i64| ((i * 7) % 23) as f32 / 40.0 - 0.27;
        let (ch, img, y0) = (3i64, 1i64, hw / 2);
        let mut sum = 0f64;
        for ci in 0..c {
            for i in 0..k {
                for j in 0..k {
                    let (yy, xx) = (y0 + i - k / 2, y0 + j - k / 2);
                    let xv = xs[(((img * c + ci) * hw + yy) * hw + xx) as usize];
                    sum += f64::from(xv) * f64::from(w(((ch * c + ci) * k + i) * k + j));
                }
            }
        }
        let at = (((img * 16 + ch) * hw + y0) * hw + y0) as usize;
        let want = (sum + f64::from((ch % 5) as f32 / 4.0 - 0.5) + f64::from(rs[at])).max(0.0);
        let g = f64::from(f32::from_bits(got[at]));
        assert!((g - want).abs() <= 1e-5 * want.abs().max(1.0), "{hw}×{hw}: {g} against {want}");
    }
}

#[test]
fn a_residual_that_broadcasts_takes_the_adds_path_and_a_mixed_type_is_refused() {
    let xs: Vec<f32> = (0..2 * 16 * 64).map(|i| (i % 9) as f32 / 4.0 - 1.0).collect();
    let x = Tensor::from_slice(&[2, 16, 8, 8], &xs).unwrap();
    // One value per channel: fused into one step, answered by the Add's broadcasting.
    let per_channel = Block { r_dims: vec![1, 16, 1, 1], ..Block::new(8, 3) };
    let r = Tensor::from_slice(&[1, 16, 1, 1], &(0..16).map(|i| i as f32 - 8.0).collect::<Vec<_>>()).unwrap();
    let fused = load(&per_channel.model());
    assert_eq!(fused.steps(), 1);
    let unfused = load(&Block { expose: true, r_dims: vec![1, 16, 1, 1], ..Block::new(8, 3) }.model());
    assert_eq!(run2(&fused, &x, &r), run2(&unfused, &x, &r));
    // A float64 residual for a float32 convolution: refused at load, naming both types.
    let wide = Block { r_elem: 11, ..Block::new(8, 3) };
    let err = CandleModel::from_bytes(&wide.model(), Path::new("block.onnx")).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("adds double \"r\" to its float output"), "{err}");
}

/// `y = MaxPool(Relu(Conv(x, w[, b])))` (the Relu with `relu`) for `x` of `[2, 4, h, w]` in
/// element type `elem`, 8 output channels, a 3×3 window padded by one, and a MaxPool of a 2×2
/// window and stride 2, or as `pool_attrs` say, with `pool_attrs` besides. With `expose`, the pool's input is a graph
/// output too, so the pool is not fused.
#[derive(Clone)]
struct Pooled {
    h: i64,
    w: i64,
    elem: i32,
    bias: bool,
    relu: bool,
    expose: bool,
    pool_attrs: Vec<onnx::AttributeProto>,
}

fn ints(name: &str, v: Vec<i64>) -> onnx::AttributeProto {
    onnx::AttributeProto {
        name: name.into(),
        r#type: onnx::attribute_proto::AttributeType::Ints as i32,
        ints: v,
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> onnx::AttributeProto {
    onnx::AttributeProto {
        name: name.into(),
        r#type: onnx::attribute_proto::AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

/// The convolution's weight `i` and bias `i` in [`Pooled`]'s models.
fn pooled_weight(i: i64) -> f32 {
    ((i * 7) % 23) as f32 / 20.0 - 0.55
}

fn pooled_bias(i: i64) -> f32 {
    (i % 5) as f32 / 4.0 - 0.5
}

impl Pooled {
    fn new(h: i64, w: i64) -> Pooled {
        Pooled { h, w, elem: 1, bias: true, relu: true, expose: false, pool_attrs: vec![] }
    }

    fn model(&self) -> Vec<u8> {
        let (c, m) = (4i64, 8i64);
        let ws: Vec<f32> = (0..m * c * 9).map(pooled_weight).collect();
        let b: Vec<f32> = (0..m).map(pooled_bias).collect();
        let mut conv = node("Conv", if self.bias { &["x", "w", "b"] } else { &["x", "w"] }, "c");
        conv.attribute = vec![ints("kernel_shape", vec![3, 3]), ints("pads", vec![1; 4])];
        let mut nodes = vec![conv];
        let mut pooled = "c";
        if self.relu {
            nodes.push(node("Relu", &["c"], "r"));
            pooled = "r";
        }
        let mut pool = node("MaxPool", &[pooled], "y");
        pool.attribute = self.pool_attrs.clone();
        for (name, v) in [("kernel_shape", 2), ("strides", 2)] {
            if !pool.attribute.iter().any(|a| a.name == name) {
                pool.attribute.push(ints(name, vec![v, v]));
            }
        }
        nodes.push(pool);
        let mut output = vec![value("y", self.elem, &[])];
        if self.expose {
            output.push(value(pooled, self.elem, &[]));
        }
        let mut inits = vec![initializer("w", self.elem, &[m, c, 3, 3], &ws)];
        if self.bias {
            inits.push(initializer("b", self.elem, &[m], &b));
        }
        model_of(onnx::GraphProto {
            name: "pooled".into(),
            node: nodes,
            initializer: inits,
            input: vec![value("x", self.elem, &[2, c, self.h, self.w])],
            output,
            ..Default::default()
        })
        .encode_to_vec()
    }
}

/// The first output's values for `x`, as the bits of f64s.
fn run_any(model: &CandleModel, x: &Tensor) -> Vec<u64> {
    let out = model.run(&[x]).unwrap();
    let y = out.get(0).unwrap();
    match y.as_slice::<f32>() {
        Ok(v) => v.iter().map(|v| f64::from(*v).to_bits()).collect(),
        Err(_) => y.as_slice::<f64>().unwrap().iter().map(|v| v.to_bits()).collect(),
    }
}

#[test]
fn a_conv_its_relu_and_a_2x2_max_pool_run_as_one_step_with_the_same_bits() {
    // 16×16 and 9×11 (an odd last row and column dropped): the row kernel, which pools in its
    // own pass; 7×7 and float64: the pool's own kernel after the convolution's.
    for (h, w, elem) in [(16, 16, 1), (9, 11, 1), (7, 7, 1), (16, 16, 11)] {
        let len = (2 * 4 * h * w) as usize;
        let mut xs: Vec<f32> = (0..len).map(|i| ((i * 13) % 17) as f32 / 7.0 - 1.2).collect();
        xs[5] = f32::NAN;
        xs[len - 3] = -0.0;
        let dims = [2, 4, h as usize, w as usize];
        let x = if elem == 11 {
            Tensor::from_slice(&dims, &xs.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()).unwrap()
        } else {
            Tensor::from_slice(&dims, &xs).unwrap()
        };
        for bias in [true, false] {
            for relu in [true, false] {
                let case = format!("{h}×{w}, elem {elem}, bias {bias}, relu {relu}");
                let pooled = Pooled { elem, bias, relu, ..Pooled::new(h, w) };
                let unfused = load(&Pooled { expose: true, ..pooled.clone() }.model());
                assert_eq!(unfused.steps(), 2, "{case}");
                let want = run_any(&unfused, &x);
                let fused = load(&pooled.model());
                assert_eq!(fused.steps(), 1, "{case}");
                let got = run_any(&fused, &x);
                assert_eq!(got.len(), (2 * 8 * (h / 2) * (w / 2)) as usize, "{case}");
                let differ = got.iter().zip(&want).position(|(a, b)| a != b);
                assert_eq!(differ, None, "{case}: the first output that differs");
            }
        }
        // Against plain arithmetic at one output: channel 5 of image 1, pooled row 2, column 1.
        let got = run_any(&load(&Pooled { elem, ..Pooled::new(h, w) }.model()), &x);
        let (ch, img, py, px) = (5i64, 1i64, 2i64, 1i64);
        let conv_at = |y0: i64, x0: i64| {
            let mut sum = f64::from(pooled_bias(ch));
            for c in 0..4 {
                for i in 0..3 {
                    for j in 0..3 {
                        let (yy, xx) = (y0 + i - 1, x0 + j - 1);
                        if yy < 0 || xx < 0 || yy >= h || xx >= w {
                            continue;
                        }
                        let xv = xs[(((img * 4 + c) * h + yy) * w + xx) as usize];
                        sum += f64::from(xv) * f64::from(pooled_weight(((ch * 4 + c) * 3 + i) * 3 + j));
                    }
                }
            }
            sum.max(0.0)
        };
        let want = [(0, 0), (0, 1), (1, 0), (1, 1)]
            .iter()
            .map(|&(dy, dx)| conv_at(2 * py + dy, 2 * px + dx))
            .fold(f64::NEG_INFINITY, f64::max);
        let at = (((img * 8 + ch) * (h / 2) + py) * (w / 2) + px) as usize;
        let g = f64::from_bits(got[at]);
        assert!((g - want).abs() <= 1e-5 * want.abs().max(1.0), "{h}×{w}: {g} against {want}");
    }
    // A pool that pads, rounds up, steps by one or has a 3×3 window stays a step of its own;
    // one with a storage order (which only its indices would show) is fused.
    let steps = |attrs: Vec<onnx::AttributeProto>| {
        load(&Pooled { pool_attrs: attrs, ..Pooled::new(8, 8) }.model()).steps()
    };
    assert_eq!(steps(vec![ints("pads", vec![0, 0, 1, 1])]), 2);
    assert_eq!(steps(vec![int("ceil_mode", 1)]), 2);
    assert_eq!(steps(vec![ints("strides", vec![1, 1])]), 2);
    assert_eq!(steps(vec![ints("kernel_shape", vec![3, 3])]), 2);
    assert_eq!(steps(vec![int("storage_order", 0)]), 1);
    assert_eq!(steps(vec![]), 1);
}
