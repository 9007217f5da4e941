//! Operators that move, select or make values without arithmetic: shapes, reshapes, slicing,
//! gathering, concatenation, padding, constants.

use candle_core::{bail, DType as CDType, Device, Result as CResult, Tensor as CTensor};

use super::registry::{OpDef, Registry, RegistryError};
use super::{
    axis, broadcast_shape, check_size, constant, ints, make, norm_index, req, scalar_f64, values, Built,
    Kernel, NodeCtx, Refusal,
};
use crate::kernels::strides;
use crate::proto::tensor_from_proto;
use crate::ty::Ty;

/// Gathers `x`'s elements by flat index (`None` picks `fill`, a one-element tensor of `x`'s
/// dtype) into a tensor of `shape`.
pub fn gather_flat(
    x: &CTensor,
    idx: &[Option<usize>],
    shape: &[usize],
    fill: Option<&CTensor>,
) -> CResult<CTensor> {
    let flat = x.flatten_all()?;
    let n = flat.elem_count();
    let (src, ids): (CTensor, Vec<i64>) = if idx.iter().any(Option::is_none) {
        let Some(fill) = fill else { bail!("an index has no source") };
        let src = CTensor::cat(&[&flat, &fill.flatten_all()?.to_dtype(x.dtype())?], 0)?;
        (src, idx.iter().map(|i| i.map_or(n as i64, |i| i as i64)).collect())
    } else {
        (flat, idx.iter().map(|i| i.unwrap_or(0) as i64).collect())
    };
    if ids.is_empty() {
        return CTensor::zeros(shape, x.dtype(), &Device::Cpu);
    }
    let ids = CTensor::from_vec(ids, idx.len(), &Device::Cpu)?;
    src.index_select(&ids, 0)?.reshape(shape)
}

/// Flat source indices for an output of `out` built axis by axis from `per_axis[a][o]` (the
/// input coordinate on axis `a` for output coordinate `o`, `None` outside the input).
fn combine(in_shape: &[usize], per_axis: &[Vec<Option<usize>>]) -> Vec<Option<usize>> {
    let st = strides(in_shape);
    let mut acc: Vec<Option<usize>> = vec![Some(0)];
    for (a, coords) in per_axis.iter().enumerate() {
        let mut next = Vec::with_capacity(acc.len() * coords.len());
        for base in &acc {
            for c in coords {
                next.push(match (base, c) {
                    (Some(b), Some(c)) => Some(b + c * st[a]),
                    _ => None,
                });
            }
        }
        acc = next;
    }
    acc
}

fn dims_of(v: &[i64], what: &str) -> CResult<Vec<usize>> {
    v.iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| candle_core::Error::Msg(format!("{what}: negative dimension {d}")))
        })
        .collect()
}

/// Values of the constant-or-attribute integer list given by input `i` (opset ≥ `since`) or
/// attribute `name` (earlier).
enum IntsArg {
    Attr(Option<Vec<i64>>),
    Input(usize),
}

impl IntsArg {
    fn get(&self, x: &[Option<&CTensor>]) -> CResult<Option<Vec<i64>>> {
        match self {
            IntsArg::Attr(v) => Ok(v.clone()),
            IntsArg::Input(i) => x.get(*i).copied().flatten().map(ints).transpose(),
        }
    }
}

fn ints_arg(ctx: &NodeCtx<'_>, since: i64, input: usize, name: &str) -> Result<IntsArg, Refusal> {
    if ctx.opset >= since {
        if ctx.attr(name).is_some() {
            return Err(refuse!("attribute \"{name}\" became an input in opset {since}"));
        }
        if ctx.has(input) {
            ctx.ty_where(input, |t| t == Ty::I64 || t == Ty::I32, "int64 or int32")?;
        }
        Ok(IntsArg::Input(input))
    } else {
        Ok(IntsArg::Attr(ctx.ints(name)?))
    }
}

/// `x` with axes (sorted, normalized against the output rank) inserted.
fn unsqueeze(x: &CTensor, axes: &[i64]) -> CResult<CTensor> {
    let rank = x.rank() + axes.len();
    let mut norm = axes.iter().map(|&a| axis(a, rank)).collect::<CResult<Vec<_>>>()?;
    norm.sort_unstable();
    if norm.windows(2).any(|w| w[0] == w[1]) {
        bail!("axes {axes:?} repeat an axis");
    }
    let mut dims = Vec::with_capacity(rank);
    let mut src = x.dims().iter();
    for i in 0..rank {
        if norm.binary_search(&i).is_ok() {
            dims.push(1);
        } else {
            dims.push(*src.next().expect("rank counts every axis"));
        }
    }
    x.reshape(dims)
}

