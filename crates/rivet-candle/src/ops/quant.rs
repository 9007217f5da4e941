//! Quantization: QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear, and the integer
//! products MatMulInteger, QLinearMatMul, ConvInteger and QLinearConv.
//!
//! Arithmetic follows ONNX's reference implementation step by step: a division or product of
//! scales is rounded to the scales' element type, integer accumulations are exact (done in f64,
//! which holds every sum of 8-bit products these operators can make below 2^53), and results
//! are rounded half to even, then saturated to the output type.

use candle_core::{bail, DType as CDType, Result as CResult, Tensor as CTensor};
use half::{bf16, f16};

use super::registry::{OpDef, Registry, RegistryError};
use super::{make, req, values, Built, Kernel, NodeCtx, Refusal};
use crate::kernels::conv::ConvSpec;
use crate::kernels::gemm::matmul;
use crate::ty::Ty;

/// Rounds `v` to the nearest value of float type `ty` (where ONNX's reference computes in it).
fn round_to(v: f64, ty: Ty) -> f64 {
    match ty {
        Ty::F32 => v as f32 as f64,
        Ty::F16 => f16::from_f64(v).to_f64(),
        Ty::BF16 => bf16::from_f64(v).to_f64(),
        _ => v,
    }
}

/// The range of a quantized integer type.
fn range(ty: Ty) -> (f64, f64) {
    match ty {
        Ty::U8 => (0.0, 255.0),
        Ty::I8 => (-128.0, 127.0),
        Ty::I16 => (-32768.0, 32767.0),
        _ => (i32::MIN as f64, i32::MAX as f64),
    }
}

/// Whether `ty` is a quantized type the executor produces.
fn quantized(ty: Ty) -> bool {
    matches!(ty, Ty::U8 | Ty::I8 | Ty::I16)
}

/// Saturates `v` (already rounded) to `ty` and returns the tensor.
fn saturated(v: Vec<f64>, dims: &[usize], ty: Ty) -> CResult<CTensor> {
    let (lo, hi) = range(ty);
    let q: Vec<i64> = v.into_iter().map(|x| if x.is_nan() { 0 } else { x.clamp(lo, hi) as i64 }).collect();
    make(q, dims)?.to_dtype(ty.candle())
}

/// Where a scale or zero point applies: to the whole tensor, along one axis, or in blocks
/// along one axis.
#[derive(Clone, Copy)]
struct Layout {
    axis: i64,
    block: usize,
}

/// For each element of a tensor of `dims`, the index of its parameter in `p` (per-tensor,
/// per-axis or blocked, as ONNX's `reshape_input` lays them out).
struct Params {
    /// 0: per tensor; otherwise the length of the quantization axis.
    d: usize,
    /// Per axis (one parameter per index along the axis) rather than blocked.
    per_axis: bool,
    inner: usize,
    block: usize,
    blocks: usize,
}

impl Params {
    fn new(layout: Layout, dims: &[usize], p: &[usize]) -> CResult<Params> {
        let count: usize = p.iter().product();
        if count == 1 && p.len() <= 1 {
            return Ok(Params { d: 0, per_axis: false, inner: 1, block: 1, blocks: 1 });
        }
        let rank = dims.len() as i64;
        let axis = if layout.axis < 0 { layout.axis + rank } else { layout.axis };
        if axis < 0 || axis >= rank {
            bail!("axis {} is out of range for shape {dims:?}", layout.axis);
        }
        let axis = axis as usize;
        let (d, inner) = (dims[axis], dims[axis + 1..].iter().product());
        if layout.block == 0 {
            if p.len() != 1 || p[0] != d {
                bail!("a per-axis parameter of shape {p:?} does not match axis {axis} of {dims:?}");
            }
            return Ok(Params { d, per_axis: true, inner, block: 1, blocks: d });
        }
        let blocks = d.div_ceil(layout.block);
        let fits = p.len() == dims.len()
            && p.iter()
                .zip(dims)
                .enumerate()
                .all(|(i, (&a, &b))| if i == axis { a == blocks } else { a == b });
        if !fits {
            bail!("a blocked parameter of shape {p:?} does not match {dims:?} in blocks of {}", layout.block);
        }
        Ok(Params { d, per_axis: false, inner, block: layout.block, blocks })
    }

