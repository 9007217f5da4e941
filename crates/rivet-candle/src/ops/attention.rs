//! ONNX's fused Attention (opset 23 and later) and RotaryEmbedding. Attention is scaled
//! dot-product attention over 3-D or 4-D inputs, with masks, causal and sliding-window masking,
//! a key/value cache, grouped-query heads, softcap and the optional QK output; both are
//! computed in f64, following ONNX's reference implementation step by step.

use candle_core::{bail, DType as CDType, Result as CResult, Tensor as CTensor};

use super::registry::{OpDef, Registry, RegistryError};
use super::{check_size, make, req, values, Built, Kernel, NodeCtx, Refusal};
use crate::ty::Ty;

/// The attributes, read at load.
#[derive(Clone)]
struct Attrs {
    causal: bool,
    q_heads: Option<usize>,
    kv_heads: Option<usize>,
    mode: i64,
    scale: Option<f64>,
    softcap: f64,
    left: i64,
    right: i64,
    out: Ty,
    n_outputs: usize,
}

/// A 4-D tensor `[batch, heads, sequence, head size]` as f64 values.
struct Heads {
    v: Vec<f64>,
    dims: [usize; 4],
}

impl Heads {
    fn at(&self, b: usize, h: usize, s: usize) -> &[f64] {
        let [_, hh, ss, d] = self.dims;
        let o = ((b * hh + h) * ss + s) * d;
        &self.v[o..o + d]
    }

    /// `t` as heads: a 4-D tensor as it is, a 3-D `[batch, sequence, heads * size]` split into
    /// `heads` and moved to `[batch, heads, sequence, size]`.
    fn of(t: &CTensor, heads: Option<usize>, what: &str) -> CResult<Heads> {
        let v: Vec<f64> = values(&t.to_dtype(CDType::F64)?)?;
        match (t.dims(), heads) {
            (&[b, h, s, d], _) => Ok(Heads { v, dims: [b, h, s, d] }),
            (&[b, s, hidden], Some(h)) => {
                if h == 0 || !hidden.is_multiple_of(h) {
                    bail!("{what}'s hidden size {hidden} does not split into {h} heads");
                }
                let d = hidden / h;
                let mut out = vec![0.0; v.len()];
                for bi in 0..b {
                    for si in 0..s {
                        for hi in 0..h {
                            let src = &v[(bi * s + si) * hidden + hi * d..][..d];
                            out[((bi * h + hi) * s + si) * d..][..d].copy_from_slice(src);
                        }
                    }
                }
                Ok(Heads { v: out, dims: [b, h, s, d] })
            }
            (dims, _) => bail!("{what} must be 3-D or 4-D, got {dims:?}"),
        }
    }

    /// `past` followed by `self` along the sequence axis.
    fn after(self, past: Option<Heads>, what: &str) -> CResult<Heads> {
        let Some(p) = past else { return Ok(self) };
        let [b, h, s, d] = self.dims;
        let [pb, ph, ps, pd] = p.dims;
        if (pb, ph, pd) != (b, h, d) {
            bail!("past {what} {:?} does not match the new one {:?}", p.dims, self.dims);
        }
        let mut v = Vec::with_capacity((ps + s) * b * h * d);
        for bi in 0..b {
            for hi in 0..h {
                v.extend_from_slice(&p.v[((bi * h + hi) * ps) * d..][..ps * d]);
                v.extend_from_slice(&self.v[((bi * h + hi) * s) * d..][..s * d]);
            }
        }
        Ok(Heads { v, dims: [b, h, ps + s, d] })
    }

    fn tensor(&self, ty: Ty) -> CResult<CTensor> {
        make(self.v.clone(), &self.dims)?.to_dtype(ty.candle())
    }
}

/// The additive mask: its values and its dims right-aligned into `[batch, heads, q, kv]`
/// (1 where it broadcasts), padded along kv to the full key length.
struct Mask {
    v: Vec<f64>,
    dims: [usize; 4],
}

