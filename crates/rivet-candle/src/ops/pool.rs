//! Pooling: MaxPool, AveragePool, LpPool, GlobalAveragePool and GlobalMaxPool.

use candle_core::{bail, DType as CDType};

use super::floats;
use super::registry::{OpDef, Registry, RegistryError};
use super::{req, Built, Kernel, NodeCtx, Refusal};
use crate::kernels::pool::*;
use crate::kernels::window::*;

/// The family these operators are listed under.
const FAMILY: &str = "pooling";

/// Registers the pooling operators.
pub(super) fn register(r: &mut Registry) -> Result<(), RegistryError> {
    r.add_all([
        OpDef::tensor(FAMILY, "MaxPool", build_pool),
        OpDef::tensor(FAMILY, "AveragePool", build_pool),
        OpDef::tensor(FAMILY, "LpPool", build_pool),
        OpDef::tensor(FAMILY, "GlobalAveragePool", build_global_pool),
        OpDef::tensor(FAMILY, "GlobalMaxPool", build_global_pool),
    ])
}

/// Builds `MaxPool`, `AveragePool` and `LpPool`.
fn build_pool(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    let max = op == "MaxPool";
    if max {
        ctx.known(&[
            "auto_pad",
            "ceil_mode",
            "dilations",
            "kernel_shape",
            "pads",
            "storage_order",
            "strides",
        ])?;
        ctx.max_outputs(1)?;
    } else {
        ctx.known(&[
            "auto_pad",
            "ceil_mode",
            "count_include_pad",
            "dilations",
            "kernel_shape",
            "pads",
            "strides",
            "p",
        ])?;
    }
    let t = ctx.ty_where(0, floats, "floats")?;
    let kernel = ctx.ints("kernel_shape")?.ok_or("kernel_shape is required")?;
    let win = Window::read(ctx, Some(kernel), ctx.int("ceil_mode", 0)? != 0)?;
    let kind = match op {
        "MaxPool" => PoolKind::Max,
        "AveragePool" => {
            if ctx.attr("p").is_some() {
                return Err("attribute \"p\" is not supported".into());
            }
            PoolKind::Avg { include_pad: ctx.int("count_include_pad", 0)? != 0 }
        }
        _ => {
            if ctx.attr("count_include_pad").is_some() {
                return Err("attribute \"count_include_pad\" is not supported".into());
            }
            PoolKind::Lp(ctx.int("p", 2)? as f64)
        }
    };
    let cache = GeometryCache::default();
    let k: Kernel = Box::new(move |x| Ok(vec![pool(req(x, 0)?, &win, kind, &cache)?]));
    Ok((k, vec![t]))
}

/// Builds `GlobalAveragePool` and `GlobalMaxPool`.
fn build_global_pool(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    ctx.known(&[])?;
    let t = ctx.ty_where(0, floats, "floats")?;
    let max = op == "GlobalMaxPool";
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        if a.rank() < 3 {
            bail!("global pooling needs N, C and spatial dims, got {:?}", a.dims());
        }
        let mut dims = a.dims().to_vec();
        for d in dims.iter_mut().skip(2) {
            *d = 1;
        }
        if !max && a.dtype() == CDType::F32 && a.rank() >= 3 && a.dims()[0] > 0 {
            let (images, channels) = (a.dims()[0], a.dims()[1]);
            let plane: usize = a.dims()[2..].iter().product();
            if plane > 0 {
                let means = crate::kernels::with_values(a, |xs: &[f32]| {
                    global_average_f32(xs, images, channels, plane)
                })?;
                return Ok(vec![candle_core::Tensor::from_vec(means, dims, &candle_core::Device::Cpu)?]);
            }
        }
        let flat = a.flatten_from(2)?;
        let y = if max {
            flat.max_keepdim(2)?
        } else {
            flat.to_dtype(CDType::F64)?.mean_keepdim(2)?.to_dtype(a.dtype())?
        };
        Ok(vec![y.reshape(dims)?])
    });
    Ok((k, vec![t]))
}
