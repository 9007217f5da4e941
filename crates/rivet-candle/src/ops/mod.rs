//! The operators: each builder checks a node (attributes, input types, opset) at load and
//! returns the kernel that runs it plus the types of its outputs. A builder refuses, with the
//! reason, anything it has not been written and checked for; an attribute it does not read is
//! refused too, so nothing is silently ignored.

use std::fmt;

use candle_core::{bail, DType as CDType, Result as CResult, Tensor as CTensor};
use candle_onnx::onnx::{attribute_proto::AttributeType, AttributeProto, NodeProto};

use crate::ty::Ty;

mod attention;
mod conv;
mod einsum;
mod elementwise;
mod gemm;
mod index;
mod loss;
mod normalization;
mod pool;
mod quant;
mod random;
mod reduce;
pub mod registry;
mod resize;
mod rnn;
pub mod sequence;
mod shape;
mod softmax;

pub use crate::kernels::{check_size, make, values, with_values, MAX_TENSOR_BYTES};

use registry::{Lookup, OpDef, Registry, RegistryError};

/// A family's function adding its operators to the registry.
type Register = fn(&mut Registry) -> Result<(), RegistryError>;

/// Each family's `register`, in the order the Candle guide lists them.
const FAMILIES: &[Register] = &[
    elementwise::register,
    shape::register,
    index::register,
    reduce::register,
    gemm::register,
    einsum::register,
    conv::register,
    pool::register,
    normalization::register,
    softmax::register,
    resize::register,
    rnn::register,
    attention::register,
    loss::register,
    quant::register,
    random::register,
    register_control,
    sequence::register,
];

/// Whether `t` is a floating-point type (the element types of most network operators).
pub fn floats(t: Ty) -> bool {
    t.is_float()
}

/// The families, in the order their operators are listed.
pub fn family_order() -> &'static [&'static str] {
    &[
        "element-wise",
        "shape",
        "indexing",
        "reduction",
        "matrix products",
        "convolution",
        "pooling",
        "normalization",
        "softmax",
        "resize",
        "recurrent",
        "attention",
        "loss",
        "quantization",
        "random",
        "control flow",
        "sequence",
    ]
}

/// Registers the control-flow operators, whose subgraphs the plan plans.
fn register_control(r: &mut Registry) -> Result<(), RegistryError> {
    r.add_all([OpDef::control("If"), OpDef::control("Loop"), OpDef::control("Scan").since(9)])
}

/// Runs one node: its inputs (`None` for an omitted optional input) to its outputs, in order.
pub type Kernel = Box<dyn Fn(&[Option<&CTensor>]) -> CResult<Vec<CTensor>> + Send + Sync>;

/// A kernel and the types of the outputs it produces.
pub type Built = (Kernel, Vec<Ty>);

/// What a builder sees of a node at load time.
pub struct NodeCtx<'a> {
    /// The node.
    pub node: &'a NodeProto,
    /// The opset version of the default domain the model imports.
    pub opset: i64,
    /// Each input's type, `None` for an omitted optional input.
    pub tys: Vec<Option<Ty>>,
    /// Each input's value where it is a constant (initializer or folded), else `None`.
    pub consts: Vec<Option<CTensor>>,
    /// Whether the node's kernel also applies the Relu that was its output's only reader: the
    /// plan's fusion pass folds such a Relu into an operator registered with `fuses_relu`.
    pub fuse_relu: bool,
    /// For a MatMul or a Conv, `Some(first)` when its kernel also adds the other operand of the
    /// Add that was its output's only reader (the plan's fusion pass folds such an Add into
    /// it: a MatMul's bias vector, a Conv's residual). That operand is the kernel's input after
    /// the node's own (2 for a MatMul; 2 or 3 for a Conv, after its bias if it has one), and
    /// `first` says it was the Add's first operand. A Conv's `fuse_relu` then applies after
    /// the Add.
    pub fuse_add: Option<bool>,
    /// For a Conv, the kernel of the 2×2 MaxPool of stride 2 that was its output's only reader
    /// (the plan's fusion pass folds it into the Conv, after a fused Relu): the Conv's kernel
    /// returns the pool's output, pooling in its own pass where it can and else running this
    /// kernel on its output.
    pub pool_after: Option<std::sync::Arc<Kernel>>,
}

/// Why the executor will not build a node: the reason as users read it, after the operator,
/// its opset and the node's name (see `PlanError::Operators`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

impl From<String> for Refusal {
    fn from(reason: String) -> Refusal {
        Refusal(reason)
    }
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Refusal {
        Refusal(reason.to_owned())
    }
}

