//! The sequence operators (what PyTorch exports for lists, `chunk` and `split`): a sequence
//! lives inside a graph as a value of its own; graph inputs and outputs stay tensors.

use candle_core::{bail, Device, Result as CResult, Tensor as CTensor};
use candle_onnx::onnx::NodeProto;

use super::registry::{OpDef, Registry, RegistryError};
use super::{axis, ints, Refusal};
use crate::ty::Ty;

/// A value in a slot of a plan: a tensor, or a sequence of tensors of one element type.
#[derive(Clone)]
pub enum Value {
    /// A tensor.
    Tensor(CTensor),
    /// A sequence of tensors.
    Seq(Vec<CTensor>),
}

/// Runs a sequence operator.
pub type SeqKernel = Box<dyn Fn(&[Option<&Value>]) -> CResult<Vec<Value>> + Send + Sync>;

/// Registers the sequence operators, which the plan builds knowing which inputs are sequences.
pub(super) fn register(r: &mut Registry) -> Result<(), RegistryError> {
    r.add_all([
        OpDef::sequence("SequenceEmpty", build),
        OpDef::sequence("SequenceConstruct", build),
        OpDef::sequence("SequenceInsert", build),
        OpDef::sequence("SequenceErase", build),
        OpDef::sequence("SequenceAt", build),
        OpDef::sequence("SequenceLength", build),
        OpDef::sequence("SplitToSequence", build),
        OpDef::sequence("ConcatFromSequence", build),
    ])
}

fn tensor<'a>(x: &[Option<&'a Value>], i: usize) -> CResult<&'a CTensor> {
    match x.get(i).copied().flatten() {
        Some(Value::Tensor(t)) => Ok(t),
        Some(Value::Seq(_)) => bail!("input {i} is a sequence where a tensor was expected"),
        None => bail!("input {i} is missing"),
    }
}

fn seq<'a>(x: &[Option<&'a Value>], i: usize) -> CResult<&'a Vec<CTensor>> {
    match x.get(i).copied().flatten() {
        Some(Value::Seq(s)) => Ok(s),
        Some(Value::Tensor(_)) => bail!("input {i} is a tensor where a sequence was expected"),
        None => bail!("input {i} is missing"),
    }
}

/// A position in a sequence of `n` (negative counts from the end), valid in `0..=n` when
/// `inclusive` (insertion), else `0..n`.
fn position(p: Option<&CTensor>, n: usize, default: usize, inclusive: bool) -> CResult<usize> {
    let Some(p) = p else { return Ok(default) };
    let v = ints(p)?;
    if v.len() != 1 {
        bail!("position must be one value");
    }
    let (i, n) = (v[0], n as i64);
    let j = if i < 0 { i + n } else { i };
    let hi = if inclusive { n } else { n - 1 };
    if j < 0 || j > hi {
        bail!("position {i} is out of range for a sequence of {n}");
    }
    Ok(j as usize)
}

fn known(node: &NodeProto, names: &[&str]) -> Result<(), Refusal> {
    for a in &node.attribute {
        if !names.contains(&a.name.as_str()) {
            return Err(refuse!("attribute \"{}\" is not supported", a.name));
        }
    }
    Ok(())
}

fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    node.attribute.iter().find(|a| a.name == name).map_or(default, |a| a.i)
}