/// Slice bounds for one axis (ONNX's clamping rules): the source indices.
fn slice_indices(d: usize, start: i64, end: i64, step: i64) -> CResult<Vec<usize>> {
    if step == 0 {
        bail!("slice step 0");
    }
    let d = d as i64;
    let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (s, e) = if step > 0 {
        (norm(start).clamp(0, d), norm(end).clamp(0, d))
    } else {
        (norm(start).clamp(0, d - 1), norm(end).clamp(-1, d - 1))
    };
    let mut out = Vec::new();
    let mut i = s;
    while (step > 0 && i < e) || (step < 0 && i > e) {
        out.push(i as usize);
        i += step;
    }
    Ok(out)
}

/// The source coordinate of padded coordinate `o` on an axis of size `d` with `begin` padding.
fn pad_coord(o: i64, begin: i64, d: i64, mode: PadMode) -> CResult<Option<usize>> {
    let i = o - begin;
    if (0..d).contains(&i) {
        return Ok(Some(i as usize));
    }
    Ok(match mode {
        PadMode::Constant => None,
        PadMode::Edge => {
            if d == 0 {
                bail!("edge padding of an empty axis");
            }
            Some(i.clamp(0, d - 1) as usize)
        }
        PadMode::Wrap => {
            if d == 0 {
                bail!("wrap padding of an empty axis");
            }
            Some(i.rem_euclid(d) as usize)
        }
        PadMode::Reflect => {
            if d == 1 {
                Some(0)
            } else if d == 0 {
                bail!("reflect padding of an empty axis");
            } else {
                let period = 2 * (d - 1);
                let m = i.rem_euclid(period);
                Some(if m < d { m } else { period - m } as usize)
            }
        }
    })
}

#[derive(Clone, Copy, PartialEq)]
enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

/// A running sum or product along `dim`, in place.
fn scan<T: Copy>(
    v: &mut [T],
    dims: &[usize],
    dim: usize,
    exclusive: bool,
    reverse: bool,
    init: T,
    f: impl Fn(T, T) -> T,
) {
    let st = strides(dims);
    let d = dims[dim];
    for base in 0..v.len() {
        if !(base / st[dim]).is_multiple_of(d) {
            continue;
        }
        let mut acc = init;
        for j in 0..d {
            let i = if reverse { d - 1 - j } else { j };
            let p = base + i * st[dim];
            let here = v[p];
            if exclusive {
                v[p] = acc;
                acc = f(acc, here);
            } else {
                acc = f(acc, here);
                v[p] = acc;
            }
        }
    }
}

/// The family these operators are listed under.
const FAMILY: &str = "shape";

/// Registers the shape operators.
pub(super) fn register(r: &mut Registry) -> Result<(), RegistryError> {
    r.add_all([
        OpDef::tensor(FAMILY, "Constant", build_constant),
        OpDef::tensor(FAMILY, "Shape", build_shape),
        OpDef::tensor(FAMILY, "Size", build_size),
        OpDef::tensor(FAMILY, "Reshape", build_reshape).since(5),
        OpDef::tensor(FAMILY, "Flatten", build_flatten),
        OpDef::tensor(FAMILY, "Squeeze", build_squeeze),
        OpDef::tensor(FAMILY, "Unsqueeze", build_squeeze),
        OpDef::tensor(FAMILY, "Transpose", build_transpose),
        OpDef::tensor(FAMILY, "Concat", build_concat),
        OpDef::tensor(FAMILY, "Split", build_split),
        OpDef::tensor(FAMILY, "Slice", build_slice),
        OpDef::tensor(FAMILY, "Gather", build_gather),
        OpDef::tensor(FAMILY, "GatherElements", build_gather_elements),
        OpDef::tensor(FAMILY, "Expand", build_expand),
        OpDef::tensor(FAMILY, "Tile", build_tile),
        OpDef::tensor(FAMILY, "ConstantOfShape", build_constant_of_shape),
        OpDef::tensor(FAMILY, "Range", build_range),
        OpDef::tensor(FAMILY, "Pad", build_pad),
        OpDef::tensor(FAMILY, "Trilu", build_trilu),
        OpDef::tensor(FAMILY, "CumSum", build_cum_sum),
        OpDef::tensor(FAMILY, "CumProd", build_cum_sum),
        OpDef::tensor(FAMILY, "OneHot", build_one_hot),
    ])
}

