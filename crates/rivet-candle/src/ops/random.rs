//! Random generators: RandomUniform, RandomNormal, RandomUniformLike, RandomNormalLike and
//! Bernoulli.
//!
//! With a `seed` attribute, every run draws from a generator seeded with it, so a run's output
//! depends only on its inputs (the same on every call, from any thread, with no lock). Without
//! one, each run seeds from the operating system. The plan never folds these nodes into
//! constants (see [`super::foldable`]).

use candle_core::{DType as CDType, Result as CResult, Tensor as CTensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use super::elementwise::cast;
use super::registry::{OpDef, Registry, RegistryError};
use super::{check_size, make, req, values, Built, Kernel, NodeCtx, Refusal};
use crate::ty::Ty;

/// The generator for one run.
fn generator(seed: Option<f32>) -> StdRng {
    match seed {
        Some(s) => StdRng::seed_from_u64(u64::from(s.to_bits())),
        None => StdRng::from_os_rng(),
    }
}

/// What a generator draws.
#[derive(Clone, Copy)]
enum Draw {
    Uniform { low: f64, high: f64 },
    Normal { mean: f64, scale: f64 },
}

impl Draw {
    fn read(op: &str, ctx: &NodeCtx<'_>) -> Result<Draw, Refusal> {
        if op.starts_with("RandomUniform") {
            let (low, high) = (ctx.float("low", 0.0)? as f64, ctx.float("high", 1.0)? as f64);
            if low >= high || low.is_nan() || high.is_nan() || !low.is_finite() || !high.is_finite() {
                return Err(refuse!("low {low} and high {high} do not make a range"));
            }
            Ok(Draw::Uniform { low, high })
        } else {
            let (mean, scale) = (ctx.float("mean", 0.0)? as f64, ctx.float("scale", 1.0)? as f64);
            if scale.is_nan() || scale < 0.0 || !scale.is_finite() || !mean.is_finite() {
                return Err(refuse!("mean {mean} and scale {scale} do not make a distribution"));
            }
            Ok(Draw::Normal { mean, scale })
        }
    }

    /// `n` draws, as a tensor of `dims` and type `ty`.
    fn tensor(self, seed: Option<f32>, dims: &[usize], ty: Ty) -> CResult<CTensor> {
        check_size(dims, 8)?;
        let n: usize = dims.iter().product();
        let mut rng = generator(seed);
        let v: Vec<f64> = match self {
            Draw::Uniform { low, high } => (0..n).map(|_| rng.random_range(low..high)).collect(),
            Draw::Normal { mean, scale } => {
                let d = Normal::new(mean, scale).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
                (0..n).map(|_| d.sample(&mut rng)).collect()
            }
        };
        make(v, dims)?.to_dtype(ty.candle())
    }
}

/// The `dtype` attribute as a float type, or `default`.
fn float_dtype(ctx: &NodeCtx<'_>, default: Option<Ty>) -> Result<Ty, Refusal> {
    let code = ctx.int("dtype", 0)?;
    let ty = if code == 0 { default } else { Ty::from_onnx(code as i32) };
    match ty {
        Some(t) if t.is_float() => Ok(t),
        Some(t) => Err(refuse!("dtype {t} is not a float type")),
        None if code == 0 => Err("dtype is required".into()),
        None => Err(refuse!("dtype {} is not supported", Ty::onnx_name(code as i32))),
    }
}

/// The family these operators are listed under.
const FAMILY: &str = "random";

/// Registers the random operators.
pub(super) fn register(r: &mut Registry) -> Result<(), RegistryError> {
    r.add_all([
        OpDef::tensor(FAMILY, "RandomUniform", build_random).random(),
        OpDef::tensor(FAMILY, "RandomNormal", build_random).random(),
        OpDef::tensor(FAMILY, "RandomUniformLike", build_random_like).random(),
        OpDef::tensor(FAMILY, "RandomNormalLike", build_random_like).random(),
        OpDef::tensor(FAMILY, "Bernoulli", build_bernoulli).random(),
    ])
}

/// Builds `RandomUniform` and `RandomNormal`.
fn build_random(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    let seed =
        || -> Result<Option<f32>, Refusal> { ctx.attr("seed").map(|_| ctx.float("seed", 0.0)).transpose() };
    ctx.known(&["dtype", "high", "low", "mean", "scale", "seed", "shape"])?;
    let draw = Draw::read(op, ctx)?;
    let ty = float_dtype(ctx, Some(Ty::F32))?;
    let shape = ctx.ints("shape")?.ok_or("shape is required")?;
    let dims = shape
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|_| refuse!("shape has a negative dimension {d}")))
        .collect::<Result<Vec<_>, _>>()?;
    let seed = seed()?;
    let k: Kernel = Box::new(move |_| Ok(vec![draw.tensor(seed, &dims, ty)?]));
    Ok((k, vec![ty]))
}

/// Builds `RandomUniformLike` and `RandomNormalLike`.
fn build_random_like(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    let seed =
        || -> Result<Option<f32>, Refusal> { ctx.attr("seed").map(|_| ctx.float("seed", 0.0)).transpose() };
    ctx.known(&["dtype", "high", "low", "mean", "scale", "seed"])?;
    let draw = Draw::read(op, ctx)?;
    let input = ctx.ty(0)?;
    let ty = float_dtype(ctx, Some(input))?;
    let seed = seed()?;
    let k: Kernel = Box::new(move |x| Ok(vec![draw.tensor(seed, req(x, 0)?.dims(), ty)?]));
    Ok((k, vec![ty]))
}

/// Builds `Bernoulli`.
fn build_bernoulli(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let seed =
        || -> Result<Option<f32>, Refusal> { ctx.attr("seed").map(|_| ctx.float("seed", 0.0)).transpose() };
    ctx.known(&["dtype", "seed"])?;
    let input = ctx.ty_where(0, Ty::is_float, "float16, bfloat16, float and double")?;
    let code = ctx.int("dtype", 0)?;
    let out = if code == 0 {
        input
    } else {
        Ty::from_onnx(code as i32)
            .ok_or_else(|| refuse!("dtype {} is not supported", Ty::onnx_name(code as i32)))?
    };
    let seed = seed()?;
    let k: Kernel = Box::new(move |x| {
        let p = req(x, 0)?;
        let probs: Vec<f64> = values(&p.to_dtype(CDType::F64)?)?;
        let mut rng = generator(seed);
        let draws: Vec<f64> =
            probs.iter().map(|&q| if rng.random::<f64>() < q { 1.0 } else { 0.0 }).collect();
        Ok(vec![cast(&make(draws, p.dims())?, Ty::F64, out)?])
    });
    Ok((k, vec![out]))
}