    fn index(&self, i: usize) -> usize {
        if self.d == 0 {
            return 0;
        }
        let a = (i / self.inner) % self.d;
        if self.per_axis {
            return a;
        }
        let (outer, r) = (i / (self.d * self.inner), i % self.inner);
        (outer * self.blocks + a / self.block) * self.inner + r
    }
}

/// A tensor's values as `f64`.
fn f64s(t: &CTensor) -> CResult<Vec<f64>> {
    values(&t.to_dtype(CDType::F64)?)
}

/// An optional input's values, or a single zero.
fn zero_point(x: &[Option<&CTensor>], i: usize) -> CResult<(Vec<f64>, Vec<usize>)> {
    match x.get(i).copied().flatten() {
        Some(t) => Ok((f64s(t)?, t.dims().to_vec())),
        None => Ok((vec![0.0], vec![])),
    }
}

/// The operands of QuantizeLinear and DequantizeLinear: the input, its values, the scales,
/// the zero points (a single 0 when absent) and where each element finds its scale and zero
/// point.
struct Operands<'a> {
    v: &'a CTensor,
    xs: Vec<f64>,
    ss: Vec<f64>,
    zs: Vec<f64>,
    ps: Params,
    pz: Params,
}

impl<'a> Operands<'a> {
    fn read(x: &[Option<&'a CTensor>], lay: Layout) -> CResult<Operands<'a>> {
        let (v, s) = (req(x, 0)?, req(x, 1)?);
        let (zs, zdims) = zero_point(x, 2)?;
        Ok(Operands {
            v,
            xs: f64s(v)?,
            ss: f64s(s)?,
            zs,
            ps: Params::new(lay, v.dims(), s.dims())?,
            pz: Params::new(lay, v.dims(), &zdims)?,
        })
    }
}

/// Reads `axis` and `block_size` (each where the opset has it).
fn layout(ctx: &NodeCtx<'_>) -> Result<Layout, Refusal> {
    let block = ctx.int("block_size", 0)?;
    let block = usize::try_from(block).map_err(|_| "block_size must not be negative".to_string())?;
    Ok(Layout { axis: ctx.int("axis", 1)?, block })
}

/// The single value of a per-tensor parameter, refusing anything larger.
fn one(t: &CTensor, what: &str) -> CResult<f64> {
    if t.elem_count() != 1 {
        bail!("{what} must hold one value, got shape {:?}", t.dims());
    }
    Ok(f64s(t)?[0])
}

/// `x - zero_point` as an f64 tensor (the zero point broadcast by numpy's rules).
fn centered(x: &CTensor, zp: Option<&CTensor>) -> CResult<CTensor> {
    let x = x.to_dtype(CDType::F64)?;
    match zp {
        Some(z) => x.broadcast_sub(&z.to_dtype(CDType::F64)?),
        None => Ok(x),
    }
}

/// The output type of QuantizeLinear: the zero point's, else `output_dtype`, else uint8.
fn quantize_output(ctx: &NodeCtx<'_>) -> Result<Ty, Refusal> {
    let attr = match ctx.int("output_dtype", 0)? {
        0 => None,
        code => Some(Ty::from_onnx(code as i32).filter(|t| quantized(*t)).ok_or_else(|| {
            format!(
                "output_dtype {} is not supported (uint8, int8 and int16 are)",
                Ty::onnx_name(code as i32)
            )
        })?),
    };
    let out = if ctx.has(2) { ctx.ty(2)? } else { attr.unwrap_or(Ty::U8) };
    if attr.is_some_and(|a| a != out) {
        return Err(refuse!("output_dtype disagrees with the zero point's type {out}"));
    }
    if !quantized(out) {
        return Err(refuse!("quantizing to {out} is not supported (uint8, int8 and int16 are)"));
    }
    Ok(out)
}

/// The family these operators are listed under.
const FAMILY: &str = "quantization";

/// Registers the quantization operators.
pub(super) fn register(r: &mut Registry) -> Result<(), RegistryError> {
    r.add_all([
        OpDef::tensor(FAMILY, "QuantizeLinear", build_quantize_linear),
        OpDef::tensor(FAMILY, "DequantizeLinear", build_dequantize_linear),
        OpDef::tensor(FAMILY, "DynamicQuantizeLinear", build_dynamic_quantize_linear),
        OpDef::tensor(FAMILY, "MatMulInteger", build_mat_mul_integer),
        OpDef::tensor(FAMILY, "QLinearMatMul", build_q_linear_mat_mul),
        OpDef::tensor(FAMILY, "ConvInteger", build_conv_integer),
        OpDef::tensor(FAMILY, "QLinearConv", build_q_linear_conv),
    ])
}

/// Builds `QuantizeLinear`.
fn build_quantize_linear(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["axis", "saturate", "block_size", "output_dtype", "precision"])?;
    let t = ctx.ty_where(0, Ty::is_float, "float16, bfloat16, float and double")?;
    ctx.same(&[0, 1], t)?;
    let precision = ctx.int("precision", 0)?;
    if precision != 0 && Ty::from_onnx(precision as i32) != Some(t) {
        return Err(refuse!(
            "precision {} differs from the input's type {t}",
            Ty::onnx_name(precision as i32)
        ));
    }
    let out = quantize_output(ctx)?;
    let lay = layout(ctx)?;
    let k: Kernel = Box::new(move |x| {
        let Operands { v, xs, ss, zs, ps, pz } = Operands::read(x, lay)?;
        let q = xs
            .iter()
            .enumerate()
            .map(|(i, &e)| round_to(e / ss[ps.index(i)], t).round_ties_even() + zs[pz.index(i)])
            .collect();
        Ok(vec![saturated(q, v.dims(), out)?])
    });
    Ok((k, vec![out]))
}

/// Builds `DequantizeLinear`.
fn build_dequantize_linear(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["axis", "block_size", "output_dtype"])?;
    let t = ctx.ty_where(0, |t| quantized(t) || t == Ty::I32, "uint8, int8, int16 and int32")?;
    ctx.same(&[0, 2], t)?;
    let scale =
        ctx.ty_where(1, |t| matches!(t, Ty::F32 | Ty::F16 | Ty::BF16), "float, float16 and bfloat16 scales")?;
    let out = match ctx.int("output_dtype", 0)? {
        0 => scale,
        code => Ty::from_onnx(code as i32)
            .filter(|t| t.is_float())
            .ok_or_else(|| refuse!("output_dtype {} is not a float type", Ty::onnx_name(code as i32)))?,
    };
    let lay = layout(ctx)?;
    let k: Kernel = Box::new(move |x| {
        let Operands { v, xs, ss, zs, ps, pz } = Operands::read(x, lay)?;
        // The reference subtracts in float and multiplies in float.
        let y: Vec<f64> = xs
            .iter()
            .enumerate()
            .map(|(i, &e)| {
                let dx = round_to(round_to(e, Ty::F32) - zs[pz.index(i)], Ty::F32);
                round_to(dx * ss[ps.index(i)], Ty::F32)
            })
            .collect();
        Ok(vec![make(y, v.dims())?.to_dtype(out.candle())?])
    });
    Ok((k, vec![out]))
}