/// Builds `Constant`.
fn build_constant(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["value", "value_float", "value_floats", "value_int", "value_ints"])?;
    let a = ctx.node.attribute.first().ok_or("no value attribute")?;
    let dev = &Device::Cpu;
    let e = |e: candle_core::Error| e.to_string();
    let (t, ty) = match a.name.as_str() {
        "value" => tensor_from_proto(a.t.as_ref().ok_or("value has no tensor")?)?,
        "value_float" => (CTensor::new(a.f, dev).map_err(e)?, Ty::F32),
        "value_floats" => (CTensor::new(a.floats.as_slice(), dev).map_err(e)?, Ty::F32),
        "value_int" => (CTensor::new(a.i, dev).map_err(e)?, Ty::I64),
        _ => (CTensor::new(a.ints.as_slice(), dev).map_err(e)?, Ty::I64),
    };
    Ok((constant(t), vec![ty]))
}

/// Builds `Shape`.
fn build_shape(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["start", "end"])?;
    ctx.ty(0)?;
    let start = ctx.int("start", 0)?;
    let end = ctx.attr("end").map(|a| a.i);
    let k: Kernel = Box::new(move |x| {
        let dims = req(x, 0)?.dims();
        let r = dims.len() as i64;
        let norm = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let (s, e) = (norm(start), norm(end.unwrap_or(r)));
        let v: Vec<i64> = dims[s..e.max(s)].iter().map(|&d| d as i64).collect();
        let n = v.len();
        Ok(vec![make(v, &[n])?])
    });
    Ok((k, vec![Ty::I64]))
}

/// Builds `Size`.
fn build_size(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[])?;
    ctx.ty(0)?;
    Ok((Box::new(|x| Ok(vec![make(vec![req(x, 0)?.elem_count() as i64], &[])?])), vec![Ty::I64]))
}

/// Builds `Reshape`.
fn build_reshape(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["allowzero"])?;
    let t = ctx.ty(0)?;
    ctx.ty_where(1, |t| t == Ty::I64, "int64 shapes")?;
    let allowzero = ctx.int("allowzero", 0)? != 0;
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let shape = ints(req(x, 1)?)?;
        let mut dims = Vec::with_capacity(shape.len());
        let mut infer = None;
        for (i, &s) in shape.iter().enumerate() {
            match s {
                -1 if infer.is_none() => {
                    infer = Some(i);
                    dims.push(1);
                }
                0 if !allowzero => dims.push(*a.dims().get(i).ok_or_else(|| {
                    candle_core::Error::Msg(format!("shape {shape:?}: 0 at {i} copies a missing dim"))
                })?),
                s if s >= 0 => dims.push(s as usize),
                _ => bail!("shape {shape:?} is not a valid reshape target"),
            }
        }
        if let Some(i) = infer {
            let known: usize = dims.iter().product();
            if known == 0 || a.elem_count() % known != 0 {
                bail!("cannot reshape {:?} into {shape:?}", a.dims());
            }
            dims[i] = a.elem_count() / known;
        }
        if dims.iter().product::<usize>() != a.elem_count() {
            bail!("cannot reshape {:?} into {shape:?}", a.dims());
        }
        Ok(vec![a.reshape(dims)?])
    });
    Ok((k, vec![t]))
}

/// Builds `Flatten`.
fn build_flatten(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["axis"])?;
    let t = ctx.ty(0)?;
    let ax = ctx.int("axis", 1)?;
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let r = a.rank() as i64;
        let p = if ax < 0 { ax + r } else { ax };
        if !(0..=r).contains(&p) {
            bail!("axis {ax} is out of range for rank {r}");
        }
        let outer: usize = a.dims()[..p as usize].iter().product();
        let inner: usize = a.dims()[p as usize..].iter().product();
        Ok(vec![a.reshape((outer, inner))?])
    });
    Ok((k, vec![t]))
}

