//! Softmax, LogSoftmax and Hardmax.

use candle_core::bail;

use super::floats;
use super::registry::{OpDef, Registry, RegistryError};
use super::{axis, req, Built, Kernel, NodeCtx, Refusal};
use crate::kernels::softmax::*;

/// The family these operators are listed under.
const FAMILY: &str = "softmax";

/// Registers the softmax operators.
pub(super) fn register(r: &mut Registry) -> Result<(), RegistryError> {
    r.add_all([
        OpDef::tensor(FAMILY, "Softmax", build_softmax_family),
        OpDef::tensor(FAMILY, "LogSoftmax", build_softmax_family),
        OpDef::tensor(FAMILY, "Hardmax", build_softmax_family),
    ])
}

/// Builds `Softmax`, `LogSoftmax` and `Hardmax`.
fn build_softmax_family(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    ctx.known(&["axis"])?;
    let t = ctx.ty_where(0, floats, "floats")?;
    let legacy = ctx.opset < 13;
    let ax = ctx.int("axis", if legacy { 1 } else { -1 })?;
    let kind = op.to_string();
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        if legacy {
            let from = if ax < 0 { ax + a.rank() as i64 } else { ax };
            if from < 0 || from > a.rank() as i64 {
                bail!("axis {ax} is out of range for rank {}", a.rank());
            }
            let outer: usize = a.dims()[..from as usize].iter().product();
            let y = softmax(&a.reshape((outer, ()))?, 1, &kind)?;
            return Ok(vec![y.reshape(a.dims())?]);
        }
        Ok(vec![softmax(a, axis(ax, a.rank())?, &kind)?])
    });
    Ok((k, vec![t]))
}
