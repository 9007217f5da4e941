//! Index-driven operators: scatters, GatherND, TopK, NonZero, Compress, EyeLike, and the
//! depth/space rearrangements. Data moves by index (exact for every element type); only the
//! reductions of the scatters compute, in f64 for floats and i64 for integers.

use candle_core::{bail, DType as CDType, Result as CResult, Tensor as CTensor};

use super::registry::{OpDef, Registry, RegistryError};
use super::shape::gather_flat;
use super::{axis, check_size, ints, make, norm_index, req, values, Built, Kernel, NodeCtx, Refusal};
use crate::kernels::strides;
use crate::ty::Ty;

fn int_idx(t: Ty) -> bool {
    t == Ty::I64 || t == Ty::I32
}

#[derive(Clone, Copy, PartialEq)]
enum Reduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

fn reduction(ctx: &NodeCtx<'_>) -> Result<Reduction, Refusal> {
    Ok(match ctx.string("reduction")?.as_deref() {
        None | Some("none") => Reduction::None,
        Some("add") => Reduction::Add,
        Some("mul") => Reduction::Mul,
        Some("max") => Reduction::Max,
        Some("min") => Reduction::Min,
        Some(r) => return Err(refuse!("reduction \"{r}\" is not supported")),
    })
}

/// Writes `updates` (flat, row-major) into a copy of `data` at flat `targets`, in order
/// (later writes win, or combine by `red`).
fn scatter(data: &CTensor, updates: &CTensor, targets: &[usize], red: Reduction, ty: Ty) -> CResult<CTensor> {
    let n = data.elem_count();
    if targets.iter().any(|&t| t >= n) {
        bail!("a scatter target is out of range");
    }
    if red == Reduction::None {
        // out[i] = concat(data, updates)[map[i]]
        let mut map: Vec<Option<usize>> = (0..n).map(Some).collect();
        for (q, &t) in targets.iter().enumerate() {
            map[t] = Some(n + q);
        }
        let both = CTensor::cat(&[&data.flatten_all()?, &updates.flatten_all()?], 0)?;
        return gather_flat(&both, &map, data.dims(), None);
    }
    let combine_f = |a: f64, b: f64| match red {
        Reduction::Add => a + b,
        Reduction::Mul => a * b,
        Reduction::Max => a.max(b),
        _ => a.min(b),
    };
    if ty.is_float() {
        let mut d: Vec<f64> = values(&data.to_dtype(CDType::F64)?)?;
        let u: Vec<f64> = values(&updates.to_dtype(CDType::F64)?)?;
        for (q, &t) in targets.iter().enumerate() {
            d[t] = combine_f(d[t], u[q]);
        }
        make(d, data.dims())?.to_dtype(data.dtype())
    } else {
        let mut d = ints(data)?;
        let u = ints(updates)?;
        for (q, &t) in targets.iter().enumerate() {
            d[t] = match red {
                Reduction::Add => d[t].wrapping_add(u[q]),
                Reduction::Mul => d[t].wrapping_mul(u[q]),
                Reduction::Max => d[t].max(u[q]),
                _ => d[t].min(u[q]),
            };
        }
        make(d, data.dims())?.to_dtype(data.dtype())
    }
}

/// The family these operators are listed under.
const FAMILY: &str = "indexing";

/// Registers the indexing operators.
pub(super) fn register(r: &mut Registry) -> Result<(), RegistryError> {
    r.add_all([
        OpDef::tensor(FAMILY, "Unique", build_unique),
        OpDef::tensor(FAMILY, "NonMaxSuppression", build_non_max_suppression),
        OpDef::tensor(FAMILY, "ReverseSequence", build_reverse_sequence),
        OpDef::tensor(FAMILY, "ScatterElements", build_scatter_elements),
        OpDef::tensor(FAMILY, "Scatter", build_scatter_elements),
        OpDef::tensor(FAMILY, "ScatterND", build_scatter_nd),
        OpDef::tensor(FAMILY, "GatherND", build_gather_nd),
        OpDef::tensor(FAMILY, "TopK", build_top_k),
        OpDef::tensor(FAMILY, "NonZero", build_non_zero),
        OpDef::tensor(FAMILY, "Compress", build_compress),
        OpDef::tensor(FAMILY, "EyeLike", build_eye_like),
        OpDef::tensor(FAMILY, "DepthToSpace", build_depth_to_space),
        OpDef::tensor(FAMILY, "SpaceToDepth", build_depth_to_space),
    ])
}