/// Builds `Squeeze` and `Unsqueeze`.
fn build_squeeze(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    ctx.known(&["axes"])?;
    let t = ctx.ty(0)?;
    let axes = ints_arg(ctx, 13, 1, "axes")?;
    let squeeze = op == "Squeeze";
    if !squeeze && matches!(axes, IntsArg::Attr(None)) {
        return Err("Unsqueeze needs axes".into());
    }
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let ax = axes.get(x)?;
        if !squeeze {
            let Some(ax) = ax else { bail!("Unsqueeze needs axes") };
            return Ok(vec![unsqueeze(a, &ax)?]);
        }
        let r = a.rank();
        let drop: Vec<usize> = match ax {
            None => (0..r).filter(|&i| a.dims()[i] == 1).collect(),
            Some(ax) => {
                let v = ax.iter().map(|&i| axis(i, r)).collect::<CResult<Vec<_>>>()?;
                for &i in &v {
                    if a.dims()[i] != 1 {
                        bail!("cannot squeeze axis {i} of size {}", a.dims()[i]);
                    }
                }
                v
            }
        };
        let dims: Vec<usize> = (0..r).filter(|i| !drop.contains(i)).map(|i| a.dims()[i]).collect();
        Ok(vec![a.reshape(dims)?])
    });
    Ok((k, vec![t]))
}

/// Builds `Transpose`.
fn build_transpose(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["perm"])?;
    let t = ctx.ty(0)?;
    let perm = ctx.ints("perm")?;
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let r = a.rank();
        let p: Vec<usize> = match &perm {
            None => (0..r).rev().collect(),
            Some(p) => p.iter().map(|&i| axis(i, r)).collect::<CResult<_>>()?,
        };
        let mut seen = p.clone();
        seen.sort_unstable();
        if seen != (0..r).collect::<Vec<_>>() {
            bail!("perm {p:?} is not a permutation of rank {r}");
        }
        Ok(vec![a.permute(p)?])
    });
    Ok((k, vec![t]))
}

/// Builds `Concat`.
fn build_concat(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["axis"])?;
    let t = ctx.ty(0)?;
    ctx.same(&(0..ctx.node.input.len()).collect::<Vec<_>>(), t)?;
    // Concat-1 concatenates on axis 1 unless told otherwise; from opset 4 the axis is required.
    let ax = match ctx.attr("axis") {
        Some(_) => ctx.int("axis", 1)?,
        None if ctx.opset < 4 => 1,
        None => return Err("axis is required".into()),
    };
    let k: Kernel = Box::new(move |x| {
        let ts: Vec<&CTensor> = x.iter().flatten().copied().collect();
        let first = ts.first().ok_or_else(|| candle_core::Error::Msg("no inputs".into()))?;
        let a = axis(ax, first.rank())?;
        for t in &ts {
            if t.rank() != first.rank()
                || t.dims().iter().zip(first.dims()).enumerate().any(|(i, (p, q))| i != a && p != q)
            {
                bail!("cannot concatenate {:?} and {:?} on axis {a}", first.dims(), t.dims());
            }
        }
        let parts: Vec<&CTensor> = ts.iter().copied().filter(|t| t.dims()[a] > 0).collect();
        if parts.is_empty() {
            let mut dims = first.dims().to_vec();
            dims[a] = 0;
            return Ok(vec![CTensor::zeros(dims, first.dtype(), &Device::Cpu)?]);
        }
        Ok(vec![CTensor::cat(&parts, a)?])
    });
    Ok((k, vec![t]))
}

/// Builds `Split`.
fn build_split(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["axis", "split", "num_outputs"])?;
    let t = ctx.ty(0)?;
    let ax = ctx.int("axis", 0)?;
    let split = ints_arg(ctx, 13, 1, "split")?;
    let n_out = ctx.node.output.len();
    let num_outputs = ctx.attr("num_outputs").map(|a| a.i);
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let dim = axis(ax, a.rank())?;
        let d = a.dims()[dim];
        let sizes: Vec<usize> = match split.get(x)? {
            Some(s) => dims_of(&s, "split")?,
            None => {
                let n = num_outputs.map_or(n_out, |n| n as usize);
                if n == 0 {
                    bail!("no outputs");
                }
                if num_outputs.is_some() {
                    let c = d.div_ceil(n);
                    (0..n).map(|i| c.min(d.saturating_sub(i * c))).collect()
                } else {
                    if d % n != 0 {
                        bail!("axis of size {d} does not split evenly into {n}");
                    }
                    vec![d / n; n]
                }
            }
        };
        if sizes.iter().sum::<usize>() != d || sizes.len() != n_out {
            bail!("split {sizes:?} does not cover the axis of size {d} with {n_out} outputs");
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|&s| {
                let p = a.narrow(dim, start, s);
                start += s;
                p
            })
            .collect()
    });
    Ok((k, vec![t; n_out]))
}

