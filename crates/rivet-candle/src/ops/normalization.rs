//! The normalizations: batch, instance, layer, group, Lp, RMS, mean-variance, and LRN.

use candle_core::{bail, DType as CDType, Result as CResult, Tensor as CTensor};

use super::floats;
use super::registry::{OpDef, Registry, RegistryError};
use super::{axis, req, Built, Kernel, NodeCtx, Refusal};
use crate::kernels::norm::*;
use crate::ty::Ty;

/// The family these operators are listed under.
const FAMILY: &str = "normalization";

/// Registers the normalizations.
pub(super) fn register(r: &mut Registry) -> Result<(), RegistryError> {
    r.add_all([
        OpDef::tensor(FAMILY, "BatchNormalization", build_batch_normalization_legacy).until(6),
        OpDef::tensor(FAMILY, "BatchNormalization", build_batch_normalization).since(7),
        OpDef::tensor(FAMILY, "InstanceNormalization", build_instance_normalization),
        OpDef::tensor(FAMILY, "LayerNormalization", build_layer_normalization),
        OpDef::tensor(FAMILY, "GroupNormalization", build_group_normalization),
        OpDef::tensor(FAMILY, "LpNormalization", build_lp_normalization),
        OpDef::tensor(FAMILY, "RMSNormalization", build_rms_normalization),
        OpDef::tensor(FAMILY, "MeanVarianceNormalization", build_mean_variance_normalization),
        OpDef::tensor(FAMILY, "LRN", build_lrn),
    ])
}

/// Builds `BatchNormalization`.
fn build_batch_normalization(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["epsilon", "momentum", "training_mode", "spatial"])?;
    if ctx.opset < 9 && ctx.int("spatial", 1)? != 1 {
        return Err("spatial=0 is not supported".into());
    }
    if ctx.int("training_mode", 0)? != 0 {
        return Err("training_mode=1 is not supported".into());
    }
    ctx.max_outputs(1)?;
    let t = ctx.ty_where(0, floats, "floats")?;
    Ok((batch_normalization(ctx.float("epsilon", 1e-5)? as f64), vec![t]))
}

/// Builds `BatchNormalization` at opsets 1 to 6: inference (`is_test=1`) with one scale, bias,
/// mean and variance per channel (`spatial=1`).
fn build_batch_normalization_legacy(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["epsilon", "momentum", "is_test", "spatial"])?;
    if ctx.int("is_test", 0)? == 0 {
        return Err("is_test=0 (training: the batch's own statistics) is not supported; a model exported \
                    for inference sets is_test=1"
            .into());
    }
    if ctx.int("spatial", 1)? != 1 {
        return Err("spatial=0 is not supported".into());
    }
    ctx.max_outputs(1)?;
    let t = ctx.ty_where(0, floats, "floats")?;
    Ok((batch_normalization(ctx.float("epsilon", 1e-5)? as f64), vec![t]))
}

/// Inference batch normalization: X scaled and shifted per channel (dim 1) by scale, bias,
/// mean and variance (inputs 1 to 4).
fn batch_normalization(eps: f64) -> Kernel {
    Box::new(move |x| {
        let a = req(x, 0)?;
        let c = if a.rank() > 1 { a.dims()[1] } else { 1 };
        let mut shape = vec![1; a.rank()];
        if a.rank() > 1 {
            shape[1] = c;
        }
        let p =
            |i: usize| -> CResult<CTensor> { req(x, i)?.to_dtype(CDType::F64)?.reshape(shape.as_slice()) };
        let (scale, bias, mean, var) = (p(1)?, p(2)?, p(3)?, p(4)?);
        let mul = scale.broadcast_div(&(var + eps)?.sqrt()?)?;
        let add = bias.broadcast_sub(&mean.broadcast_mul(&mul)?)?;
        if matches!(a.dtype(), CDType::F16 | CDType::BF16) {
            // In double, rounded once: in the half type, the rounded factors and each
            // step's rounding would cost up to a step of the type more.
            let y = a.to_dtype(CDType::F64)?.broadcast_mul(&mul)?.broadcast_add(&add)?;
            return Ok(vec![y.to_dtype(a.dtype())?]);
        }
        let y = a.broadcast_mul(&mul.to_dtype(a.dtype())?)?.broadcast_add(&add.to_dtype(a.dtype())?)?;
        Ok(vec![y])
    })
}