impl Mask {
    fn of(t: &CTensor, kv: usize) -> CResult<Mask> {
        if t.rank() == 0 || t.rank() > 4 {
            bail!("attn_mask must have 1 to 4 dims, got {:?}", t.dims());
        }
        let boolean = t.dtype() == CDType::U8;
        let raw: Vec<f64> = values(&t.to_dtype(CDType::F64)?)?;
        let raw: Vec<f64> = if boolean {
            raw.into_iter().map(|b| if b != 0.0 { 0.0 } else { f64::NEG_INFINITY }).collect()
        } else {
            raw
        };
        let mut dims = [1usize; 4];
        dims[4 - t.rank()..].copy_from_slice(t.dims());
        let last = dims[3];
        if last > kv {
            bail!("attn_mask covers {last} keys but there are {kv}");
        }
        // Keys beyond the mask's length are masked out.
        let rows = dims[0] * dims[1] * dims[2];
        let mut v = Vec::with_capacity(rows * kv);
        for r in 0..rows {
            v.extend_from_slice(&raw[r * last..(r + 1) * last]);
            v.extend(std::iter::repeat_n(f64::NEG_INFINITY, kv - last));
        }
        dims[3] = kv;
        Ok(Mask { v, dims })
    }

    fn get(&self, b: usize, h: usize, i: usize, j: usize) -> f64 {
        let pick = |x: usize, d: usize| if d == 1 { 0 } else { x };
        let [db, dh, dq, dk] = self.dims;
        self.v[((pick(b, db) * dh + pick(h, dh)) * dq + pick(i, dq)) * dk + pick(j, dk)]
    }
}

