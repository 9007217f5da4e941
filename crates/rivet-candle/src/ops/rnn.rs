//! The recurrent operators RNN, GRU and LSTM (forward, reverse, bidirectional; sequence
//! lengths; initial states; peepholes; clip; both layouts), computed in f64.

use candle_core::{bail, DType as CDType, Result as CResult, Tensor as CTensor};

use super::registry::{OpDef, Registry, RegistryError};
use super::{ints, make, req, values, Built, Kernel, NodeCtx, Refusal};
use crate::ty::Ty;

#[derive(Clone, Copy, PartialEq)]
enum Cell {
    Rnn,
    Gru,
    Lstm,
}

impl Cell {
    fn gates(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Gru => 3,
            Cell::Lstm => 4,
        }
    }
}

fn activation(name: &str) -> Result<fn(f64) -> f64, Refusal> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "sigmoid" => |x| 1.0 / (1.0 + (-x).exp()),
        "tanh" => f64::tanh,
        "relu" => |x| x.max(0.0),
        "softsign" => |x| x / (1.0 + x.abs()),
        "softplus" => |x| x.exp().ln_1p(),
        other => return Err(refuse!("activation \"{other}\" is not supported")),
    })
}

#[derive(Clone)]
struct Spec {
    cell: Cell,
    hidden: usize,
    dirs: usize,
    reverse_only: bool,
    acts: Vec<fn(f64) -> f64>,
    clip: Option<f64>,
    linear_before_reset: bool,
    input_forget: bool,
    layout: i64,
}

/// `out[j] += sum_k w[(row0 + j) * cols + k] * x[k]` for `j < n`.
fn matvec(w: &[f64], row0: usize, n: usize, cols: usize, x: &[f64], out: &mut [f64]) {
    for j in 0..n {
        let row = &w[(row0 + j) * cols..(row0 + j + 1) * cols];
        out[j] += row.iter().zip(x).map(|(a, b)| a * b).sum::<f64>();
    }
}