/// Builds a sequence operator: the kernel and each output's (element type, is a sequence).
/// `inputs` gives each input's element type and whether it is a sequence.
pub fn build(
    node: &NodeProto,
    _opset: i64,
    inputs: &[Option<(Ty, bool)>],
) -> Result<(SeqKernel, Vec<(Ty, bool)>), Refusal> {
    let input = |i: usize, want_seq: bool| -> Result<Ty, Refusal> {
        match inputs.get(i).copied().flatten() {
            Some((t, s)) if s == want_seq => Ok(t),
            Some(_) => Err(refuse!("input {i} must be a {}", if want_seq { "sequence" } else { "tensor" })),
            None => Err(refuse!("input {i} is required")),
        }
    };
    let int_tensor = |i: usize| -> Result<(), Refusal> {
        match inputs.get(i).copied().flatten() {
            None => Ok(()),
            Some((Ty::I32 | Ty::I64, false)) => Ok(()),
            Some(_) => Err(refuse!("input {i} must be an int32 or int64 tensor")),
        }
    };
    let op = node.op_type.as_str();
    Ok(match op {
        "SequenceEmpty" => {
            known(node, &["dtype"])?;
            let t = match node.attribute.iter().find(|a| a.name == "dtype") {
                Some(a) => Ty::from_onnx(a.i as i32).ok_or("dtype is not supported")?,
                None => Ty::F32,
            };
            (Box::new(|_| Ok(vec![Value::Seq(Vec::new())])), vec![(t, true)])
        }
        "SequenceConstruct" => {
            known(node, &[])?;
            let t = input(0, false)?;
            for i in 1..node.input.len() {
                if input(i, false)? != t {
                    return Err("the tensors differ in element type".into());
                }
            }
            let k: SeqKernel = Box::new(|x| {
                let ts = (0..x.len()).map(|i| tensor(x, i).cloned()).collect::<CResult<Vec<_>>>()?;
                Ok(vec![Value::Seq(ts)])
            });
            (k, vec![(t, true)])
        }
        "SequenceInsert" => {
            known(node, &[])?;
            let t = input(0, true)?;
            if input(1, false)? != t {
                return Err("the tensor's element type differs from the sequence's".into());
            }
            int_tensor(2)?;
            let k: SeqKernel = Box::new(|x| {
                let mut s = seq(x, 0)?.clone();
                let p = position(
                    x.get(2).copied().flatten().map(|v| tensor(&[Some(v)], 0)).transpose()?,
                    s.len(),
                    s.len(),
                    true,
                )?;
                s.insert(p, tensor(x, 1)?.clone());
                Ok(vec![Value::Seq(s)])
            });
            (k, vec![(t, true)])
        }
        "SequenceErase" => {
            known(node, &[])?;
            let t = input(0, true)?;
            int_tensor(1)?;
            let k: SeqKernel = Box::new(|x| {
                let mut s = seq(x, 0)?.clone();
                if s.is_empty() {
                    bail!("erase from an empty sequence");
                }
                let p = position(
                    x.get(1).copied().flatten().map(|v| tensor(&[Some(v)], 0)).transpose()?,
                    s.len(),
                    s.len() - 1,
                    false,
                )?;
                s.remove(p);
                Ok(vec![Value::Seq(s)])
            });
            (k, vec![(t, true)])
        }
        "SequenceAt" => {
            known(node, &[])?;
            let t = input(0, true)?;
            input(1, false)?;
            int_tensor(1)?;
            let k: SeqKernel = Box::new(|x| {
                let s = seq(x, 0)?;
                let p = position(Some(tensor(x, 1)?), s.len(), 0, false)?;
                Ok(vec![Value::Tensor(s[p].clone())])
            });
            (k, vec![(t, false)])
        }
        "SequenceLength" => {
            known(node, &[])?;
            input(0, true)?;
            let k: SeqKernel = Box::new(|x| {
                let n = seq(x, 0)?.len() as i64;
                Ok(vec![Value::Tensor(CTensor::new(n, &Device::Cpu)?)])
            });
            (k, vec![(Ty::I64, false)])
        }
        "SplitToSequence" => {
            known(node, &["axis", "keepdims"])?;
            let t = input(0, false)?;
            int_tensor(1)?;
            let ax = attr_i(node, "axis", 0);
            let keepdims = attr_i(node, "keepdims", 1) != 0;
            let k: SeqKernel = Box::new(move |x| {
                let a = tensor(x, 0)?;
                let dim = axis(ax, a.rank())?;
                let d = a.dims()[dim];
                let split = x.get(1).copied().flatten().map(|v| tensor(&[Some(v)], 0)).transpose()?;
                let (sizes, squeeze): (Vec<usize>, bool) = match split {
                    None => (vec![1; d], !keepdims),
                    Some(sp) if sp.rank() == 0 => {
                        let c = ints(sp)?[0];
                        if c < 1 {
                            bail!("split {c} is not positive");
                        }
                        let c = c as usize;
                        ((0..d.div_ceil(c)).map(|i| c.min(d - i * c)).collect(), false)
                    }
                    Some(sp) => {
                        let v = ints(sp)?;
                        if v.iter().any(|&s| s < 0) || v.iter().sum::<i64>() != d as i64 {
                            bail!("split {v:?} does not cover an axis of {d}");
                        }
                        (v.into_iter().map(|s| s as usize).collect(), false)
                    }
                };
                let mut start = 0;
                let mut parts = Vec::with_capacity(sizes.len());
                for s in sizes {
                    let p = a.narrow(dim, start, s)?;
                    parts.push(if squeeze { p.squeeze(dim)? } else { p });
                    start += s;
                }
                Ok(vec![Value::Seq(parts)])
            });
            (k, vec![(t, true)])
        }
        "ConcatFromSequence" => {
            known(node, &["axis", "new_axis"])?;
            let t = input(0, true)?;
            let ax =
                node.attribute.iter().find(|a| a.name == "axis").map(|a| a.i).ok_or("axis is required")?;
            let new_axis = attr_i(node, "new_axis", 0) != 0;
            let k: SeqKernel = Box::new(move |x| {
                let s = seq(x, 0)?;
                let Some(first) = s.first() else { bail!("concatenation of an empty sequence") };
                let rank = first.rank() + usize::from(new_axis);
                let dim = axis(ax, rank)?;
                let parts: Vec<CTensor> = if new_axis {
                    s.iter().map(|t| t.unsqueeze(dim)).collect::<CResult<_>>()?
                } else {
                    s.clone()
                };
                for p in &parts {
                    if p.rank() != rank
                        || p.dims()
                            .iter()
                            .zip(parts[0].dims())
                            .enumerate()
                            .any(|(i, (a, b))| i != dim && a != b)
                    {
                        bail!("cannot concatenate {:?} and {:?} on axis {dim}", parts[0].dims(), p.dims());
                    }
                }
                Ok(vec![Value::Tensor(CTensor::cat(&parts, dim)?)])
            });
            (k, vec![(t, false)])
        }
        _ => return Err("this operator is not implemented".into()),
    })
}