/// Builds `InstanceNormalization`.
fn build_instance_normalization(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["epsilon"])?;
    let t = ctx.ty_where(0, floats, "floats")?;
    let eps = ctx.float("epsilon", 1e-5)? as f64;
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        if a.rank() < 3 {
            bail!("InstanceNormalization needs N, C and spatial dims");
        }
        let (y, _, _) = normalize(a, 2, eps)?;
        let mut shape = vec![1; a.rank()];
        shape[1] = a.dims()[1];
        let s = req(x, 1)?.to_dtype(y.dtype())?.reshape(shape.as_slice())?;
        let b = req(x, 2)?.to_dtype(y.dtype())?.reshape(shape.as_slice())?;
        Ok(vec![y.broadcast_mul(&s)?.broadcast_add(&b)?.to_dtype(a.dtype())?])
    });
    Ok((k, vec![t]))
}

/// Builds `LayerNormalization`.
fn build_layer_normalization(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["axis", "epsilon", "stash_type"])?;
    let t = ctx.ty_where(0, floats, "floats")?;
    ctx.float_stash()?;
    let ax = ctx.int("axis", -1)?;
    let eps = ctx.float("epsilon", 1e-5)? as f64;
    let n_out = ctx.n_outputs().max(1);
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let from = axis(ax, a.rank())?;
        if n_out == 1 && a.dtype() == CDType::F32 {
            if let Some(y) = layer_norm_one_pass(a, from, req(x, 1)?, x.get(2).copied().flatten(), eps)? {
                return Ok(vec![y]);
            }
        }
        let (y, mean, inv) = normalize(a, from, eps)?;
        let mut y = y.broadcast_mul(&req(x, 1)?.to_dtype(y.dtype())?)?;
        if let Some(b) = x.get(2).copied().flatten() {
            y = y.broadcast_add(&b.to_dtype(y.dtype())?)?;
        }
        let mut stat = a.dims()[..from].to_vec();
        stat.extend(std::iter::repeat_n(1, a.rank() - from));
        let mut out = vec![y.to_dtype(a.dtype())?];
        if n_out > 1 {
            out.push(mean.reshape(stat.as_slice())?.to_dtype(CDType::F32)?);
        }
        if n_out > 2 {
            out.push(inv.reshape(stat.as_slice())?.to_dtype(CDType::F32)?);
        }
        Ok(out)
    });
    let mut tys = vec![t];
    tys.extend(std::iter::repeat_n(Ty::F32, n_out - 1));
    Ok((k, tys))
}

/// LayerNormalization of a float `a` over its dims from `from` in one pass ([`layer_norm_f32`]),
/// when `scale` and `bias` hold one value per normalized element in its order; `None` when they
/// broadcast otherwise.
fn layer_norm_one_pass(
    a: &CTensor,
    from: usize,
    scale: &CTensor,
    bias: Option<&CTensor>,
    eps: f64,
) -> CResult<Option<CTensor>> {
    let tail = &a.dims()[from..];
    let inner: usize = tail.iter().product();
    let trimmed = |d: &[usize]| d.iter().skip_while(|&&v| v == 1).copied().collect::<Vec<_>>();
    let fits = |t: &CTensor| t.elem_count() == inner && trimmed(t.dims()) == trimmed(tail);
    if !fits(scale) || bias.is_some_and(|b| !fits(b)) {
        return Ok(None);
    }
    let scale: Vec<f32> = crate::kernels::values(&scale.to_dtype(CDType::F32)?)?;
    let bias: Option<Vec<f32>> =
        bias.map(|b| crate::kernels::values(&b.to_dtype(CDType::F32)?)).transpose()?;
    let y =
        crate::kernels::with_values(a, |v: &[f32]| layer_norm_f32(v, inner, &scale, bias.as_deref(), eps))?;
    Ok(Some(crate::kernels::make(y, a.dims())?))
}

/// Builds `GroupNormalization`.
fn build_group_normalization(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["epsilon", "num_groups", "stash_type"])?;
    let t = ctx.ty_where(0, floats, "floats")?;
    ctx.float_stash()?;
    let eps = ctx.float("epsilon", 1e-5)? as f64;
    let groups = ctx.int("num_groups", 0)?;
    if groups < 1 {
        return Err("num_groups must be at least 1".into());
    }
    let groups = groups as usize;
    let per_channel = ctx.opset >= 21;
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        if a.rank() < 2 || a.dims()[1] % groups != 0 {
            bail!("{:?} does not split into {groups} groups", a.dims());
        }
        let (n, c) = (a.dims()[0], a.dims()[1]);
        let (y, _, _) = normalize(&a.reshape((n, groups, ()))?, 2, eps)?;
        let y = y.reshape(a.dims())?;
        let mut shape = vec![1; a.rank()];
        shape[1] = c;
        let expand = |p: &CTensor| -> CResult<CTensor> {
            let p = p.to_dtype(y.dtype())?;
            if per_channel {
                p.reshape(shape.as_slice())
            } else {
                let g = p.reshape((groups, 1))?.broadcast_as((groups, c / groups))?.reshape(c)?;
                g.reshape(shape.as_slice())
            }
        };
        let y = y.broadcast_mul(&expand(req(x, 1)?)?)?.broadcast_add(&expand(req(x, 2)?)?)?;
        Ok(vec![y.to_dtype(a.dtype())?])
    });
    Ok((k, vec![t]))
}