fn run(s: &Spec, x: &[Option<&CTensor>]) -> CResult<Vec<CTensor>> {
    let xt = req(x, 0)?;
    let dt = xt.dtype();
    if xt.rank() != 3 {
        bail!("X must be 3-D, got {:?}", xt.dims());
    }
    // [seq, batch, input] whatever the layout.
    let xs = if s.layout == 1 { xt.transpose(0, 1)?.contiguous()? } else { xt.clone() };
    let (seq, batch, input) = (xs.dims()[0], xs.dims()[1], xs.dims()[2]);
    let (h, g) = (s.hidden, s.cell.gates());
    let f64s = |t: &CTensor| -> CResult<Vec<f64>> { values(&t.to_dtype(CDType::F64)?) };
    let w = f64s(req(x, 1)?)?;
    let r = f64s(req(x, 2)?)?;
    if w.len() != s.dirs * g * h * input || r.len() != s.dirs * g * h * h {
        bail!(
            "W {:?} or R {:?} do not match hidden_size {h} and input {input}",
            req(x, 1)?.dims(),
            req(x, 2)?.dims()
        );
    }
    let opt = |i: usize| x.get(i).copied().flatten();
    let bias = opt(3).map(f64s).transpose()?.unwrap_or_else(|| vec![0.0; s.dirs * 2 * g * h]);
    if bias.len() != s.dirs * 2 * g * h {
        bail!("B has {} values, expected {}", bias.len(), s.dirs * 2 * g * h);
    }
    let lens: Vec<usize> = match opt(4) {
        Some(l) => ints(l)?.into_iter().map(|v| (v.max(0) as usize).min(seq)).collect(),
        None => vec![seq; batch],
    };
    if lens.len() != batch {
        bail!("sequence_lens has {} values for batch {batch}", lens.len());
    }
    let state = |i: usize| -> CResult<Vec<f64>> {
        match opt(i) {
            Some(t) => {
                let t = if s.layout == 1 { t.transpose(0, 1)?.contiguous()? } else { t.clone() };
                let v = f64s(&t)?;
                if v.len() != s.dirs * batch * h {
                    bail!("initial state has {} values, expected {}", v.len(), s.dirs * batch * h);
                }
                Ok(v)
            }
            None => Ok(vec![0.0; s.dirs * batch * h]),
        }
    };
    let h0 = state(5)?;
    let c0 = if s.cell == Cell::Lstm { state(6)? } else { vec![] };
    let peep = if s.cell == Cell::Lstm { opt(7).map(f64s).transpose()? } else { None };
    let xv = f64s(&xs)?;
    let mut y = vec![0.0; seq * s.dirs * batch * h];
    let mut yh = vec![0.0; s.dirs * batch * h];
    let mut yc = vec![0.0; s.dirs * batch * h];
    let clip = |v: f64| s.clip.map_or(v, |c| v.clamp(-c, c));
    let per_dir = s.acts.len() / s.dirs;
    for d in 0..s.dirs {
        let reverse = s.reverse_only || d == 1;
        let act = &s.acts[d * per_dir..(d + 1) * per_dir];
        let (wd, rd) =
            (&w[d * g * h * input..(d + 1) * g * h * input], &r[d * g * h * h..(d + 1) * g * h * h]);
        let (wb, rb) =
            (&bias[d * 2 * g * h..d * 2 * g * h + g * h], &bias[d * 2 * g * h + g * h..(d + 1) * 2 * g * h]);
        for b in 0..batch {
            let mut hs = h0[(d * batch + b) * h..(d * batch + b + 1) * h].to_vec();
            let mut cs = if s.cell == Cell::Lstm {
                c0[(d * batch + b) * h..(d * batch + b + 1) * h].to_vec()
            } else {
                vec![]
            };
            for step in 0..lens[b] {
                let t = if reverse { lens[b] - 1 - step } else { step };
                let xt = &xv[(t * batch + b) * input..(t * batch + b + 1) * input];
                // Input and recurrent contributions per gate, biases included.
                let mut gx = wb.to_vec();
                matvec(wd, 0, g * h, input, xt, &mut gx);
                let mut gr = rb.to_vec();
                matvec(rd, 0, g * h, h, &hs, &mut gr);
                match s.cell {
                    Cell::Rnn => {
                        for j in 0..h {
                            hs[j] = act[0](clip(gx[j] + gr[j]));
                        }
                    }
                    Cell::Gru => {
                        // Gate order z, r, h.
                        let z: Vec<f64> = (0..h).map(|j| act[0](clip(gx[j] + gr[j]))).collect();
                        let rr: Vec<f64> = (0..h).map(|j| act[0](clip(gx[h + j] + gr[h + j]))).collect();
                        let cand: Vec<f64> = if s.linear_before_reset {
                            (0..h).map(|j| act[1](clip(gx[2 * h + j] + rr[j] * gr[2 * h + j]))).collect()
                        } else {
                            let rh: Vec<f64> = (0..h).map(|j| rr[j] * hs[j]).collect();
                            let mut hr = rb[2 * h..3 * h].to_vec();
                            matvec(rd, 2 * h, h, h, &rh, &mut hr);
                            (0..h).map(|j| act[1](clip(gx[2 * h + j] + hr[j]))).collect()
                        };
                        for j in 0..h {
                            hs[j] = (1.0 - z[j]) * cand[j] + z[j] * hs[j];
                        }
                    }
                    Cell::Lstm => {
                        // Gate order i, o, f, c; peepholes i, o, f.
                        let p = |k: usize, j: usize| peep.as_ref().map_or(0.0, |p| p[d * 3 * h + k * h + j]);
                        for j in 0..h {
                            let pre = |k: usize| gx[k * h + j] + gr[k * h + j];
                            let mut i = act[0](clip(pre(0) + p(0, j) * cs[j]));
                            let f = act[0](clip(pre(2) + p(2, j) * cs[j]));
                            if s.input_forget {
                                i = 1.0 - f;
                            }
                            let c = act[1](clip(pre(3)));
                            cs[j] = f * cs[j] + i * c;
                            let o = act[0](clip(pre(1) + p(1, j) * cs[j]));
                            hs[j] = o * act[2](cs[j]);
                        }
                    }
                }
                y[((t * s.dirs + d) * batch + b) * h..((t * s.dirs + d) * batch + b + 1) * h]
                    .copy_from_slice(&hs);
            }
            yh[(d * batch + b) * h..(d * batch + b + 1) * h].copy_from_slice(&hs);
            if s.cell == Cell::Lstm {
                yc[(d * batch + b) * h..(d * batch + b + 1) * h].copy_from_slice(&cs);
            }
        }
    }
    let mut out = vec![make(y, &[seq, s.dirs, batch, h])?, make(yh, &[s.dirs, batch, h])?];
    if s.cell == Cell::Lstm {
        out.push(make(yc, &[s.dirs, batch, h])?);
    }
    if s.layout == 1 {
        out[0] = out[0].permute(vec![2, 0, 1, 3])?;
        for o in out.iter_mut().skip(1) {
            *o = o.transpose(0, 1)?;
        }
    }
    out.into_iter().map(|t| t.contiguous()?.to_dtype(dt)).collect()
}