fn run(x: &[Option<&CTensor>], a: &Attrs) -> CResult<Vec<CTensor>> {
    let (q, k, v) = (req(x, 0)?, req(x, 1)?, req(x, 2)?);
    if q.rank() != k.rank() || q.rank() != v.rank() {
        bail!("Q, K and V differ in rank: {:?}, {:?}, {:?}", q.dims(), k.dims(), v.dims());
    }
    let three_d = q.rank() == 3;
    if three_d && (a.q_heads.is_none() || a.kv_heads.is_none()) {
        bail!("3-D inputs need q_num_heads and kv_num_heads");
    }
    if !three_d {
        let given = |n: Option<usize>, actual: usize| n.is_some_and(|n| n != actual);
        if given(a.q_heads, q.dims()[1]) || given(a.kv_heads, k.dims()[1]) {
            bail!("q_num_heads or kv_num_heads disagrees with the 4-D inputs' heads");
        }
    }
    let qh = Heads::of(q, a.q_heads, "Q")?;
    let input = |i: usize| x.get(i).copied().flatten();
    let (pk, pv) = (input(4), input(5));
    if pk.is_some() != pv.is_some() {
        bail!("past_key and past_value must be given together");
    }
    let nonpad = input(6).map(super::ints).transpose()?;
    if nonpad.is_some() && pk.is_some() {
        bail!("nonpad_kv_seqlen cannot be combined with a past key and value");
    }
    let past_len = pk.map_or(0, |p| p.dims().get(2).copied().unwrap_or(0));
    let kh = Heads::of(k, a.kv_heads, "K")?
        .after(pk.map(|p| Heads::of(p, None, "past_key")).transpose()?, "key")?;
    let vh = Heads::of(v, a.kv_heads, "V")?
        .after(pv.map(|p| Heads::of(p, None, "past_value")).transpose()?, "value")?;
    let [b, hq, sq, d] = qh.dims;
    let [kb, hk, skv, dk] = kh.dims;
    let [vb, hv, svv, dv] = vh.dims;
    if kb != b || vb != b || dk != d || svv != skv || hv != hk {
        bail!("Q {:?}, K {:?} and V {:?} do not fit together", qh.dims, kh.dims, vh.dims);
    }
    if hk == 0 || hq % hk != 0 {
        bail!("{hq} query heads cannot share {hk} key/value heads");
    }
    if let Some(n) = &nonpad {
        if n.len() != b {
            bail!("nonpad_kv_seqlen holds {} values for a batch of {b}", n.len());
        }
    }
    check_size(&[b, hq, sq, skv], 8)?;
    let reps = hq / hk;
    let scale = a.scale.unwrap_or(1.0 / (d as f64).sqrt());
    let mask = input(3).map(|m| Mask::of(m, skv)).transpose()?;
    if let Some(m) = &mask {
        for (i, (&md, full)) in m.dims.iter().zip([b, hq, sq, skv]).enumerate() {
            if md != 1 && md != full {
                bail!("attn_mask dim {i} of {md} does not broadcast to {full}");
            }
        }
    }
    let mut y = vec![0.0; b * hq * sq * dv];
    let mut qk_out = vec![0.0; if a.n_outputs > 3 { b * hq * sq * skv } else { 0 }];
    let want_qk = !qk_out.is_empty();
    let (mut raw, mut row, mut bias) = (vec![0.0; skv], vec![0.0; skv], vec![0.0; skv]);
    for bi in 0..b {
        // The position of query 0 among the keys: after the cache, or at the end of the
        // batch's real keys when they are given.
        let offset = match &nonpad {
            Some(n) if pk.is_none() => n[bi] - sq as i64,
            _ => past_len as i64,
        };
        for h in 0..hq {
            let kvh = h / reps;
            for i in 0..sq {
                let qi = qh.at(bi, h, i);
                for j in 0..skv {
                    let dot: f64 = qi.iter().zip(kh.at(bi, kvh, j)).map(|(p, q)| p * q).sum();
                    raw[j] = dot * scale;
                    row[j] = if a.softcap > 0.0 { a.softcap * (raw[j] / a.softcap).tanh() } else { raw[j] };
                    let mut m = mask.as_ref().map_or(0.0, |m| m.get(bi, h, i, j));
                    let diff = i as i64 + offset - j as i64;
                    let outside_window = (a.left >= 0 && diff > a.left) || (a.right >= 0 && -diff > a.right);
                    let padding = nonpad.as_ref().is_some_and(|n| j as i64 >= n[bi]);
                    if (a.causal && diff < 0) || outside_window || padding {
                        m = f64::NEG_INFINITY;
                    }
                    bias[j] = m;
                }
                let qk_row = ((bi * hq + h) * sq + i) * skv;
                let mut keep = |mode: i64, values: &[f64]| {
                    if want_qk && a.mode == mode {
                        qk_out[qk_row..qk_row + skv].copy_from_slice(values);
                    }
                };
                // Mode 0: the product; 1: after softcap; 2: plus the mask; 3: the softmax.
                keep(0, &raw);
                keep(1, &row);
                row.iter_mut().zip(&bias).for_each(|(r, m)| *r += m);
                keep(2, &row);
                // Softmax; a row whose mask allows no key is all zeros.
                if bias.iter().all(|m| *m == f64::NEG_INFINITY) {
                    row.fill(0.0);
                } else {
                    let mx = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let mx = if mx == f64::NEG_INFINITY { 0.0 } else { mx };
                    row.iter_mut().for_each(|r| *r = (*r - mx).exp());
                    let sum: f64 = row.iter().sum();
                    let sum = if sum == 0.0 { 1.0 } else { sum };
                    row.iter_mut().for_each(|r| *r /= sum);
                }
                keep(3, &row);
                let yi = &mut y[((bi * hq + h) * sq + i) * dv..][..dv];
                for (j, &p) in row.iter().enumerate() {
                    if p != 0.0 {
                        for (o, vv) in yi.iter_mut().zip(vh.at(bi, kvh, j)) {
                            *o += p * vv;
                        }
                    }
                }
            }
        }
    }
    let y = if three_d {
        // [b, hq, sq, dv] back to [b, sq, hq * dv].
        let mut o = vec![0.0; y.len()];
        for bi in 0..b {
            for h in 0..hq {
                for i in 0..sq {
                    let src = &y[((bi * hq + h) * sq + i) * dv..][..dv];
                    o[(bi * sq + i) * hq * dv + h * dv..][..dv].copy_from_slice(src);
                }
            }
        }
        make(o, &[b, sq, hq * dv])?
    } else {
        make(y, &[b, hq, sq, dv])?
    };
    let mut outs = vec![y.to_dtype(a.out.candle())?];
    if a.n_outputs > 1 {
        outs.push(kh.tensor(a.out)?);
        outs.push(vh.tensor(a.out)?);
    }
    if a.n_outputs > 3 {
        outs.push(make(qk_out, &[b, hq, sq, skv])?.to_dtype(a.out.candle())?);
    }
    Ok(outs)
}

