//! MatMul and Gemm.

use candle_core::{bail, DType as CDType};

use super::registry::{OpDef, Registry, RegistryError};
use super::{req, via_f32, Built, Kernel, NodeCtx, Refusal};
use crate::kernels::gemm::*;
use crate::ty::Ty;

/// The family these operators are listed under.
const FAMILY: &str = "matrix products";

/// Registers the matrix products.
pub(super) fn register(r: &mut Registry) -> Result<(), RegistryError> {
    r.add_all([
        OpDef::tensor(FAMILY, "MatMul", build_matmul),
        OpDef::tensor(FAMILY, "Gemm", build_gemm).fuses_relu(),
    ])
}

/// The types of matrix products and convolutions (MatMul, Gemm, Conv, ConvTranspose): float and
/// double, and float16 and bfloat16 computed in float through [`via_f32`] (Candle's own
/// half-width kernels round differently from ONNX's references, so they are not used).
pub(super) fn product_floats(t: Ty) -> bool {
    matches!(t, Ty::F16 | Ty::BF16 | Ty::F32 | Ty::F64)
}

/// What [`product_floats`] accepts, for refusals.
pub(super) const PRODUCT_FLOATS: &str = "float16, bfloat16, float and double";

/// A float16 or bfloat16 Gemm after its product (`product`, already rounded to the type):
/// `alpha` times it, plus `beta` times C (input 2), then a fused Relu, each step rounded to the
/// type as numpy rounds each operation on half-width arrays in ONNX's reference.
fn gemm_half_steps(product: Kernel, alpha: f64, beta: f64, relu: bool) -> Kernel {
    Box::new(move |x| {
        let Some(mut y) = product(x)?.into_iter().next() else { bail!("Gemm's product gave no value") };
        if alpha != 1.0 {
            y = y.affine(alpha, 0.0)?;
        }
        if let Some(c) = x.get(2).copied().flatten().filter(|_| beta != 0.0) {
            if c.rank() > 2 {
                bail!("C must have at most 2 dims, got {:?}", c.dims());
            }
            let c = if beta != 1.0 { c.affine(beta, 0.0)? } else { c.clone() };
            y = y.broadcast_add(&c)?;
        }
        Ok(vec![if relu { super::elementwise::relu(&y)? } else { y }])
    })
}

/// Builds `MatMul`, and with a fused bias (see [`NodeCtx::fuse_add`]) the Add after it: the
/// answer is the Add's, bit for bit. A float32 product the serial path takes, with a bias of
/// one value per output column, adds it to each row while the product is in cache (one
/// addition per element, as the Add makes); anything else runs the product and then the Add's
/// own kernel.
fn build_matmul(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[])?;
    let t = ctx.ty_where(0, product_floats, PRODUCT_FLOATS)?;
    ctx.ty(1)?;
    ctx.same(&[0, 1], t)?;
    let product: Kernel = via_f32(Box::new(|x| Ok(vec![matmul(req(x, 0)?, req(x, 1)?)?])), t);
    let Some(bias_first) = ctx.fuse_add else {
        return Ok((product, vec![t]));
    };
    let add = super::elementwise::arithmetic("Add", t);
    let k: Kernel = Box::new(move |x| {
        let (a, b, bias) = (req(x, 0)?, req(x, 1)?, req(x, 2)?);
        if let Some(y) = matmul_bias_f32(a, b, bias)? {
            return Ok(vec![y]);
        }
        let y = product(&[Some(a), Some(b)])?
            .pop()
            .ok_or_else(|| candle_core::Error::Msg("MatMul gave no output".into()))?;
        if bias_first {
            add(&[Some(bias), Some(&y)])
        } else {
            add(&[Some(&y), Some(bias)])
        }
    });
    Ok((k, vec![t]))
}