/// Builds `Unique`.
fn build_unique(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["axis", "sorted"])?;
    let t = ctx.ty_where(0, Ty::is_numeric, "numbers")?;
    let ax = ctx.attr("axis").map(|_| ctx.int("axis", 0)).transpose()?;
    let sorted = ctx.int("sorted", 1)? != 0;
    let k: Kernel = Box::new(move |x| unique(req(x, 0)?, ax, sorted, t));
    Ok((k, vec![t, Ty::I64, Ty::I64, Ty::I64]))
}

/// Builds `NonMaxSuppression`.
fn build_non_max_suppression(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["center_point_box"])?;
    let t = ctx.ty_where(0, |t| matches!(t, Ty::F32 | Ty::F64), "float and double boxes")?;
    ctx.same(&[0, 1, 3, 4], t)?;
    if ctx.has(2) {
        ctx.ty_where(2, |t| t == Ty::I64, "an int64 max_output_boxes_per_class")?;
    }
    let center = match ctx.int("center_point_box", 0)? {
        0 => false,
        1 => true,
        other => return Err(refuse!("center_point_box {other} is not 0 or 1")),
    };
    let k: Kernel = Box::new(move |x| Ok(vec![non_max_suppression(x, center)?]));
    Ok((k, vec![Ty::I64]))
}

/// Builds `ReverseSequence`.
fn build_reverse_sequence(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["batch_axis", "time_axis"])?;
    let t = ctx.ty(0)?;
    ctx.ty_where(1, |t| t == Ty::I64, "int64 sequence lengths")?;
    let (ba, ta) = (ctx.int("batch_axis", 1)?, ctx.int("time_axis", 0)?);
    if !matches!((ba, ta), (0, 1) | (1, 0)) {
        return Err(refuse!("batch_axis {ba} and time_axis {ta} must be 0 and 1"));
    }
    let (ba, ta) = (ba as usize, ta as usize);
    let k: Kernel = Box::new(move |x| {
        let data = req(x, 0)?;
        let lens = ints(req(x, 1)?)?;
        if data.rank() < 2 {
            bail!("ReverseSequence needs at least 2 dims, got {:?}", data.dims());
        }
        let dims = data.dims();
        let (nb, nt) = (dims[ba], dims[ta]);
        if lens.len() != nb {
            bail!("{} sequence lengths for a batch of {nb}", lens.len());
        }
        if data.elem_count() > u32::MAX as usize {
            bail!("ReverseSequence of more than 2^32 elements");
        }
        let st = strides(dims);
        let inner: usize = dims[2..].iter().product();
        // Each element's source: within its batch entry's first `len` time steps,
        // the mirrored step.
        let mut idx: Vec<u32> = Vec::with_capacity(data.elem_count());
        for a in 0..dims[0] {
            for b in 0..dims[1] {
                let (bi, ti) = if ba == 0 { (a, b) } else { (b, a) };
                let len = lens[bi];
                if len < 0 || len as usize > nt {
                    bail!("sequence length {len} is outside 0..={nt}");
                }
                let src_t = if (ti as i64) < len { len as usize - 1 - ti } else { ti };
                let base = bi * st[ba] + src_t * st[ta];
                idx.extend((0..inner).map(|r| (base + r) as u32));
            }
        }
        let n = idx.len();
        Ok(vec![data.flatten_all()?.index_select(&make(idx, &[n])?, 0)?.reshape(dims)?])
    });
    Ok((k, vec![t]))
}