impl NodeCtx<'_> {
    /// The attribute called `name`, if the node sets it.
    pub fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    /// Refuses any attribute outside `known`. Before opset 6, `consumed_inputs` (a hint that
    /// an input may be overwritten in place, which changes no result) is accepted everywhere.
    pub fn known(&self, known: &[&str]) -> Result<(), Refusal> {
        for a in &self.node.attribute {
            if self.opset < 6 && a.name == "consumed_inputs" {
                continue;
            }
            if !known.contains(&a.name.as_str()) {
                return Err(refuse!("attribute \"{}\" is not supported", a.name));
            }
            if !a.ref_attr_name.is_empty() {
                return Err(refuse!("attribute \"{}\" refers to a function attribute", a.name));
            }
        }
        Ok(())
    }

    fn typed(&self, name: &str, want: AttributeType) -> Result<Option<&AttributeProto>, Refusal> {
        match self.attr(name) {
            Some(a) if a.r#type != want as i32 && a.r#type != AttributeType::Undefined as i32 => {
                Err(refuse!("attribute \"{name}\" has the wrong type"))
            }
            other => Ok(other),
        }
    }

    /// An integer attribute, or `default`.
    pub fn int(&self, name: &str, default: i64) -> Result<i64, Refusal> {
        Ok(self.typed(name, AttributeType::Int)?.map_or(default, |a| a.i))
    }

    /// A float attribute, or `default`.
    pub fn float(&self, name: &str, default: f32) -> Result<f32, Refusal> {
        Ok(self.typed(name, AttributeType::Float)?.map_or(default, |a| a.f))
    }

    /// An integer-list attribute, if set.
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, Refusal> {
        Ok(self.typed(name, AttributeType::Ints)?.map(|a| a.ints.clone()))
    }

    /// A float-list attribute, if set.
    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, Refusal> {
        Ok(self.typed(name, AttributeType::Floats)?.map(|a| a.floats.clone()))
    }

    /// A string attribute, if set.
    pub fn string(&self, name: &str) -> Result<Option<String>, Refusal> {
        self.typed(name, AttributeType::String)?
            .map(|a| String::from_utf8(a.s.clone()).map_err(|_| refuse!("attribute \"{name}\" is not UTF-8")))
            .transpose()
    }

    /// Whether input `i` is given.
    pub fn has(&self, i: usize) -> bool {
        self.tys.get(i).is_some_and(Option::is_some)
    }

    /// The type of required input `i`.
    pub fn ty(&self, i: usize) -> Result<Ty, Refusal> {
        self.tys.get(i).copied().flatten().ok_or_else(|| refuse!("input {i} is required"))
    }

    /// The type of input `i`, refused unless `ok` accepts it.
    pub fn ty_where(&self, i: usize, ok: impl Fn(Ty) -> bool, what: &str) -> Result<Ty, Refusal> {
        let t = self.ty(i)?;
        if ok(t) {
            Ok(t)
        } else {
            Err(refuse!("input {i} is {t}; this executor implements {what}"))
        }
    }

    /// Checks that inputs `idx` all have type `t`.
    pub fn same(&self, idx: &[usize], t: Ty) -> Result<(), Refusal> {
        for &i in idx {
            if self.has(i) && self.ty(i)? != t {
                return Err(refuse!("input {i} is {} where input {} is {t}", self.ty(i)?, idx[0]));
            }
        }
        Ok(())
    }

    /// Input `i`'s value, if it is given and constant.
    pub fn konst(&self, i: usize) -> Option<&CTensor> {
        self.consts.get(i).and_then(Option::as_ref)
    }

    /// Number of outputs the node asks for (trailing omitted ones not counted).
    pub fn n_outputs(&self) -> usize {
        self.node.output.iter().rposition(|o| !o.is_empty()).map_or(0, |p| p + 1)
    }

    /// Refuses a `stash_type` (normalizations' statistics type) other than float, the only
    /// one implemented.
    pub fn float_stash(&self) -> Result<(), Refusal> {
        if self.int("stash_type", 1)? != 1 {
            return Err("stash_type other than 1 (float) is not supported".into());
        }
        Ok(())
    }

    /// Refuses when the node asks for more than `n` outputs.
    pub fn max_outputs(&self, n: usize) -> Result<(), Refusal> {
        if self.n_outputs() > n {
            return Err(refuse!("output {} is not supported", n));
        }
        Ok(())
    }
}

/// Input `i` of a kernel call, which the builder made sure is given.
pub fn req<'a>(x: &[Option<&'a CTensor>], i: usize) -> CResult<&'a CTensor> {
    match x.get(i).copied().flatten() {
        Some(t) => Ok(t),
        None => bail!("input {i} is missing"),
    }
}

/// An integer tensor's values as `i64`.
pub fn ints(t: &CTensor) -> CResult<Vec<i64>> {
    match t.dtype() {
        CDType::I64 => values(t),
        CDType::U8 | CDType::U32 | CDType::I16 | CDType::I32 => values(&t.to_dtype(CDType::I64)?),
        other => bail!("expected integers, got {other:?}"),
    }
}

