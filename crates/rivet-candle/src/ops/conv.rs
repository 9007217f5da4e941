//! Conv and ConvTranspose, and the window attributes convolutions and pooling read.

use candle_core::bail;

use super::gemm::{product_floats, PRODUCT_FLOATS};
use super::registry::{OpDef, Registry, RegistryError};
use super::{req, via_f32, Built, Kernel, NodeCtx, Refusal};
use crate::kernels::conv::*;
use crate::kernels::window::*;
use crate::ty::Ty;

/// The family these operators are listed under.
const FAMILY: &str = "convolution";

/// Registers the convolutions.
pub(super) fn register(r: &mut Registry) -> Result<(), RegistryError> {
    r.add_all([
        OpDef::tensor(FAMILY, "Conv", build_conv).fuses_relu(),
        OpDef::tensor(FAMILY, "ConvTranspose", build_conv_transpose),
    ])
}

impl Window {
    pub(super) fn read(ctx: &NodeCtx<'_>, kernel: Option<Vec<i64>>, ceil: bool) -> Result<Window, Refusal> {
        let pos = |v: Vec<i64>, what: &str| -> Result<Vec<usize>, Refusal> {
            v.into_iter()
                .map(|x| usize::try_from(x).map_err(|_| refuse!("{what} must not be negative")))
                .collect()
        };
        // Without a kernel shape (Conv with weights known only at run time), the lengths are
        // filled and checked when the weights arrive.
        let deferred = kernel.is_none();
        let kernel = pos(kernel.unwrap_or_default(), "kernel_shape")?;
        let n = kernel.len();
        let strides = pos(ctx.ints("strides")?.unwrap_or(vec![1; n]), "strides")?;
        let dilations = pos(ctx.ints("dilations")?.unwrap_or(vec![1; n]), "dilations")?;
        if deferred {
            let pads = ctx.ints("pads")?.map(|p| pos(p, "pads")).transpose()?;
            let auto_pad = ctx.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
            return Ok(Window { kernel, strides, dilations, pads, auto_pad, ceil });
        }
        let pads = ctx.ints("pads")?.map(|p| pos(p, "pads")).transpose()?;
        let auto_pad = ctx.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
        if !["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"].contains(&auto_pad.as_str()) {
            return Err(refuse!("auto_pad \"{auto_pad}\" is not supported"));
        }
        if strides.len() != n || dilations.len() != n || pads.as_ref().is_some_and(|p| p.len() != 2 * n) {
            return Err("kernel_shape, strides, dilations and pads disagree in length".into());
        }
        if strides.contains(&0) || dilations.contains(&0) || kernel.contains(&0) {
            return Err("kernel_shape, strides and dilations must be positive".into());
        }
        Ok(Window { kernel, strides, dilations, pads, auto_pad, ceil })
    }
}

impl ConvSpec {
    /// Reads the node's convolution attributes; input `w` holds the weights.
    pub(super) fn read(ctx: &NodeCtx<'_>, w: usize) -> Result<ConvSpec, Refusal> {
        let group = ctx.int("group", 1)?;
        if group < 1 {
            return Err("group must be at least 1".into());
        }
        let kernel = ctx.ints("kernel_shape")?.or_else(|| {
            ctx.konst(w).filter(|w| w.rank() > 2).map(|w| w.dims()[2..].iter().map(|&d| d as i64).collect())
        });
        let win = Window::read(ctx, kernel, false)?;
        Ok(ConvSpec { win, group: group as usize, cache: GeometryCache::default(), relu: false })
    }
}

/// A float16 or bfloat16 convolution after its sums (`product`, already rounded to the type):
/// the bias (input 2) added per channel, then a fused Relu, each rounded to the type as in
/// ONNX's reference.
fn conv_half_steps(product: Kernel, relu: bool) -> Kernel {
    Box::new(move |x| {
        let Some(mut y) = product(x)?.into_iter().next() else { bail!("Conv's product gave no value") };
        if let Some(b) = x.get(2).copied().flatten() {
            let mut shape = vec![1; y.rank()];
            shape[1] = y.dims()[1];
            if b.elem_count() != shape[1] {
                bail!("a bias of {} values for {} output channels", b.elem_count(), shape[1]);
            }
            y = y.broadcast_add(&b.reshape(shape)?)?;
        }
        Ok(vec![if relu { super::elementwise::relu(&y)? } else { y }])
    })
}