/// Builds `Slice`.
fn build_slice(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let t = ctx.ty(0)?;
    let (starts, ends, axes, steps) = if ctx.opset < 10 {
        ctx.known(&["starts", "ends", "axes"])?;
        (
            IntsArg::Attr(Some(ctx.ints("starts")?.ok_or("starts is required")?)),
            IntsArg::Attr(Some(ctx.ints("ends")?.ok_or("ends is required")?)),
            IntsArg::Attr(ctx.ints("axes")?),
            IntsArg::Attr(None),
        )
    } else {
        ctx.known(&[])?;
        for i in 1..5 {
            if ctx.has(i) {
                ctx.ty_where(i, |t| t == Ty::I64 || t == Ty::I32, "int32 or int64")?;
            }
        }
        (IntsArg::Input(1), IntsArg::Input(2), IntsArg::Input(3), IntsArg::Input(4))
    };
    let k: Kernel = Box::new(move |x| {
        let mut a = req(x, 0)?.clone();
        let r = a.rank();
        let starts = starts.get(x)?.unwrap_or_default();
        let ends = ends.get(x)?.unwrap_or_default();
        let axes: Vec<i64> = axes.get(x)?.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps: Vec<i64> = steps.get(x)?.unwrap_or_else(|| vec![1; starts.len()]);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            bail!("starts, ends, axes and steps differ in length");
        }
        let mut seen = Vec::new();
        for i in 0..starts.len() {
            let ax = axis(axes[i], r)?;
            if seen.contains(&ax) {
                bail!("axis {ax} is sliced twice");
            }
            seen.push(ax);
            let d = a.dims()[ax];
            if steps[i] == 1 {
                let idx = slice_indices(d, starts[i], ends[i], 1)?;
                let s = idx.first().copied().unwrap_or(0);
                a = a.narrow(ax, s, idx.len())?;
            } else {
                let idx = slice_indices(d, starts[i], ends[i], steps[i])?;
                if idx.is_empty() {
                    a = a.narrow(ax, 0, 0)?;
                } else {
                    let ids: Vec<i64> = idx.iter().map(|&v| v as i64).collect();
                    let n = ids.len();
                    a = a.contiguous()?.index_select(&make(ids, &[n])?, ax)?;
                }
            }
        }
        Ok(vec![a])
    });
    Ok((k, vec![t]))
}

/// Builds `Gather`.
fn build_gather(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["axis"])?;
    let t = ctx.ty(0)?;
    ctx.ty_where(1, |t| t == Ty::I64 || t == Ty::I32, "int32 or int64 indices")?;
    let ax = ctx.int("axis", 0)?;
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let ind = req(x, 1)?;
        let dim = axis(ax, a.rank())?;
        let d = a.dims()[dim];
        let idx = ints(ind)?
            .into_iter()
            .map(|i| norm_index(i, d).map(|j| j as i64))
            .collect::<CResult<Vec<i64>>>()?;
        let n = idx.len();
        let mut dims = a.dims()[..dim].to_vec();
        dims.extend_from_slice(ind.dims());
        dims.extend_from_slice(&a.dims()[dim + 1..]);
        check_size(&dims, a.dtype().size_in_bytes())?;
        if n == 0 {
            return Ok(vec![CTensor::zeros(dims, a.dtype(), &Device::Cpu)?]);
        }
        if n == 1 {
            // One index (splitting heads, picking a position): a view, no copy.
            let one = a.narrow(dim, idx[0] as usize, 1)?;
            return Ok(vec![match ind.rank() {
                0 => one.squeeze(dim)?,
                1 => one,
                _ => one.reshape(dims)?,
            }]);
        }
        let picked = a.contiguous()?.index_select(&make(idx, &[n])?, dim)?;
        Ok(vec![picked.reshape(dims)?])
    });
    Ok((k, vec![t]))
}