/// The family these operators are listed under.
const FAMILY: &str = "recurrent";

/// Registers the recurrent networks.
pub(super) fn register(r: &mut Registry) -> Result<(), RegistryError> {
    r.add_all([
        OpDef::tensor(FAMILY, "RNN", build_recurrent),
        OpDef::tensor(FAMILY, "GRU", build_recurrent),
        OpDef::tensor(FAMILY, "LSTM", build_recurrent),
    ])
}

/// Builds `RNN`, `GRU` and `LSTM`.
fn build_recurrent(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    let cell = match op {
        "RNN" => Cell::Rnn,
        "GRU" => Cell::Gru,
        "LSTM" => Cell::Lstm,
        _ => return Err(refuse!("{op} is not a recurrent network")),
    };
    ctx.known(&[
        "activations",
        "clip",
        "direction",
        "hidden_size",
        "layout",
        "linear_before_reset",
        "input_forget",
    ])?;
    if ctx.attr("linear_before_reset").is_some() && cell != Cell::Gru
        || ctx.attr("input_forget").is_some() && cell != Cell::Lstm
    {
        return Err("an attribute of another recurrent operator is set".into());
    }
    let t = ctx.ty_where(0, Ty::is_float, "floats")?;
    let hidden = ctx.int("hidden_size", 0)?;
    if hidden < 1 {
        return Err("hidden_size must be given and at least 1".into());
    }
    let (dirs, reverse_only) = match ctx.string("direction")?.as_deref() {
        None | Some("forward") => (1, false),
        Some("reverse") => (1, true),
        Some("bidirectional") => (2, false),
        Some(d) => return Err(refuse!("direction \"{d}\" is not supported")),
    };
    let defaults: &[&str] = match cell {
        Cell::Rnn => &["Tanh"],
        Cell::Gru => &["Sigmoid", "Tanh"],
        Cell::Lstm => &["Sigmoid", "Tanh", "Tanh"],
    };
    let names: Vec<String> = match ctx.attr("activations") {
        Some(a) => a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect(),
        None => (0..dirs).flat_map(|_| defaults.iter().map(|s| s.to_string())).collect(),
    };
    if names.len() != defaults.len() * dirs {
        return Err(refuse!("{} activations for {} directions", names.len(), dirs));
    }
    let acts = names.iter().map(|n| activation(n)).collect::<Result<Vec<_>, _>>()?;
    let layout = ctx.int("layout", 0)?;
    if layout != 0 && layout != 1 {
        return Err(refuse!("layout {layout} is not 0 or 1"));
    }
    let clip = ctx.attr("clip").map(|a| a.f as f64);
    let spec = Spec {
        cell,
        hidden: hidden as usize,
        dirs,
        reverse_only,
        acts,
        clip,
        linear_before_reset: ctx.int("linear_before_reset", 0)? != 0,
        input_forget: ctx.int("input_forget", 0)? != 0,
        layout,
    };
    let n_out = if cell == Cell::Lstm { 3 } else { 2 };
    ctx.max_outputs(n_out)?;
    let k: Kernel = Box::new(move |x| run(&spec, x));
    Ok((k, vec![t; n_out]))
}