/// Builds `DynamicQuantizeLinear`.
fn build_dynamic_quantize_linear(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[])?;
    ctx.ty_where(0, |t| t == Ty::F32, "float")?;
    let k: Kernel = Box::new(|x| {
        let v = req(x, 0)?;
        let xs: Vec<f32> = values(v)?;
        if xs.is_empty() {
            bail!("DynamicQuantizeLinear of an empty tensor has no range");
        }
        let maxx = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max).max(0.0);
        let minx = xs.iter().copied().fold(f32::INFINITY, f32::min).min(0.0);
        let scale = if maxx == minx { 1.0 } else { maxx - minx } / 255.0f32;
        let zp = (0.0f32 - minx / scale).clamp(0.0, 255.0).round_ties_even();
        let q = xs.iter().map(|&e| ((e / scale).round_ties_even() + zp) as f64).collect();
        Ok(vec![saturated(q, v.dims(), Ty::U8)?, make(vec![scale], &[])?, make(vec![zp as u8], &[])?])
    });
    Ok((k, vec![Ty::U8, Ty::F32, Ty::U8]))
}

/// Builds `MatMulInteger`.
fn build_mat_mul_integer(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[])?;
    let ta = ctx.ty_where(0, |t| matches!(t, Ty::U8 | Ty::I8), "uint8 and int8")?;
    let tb = ctx.ty_where(1, |t| matches!(t, Ty::U8 | Ty::I8), "uint8 and int8")?;
    ctx.same(&[0, 2], ta)?;
    ctx.same(&[1, 3], tb)?;
    let k: Kernel = Box::new(|x| {
        let a = centered(req(x, 0)?, row_zero_point(x, 2)?)?;
        let b = centered(req(x, 1)?, x.get(3).copied().flatten())?;
        Ok(vec![matmul(&a, &b)?.to_dtype(CDType::I32)?])
    });
    Ok((k, vec![Ty::I32]))
}