/// Builds `GatherElements`.
fn build_gather_elements(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["axis"])?;
    let t = ctx.ty(0)?;
    ctx.ty_where(1, |t| t == Ty::I64 || t == Ty::I32, "int32 or int64 indices")?;
    let ax = ctx.int("axis", 0)?;
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let ind = req(x, 1)?;
        let dim = axis(ax, a.rank())?;
        if ind.rank() != a.rank() {
            bail!("indices of rank {} for data of rank {}", ind.rank(), a.rank());
        }
        let idx = ints(ind)?;
        let st = strides(a.dims());
        let ost = strides(ind.dims());
        let mut flat = Vec::with_capacity(idx.len());
        for (p, &i) in idx.iter().enumerate() {
            let j = norm_index(i, a.dims()[dim])?;
            let mut off = 0;
            for k in 0..a.rank() {
                let c = if k == dim { j } else { p / ost[k] % ind.dims()[k] };
                if c >= a.dims()[k] {
                    bail!("indices of shape {:?} exceed data of shape {:?}", ind.dims(), a.dims());
                }
                off += c * st[k];
            }
            flat.push(Some(off));
        }
        Ok(vec![gather_flat(a, &flat, ind.dims(), None)?])
    });
    Ok((k, vec![t]))
}

/// Builds `Expand`.
fn build_expand(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[])?;
    let t = ctx.ty(0)?;
    ctx.ty_where(1, |t| t == Ty::I64, "int64 shapes")?;
    let k: Kernel = Box::new(|x| {
        let a = req(x, 0)?;
        let shape = dims_of(&ints(req(x, 1)?)?, "shape")?;
        let out = broadcast_shape(&[a.dims(), &shape])?;
        check_size(&out, a.dtype().size_in_bytes())?;
        Ok(vec![a.broadcast_as(out)?])
    });
    Ok((k, vec![t]))
}

/// Builds `Tile`.
fn build_tile(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[])?;
    let t = ctx.ty(0)?;
    ctx.ty_where(1, |t| t == Ty::I64, "int64 repeats")?;
    let k: Kernel = Box::new(|x| {
        let a = req(x, 0)?;
        let reps = dims_of(&ints(req(x, 1)?)?, "repeats")?;
        if reps.len() != a.rank() {
            bail!("{} repeats for rank {}", reps.len(), a.rank());
        }
        let sizes: Vec<usize> = a.dims().iter().zip(&reps).map(|(d, r)| d.saturating_mul(*r)).collect();
        // The gather map holds 16 bytes per element.
        check_size(&sizes, a.dtype().size_in_bytes().max(16))?;
        let per: Vec<Vec<Option<usize>>> =
            a.dims().iter().zip(&reps).map(|(&d, &r)| (0..d * r).map(|o| Some(o % d)).collect()).collect();
        let out: Vec<usize> = a.dims().iter().zip(&reps).map(|(d, r)| d * r).collect();
        Ok(vec![gather_flat(a, &combine(a.dims(), &per), &out, None)?])
    });
    Ok((k, vec![t]))
}

/// Builds `ConstantOfShape`.
fn build_constant_of_shape(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["value"])?;
    ctx.ty_where(0, |t| t == Ty::I64, "int64 shapes")?;
    let (value, ty) = match ctx.attr("value").and_then(|a| a.t.as_ref()) {
        Some(t) => tensor_from_proto(t)?,
        None => (CTensor::zeros(1, CDType::F32, &Device::Cpu).map_err(|e| e.to_string())?, Ty::F32),
    };
    if value.elem_count() != 1 {
        return Err("value must hold one element".into());
    }
    let k: Kernel = Box::new(move |x| {
        let shape = dims_of(&ints(req(x, 0)?)?, "shape")?;
        check_size(&shape, value.dtype().size_in_bytes())?;
        Ok(vec![value.flatten_all()?.reshape(())?.broadcast_as(shape)?.contiguous()?])
    });
    Ok((k, vec![ty]))
}