/// Builds `Gemm`.
fn build_gemm(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    // Before opset 7, C broadcasts only when the node sets `broadcast=1`; without it C must be
    // M × N.
    let legacy = ctx.opset < 7;
    ctx.known(if legacy {
        &["alpha", "beta", "transA", "transB", "broadcast"]
    } else {
        &["alpha", "beta", "transA", "transB"]
    })?;
    let exact_c = legacy && ctx.has(2) && ctx.int("broadcast", 0)? == 0;
    let t = ctx.ty_where(0, product_floats, PRODUCT_FLOATS)?;
    ctx.ty(1)?;
    ctx.same(&[0, 1, 2], t)?;
    let alpha = ctx.float("alpha", 1.0)? as f64;
    let beta = ctx.float("beta", 1.0)? as f64;
    let ta = ctx.int("transA", 0)? != 0;
    let tb = ctx.int("transB", 0)? != 0;
    let relu = ctx.fuse_relu;
    // In float16 and bfloat16 the product is computed in float and rounded to the type,
    // and alpha, C and a fused Relu then follow in the type, one rounding per step as in
    // ONNX's reference (see `gemm_half_steps`).
    let half = matches!(t, Ty::F16 | Ty::BF16);
    let (p_alpha, p_relu) = if half { (1.0, false) } else { (alpha, relu) };
    // A constant B is transposed and laid out once, at load.
    let b_fixed = match ctx.konst(1) {
        Some(b) if b.rank() == 2 => {
            // In float where the node computes in float (see `via_f32`).
            let b = if b.dtype() == t.candle() && matches!(t, Ty::F16 | Ty::BF16) {
                b.to_dtype(CDType::F32).map_err(|e| e.to_string())?
            } else {
                b.clone()
            };
            let b = if tb { b.t() } else { Ok(b) };
            let b = b.and_then(|b| b.contiguous()).map_err(|e| e.to_string())?;
            Some(pad_columns(b).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    let panels = b_fixed.as_ref().map(|_| Panels::default());
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        if a.rank() != 2 {
            bail!("Gemm's A must be 2-D, got {:?}", a.dims());
        }
        // Transposes are views: the product reads them in place. The others are
        // borrowed, not cloned (a clone is an atomic increment and decrement).
        let (a_t, b_t);
        let a = if ta {
            a_t = a.t()?;
            &a_t
        } else {
            a
        };
        let b = match &b_fixed {
            Some(b) => b,
            None => {
                let b = req(x, 1)?;
                if b.rank() != 2 {
                    bail!("Gemm's B must be 2-D, got {:?}", b.dims());
                }
                if tb {
                    b_t = b.t()?;
                    &b_t
                } else {
                    b
                }
            }
        };
        if a.dims()[1] != b.dims()[0] {
            bail!("Gemm of {:?} and {:?}: inner dims differ", a.dims(), b.dims());
        }
        let c = if half { None } else { x.get(2).copied().flatten() };
        Ok(vec![match a.dtype() {
            CDType::F32 => gemm_op::<f32>(a, b, c, p_alpha, beta, p_relu, panels.as_ref())?,
            _ => gemm_op::<f64>(a, b, c, p_alpha, beta, p_relu, panels.as_ref())?,
        }])
    });
    let k = if half { gemm_half_steps(via_f32(k, t), alpha, beta, relu) } else { k };
    let k = if exact_c { exact_c_shape(k, ta, tb) } else { k };
    Ok((k, vec![t]))
}

/// `k` after a check that C (input 2) is exactly M × N, as a Gemm before opset 7 without
/// `broadcast=1` requires.
fn exact_c_shape(k: Kernel, ta: bool, tb: bool) -> Kernel {
    Box::new(move |x| {
        let (a, b, c) = (req(x, 0)?, req(x, 1)?, req(x, 2)?);
        if let ([a0, a1], [b0, b1]) = (a.dims(), b.dims()) {
            let mn = [if ta { *a1 } else { *a0 }, if tb { *b0 } else { *b1 }];
            if c.dims() != mn {
                bail!("C's shape {:?} is not M × N {mn:?}, and the node does not set broadcast=1", c.dims());
            }
        }
        k(x)
    })
}