/// RotaryEmbedding's attributes.
#[derive(Clone, Copy)]
struct Rotary {
    interleaved: bool,
    heads: Option<usize>,
    dim: usize,
}

/// Rotates the first `dim` of each head's features of `x` (`[batch, heads, seq, size]`, or
/// `[batch, seq, heads * size]`) by the angles whose cosines and sines the caches hold, per
/// position (`position_ids` `[batch, seq]` into caches `[positions, dim / 2]`, or caches
/// `[batch, seq, dim / 2]`), as ONNX's reference does.
fn rotary(x: &[Option<&CTensor>], r: Rotary) -> CResult<CTensor> {
    let input = req(x, 0)?;
    let (cos, sin) = (req(x, 1)?, req(x, 2)?);
    let v: Vec<f64> = values(&input.to_dtype(CDType::F64)?)?;
    // (batch, seq, heads, size) and the strides of those axes in `v`.
    let (dims, st) = match (input.dims(), r.heads) {
        (&[b, h, s, d], _) => ([b, s, h, d], [h * s * d, d, s * d, 1]),
        (&[b, s, hidden], Some(h)) if h > 0 && hidden.is_multiple_of(h) => {
            let d = hidden / h;
            ([b, s, h, d], [s * hidden, hidden, d, 1])
        }
        (dims, _) => {
            bail!("RotaryEmbedding needs a 4-D input, or a 3-D one with num_heads dividing it; got {dims:?}")
        }
    };
    let [b, s, h, d] = dims;
    let rd = if r.dim == 0 { d } else { r.dim };
    if rd > d || rd % 2 != 0 {
        bail!("rotary_embedding_dim {rd} does not fit heads of size {d}");
    }
    let half = rd / 2;
    let (cv, sv): (Vec<f64>, Vec<f64>) =
        (values(&cos.to_dtype(CDType::F64)?)?, values(&sin.to_dtype(CDType::F64)?)?);
    if cos.dims() != sin.dims() || cos.dims().last() != Some(&half) {
        bail!(
            "cos and sin caches {:?} and {:?} must end in rotary_embedding_dim / 2 = {half}",
            cos.dims(),
            sin.dims()
        );
    }
    let positions = x.get(3).copied().flatten().map(super::ints).transpose()?;
    let rows = cv.len() / half.max(1);
    let row_of = |bi: usize, si: usize| -> CResult<usize> {
        match &positions {
            Some(p) => {
                let pos = *p.get(bi * s + si).ok_or_else(|| {
                    candle_core::Error::Msg(format!("position_ids do not cover [{b}, {s}]"))
                })?;
                if pos < 0 || pos as usize >= rows {
                    bail!("position {pos} is outside the caches' {rows} rows");
                }
                Ok(pos as usize)
            }
            None => {
                if rows != b * s {
                    bail!("without position_ids the caches must be [{b}, {s}, {half}], got {:?}", cos.dims());
                }
                Ok(bi * s + si)
            }
        }
    };
    let mut out = v.clone();
    for bi in 0..b {
        for si in 0..s {
            let row = row_of(bi, si)?;
            let (c, sn) = (&cv[row * half..(row + 1) * half], &sv[row * half..(row + 1) * half]);
            for hi in 0..h {
                let base = bi * st[0] + si * st[1] + hi * st[2];
                for i in 0..half {
                    let (p1, p2) = if r.interleaved { (2 * i, 2 * i + 1) } else { (i, i + half) };
                    let (x1, x2) = (v[base + p1], v[base + p2]);
                    out[base + p1] = c[i] * x1 - sn[i] * x2;
                    out[base + p2] = sn[i] * x1 + c[i] * x2;
                }
            }
        }
    }
    make(out, input.dims())?.to_dtype(input.dtype())
}

/// The family these operators are listed under.
const FAMILY: &str = "attention";

