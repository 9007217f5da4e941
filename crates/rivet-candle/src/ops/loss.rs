//! The losses: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (with its log-probability
//! output), following ONNX's reference implementation: class weights, an ignored index, and
//! the none, sum and mean reductions (the mean divides by the total weight of the targets that
//! count).

use candle_core::{bail, DType as CDType, Result as CResult, Tensor as CTensor};

use super::registry::{OpDef, Registry, RegistryError};
use super::{ints, make, req, values, Built, Kernel, NodeCtx, Refusal};
use crate::ty::Ty;

#[derive(Clone, Copy, PartialEq)]
enum Reduction {
    None,
    Sum,
    Mean,
}

/// `-input[n, target[n, d], d] * weight[target]` per target, reduced; `input` is `[N, C, D]`
/// flattened, in f64; the result has `target_dims` (reduction none) or is a scalar.
fn nll(
    input: &[f64],
    (n, c, d): (usize, usize, usize),
    target: &[i64],
    target_dims: &[usize],
    weight: Option<&[f64]>,
    ignore: Option<i64>,
    reduction: Reduction,
) -> CResult<(Vec<f64>, Vec<usize>)> {
    if target.len() != n * d {
        bail!("{} targets for {n} samples of {d} positions", target.len());
    }
    if let Some(w) = weight {
        if w.len() != c {
            bail!("{} class weights for {c} classes", w.len());
        }
    }
    let mut loss = vec![0.0; n * d];
    let mut total_weight = 0.0;
    for i in 0..n {
        for j in 0..d {
            let t = target[i * d + j];
            if Some(t) == ignore {
                continue;
            }
            if t < 0 || t as usize >= c {
                bail!("target {t} is not a class of {c}");
            }
            let w = weight.map_or(1.0, |w| w[t as usize]);
            loss[i * d + j] = -input[(i * c + t as usize) * d + j] * w;
            total_weight += w;
        }
    }
    Ok(match reduction {
        Reduction::None => (loss, target_dims.to_vec()),
        Reduction::Sum => (vec![loss.iter().sum()], vec![]),
        Reduction::Mean => (vec![loss.iter().sum::<f64>() / total_weight], vec![]),
    })
}

/// The optional class weights (input 2) as f64.
fn class_weights(x: &[Option<&CTensor>]) -> CResult<Option<Vec<f64>>> {
    x.get(2).copied().flatten().map(|w| values::<f64>(&w.to_dtype(CDType::F64)?)).transpose()
}

/// Reads `reduction` and `ignore_index`, and checks the input types.
fn common(ctx: &NodeCtx<'_>) -> Result<(Ty, Reduction, Option<i64>), Refusal> {
    ctx.known(&["ignore_index", "reduction"])?;
    let t = ctx.ty_where(0, |t| matches!(t, Ty::F32 | Ty::F64), "float and double")?;
    ctx.ty_where(1, |t| matches!(t, Ty::I32 | Ty::I64), "int32 and int64 targets")?;
    ctx.same(&[0, 2], t)?;
    let reduction = match ctx.string("reduction")?.as_deref().unwrap_or("mean") {
        "none" => Reduction::None,
        "sum" => Reduction::Sum,
        "mean" => Reduction::Mean,
        other => return Err(refuse!("reduction \"{other}\" is not none, sum or mean")),
    };
    let ignore = ctx.attr("ignore_index").map(|_| ctx.int("ignore_index", 0)).transpose()?;
    Ok((t, reduction, ignore))
}

/// `x` `[N, C, ...]` as (values, (N, C, D)).
fn split(x: &CTensor) -> CResult<(Vec<f64>, (usize, usize, usize))> {
    if x.rank() < 2 {
        bail!("the input must be [N, C, ...], got {:?}", x.dims());
    }
    let (n, c) = (x.dims()[0], x.dims()[1]);
    let d = x.dims()[2..].iter().product();
    Ok((values(&x.to_dtype(CDType::F64)?)?, (n, c, d)))
}

/// The log-probabilities of `x` `[N, C, D]` along C, computed as ONNX's reference does (the log
/// of the softmax, rounded to `t` at each step).
fn log_softmax(x: &[f64], (n, c, d): (usize, usize, usize), t: Ty) -> Vec<f64> {
    let round = |v: f64| if t == Ty::F32 { v as f32 as f64 } else { v };
    let mut out = vec![0.0; x.len()];
    for i in 0..n {
        for j in 0..d {
            let at = |k: usize| (i * c + k) * d + j;
            let m = (0..c).map(|k| x[at(k)]).fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = (0..c).map(|k| round((round(x[at(k)] - m)).exp())).collect();
            let mut sum = 0.0;
            for v in &e {
                sum = round(sum + v);
            }
            for (k, v) in e.iter().enumerate() {
                out[at(k)] = round(round(v / sum).ln());
            }
        }
    }
    out
}

/// The family these operators are listed under.
const FAMILY: &str = "loss";

/// Registers the loss operators.
pub(super) fn register(r: &mut Registry) -> Result<(), RegistryError> {
    r.add_all([
        OpDef::tensor(FAMILY, "NegativeLogLikelihoodLoss", build_negative_log_likelihood_loss),
        OpDef::tensor(FAMILY, "SoftmaxCrossEntropyLoss", build_softmax_cross_entropy_loss),
    ])
}

/// Builds `NegativeLogLikelihoodLoss`.
fn build_negative_log_likelihood_loss(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let (t, reduction, ignore) = common(ctx)?;
    ctx.max_outputs(1)?;
    let k: Kernel = Box::new(move |x| {
        let (input, shape) = split(req(x, 0)?)?;
        let target = req(x, 1)?;
        let weight = class_weights(x)?;
        let (loss, dims) =
            nll(&input, shape, &ints(target)?, target.dims(), weight.as_deref(), ignore, reduction)?;
        Ok(vec![make(loss, &dims)?.to_dtype(t.candle())?])
    });
    Ok((k, vec![t]))
}

/// Builds `SoftmaxCrossEntropyLoss`.
fn build_softmax_cross_entropy_loss(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let (t, reduction, ignore) = common(ctx)?;
    ctx.max_outputs(2)?;
    let k: Kernel = Box::new(move |x| {
        let scores = req(x, 0)?;
        let (input, shape) = split(scores)?;
        let log_prob = log_softmax(&input, shape, t);
        let target = req(x, 1)?;
        let weight = class_weights(x)?;
        let (loss, dims) =
            nll(&log_prob, shape, &ints(target)?, target.dims(), weight.as_deref(), ignore, reduction)?;
        Ok(vec![
            make(loss, &dims)?.to_dtype(t.candle())?,
            make(log_prob, scores.dims())?.to_dtype(t.candle())?,
        ])
    });
    Ok((k, vec![t, t]))
}