/// Builds `Conv`, and with a fused Add (see [`NodeCtx::fuse_add`]) the Add of a residual after
/// it and the Relu after that, if fused too: the answer is those nodes', bit for bit. Where a
/// direct float32 kernel takes the convolution and the residual has the output's shape, each
/// output gets the residual and the Relu as it is written (one addition, as the Add makes);
/// anything else runs the convolution, then the Add's and the Relu's own kernels.
fn build_conv(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"])?;
    let t = ctx.ty_where(0, product_floats, PRODUCT_FLOATS)?;
    ctx.ty(1)?;
    ctx.same(&[0, 1, 2], t)?;
    let mut spec = ConvSpec::read(ctx, 1)?;
    // In float16 and bfloat16 the bias and a fused Relu follow the rounded convolution
    // in the type, as in ONNX's reference (see `conv_half_steps`).
    let half = matches!(t, Ty::F16 | Ty::BF16);
    // With a fused Add, the Relu comes after it.
    let relu = ctx.fuse_relu && ctx.fuse_add.is_none();
    spec.relu = relu && !half;
    let spec = std::sync::Arc::new(spec);
    let conv = spec.clone();
    let k: Kernel = Box::new(move |x| {
        let bias = if half { None } else { x.get(2).copied().flatten() };
        Ok(vec![conv.run(req(x, 0)?, req(x, 1)?, bias)?])
    });
    let k = if half { conv_half_steps(via_f32(k, t), relu) } else { k };
    if let Some(pool) = ctx.pool_after.clone().filter(|_| ctx.fuse_add.is_none()) {
        // The fused 2×2 max pool: in the convolution's pass where the direct row kernel takes
        // it, else the pool's own kernel on the output.
        let k: Kernel = Box::new(move |x| {
            if t == Ty::F32 {
                let bias = x.get(2).copied().flatten();
                if let Some(y) = spec.run_max_pool_2x2(req(x, 0)?, req(x, 1)?, bias)? {
                    return Ok(vec![y]);
                }
            }
            let y = k(x)?.pop().ok_or_else(|| candle_core::Error::Msg("Conv gave no output".into()))?;
            pool(&[Some(&y)])
        });
        return Ok((k, vec![t]));
    }
    let Some(first) = ctx.fuse_add else {
        return Ok((k, vec![t]));
    };
    // The Conv's own inputs; the Add's other operand follows them.
    let own = ctx.node.input.len();
    let add = super::elementwise::arithmetic("Add", t);
    let relu = ctx.fuse_relu;
    let k: Kernel = Box::new(move |x| {
        let (conv_inputs, residual) = (&x[..own.min(x.len())], req(x, own)?);
        if t == Ty::F32 {
            let bias = conv_inputs.get(2).copied().flatten();
            if let Some(y) = spec.run_residual(req(x, 0)?, req(x, 1)?, bias, residual, relu)? {
                return Ok(vec![y]);
            }
        }
        let y = k(conv_inputs)?.pop().ok_or_else(|| candle_core::Error::Msg("Conv gave no output".into()))?;
        let mut sum =
            if first { add(&[Some(residual), Some(&y)])? } else { add(&[Some(&y), Some(residual)])? };
        let sum = sum.pop().ok_or_else(|| candle_core::Error::Msg("Add gave no output".into()))?;
        Ok(vec![if relu { super::elementwise::relu(&sum)? } else { sum }])
    });
    Ok((k, vec![t]))
}

/// Builds `ConvTranspose`.
fn build_conv_transpose(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[
        "auto_pad",
        "dilations",
        "group",
        "kernel_shape",
        "output_padding",
        "output_shape",
        "pads",
        "strides",
    ])?;
    let t = ctx.ty_where(0, product_floats, PRODUCT_FLOATS)?;
    ctx.same(&[0, 1, 2], t)?;
    let group = ctx.int("group", 1)?;
    if group < 1 {
        return Err("group must be at least 1".into());
    }
    let attrs = ConvTransposeAttrs {
        group: group as usize,
        auto_pad: ctx.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into()),
        dilations: ctx.ints("dilations")?,
        kernel_shape: ctx.ints("kernel_shape")?,
        output_padding: ctx.ints("output_padding")?,
        output_shape: ctx.ints("output_shape")?,
        pads: ctx.ints("pads")?,
        strides: ctx.ints("strides")?,
    };
    if !["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"].contains(&attrs.auto_pad.as_str()) {
        return Err(refuse!("auto_pad \"{}\" is not supported", attrs.auto_pad));
    }
    let k: Kernel = Box::new(move |x| {
        Ok(vec![conv_transpose(req(x, 0)?, req(x, 1)?, x.get(2).copied().flatten(), &attrs)?])
    });
    Ok((via_f32(k, t), vec![t]))
}