/// `kernel`, built for float, run on float16 or bfloat16 values when `t` is one of them: each
/// input of type `t` is widened to float, and each float output is rounded back to `t` once.
/// The sums of a product or convolution are thus kept in float and rounded once, as ONNX's
/// reference does for float16 (numpy sums half products in float) and for bfloat16.
pub fn via_f32(kernel: Kernel, t: Ty) -> Kernel {
    if !matches!(t, Ty::F16 | Ty::BF16) {
        return kernel;
    }
    let half = t.candle();
    Box::new(move |x| {
        let wide = x
            .iter()
            .map(|v| {
                v.map(|v| if v.dtype() == half { v.to_dtype(CDType::F32) } else { Ok(v.clone()) }).transpose()
            })
            .collect::<CResult<smallvec::SmallVec<[Option<CTensor>; 4]>>>()?;
        let args: smallvec::SmallVec<[Option<&CTensor>; 4]> = wide.iter().map(Option::as_ref).collect();
        kernel(&args)?
            .into_iter()
            .map(|o| if o.dtype() == CDType::F32 { o.to_dtype(half) } else { Ok(o) })
            .collect()
    })
}

/// Wraps the `i16` tensor holding an [`Ty::I8`] value into `i8`'s range (two's complement), so
/// that arithmetic done in 16 bits gives what 8-bit arithmetic gives. Candle's 16-bit arithmetic
/// wraps modulo 2^16, a multiple of 2^8, so the result is exact.
pub fn wrap_i8(t: CTensor) -> CResult<CTensor> {
    if t.dtype() != CDType::I16 {
        bail!("an int8 value is held as {:?}, not i16", t.dtype());
    }
    let v: Vec<i16> = values(&t)?;
    if v.iter().all(|&x| x == i16::from(x as i8)) {
        return Ok(t);
    }
    make(v.into_iter().map(|x| i16::from(x as i8)).collect(), t.dims())
}

/// `kernel`, with every output whose type is [`Ty::I8`] wrapped into `i8`'s range.
pub fn wrapping_i8(kernel: Kernel, out: &[Ty]) -> Kernel {
    let wrap: Vec<bool> = out.iter().map(|&t| t == Ty::I8).collect();
    if !wrap.contains(&true) {
        return kernel;
    }
    Box::new(move |x| {
        kernel(x)?
            .into_iter()
            .enumerate()
            .map(|(j, t)| if wrap.get(j) == Some(&true) { wrap_i8(t) } else { Ok(t) })
            .collect()
    })
}

/// A one-element tensor's value as `f64`.
pub fn scalar_f64(t: &CTensor) -> CResult<f64> {
    if t.elem_count() != 1 {
        bail!("expected one value, got shape {:?}", t.dims());
    }
    let t = t.flatten_all()?.to_dtype(CDType::F64)?;
    Ok(t.to_vec1::<f64>()?[0])
}

/// Normalizes a possibly negative axis against `rank`.
pub fn axis(a: i64, rank: usize) -> CResult<usize> {
    let r = rank as i64;
    if a < -r || a >= r.max(1) && a >= r {
        bail!("axis {a} is out of range for rank {rank}");
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

/// Normalizes a possibly negative index into an axis of size `d` (ONNX's gather and scatter
/// rule), refusing one outside it.
pub fn norm_index(i: i64, d: usize) -> CResult<usize> {
    let d = d as i64;
    let j = if i < 0 { i + d } else { i };
    if !(0..d).contains(&j) {
        bail!("index {i} is out of range for an axis of size {d}");
    }
    Ok(j as usize)
}

/// The numpy-broadcast shape of several shapes.
pub fn broadcast_shape(shapes: &[&[usize]]) -> CResult<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[rank - s.len() + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                bail!("shapes {:?} do not broadcast", shapes);
            }
        }
    }
    Ok(out)
}

/// A kernel that returns one constant.
pub fn constant(t: CTensor) -> Kernel {
    Box::new(move |_| Ok(vec![t.clone()]))
}

/// The registry's definition of `ctx`'s node at the model's opset, or why there is none.
pub fn lookup(domain: &str, op: &str, opset: i64) -> Result<&'static OpDef, Refusal> {
    let registry =
        registry::registry().map_err(|e| format!("the executor's operator registry is broken: {e}"))?;
    match registry.find(domain, op, opset) {
        Lookup::Found(def) => Ok(def),
        Lookup::OtherOpsets(opsets) => Err(refuse!("implemented at opsets {opsets} only")),
        Lookup::Unknown if !domain.is_empty() && domain != "ai.onnx" => {
            Err(refuse!("domain \"{domain}\" is not supported"))
        }
        Lookup::Unknown => Err("this operator is not implemented".into()),
    }
}