/// Builds `ScatterElements` and `Scatter`.
fn build_scatter_elements(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["axis", "reduction"])?;
    let t = ctx.ty(0)?;
    ctx.ty_where(1, int_idx, "int32 or int64 indices")?;
    ctx.same(&[0, 2], t)?;
    let red = reduction(ctx)?;
    if red != Reduction::None && t == Ty::Bool {
        return Err("reductions on booleans are not supported".into());
    }
    let ax = ctx.int("axis", 0)?;
    let k: Kernel = Box::new(move |x| {
        let (data, ind, upd) = (req(x, 0)?, req(x, 1)?, req(x, 2)?);
        let dim = axis(ax, data.rank())?;
        if ind.dims() != upd.dims() || ind.rank() != data.rank() {
            bail!("indices {:?}, updates {:?} and data {:?} disagree", ind.dims(), upd.dims(), data.dims());
        }
        let st = strides(data.dims());
        let ist = strides(ind.dims());
        let idx = ints(ind)?;
        let mut targets = Vec::with_capacity(idx.len());
        for (q, &i) in idx.iter().enumerate() {
            let mut off = 0;
            for a in 0..data.rank() {
                let c = if a == dim { norm_index(i, data.dims()[a])? } else { q / ist[a] % ind.dims()[a] };
                if c >= data.dims()[a] {
                    bail!("indices of shape {:?} exceed data of shape {:?}", ind.dims(), data.dims());
                }
                off += c * st[a];
            }
            targets.push(off);
        }
        Ok(vec![scatter(data, upd, &targets, red, t)?])
    });
    Ok((k, vec![t]))
}

/// Builds `ScatterND`.
fn build_scatter_nd(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["reduction"])?;
    let t = ctx.ty(0)?;
    ctx.ty_where(1, |t| t == Ty::I64, "int64 indices")?;
    ctx.same(&[0, 2], t)?;
    let red = reduction(ctx)?;
    let k: Kernel = Box::new(move |x| {
        let (data, ind, upd) = (req(x, 0)?, req(x, 1)?, req(x, 2)?);
        let q = ind.rank();
        if q == 0 {
            bail!("indices must have rank 1 or more");
        }
        let kk = ind.dims()[q - 1];
        if kk > data.rank() {
            bail!("index tuples of {kk} for data of rank {}", data.rank());
        }
        let slice: usize = data.dims()[kk..].iter().product();
        let st = strides(data.dims());
        let idx = ints(ind)?;
        let tuples = idx.len() / kk.max(1);
        let n_tuples = if kk == 0 { ind.elem_count() } else { tuples };
        let mut targets = Vec::with_capacity(n_tuples * slice);
        for tu in 0..n_tuples {
            let mut base = 0;
            for a in 0..kk {
                base += norm_index(idx[tu * kk + a], data.dims()[a])? * st[a];
            }
            targets.extend(base..base + slice);
        }
        if targets.len() != upd.elem_count() {
            bail!("updates of shape {:?} do not match the indexed slices", upd.dims());
        }
        Ok(vec![scatter(data, upd, &targets, red, t)?])
    });
    Ok((k, vec![t]))
}