/// Builds `QLinearMatMul`.
fn build_q_linear_mat_mul(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[])?;
    let ta = ctx.ty_where(0, |t| matches!(t, Ty::U8 | Ty::I8), "uint8 and int8")?;
    let tb = ctx.ty_where(3, |t| matches!(t, Ty::U8 | Ty::I8), "uint8 and int8")?;
    let st =
        ctx.ty_where(1, |t| matches!(t, Ty::F32 | Ty::F16 | Ty::BF16), "float, float16 and bfloat16 scales")?;
    ctx.same(&[1, 4, 6], st)?;
    ctx.same(&[0, 2], ta)?;
    ctx.same(&[3, 5], tb)?;
    let out = ctx.ty_where(7, |t| matches!(t, Ty::U8 | Ty::I8), "uint8 and int8")?;
    let k: Kernel = Box::new(move |x| {
        let a = centered(req(x, 0)?, row_zero_point(x, 2)?)?;
        let b = centered(req(x, 3)?, x.get(5).copied().flatten())?;
        let c = matmul(&a, &b)?;
        let (sa, sy) = (one(req(x, 1)?, "a_scale")?, one(req(x, 6)?, "y_scale")?);
        let yz = one(req(x, 7)?, "y_zero_point")?;
        let sb = f64s(req(x, 4)?)?;
        let n = *c.dims().last().unwrap_or(&1);
        if sb.len() != 1 && sb.len() != n {
            bail!("b_scale holds {} values for {n} columns", sb.len());
        }
        let m: Vec<f64> = sb.iter().map(|&b| round_to(round_to(sa * b, st) / sy, st)).collect();
        let q = f64s(&c)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| (v * m[if m.len() == 1 { 0 } else { i % n }] + yz).round_ties_even())
            .collect();
        Ok(vec![saturated(q, c.dims(), out)?])
    });
    Ok((k, vec![out]))
}

/// Builds `ConvInteger`.
fn build_conv_integer(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"])?;
    let tx = ctx.ty_where(0, |t| matches!(t, Ty::U8 | Ty::I8), "uint8 and int8")?;
    let tw = ctx.ty_where(1, |t| matches!(t, Ty::U8 | Ty::I8), "uint8 and int8")?;
    ctx.same(&[0, 2], tx)?;
    ctx.same(&[1, 3], tw)?;
    let spec = ConvSpec::read(ctx, 1)?;
    let k: Kernel = Box::new(move |x| {
        let (xc, wc) = conv_operands(x, [0, 2, 1, 3])?;
        Ok(vec![spec.run(&xc, &wc, None)?.to_dtype(CDType::I32)?])
    });
    Ok((k, vec![Ty::I32]))
}