/// Registers `Attention` and `RotaryEmbedding`.
pub(super) fn register(r: &mut Registry) -> Result<(), RegistryError> {
    r.add_all([
        OpDef::tensor(FAMILY, "Attention", build_attention),
        OpDef::tensor(FAMILY, "RotaryEmbedding", build_rotary_embedding),
    ])
}

/// Builds `RotaryEmbedding`.
fn build_rotary_embedding(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["interleaved", "num_heads", "rotary_embedding_dim"])?;
    let t = ctx.ty_where(0, |t| matches!(t, Ty::F32 | Ty::F64), "float and double")?;
    ctx.same(&[0, 1, 2], t)?;
    if ctx.has(3) {
        ctx.ty_where(3, |p| p == Ty::I64, "int64 position_ids")?;
    }
    let heads = ctx.int("num_heads", 0)?;
    let dim = ctx.int("rotary_embedding_dim", 0)?;
    let r = Rotary {
        interleaved: ctx.int("interleaved", 0)? != 0,
        heads: usize::try_from(heads).ok().filter(|&h| h > 0),
        dim: usize::try_from(dim).map_err(|_| "rotary_embedding_dim must not be negative".to_string())?,
    };
    let k: Kernel = Box::new(move |x| Ok(vec![rotary(x, r)?]));
    Ok((k, vec![t]))
}

/// Builds `Attention`.
fn build_attention(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[
        "is_causal",
        "kv_num_heads",
        "q_num_heads",
        "qk_matmul_output_mode",
        "scale",
        "softcap",
        "softmax_precision",
        "left_window_size",
        "right_window_size",
    ])?;
    let t = ctx.ty_where(0, |t| matches!(t, Ty::F32 | Ty::F64), "float and double")?;
    ctx.same(&[0, 1, 2, 4, 5], t)?;
    if ctx.has(3) {
        ctx.ty_where(3, |m| m == Ty::Bool || m == t, &format!("a bool or {t} mask"))?;
    }
    if ctx.has(6) {
        ctx.ty_where(6, |n| n == Ty::I64, "int64 nonpad_kv_seqlen")?;
    }
    let heads = |name: &str| -> Result<Option<usize>, Refusal> {
        match ctx.attr(name) {
            None => Ok(None),
            Some(_) => {
                let v = ctx.int(name, 0)?;
                usize::try_from(v).ok().filter(|&v| v > 0).map(Some).ok_or(refuse!("{name} must be positive"))
            }
        }
    };
    let precision = ctx.int("softmax_precision", 0)?;
    if ![0, 1, 11].contains(&precision) {
        return Err(refuse!(
            "softmax_precision {} is not supported (float and double are)",
            Ty::onnx_name(precision as i32)
        ));
    }
    let mode = ctx.int("qk_matmul_output_mode", 0)?;
    if !(0..=3).contains(&mode) {
        return Err(refuse!("qk_matmul_output_mode {mode} is not 0 to 3"));
    }
    if mode == 0 && ctx.n_outputs() > 3 && ctx.float("softcap", 0.0)? > 0.0 {
        return Err("qk_matmul_output_mode 0 with a softcap is not supported: ONNX's text gives the raw \
                    product, its reference implementation the product after softcap"
            .into());
    }
    let (left, right) = (ctx.int("left_window_size", -1)?, ctx.int("right_window_size", -1)?);
    if left < -1 || right < -1 {
        return Err("window sizes must be -1 or nonnegative".into());
    }
    let attrs = Attrs {
        causal: ctx.int("is_causal", 0)? != 0,
        q_heads: heads("q_num_heads")?,
        kv_heads: heads("kv_num_heads")?,
        mode,
        scale: ctx.attr("scale").map(|_| ctx.float("scale", 1.0).map(f64::from)).transpose()?,
        softcap: ctx.float("softcap", 0.0)? as f64,
        left,
        right,
        out: t,
        n_outputs: ctx.n_outputs(),
    };
    if ctx.has(4) != ctx.has(5) {
        return Err("past_key and past_value must be given together".into());
    }
    let k: Kernel = Box::new(move |x| run(x, &attrs));
    Ok((k, vec![t; 4]))
}