/// Builds `GatherND`.
fn build_gather_nd(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["batch_dims"])?;
    let t = ctx.ty(0)?;
    ctx.ty_where(1, |t| t == Ty::I64, "int64 indices")?;
    let b = ctx.int("batch_dims", 0)?;
    if b < 0 {
        return Err("batch_dims must not be negative".into());
    }
    let b = b as usize;
    let k: Kernel = Box::new(move |x| {
        let (data, ind) = (req(x, 0)?, req(x, 1)?);
        let q = ind.rank();
        if q == 0 || q <= b || data.rank() <= b {
            bail!("indices {:?} and data {:?} with batch_dims {b}", ind.dims(), data.dims());
        }
        let kk = ind.dims()[q - 1];
        if b + kk > data.rank() || data.dims()[..b] != ind.dims()[..b] {
            bail!("indices {:?} do not fit data {:?}", ind.dims(), data.dims());
        }
        let slice: usize = data.dims()[b + kk..].iter().product();
        let st = strides(data.dims());
        let idx = ints(ind)?;
        let outer: Vec<usize> = ind.dims()[..q - 1].to_vec();
        let mut out_dims = outer.clone();
        out_dims.extend_from_slice(&data.dims()[b + kk..]);
        // The gather map holds 16 bytes per element.
        check_size(&out_dims, data.dtype().size_in_bytes().max(16))?;
        let n: usize = outer.iter().product();
        let ost = strides(&outer);
        let mut map = Vec::with_capacity(n * slice);
        for p in 0..n {
            let mut base = 0;
            for a in 0..b {
                base += (p / ost[a] % outer[a]) * st[a];
            }
            for a in 0..kk {
                base += norm_index(idx[p * kk + a], data.dims()[b + a])? * st[b + a];
            }
            map.extend((base..base + slice).map(Some));
        }
        let mut dims = outer;
        dims.extend_from_slice(&data.dims()[b + kk..]);
        Ok(vec![gather_flat(data, &map, &dims, None)?])
    });
    Ok((k, vec![t]))
}

/// Builds `TopK`.
fn build_top_k(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["axis", "largest", "sorted"])?;
    let t = ctx.ty_where(0, Ty::is_numeric, "numbers")?;
    ctx.ty_where(1, |t| t == Ty::I64, "int64 k")?;
    let ax = ctx.int("axis", -1)?;
    let largest = ctx.int("largest", 1)? != 0;
    if ctx.int("sorted", 1)? == 0 {
        return Err("sorted=0 is not supported".into());
    }
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let kv = ints(req(x, 1)?)?;
        if kv.len() != 1 || kv[0] < 0 {
            bail!("k must be one non-negative value");
        }
        let dim = axis(ax, a.rank())?;
        let d = a.dims()[dim];
        let k = kv[0] as usize;
        if k > d {
            bail!("k = {k} is larger than the axis ({d})");
        }
        let st = strides(a.dims());
        let v: Vec<f64> = if t.is_float() {
            values(&a.to_dtype(CDType::F64)?)?
        } else {
            ints(a)?.into_iter().map(|v| v as f64).collect()
        };
        let mut dims = a.dims().to_vec();
        dims[dim] = k;
        let ost = strides(&dims);
        let total: usize = dims.iter().product();
        let mut map = vec![None; total];
        let mut picked = vec![0i64; total];
        for base in 0..a.elem_count() {
            if !(base / st[dim]).is_multiple_of(d) {
                continue;
            }
            let mut order: Vec<usize> = (0..d).collect();
            order.sort_by(|&i, &j| {
                let (x, y) = (v[base + i * st[dim]], v[base + j * st[dim]]);
                let c = if largest { y.partial_cmp(&x) } else { x.partial_cmp(&y) };
                c.unwrap_or(std::cmp::Ordering::Equal).then(i.cmp(&j))
            });
            // The output position of this row's first element.
            let mut out_base = 0;
            let mut rem = base;
            for (ax2, s) in st.iter().enumerate() {
                let c = rem / s;
                rem %= s;
                if ax2 != dim {
                    out_base += c * ost[ax2];
                }
            }
            for (r, &i) in order.iter().take(k).enumerate() {
                map[out_base + r * ost[dim]] = Some(base + i * st[dim]);
                picked[out_base + r * ost[dim]] = i as i64;
            }
        }
        Ok(vec![gather_flat(a, &map, &dims, None)?, make(picked, &dims)?])
    });
    Ok((k, vec![t, Ty::I64]))
}