/// Builds `Range`.
fn build_range(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[])?;
    let t = ctx.ty_where(
        0,
        |t| matches!(t, Ty::F32 | Ty::F64 | Ty::I16 | Ty::I32 | Ty::I64),
        "float, double, int16/32/64",
    )?;
    ctx.same(&[0, 1, 2], t)?;
    let k: Kernel = Box::new(move |x| {
        if t.is_float() {
            let (s, l, d) = (scalar_f64(req(x, 0)?)?, scalar_f64(req(x, 1)?)?, scalar_f64(req(x, 2)?)?);
            let n = ((l - s) / d).ceil().max(0.0);
            if !n.is_finite() || n > 1e12 {
                bail!("range of {n} elements");
            }
            let n = n as usize;
            check_size(&[n], 8)?;
            let v: Vec<f64> = (0..n).map(|i| s + i as f64 * d).collect();
            Ok(vec![make(v, &[n])?.to_dtype(t.candle())?])
        } else {
            let (s, l, d) = (ints(req(x, 0)?)?[0], ints(req(x, 1)?)?[0], ints(req(x, 2)?)?[0]);
            if d == 0 {
                bail!("range with delta 0");
            }
            let n = ((l - s) as f64 / d as f64).ceil().max(0.0) as usize;
            check_size(&[n], 8)?;
            let v: Vec<i64> = (0..n as i64).map(|i| s + i * d).collect();
            Ok(vec![make(v, &[n])?.to_dtype(t.candle())?])
        }
    });
    Ok((k, vec![t]))
}

/// Builds `Pad`.
fn build_pad(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let t = ctx.ty(0)?;
    let mode = match ctx.string("mode")?.as_deref() {
        None | Some("constant") => PadMode::Constant,
        Some("reflect") => PadMode::Reflect,
        Some("edge") => PadMode::Edge,
        Some("wrap") if ctx.opset >= 19 => PadMode::Wrap,
        Some(m) => return Err(refuse!("mode \"{m}\" is not supported")),
    };
    let legacy = ctx.opset < 11;
    let (pads, value) = if legacy {
        ctx.known(&["mode", "pads", "value"])?;
        (IntsArg::Attr(Some(ctx.ints("pads")?.ok_or("pads is required")?)), Some(ctx.float("value", 0.0)?))
    } else {
        ctx.known(&["mode"])?;
        ctx.ty_where(1, |t| t == Ty::I64, "int64 pads")?;
        if ctx.has(2) {
            ctx.same(&[0, 2], t)?;
        }
        if ctx.has(3) {
            ctx.ty_where(3, |t| t == Ty::I64 || t == Ty::I32, "int32 or int64 axes")?;
        }
        (IntsArg::Input(1), None)
    };
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let r = a.rank();
        let pads = pads.get(x)?.unwrap_or_default();
        let axes: Vec<usize> = match x.get(3).copied().flatten() {
            Some(ax) if !legacy => ints(ax)?.into_iter().map(|v| axis(v, r)).collect::<CResult<_>>()?,
            _ => (0..r).collect(),
        };
        if pads.len() != 2 * axes.len() {
            bail!("{} pads for {} axes", pads.len(), axes.len());
        }
        let mut begin = vec![0i64; r];
        let mut end = vec![0i64; r];
        for (i, &ax) in axes.iter().enumerate() {
            begin[ax] = pads[i];
            end[ax] = pads[i + axes.len()];
        }
        let mut out = Vec::with_capacity(r);
        let mut per = Vec::with_capacity(r);
        for ax in 0..r {
            let d = a.dims()[ax] as i64;
            let o = d + begin[ax] + end[ax];
            if o < 0 {
                bail!("pads {pads:?} leave a negative size");
            }
            out.push(o as usize);
            check_size(&out, a.dtype().size_in_bytes().max(16))?;
            per.push((0..o).map(|c| pad_coord(c, begin[ax], d, mode)).collect::<CResult<Vec<_>>>()?);
        }
        let fill = match (value, x.get(2).copied().flatten()) {
            (Some(v), _) => CTensor::new(&[v as f64], &Device::Cpu)?.to_dtype(a.dtype())?,
            (None, Some(c)) => c.clone(),
            (None, None) => CTensor::zeros(1, a.dtype(), &Device::Cpu)?,
        };
        Ok(vec![gather_flat(a, &combine(a.dims(), &per), &out, Some(&fill))?])
    });
    Ok((k, vec![t]))
}