/// Builds `QLinearConv`.
fn build_q_linear_conv(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"])?;
    let tx = ctx.ty_where(0, |t| matches!(t, Ty::U8 | Ty::I8), "uint8 and int8")?;
    let tw = ctx.ty_where(3, |t| matches!(t, Ty::U8 | Ty::I8), "uint8 and int8")?;
    ctx.same(&[0, 2], tx)?;
    ctx.same(&[3, 5], tw)?;
    ctx.same(&[1, 4, 6], Ty::F32)?;
    let out = ctx.ty_where(7, |t| matches!(t, Ty::U8 | Ty::I8), "uint8 and int8")?;
    if ctx.has(8) {
        ctx.same(&[8], Ty::I32)?;
    }
    let spec = ConvSpec::read(ctx, 3)?;
    let k: Kernel = Box::new(move |x| {
        let (xc, wc) = conv_operands(x, [0, 2, 3, 5])?;
        let bias = x.get(8).copied().flatten().map(|b| b.to_dtype(CDType::F64)).transpose()?;
        let r = spec.run(&xc, &wc, bias.as_ref())?;
        let (sx, sy) = (one(req(x, 1)?, "x_scale")?, one(req(x, 6)?, "y_scale")?);
        let yz = one(req(x, 7)?, "y_zero_point")?;
        let sw = f64s(req(x, 4)?)?;
        let m = r.dims()[1];
        if sw.len() != 1 && sw.len() != m {
            bail!("w_scale holds {} values for {m} output channels", sw.len());
        }
        let mult: Vec<f64> = sw.iter().map(|&w| round_to(round_to(sx * w, Ty::F32) / sy, Ty::F32)).collect();
        let plane: usize = r.dims()[2..].iter().product();
        let q = f64s(&r)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let ch = (i / plane) % m;
                (v * mult[if mult.len() == 1 { 0 } else { ch }] + yz).round_ties_even()
            })
            .collect();
        Ok(vec![saturated(q, r.dims(), out)?])
    });
    Ok((k, vec![out]))
}

/// A's zero point of MatMulInteger and QLinearMatMul: one value only. ONNX's text allows one
/// per row of A, which its reference implementation would broadcast along the columns instead;
/// rather than pick one, that form is refused.
fn row_zero_point<'a>(x: &[Option<&'a CTensor>], i: usize) -> CResult<Option<&'a CTensor>> {
    match x.get(i).copied().flatten() {
        Some(z) if z.elem_count() != 1 => {
            bail!("a per-row zero point of shape {:?} is not supported", z.dims())
        }
        other => Ok(other),
    }
}

/// The centered operands of ConvInteger and QLinearConv: `[x, x_zero_point, w, w_zero_point]`
/// input indices; a per-channel weight zero point applies to the output channels.
fn conv_operands(x: &[Option<&CTensor>], idx: [usize; 4]) -> CResult<(CTensor, CTensor)> {
    let xc = centered(
        req(x, idx[0])?,
        x.get(idx[1]).copied().flatten().map(|z| one(z, "x_zero_point").map(|_| z)).transpose()?,
    )?;
    let w = req(x, idx[2])?;
    let wc = match x.get(idx[3]).copied().flatten() {
        Some(z) if z.elem_count() != 1 => {
            if z.rank() != 1 || z.dims()[0] != w.dims()[0] {
                bail!("w_zero_point of shape {:?} does not match weights {:?}", z.dims(), w.dims());
            }
            let mut shape = vec![1; w.rank()];
            shape[0] = z.dims()[0];
            centered(w, Some(&z.reshape(shape)?))?
        }
        z => centered(w, z)?,
    };
    Ok((xc, wc))
}