/// Builds `NonZero`.
fn build_non_zero(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[])?;
    let t = ctx.ty(0)?;
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let nz: Vec<bool> = if t.is_float() {
            values::<f64>(&a.to_dtype(CDType::F64)?)?.into_iter().map(|v| v != 0.0).collect()
        } else {
            ints(a)?.into_iter().map(|v| v != 0).collect()
        };
        let st = strides(a.dims());
        let pos: Vec<usize> = nz.iter().enumerate().filter(|(_, &b)| b).map(|(i, _)| i).collect();
        let r = a.rank();
        let mut out = vec![0i64; r * pos.len()];
        for (j, &p) in pos.iter().enumerate() {
            for ax in 0..r {
                out[ax * pos.len() + j] = (p / st[ax] % a.dims()[ax]) as i64;
            }
        }
        Ok(vec![make(out, &[r, pos.len()])?])
    });
    Ok((k, vec![Ty::I64]))
}

/// Builds `Compress`.
fn build_compress(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["axis"])?;
    let t = ctx.ty(0)?;
    ctx.ty_where(1, |t| t == Ty::Bool, "a bool condition")?;
    let ax = ctx.attr("axis").map(|a| a.i);
    let k: Kernel = Box::new(move |x| {
        let (a, cond) = (req(x, 0)?, req(x, 1)?);
        let (a, dim) = match ax {
            Some(ax) => (a.clone(), axis(ax, a.rank())?),
            None => (a.flatten_all()?, 0),
        };
        let c = ints(cond)?;
        let d = a.dims()[dim];
        if c.len() > d {
            bail!("condition of {} for an axis of {d}", c.len());
        }
        let keep: Vec<i64> = c.iter().enumerate().filter(|(_, &v)| v != 0).map(|(i, _)| i as i64).collect();
        if keep.is_empty() {
            return Ok(vec![a.narrow(dim, 0, 0)?]);
        }
        let n = keep.len();
        Ok(vec![a.contiguous()?.index_select(&make(keep, &[n])?, dim)?])
    });
    Ok((k, vec![t]))
}

/// Builds `EyeLike`.
fn build_eye_like(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["dtype", "k"])?;
    let t = match ctx.attr("dtype") {
        Some(a) => Ty::from_onnx(a.i as i32).ok_or("dtype is not supported")?,
        None => ctx.ty(0)?,
    };
    let kk = ctx.int("k", 0)?;
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        if a.rank() != 2 {
            bail!("EyeLike needs a 2-D input");
        }
        let (n, m) = (a.dims()[0], a.dims()[1]);
        let v: Vec<u8> = (0..n * m).map(|p| u8::from((p % m) as i64 - (p / m) as i64 == kk)).collect();
        Ok(vec![make(v, &[n, m])?.to_dtype(t.candle())?])
    });
    Ok((k, vec![t]))
}

/// Builds `DepthToSpace` and `SpaceToDepth`.
fn build_depth_to_space(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    ctx.known(&["blocksize", "mode"])?;
    let t = ctx.ty(0)?;
    let b = ctx.int("blocksize", 0)?;
    if b < 1 {
        return Err("blocksize must be at least 1".into());
    }
    let b = b as usize;
    let crd = match ctx.string("mode")?.as_deref() {
        None | Some("DCR") => false,
        Some("CRD") if op == "DepthToSpace" => true,
        Some(m) => return Err(refuse!("mode \"{m}\" is not supported")),
    };
    let to_space = op == "DepthToSpace";
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        if a.rank() != 4 {
            bail!("{} needs a 4-D input", if to_space { "DepthToSpace" } else { "SpaceToDepth" });
        }
        let (n, c, h, w) = (a.dims()[0], a.dims()[1], a.dims()[2], a.dims()[3]);
        let y = if to_space {
            if c % (b * b) != 0 {
                bail!("channels {c} are not a multiple of blocksize² {}", b * b);
            }
            let cc = c / (b * b);
            let v = if crd {
                a.reshape(vec![n, cc, b, b, h, w])?.permute(vec![0, 1, 4, 2, 5, 3])?
            } else {
                a.reshape(vec![n, b, b, cc, h, w])?.permute(vec![0, 3, 4, 1, 5, 2])?
            };
            v.contiguous()?.reshape((n, cc, h * b, w * b))?
        } else {
            if h % b != 0 || w % b != 0 {
                bail!("spatial dims {h}×{w} are not multiples of blocksize {b}");
            }
            a.reshape(vec![n, c, h / b, b, w / b, b])?
                .permute(vec![0, 3, 5, 1, 2, 4])?
                .contiguous()?
                .reshape((n, c * b * b, h / b, w / b))?
        };
        Ok(vec![y])
    });
    Ok((k, vec![t]))
}