/// Builds `Trilu`.
fn build_trilu(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["upper"])?;
    let t = ctx.ty(0)?;
    let upper = ctx.int("upper", 1)? != 0;
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let k = match x.get(1).copied().flatten() {
            Some(k) => ints(k)?[0],
            None => 0,
        };
        let r = a.rank();
        if r < 2 {
            bail!("Trilu needs rank 2 or more");
        }
        let (n, m) = (a.dims()[r - 2], a.dims()[r - 1]);
        let mask: Vec<u8> = (0..n * m)
            .map(|p| {
                let (i, j) = ((p / m) as i64, (p % m) as i64);
                u8::from(if upper { j - i >= k } else { j - i <= k })
            })
            .collect();
        let mask = make(mask, &[n, m])?.broadcast_as(a.dims())?.contiguous()?;
        Ok(vec![mask.where_cond(&a.contiguous()?, &a.zeros_like()?)?])
    });
    Ok((k, vec![t]))
}

/// Builds `CumSum` and `CumProd`.
fn build_cum_sum(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    ctx.known(&["exclusive", "reverse"])?;
    let t = ctx.ty_where(0, |t| t.is_numeric(), "numbers")?;
    ctx.ty_where(1, |t| t == Ty::I64 || t == Ty::I32, "int32 or int64 axis")?;
    let exclusive = ctx.int("exclusive", 0)? != 0;
    let reverse = ctx.int("reverse", 0)? != 0;
    let prod = op == "CumProd";
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let dim = axis(ints(req(x, 1)?)?[0], a.rank())?;
        let dims = a.dims().to_vec();
        if t.is_float() {
            let mut v: Vec<f64> = values(&a.to_dtype(CDType::F64)?)?;
            scan(&mut v, &dims, dim, exclusive, reverse, if prod { 1.0 } else { 0.0 }, |p, q| {
                if prod {
                    p * q
                } else {
                    p + q
                }
            });
            Ok(vec![make(v, &dims)?.to_dtype(a.dtype())?])
        } else {
            let mut v = ints(a)?;
            scan(&mut v, &dims, dim, exclusive, reverse, i64::from(prod), |p, q| {
                if prod {
                    p.wrapping_mul(q)
                } else {
                    p.wrapping_add(q)
                }
            });
            Ok(vec![make(v, &dims)?.to_dtype(a.dtype())?])
        }
    });
    Ok((k, vec![t]))
}

/// Builds `OneHot`.
fn build_one_hot(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["axis"])?;
    ctx.ty_where(0, Ty::is_numeric, "numbers")?;
    ctx.ty_where(1, Ty::is_numeric, "numbers")?;
    let t = ctx.ty(2)?;
    let ax = ctx.int("axis", -1)?;
    let k: Kernel = Box::new(move |x| {
        let ind = req(x, 0)?;
        let depth = scalar_f64(req(x, 1)?)?;
        if !(1.0..1e9).contains(&depth) {
            bail!("depth {depth} is not a positive count");
        }
        let depth = depth as i64;
        let vals = req(x, 2)?.flatten_all()?;
        if vals.elem_count() != 2 {
            bail!("values must hold [off, on]");
        }
        let iv: Vec<f64> = values(&ind.to_dtype(CDType::F64)?)?;
        let r = ind.rank() + 1;
        let a = axis(ax, r)?;
        let mut dims = ind.dims().to_vec();
        dims.insert(a, depth as usize);
        check_size(&dims, 8)?;
        let st = strides(&dims);
        let mut mask = vec![0u8; dims.iter().product()];
        let ist = strides(ind.dims());
        for (p, &v) in iv.iter().enumerate() {
            let mut i = v as i64;
            if i < 0 {
                i += depth;
            }
            if !(0..depth).contains(&i) {
                continue;
            }
            let mut off = 0;
            let mut k = 0;
            for (q, s) in st.iter().enumerate() {
                if q == a {
                    off += i as usize * s;
                } else {
                    off += (p / ist[k] % ind.dims()[k]) * s;
                    k += 1;
                }
            }
            mask[off] = 1;
        }
        let on = vals.narrow(0, 1, 1)?.reshape(())?.broadcast_as(dims.as_slice())?.contiguous()?;
        let off = vals.narrow(0, 0, 1)?.reshape(())?.broadcast_as(dims.as_slice())?.contiguous()?;
        Ok(vec![make(mask, &dims)?.where_cond(&on, &off)?])
    });
    Ok((k, vec![t]))
}
