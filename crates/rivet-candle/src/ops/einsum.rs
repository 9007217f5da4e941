//! Einsum: any equation of ONNX's grammar (explicit or implicit output, `...` broadcasting,
//! repeated letters for diagonals), evaluated by a loop over every letter, in f64 for floats
//! and i64 for integers. Correct for every equation, but not fast: a model whose Einsum is a
//! large batched matrix product should be exported as MatMul.

use candle_core::{bail, DType as CDType, Result as CResult, Tensor as CTensor};

use super::registry::{OpDef, Registry, RegistryError};
use super::{ints, make, values, Built, Kernel, NodeCtx, Refusal};
use crate::kernels::strides;
use crate::ty::Ty;

/// A parsed equation: each operand's letters (ellipsis already expanded, right-aligned), and
/// the output's letters.
struct Equation {
    inputs: Vec<Vec<char>>,
    output: Vec<char>,
}

/// A letter standing for one dim an ellipsis covers: Greek, so it never clashes with the ASCII
/// letters of an equation.
fn ellipsis_letter(i: usize) -> char {
    char::from_u32(0x3b1 + i as u32).unwrap_or('?')
}

fn parse(eq: &str, ranks: &[usize]) -> CResult<Equation> {
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (eq.clone(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != ranks.len() {
        bail!("equation \"{eq}\" has {} operands, the node {}", terms.len(), ranks.len());
    }
    let mut ell_rank = 0;
    let mut inputs = Vec::new();
    for (term, &rank) in terms.iter().zip(ranks) {
        let letters: Vec<char> = term.replace("...", "").chars().collect();
        if letters.iter().any(|c| !c.is_ascii_alphabetic()) {
            bail!("equation \"{eq}\": \"{term}\" is not letters and one optional ...");
        }
        if term.contains("...") {
            if rank < letters.len() {
                bail!("equation \"{eq}\": \"{term}\" for rank {rank}");
            }
            let e = rank - letters.len();
            ell_rank = ell_rank.max(e);
            let (before, after) = term.split_once("...").expect("contains ...");
            let mut v: Vec<char> = before.chars().collect();
            v.extend((0..e).map(|i| ellipsis_letter(100 + i)));
            v.extend(after.chars());
            inputs.push(v);
        } else {
            if letters.len() != rank {
                bail!("equation \"{eq}\": \"{term}\" for rank {rank}");
            }
            inputs.push(letters);
        }
    }
    // Ellipsis dims are right-aligned across operands: rename operand-local placeholders.
    let ell: Vec<char> = (0..ell_rank).map(ellipsis_letter).collect();
    for (term, v) in terms.iter().zip(inputs.iter_mut()) {
        if term.contains("...") {
            let e = v.iter().filter(|c| (**c as u32) >= 0x3b1 + 100).count();
            let mut k = 0;
            for c in v.iter_mut() {
                if (*c as u32) >= 0x3b1 + 100 {
                    *c = ell[ell_rank - e + k];
                    k += 1;
                }
            }
        }
    }
    let output: Vec<char> = match rhs {
        Some(r) => {
            let mut v = Vec::new();
            if let Some((before, after)) = r.split_once("...") {
                v.extend(before.chars());
                v.extend(ell.iter());
                v.extend(after.chars());
            } else {
                v.extend(r.chars());
            }
            v
        }
        None => {
            let mut once: Vec<char> = Vec::new();
            for c in inputs.iter().flatten().filter(|c| c.is_ascii_alphabetic()) {
                if inputs.iter().flatten().filter(|d| *d == c).count() == 1 {
                    once.push(*c);
                }
            }
            once.sort_unstable();
            let mut v = ell.clone();
            v.extend(once);
            v
        }
    };
    for c in &output {
        if !inputs.iter().flatten().any(|d| d == c) {
            bail!("equation \"{eq}\": output letter {c} is in no operand");
        }
    }
    Ok(Equation { inputs, output })
}

fn einsum(eq: &Equation, xs: &[&CTensor], float: bool) -> CResult<CTensor> {
    // Every letter's size (1 broadcasts, for ellipsis dims).
    let mut letters: Vec<char> = eq.output.clone();
    for c in eq.inputs.iter().flatten() {
        if !letters.contains(c) {
            letters.push(*c);
        }
    }
    let mut size = vec![1usize; letters.len()];
    let mut fixed = vec![false; letters.len()];
    for (v, x) in eq.inputs.iter().zip(xs) {
        for (c, &d) in v.iter().zip(x.dims()) {
            let i = letters.iter().position(|l| l == c).expect("collected");
            if !fixed[i] || size[i] == 1 {
                size[i] = d;
                fixed[i] = true;
            } else if d != size[i] && d != 1 {
                bail!("letter {c} has sizes {} and {d}", size[i]);
            }
        }
    }
    let out_dims: Vec<usize> =
        eq.output.iter().map(|c| size[letters.iter().position(|l| l == c).unwrap()]).collect();
    let total: usize = size.iter().product();
    if total > 200_000_000 {
        bail!("Einsum would take {total} steps");
    }
    // Per operand, the stride each letter moves it by (0 where broadcast).
    let mut steps: Vec<Vec<usize>> = Vec::new();
    for (v, x) in eq.inputs.iter().zip(xs) {
        let st = strides(x.dims());
        let mut s = vec![0usize; letters.len()];
        for (k, c) in v.iter().enumerate() {
            let i = letters.iter().position(|l| l == c).unwrap();
            if x.dims()[k] != 1 {
                s[i] += st[k];
            }
        }
        steps.push(s);
    }
    let ost = strides(&out_dims);
    let n_out = eq.output.len();
    let data_f: Vec<Vec<f64>> = if float {
        xs.iter().map(|x| values(&x.to_dtype(CDType::F64)?)).collect::<CResult<_>>()?
    } else {
        vec![]
    };
    let data_i: Vec<Vec<i64>> =
        if float { vec![] } else { xs.iter().map(|x| ints(x)).collect::<CResult<_>>()? };
    let out_len: usize = out_dims.iter().product();
    let mut acc_f = vec![0f64; out_len];
    let mut acc_i = vec![0i64; out_len];
    let mut idx = vec![0usize; letters.len()];
    for _ in 0..total {
        let o: usize = (0..n_out).map(|k| idx[k] * ost[k]).sum();
        if float {
            let mut p = 1.0;
            for (d, s) in data_f.iter().zip(&steps) {
                p *= d[idx.iter().zip(s).map(|(i, s)| i * s).sum::<usize>()];
            }
            acc_f[o] += p;
        } else {
            let mut p = 1i64;
            for (d, s) in data_i.iter().zip(&steps) {
                p = p.wrapping_mul(d[idx.iter().zip(s).map(|(i, s)| i * s).sum::<usize>()]);
            }
            acc_i[o] = acc_i[o].wrapping_add(p);
        }
        for k in (0..letters.len()).rev() {
            idx[k] += 1;
            if idx[k] < size[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    if float {
        make(acc_f, &out_dims)?.to_dtype(xs[0].dtype())
    } else {
        make(acc_i, &out_dims)?.to_dtype(xs[0].dtype())
    }
}

/// Registers `Einsum`.
pub(super) fn register(r: &mut Registry) -> Result<(), RegistryError> {
    r.add(OpDef::tensor("matrix products", "Einsum", build_einsum))
}

/// Builds `Einsum`.
fn build_einsum(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["equation"])?;
    let t = ctx.ty_where(0, Ty::is_numeric, "numbers")?;
    ctx.same(&(0..ctx.node.input.len()).collect::<Vec<_>>(), t)?;
    let eq = ctx.string("equation")?.ok_or("equation is required")?;
    let k: Kernel = Box::new(move |x| {
        let xs: Vec<&CTensor> = x
            .iter()
            .map(|t| t.ok_or_else(|| candle_core::Error::Msg("missing operand".into())))
            .collect::<CResult<_>>()?;
        let ranks: Vec<usize> = xs.iter().map(|t| t.rank()).collect();
        let parsed = parse(&eq, &ranks)?;
        Ok(vec![einsum(&parsed, &xs, t.is_float())?])
    });
    Ok((k, vec![t]))
}