/// A box as `(y_min, x_min, y_max, x_max)`, from corners in either order or from a center and
/// size.
fn corners(b: &[f64], center: bool) -> [f64; 4] {
    if center {
        let (hw, hh) = (b[2] / 2.0, b[3] / 2.0);
        [b[1] - hh, b[0] - hw, b[1] + hh, b[0] + hw]
    } else {
        [b[0].min(b[2]), b[1].min(b[3]), b[0].max(b[2]), b[1].max(b[3])]
    }
}

/// Whether two boxes overlap by more than `threshold` (intersection over union), with ONNX's
/// reference rules for empty overlaps and areas.
fn suppresses(a: [f64; 4], b: [f64; 4], threshold: f64) -> bool {
    let (x0, x1) = (a[1].max(b[1]), a[3].min(b[3]));
    let (y0, y1) = (a[0].max(b[0]), a[2].min(b[2]));
    if x1 <= x0 || y1 <= y0 {
        return false;
    }
    let inter = (x1 - x0) * (y1 - y0);
    let area = |c: [f64; 4]| (c[2] - c[0]) * (c[3] - c[1]);
    let (a1, a2) = (area(a), area(b));
    let union = a1 + a2 - inter;
    if inter <= 0.0 || a1 <= 0.0 || a2 <= 0.0 || union <= 0.0 {
        return false;
    }
    inter / union > threshold
}

/// NonMaxSuppression: per batch and class, boxes by descending score (ties: lower index
/// first), each kept unless it overlaps a kept one, up to `max_output_boxes_per_class`.
fn non_max_suppression(x: &[Option<&CTensor>], center: bool) -> CResult<CTensor> {
    let (boxes, scores) = (req(x, 0)?, req(x, 1)?);
    let (&[nb, n, 4], &[sb, nc, sn]) = (boxes.dims(), scores.dims()) else {
        bail!(
            "boxes must be [batches, boxes, 4] and scores [batches, classes, boxes]; got {:?} and {:?}",
            boxes.dims(),
            scores.dims()
        );
    };
    if sb != nb || sn != n {
        bail!("boxes {:?} and scores {:?} disagree", boxes.dims(), scores.dims());
    }
    let first = |i: usize| -> CResult<Option<f64>> {
        match x.get(i).copied().flatten() {
            Some(t) if t.elem_count() > 0 => {
                Ok(Some(values::<f64>(&t.flatten_all()?.to_dtype(CDType::F64)?)?[0]))
            }
            _ => Ok(None),
        }
    };
    let max_out = first(2)?.map_or(0, |m| m.max(0.0) as usize);
    let iou = first(3)?.unwrap_or(0.0);
    let score_min = first(4)?;
    let bv: Vec<f64> = values(&boxes.to_dtype(CDType::F64)?)?;
    let sv: Vec<f64> = values(&scores.to_dtype(CDType::F64)?)?;
    let mut picked: Vec<i64> = Vec::new();
    for b in 0..nb {
        let all: Vec<[f64; 4]> = (0..n).map(|i| corners(&bv[(b * n + i) * 4..][..4], center)).collect();
        for c in 0..nc {
            let cs = &sv[(b * nc + c) * n..][..n];
            let mut order: Vec<usize> = (0..n).filter(|&i| score_min.is_none_or(|m| cs[i] > m)).collect();
            order.sort_by(|&i, &j| cs[j].total_cmp(&cs[i]).then(i.cmp(&j)));
            let mut kept: Vec<usize> = Vec::new();
            for i in order {
                if kept.len() >= max_out {
                    break;
                }
                if kept.iter().all(|&k| !suppresses(all[i], all[k], iou)) {
                    kept.push(i);
                    picked.extend([b as i64, c as i64, i as i64]);
                }
            }
        }
    }
    let rows = picked.len() / 3;
    make(picked, &[rows, 3])
}