/// Builds `LpNormalization`.
fn build_lp_normalization(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["axis", "p"])?;
    let t = ctx.ty_where(0, floats, "floats")?;
    let ax = ctx.int("axis", -1)?;
    let p = ctx.int("p", 2)?;
    if p != 1 && p != 2 {
        return Err(refuse!("p = {p} is not 1 or 2"));
    }
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let dim = axis(ax, a.rank())?;
        let v = a.to_dtype(CDType::F64)?;
        let norm = if p == 1 { v.abs()?.sum_keepdim(dim)? } else { v.sqr()?.sum_keepdim(dim)?.sqrt()? };
        // A zero norm gives zeros, as ONNX's reference does.
        let safe = norm.eq(0.0)?.where_cond(&norm.ones_like()?, &norm)?;
        Ok(vec![v.broadcast_div(&safe)?.to_dtype(a.dtype())?])
    });
    Ok((k, vec![t]))
}

/// Builds `RMSNormalization`.
fn build_rms_normalization(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["axis", "epsilon", "stash_type"])?;
    let t = ctx.ty_where(0, floats, "floats")?;
    ctx.float_stash()?;
    let ax = ctx.int("axis", -1)?;
    let eps = ctx.float("epsilon", 1e-5)? as f64;
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let from = axis(ax, a.rank())?;
        let outer: usize = a.dims()[..from].iter().product();
        let v = a.to_dtype(CDType::F32)?.reshape((outer, ()))?;
        let inv = (v.sqr()?.mean_keepdim(1)? + eps)?.sqrt()?.recip()?;
        let y = v.broadcast_mul(&inv)?.reshape(a.dims())?;
        let y = y.broadcast_mul(&req(x, 1)?.to_dtype(CDType::F32)?)?;
        Ok(vec![y.to_dtype(a.dtype())?])
    });
    Ok((k, vec![t]))
}

/// Builds `MeanVarianceNormalization`.
fn build_mean_variance_normalization(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["axes"])?;
    let t = ctx.ty_where(0, floats, "floats")?;
    let axes = ctx.ints("axes")?.unwrap_or(vec![0, 2, 3]);
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let mut ax: Vec<usize> = axes.iter().map(|&i| axis(i, a.rank())).collect::<CResult<_>>()?;
        ax.sort_unstable();
        ax.dedup();
        let v = a.to_dtype(CDType::F64)?;
        let mut mean = v.clone();
        for &d in &ax {
            mean = mean.mean_keepdim(d)?;
        }
        let centered = v.broadcast_sub(&mean)?;
        let mut var = centered.sqr()?;
        for &d in &ax {
            var = var.mean_keepdim(d)?;
        }
        let y = centered.broadcast_div(&(var + 1e-9)?.sqrt()?)?;
        Ok(vec![y.to_dtype(a.dtype())?])
    });
    Ok((k, vec![t]))
}

/// Builds `LRN`.
fn build_lrn(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["alpha", "beta", "bias", "size"])?;
    let t = ctx.ty_where(0, floats, "floats")?;
    let alpha = ctx.float("alpha", 1e-4)? as f64;
    let beta = ctx.float("beta", 0.75)? as f64;
    let bias = ctx.float("bias", 1.0)? as f64;
    let size = ctx.int("size", 0)?;
    if size < 1 {
        return Err("size must be at least 1".into());
    }
    let size = size as usize;
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        if a.rank() < 3 {
            bail!("LRN needs N, C and spatial dims");
        }
        let (n, c) = (a.dims()[0], a.dims()[1]);
        let plane: usize = a.dims()[2..].iter().product();
        let v: Vec<f64> = super::values(&a.to_dtype(CDType::F64)?)?;
        let (lo, hi) = ((size - 1) / 2, (size - 1).div_ceil(2));
        let mut out = vec![0f64; v.len()];
        for b in 0..n {
            for ch in 0..c {
                let (from, to) = (ch.saturating_sub(lo), (ch + hi).min(c - 1));
                for q in 0..plane {
                    let sq: f64 = (from..=to).map(|cc| v[(b * c + cc) * plane + q].powi(2)).sum();
                    let i = (b * c + ch) * plane + q;
                    out[i] = v[i] / (bias + alpha / size as f64 * sq).powf(beta);
                }
            }
        }
        Ok(vec![super::make(out, a.dims())?.to_dtype(a.dtype())?])
    });
    Ok((k, vec![t]))
}