/// Groups the `n` rows of `len` keys in `v` into unique rows: returns each unique row's first
/// occurrence, each row's unique row, and each unique row's count, the unique rows ordered by
/// value (lexicographically) when `sorted`, else by first occurrence.
fn unique_rows<K: Copy>(
    v: &[K],
    n: usize,
    len: usize,
    cmp: impl Fn(&K, &K) -> std::cmp::Ordering,
    sorted: bool,
) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let row = |i: usize| &v[i * len..(i + 1) * len];
    let order_rows = |a: usize, b: usize| {
        row(a)
            .iter()
            .zip(row(b))
            .map(|(x, y)| cmp(x, y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    };
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| order_rows(a, b).then(a.cmp(&b)));
    let (mut first, mut counts, mut inverse) = (Vec::new(), Vec::new(), vec![0usize; n]);
    for (k, &i) in idx.iter().enumerate() {
        if k == 0 || order_rows(idx[k - 1], i).is_ne() {
            first.push(i);
            counts.push(0);
        }
        *counts.last_mut().expect("a group was started") += 1;
        inverse[i] = first.len() - 1;
    }
    if !sorted {
        let mut by_first: Vec<usize> = (0..first.len()).collect();
        by_first.sort_by_key(|&g| first[g]);
        let mut new_id = vec![0usize; first.len()];
        for (new, &old) in by_first.iter().enumerate() {
            new_id[old] = new;
        }
        first = by_first.iter().map(|&g| first[g]).collect();
        counts = by_first.iter().map(|&g| counts[g]).collect();
        inverse.iter_mut().for_each(|g| *g = new_id[*g]);
    }
    (first, inverse, counts)
}

/// Unique: the unique elements (no axis: of the flattened input) or slices along `axis`.
fn unique(x: &CTensor, axis: Option<i64>, sorted: bool, t: Ty) -> CResult<Vec<CTensor>> {
    let (moved, a) = match axis {
        None => (x.flatten_all()?, None),
        Some(ax) => {
            let a = super::axis(ax, x.rank())?;
            (x.transpose(0, a)?.contiguous()?, Some(a))
        }
    };
    let n = moved.dims().first().copied().unwrap_or(1);
    let len = moved.elem_count().checked_div(n).unwrap_or(0);
    let (first, inverse, counts) = if t.is_float() {
        let v: Vec<f64> = values(&moved.to_dtype(CDType::F64)?)?;
        unique_rows(&v, n, len, |p, q| p.total_cmp(q), sorted)
    } else {
        let v = ints(&moved)?;
        unique_rows(&v, n, len, |p, q| p.cmp(q), sorted)
    };
    let picked = make(first.iter().map(|&i| i as u32).collect::<Vec<u32>>(), &[first.len()])?;
    let y = moved.index_select(&picked, 0)?;
    let y = match a {
        Some(a) => y.transpose(0, a)?.contiguous()?,
        None => y,
    };
    let as_i64 = |v: Vec<usize>| {
        let n = v.len();
        make(v.into_iter().map(|i| i as i64).collect::<Vec<i64>>(), &[n])
    };
    Ok(vec![y, as_i64(first)?, as_i64(inverse)?, as_i64(counts)?])
}
