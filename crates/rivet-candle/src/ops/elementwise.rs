//! Element-wise operators: arithmetic with numpy broadcasting, comparisons, logic, bit
//! operations, casts and activations.

use candle_core::{bail, DType as CDType, Result as CResult, Tensor as CTensor};

use super::registry::{OpDef, Registry, RegistryError};
use super::{broadcast_shape, floats, make, req, scalar_f64, values, Built, Kernel, NodeCtx, Refusal};
use crate::kernels::binary::{broadcast_arith, Arith};
use crate::ty::Ty;

/// Broadcasts every tensor to the common shape.
pub fn broadcast_all(ts: &[&CTensor]) -> CResult<Vec<CTensor>> {
    let shapes: Vec<&[usize]> = ts.iter().map(|t| t.dims()).collect();
    let shape = broadcast_shape(&shapes)?;
    ts.iter().map(|t| t.broadcast_as(shape.as_slice())).collect()
}

/// Applies `f` to every element, computed in `f64`, keeping the dtype.
pub fn map_f64(x: &CTensor, f: impl Fn(f64) -> f64) -> CResult<CTensor> {
    let dt = x.dtype();
    let v: Vec<f64> = values(&x.to_dtype(CDType::F64)?)?;
    make(v.into_iter().map(f).collect(), x.dims())?.to_dtype(dt)
}

/// Applies `f` to every element of an integer tensor, computed in `i64`, keeping the dtype.
pub fn map_i64(x: &CTensor, f: impl Fn(i64) -> i64) -> CResult<CTensor> {
    let dt = x.dtype();
    let v: Vec<i64> = super::ints(x)?;
    make(v.into_iter().map(f).collect(), x.dims())?.to_dtype(dt)
}

/// Broadcasts `a` and `b` and combines them in `f64`; the result has `a`'s dtype.
pub fn zip_f64(a: &CTensor, b: &CTensor, f: impl Fn(f64, f64) -> f64) -> CResult<CTensor> {
    let dt = a.dtype();
    let t = broadcast_all(&[a, b])?;
    let av: Vec<f64> = values(&t[0].to_dtype(CDType::F64)?)?;
    let bv: Vec<f64> = values(&t[1].to_dtype(CDType::F64)?)?;
    make(av.into_iter().zip(bv).map(|(x, y)| f(x, y)).collect(), t[0].dims())?.to_dtype(dt)
}

/// Broadcasts `a` and `b` and combines them in `i64`; the result has `a`'s dtype.
pub fn zip_i64(a: &CTensor, b: &CTensor, f: impl Fn(i64, i64) -> CResult<i64>) -> CResult<CTensor> {
    let dt = a.dtype();
    let t = broadcast_all(&[a, b])?;
    let av = super::ints(&t[0])?;
    let bv = super::ints(&t[1])?;
    let out = av.into_iter().zip(bv).map(|(x, y)| f(x, y)).collect::<CResult<Vec<i64>>>()?;
    make(out, t[0].dims())?.to_dtype(dt)
}

fn kernel1(f: impl Fn(&CTensor) -> CResult<CTensor> + Send + Sync + 'static) -> Kernel {
    Box::new(move |x| Ok(vec![f(req(x, 0)?)?]))
}

/// [`kernel1`] for an element-wise map made of Candle's operators, kept to the model's thread
/// count ([`crate::kernels::threads::candle_map`]).
fn map1(f: impl Fn(&CTensor) -> CResult<CTensor> + Send + Sync + 'static) -> Kernel {
    kernel1(move |a| crate::kernels::threads::candle_map(a, &f))
}

fn kernel2(f: impl Fn(&CTensor, &CTensor) -> CResult<CTensor> + Send + Sync + 'static) -> Kernel {
    Box::new(move |x| Ok(vec![f(req(x, 0)?, req(x, 1)?)?]))
}

/// Wraps a value into an integer of `ty`'s width (two's complement), as ONNX integer arithmetic
/// does.
fn wrap(v: i64, ty: Ty) -> i64 {
    match ty {
        Ty::U8 | Ty::Bool => v as u8 as i64,
        Ty::I8 => v as i8 as i64,
        Ty::I16 => v as i16 as i64,
        Ty::I32 => v as i32 as i64,
        Ty::U32 => v as u32 as i64,
        _ => v,
    }
}

/// Cast of `x` (of type `from`) to `to`, with ONNX's rules for booleans.
pub fn cast(x: &CTensor, from: Ty, to: Ty) -> CResult<CTensor> {
    if from == to {
        return Ok(x.clone());
    }
    if to == Ty::Bool {
        return x.ne(&x.zeros_like()?);
    }
    if from.is_float() && to.is_int() {
        // Truncation toward zero; values out of the target's range are undefined in ONNX and
        // saturate here (Rust's `as`). Going through f64 and i64 keeps integers exact.
        let v: Vec<f64> = values(&x.to_dtype(CDType::F64)?)?;
        let i: Vec<i64> = v.into_iter().map(|f| f as i64).collect();
        return make(i.into_iter().map(|v| wrap(v, to)).collect::<Vec<i64>>(), x.dims())?
            .to_dtype(to.candle());
    }
    if from.is_int() && to.is_int() || from == Ty::Bool {
        let v = super::ints(x)?;
        return make(v.into_iter().map(|v| wrap(v, to)).collect::<Vec<i64>>(), x.dims())?
            .to_dtype(to.candle());
    }
    if from.is_int() && to.is_float() {
        let v = super::ints(x)?;
        return make(v.into_iter().map(|v| v as f64).collect::<Vec<f64>>(), x.dims())?.to_dtype(to.candle());
    }
    x.to_dtype(to.candle())
}

fn float_or_signed(t: Ty) -> bool {
    t.is_float() || matches!(t, Ty::I8 | Ty::I16 | Ty::I32 | Ty::I64)
}

/// Float unary operators computed in f64.
fn float_fn(op: &str) -> Option<fn(f64) -> f64> {
    Some(match op {
        "Sin" => f64::sin,
        "Cos" => f64::cos,
        "Tan" => f64::tan,
        "Asin" => f64::asin,
        "Acos" => f64::acos,
        "Atan" => f64::atan,
        "Sinh" => f64::sinh,
        "Cosh" => f64::cosh,
        "Asinh" => f64::asinh,
        "Acosh" => f64::acosh,
        "Atanh" => f64::atanh,
        "Round" => f64::round_ties_even,
        "Softsign" => |x| x / (1.0 + x.abs()),
        "Softplus" => |x| if x > 30.0 { x } else { x.exp().ln_1p() },
        "Mish" => |x| x * (if x > 30.0 { x } else { x.exp().ln_1p() }).tanh(),
        "Log" => f64::ln,
        "Sqrt" => f64::sqrt,
        "Ceil" => f64::ceil,
        "Floor" => f64::floor,
        "Erf" => libm_erf,
        _ => return None,
    })
}

/// The error function, in double precision (Candle's implementation).
/// `erf` of every element, in place, through the CPU's widest vectors: `x·P(x²)/Q(x²)` with
/// `x` clamped to [-4, 4] (beyond, `erf` rounds to ±1 in single precision), `P` and `Q` of
/// degree 5 fitted for Rivet by least squares on the relative error. Within 4e-7 of the exact
/// value relative (7 units in the last place at worst, near |x| = 3.6) over every float; NaN
/// stays NaN, ±∞ gives ±1, -0 gives -0, and no result leaves [-1, 1]. libm's scalar `erff`, which it replaces for float
/// tensors, was a tenth of the bundled encoder's run.
pub(crate) fn erf_f32_in_place(v: &mut [f32]) {
    crate::kernels::wide(ErfF32(v))
}

/// [`erf_f32_in_place`]'s loop, to run through [`crate::kernels::wide`].
struct ErfF32<'a>(&'a mut [f32]);

impl crate::kernels::WideKernel for ErfF32<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        const P: [f32; 6] = [
            std::f32::consts::FRAC_2_SQRT_PI,
            0.189_764_29,
            0.052_646_83,
            0.003_734_997_2,
            0.000_283_599_57,
            2.045_812_2e-6,
        ];
        const Q: [f32; 6] = [1.0, 0.501_507_1, 0.113_828_58, 0.014_906_402, 0.001_154_14, 3.798_396_7e-5];
        for x in self.0.iter_mut() {
            // `clamp` passes NaN through (`min` and `max` would not).
            let c = x.clamp(-4.0, 4.0);
            let t = c * c;
            let p = ((((P[5] * t + P[4]) * t + P[3]) * t + P[2]) * t + P[1]) * t + P[0];
            let q = ((((Q[5] * t + Q[4]) * t + Q[3]) * t + Q[2]) * t + Q[1]) * t + Q[0];
            // Held inside [-1, 1], which the rational function leaves by an ulp near ±4.
            *x = (c * p / q).clamp(-1.0, 1.0);
        }
    }
}

fn libm_erf(x: f64) -> f64 {
    candle_core::cpu::erf::erf_f64(x)
}

/// The family these operators are listed under.
const FAMILY: &str = "element-wise";

/// Registers the element-wise operators.
pub(super) fn register(r: &mut Registry) -> Result<(), RegistryError> {
    r.add_all([
        OpDef::tensor(FAMILY, "Add", build_arithmetic_legacy).until(6),
        OpDef::tensor(FAMILY, "Add", build_arithmetic).since(7),
        OpDef::tensor(FAMILY, "Sub", build_arithmetic_legacy).until(6),
        OpDef::tensor(FAMILY, "Sub", build_arithmetic).since(7),
        OpDef::tensor(FAMILY, "Mul", build_arithmetic_legacy).until(6),
        OpDef::tensor(FAMILY, "Mul", build_arithmetic).since(7),
        OpDef::tensor(FAMILY, "Div", build_arithmetic_legacy).until(6),
        OpDef::tensor(FAMILY, "Div", build_arithmetic).since(7),
        OpDef::tensor(FAMILY, "Pow", build_pow),
        OpDef::tensor(FAMILY, "Mod", build_mod),
        OpDef::tensor(FAMILY, "Max", build_variadic),
        OpDef::tensor(FAMILY, "Min", build_variadic),
        OpDef::tensor(FAMILY, "Sum", build_variadic),
        OpDef::tensor(FAMILY, "Mean", build_variadic),
        OpDef::tensor(FAMILY, "Equal", build_comparison),
        OpDef::tensor(FAMILY, "Less", build_comparison),
        OpDef::tensor(FAMILY, "LessOrEqual", build_comparison),
        OpDef::tensor(FAMILY, "Greater", build_comparison),
        OpDef::tensor(FAMILY, "GreaterOrEqual", build_comparison),
        OpDef::tensor(FAMILY, "And", build_logical),
        OpDef::tensor(FAMILY, "Or", build_logical),
        OpDef::tensor(FAMILY, "Xor", build_logical),
        OpDef::tensor(FAMILY, "Not", build_not),
        OpDef::tensor(FAMILY, "BitwiseAnd", build_bitwise),
        OpDef::tensor(FAMILY, "BitwiseOr", build_bitwise),
        OpDef::tensor(FAMILY, "BitwiseXor", build_bitwise),
        OpDef::tensor(FAMILY, "BitwiseNot", build_bitwise_not),
        OpDef::tensor(FAMILY, "BitShift", build_bit_shift),
        OpDef::tensor(FAMILY, "Where", build_where),
        OpDef::tensor(FAMILY, "IsNaN", build_is_nan),
        OpDef::tensor(FAMILY, "IsInf", build_is_inf),
        OpDef::tensor(FAMILY, "Identity", build_identity),
        OpDef::tensor(FAMILY, "Dropout", build_dropout),
        OpDef::tensor(FAMILY, "Cast", build_cast),
        OpDef::tensor(FAMILY, "CastLike", build_cast),
        OpDef::tensor(FAMILY, "Abs", build_abs_neg_sign),
        OpDef::tensor(FAMILY, "Neg", build_abs_neg_sign),
        OpDef::tensor(FAMILY, "Sign", build_abs_neg_sign),
        OpDef::tensor(FAMILY, "Relu", build_relu),
        OpDef::tensor(FAMILY, "Exp", build_unary_float),
        OpDef::tensor(FAMILY, "Tanh", build_unary_float),
        OpDef::tensor(FAMILY, "Reciprocal", build_unary_float),
        OpDef::tensor(FAMILY, "Sigmoid", build_unary_float),
        OpDef::tensor(FAMILY, "Gelu", build_gelu),
        OpDef::tensor(FAMILY, "LeakyRelu", build_parametric_activation),
        OpDef::tensor(FAMILY, "Elu", build_parametric_activation),
        OpDef::tensor(FAMILY, "Selu", build_parametric_activation),
        OpDef::tensor(FAMILY, "Celu", build_parametric_activation),
        OpDef::tensor(FAMILY, "HardSigmoid", build_parametric_activation),
        OpDef::tensor(FAMILY, "HardSwish", build_parametric_activation),
        OpDef::tensor(FAMILY, "ThresholdedRelu", build_parametric_activation),
        OpDef::tensor(FAMILY, "Shrink", build_parametric_activation),
        OpDef::tensor(FAMILY, "Swish", build_parametric_activation),
        OpDef::tensor(FAMILY, "Clip", build_clip),
        OpDef::tensor(FAMILY, "PRelu", build_prelu_legacy).until(6),
        OpDef::tensor(FAMILY, "PRelu", build_prelu).since(7),
        OpDef::tensor(FAMILY, "Sin", build_float_math),
        OpDef::tensor(FAMILY, "Cos", build_float_math),
        OpDef::tensor(FAMILY, "Tan", build_float_math),
        OpDef::tensor(FAMILY, "Asin", build_float_math),
        OpDef::tensor(FAMILY, "Acos", build_float_math),
        OpDef::tensor(FAMILY, "Atan", build_float_math),
        OpDef::tensor(FAMILY, "Sinh", build_float_math),
        OpDef::tensor(FAMILY, "Cosh", build_float_math),
        OpDef::tensor(FAMILY, "Asinh", build_float_math),
        OpDef::tensor(FAMILY, "Acosh", build_float_math),
        OpDef::tensor(FAMILY, "Atanh", build_float_math),
        OpDef::tensor(FAMILY, "Round", build_float_math),
        OpDef::tensor(FAMILY, "Softsign", build_float_math),
        OpDef::tensor(FAMILY, "Softplus", build_float_math),
        OpDef::tensor(FAMILY, "Mish", build_float_math),
        OpDef::tensor(FAMILY, "Log", build_float_math),
        OpDef::tensor(FAMILY, "Sqrt", build_float_math),
        OpDef::tensor(FAMILY, "Ceil", build_float_math),
        OpDef::tensor(FAMILY, "Floor", build_float_math),
        OpDef::tensor(FAMILY, "Erf", build_float_math),
    ])
}

/// Builds `Add`, `Sub`, `Mul` and `Div` (opset 7 on: numpy broadcasting).
fn build_arithmetic(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[])?;
    let t = ctx.ty_where(0, Ty::is_numeric, "numbers")?;
    ctx.same(&[0, 1], t)?;
    Ok((arithmetic(ctx.node.op_type.as_str(), t), vec![t]))
}

/// Builds `Add`, `Sub`, `Mul` and `Div` at opsets 1 to 6, where B broadcasts to A only when the
/// node sets `broadcast=1`, and then only as one value or as a run of A's dims (A's last dims,
/// or those from `axis`); see [`legacy_broadcast`].
fn build_arithmetic_legacy(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    ctx.known(&["broadcast", "axis"])?;
    let t = if ctx.opset < 6 {
        ctx.ty_where(
            0,
            floats,
            &format!("floats (integer types from opset 6, this model's is {})", ctx.opset),
        )?
    } else {
        ctx.ty_where(0, Ty::is_numeric, "numbers")?
    };
    ctx.same(&[0, 1], t)?;
    let broadcast = ctx.int("broadcast", 0)? != 0;
    // Without broadcast=1, B has A's shape and `axis` says nothing.
    let start = match ctx.attr("axis").filter(|_| broadcast) {
        None => None,
        Some(_) => match ctx.int("axis", 0)? {
            a if a < 0 => {
                return Err(refuse!("axis {a} is negative; before opset 7 it counts from A's first dim"))
            }
            a => Some(a as usize),
        },
    };
    let inner = arithmetic(op, t);
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let b = legacy_broadcast(a.dims(), req(x, 1)?, broadcast, start)?;
        inner(&[Some(a), Some(&b)])
    });
    Ok((k, vec![t]))
}

/// B laid out to broadcast to A's shape by the rule of opsets 1 to 6: without `broadcast`, B
/// has A's shape; with it, B is one value, or its dims equal a run of A's dims that starts at
/// `start` (A's last dims when `None`), and it is given A's rank with ones around that run.
/// Dims of 1 do not stretch (`(1, 5)` does not broadcast to `(4, 5)`).
fn legacy_broadcast(a: &[usize], b: &CTensor, broadcast: bool, start: Option<usize>) -> CResult<CTensor> {
    if !broadcast {
        if b.dims() != a {
            bail!("B's shape {:?} is not A's {a:?}, and the node does not set broadcast=1", b.dims());
        }
        return Ok(b.clone());
    }
    if b.elem_count() == 1 {
        return b.reshape(());
    }
    let n = b.rank();
    let start = match start {
        Some(s) => s,
        None => a.len().checked_sub(n).unwrap_or(usize::MAX),
    };
    if start.checked_add(n).is_none_or(|end| end > a.len() || a[start..end] != *b.dims()) {
        bail!(
            "B's shape {:?} is not a run of A's dims {a:?} starting at dim {start} (before opset 7, B \
             broadcasts as one value or as a run of A's dims)",
            b.dims()
        );
    }
    let mut shape = vec![1; a.len()];
    shape[start..start + n].copy_from_slice(b.dims());
    b.reshape(shape)
}

/// The kernel of `Add`, `Sub`, `Mul` or `Div` on type `t`, broadcasting as numpy does.
pub(super) fn arithmetic(op: &str, t: Ty) -> Kernel {
    match (op, t.is_float()) {
        ("Add", true) => float_arith(Arith::Add, CTensor::broadcast_add),
        ("Sub", true) => float_arith(Arith::Sub, CTensor::broadcast_sub),
        ("Mul", true) => float_arith(Arith::Mul, CTensor::broadcast_mul),
        ("Div", true) => float_arith(Arith::Div, CTensor::broadcast_div),
        ("Add", false) => kernel2(move |a, b| zip_i64(a, b, |x, y| Ok(wrap(x.wrapping_add(y), t)))),
        ("Sub", false) => kernel2(move |a, b| zip_i64(a, b, |x, y| Ok(wrap(x.wrapping_sub(y), t)))),
        ("Mul", false) => kernel2(move |a, b| zip_i64(a, b, |x, y| Ok(wrap(x.wrapping_mul(y), t)))),
        _ => kernel2(move |a, b| {
            zip_i64(a, b, |x, y| match x.checked_div(y) {
                Some(q) => Ok(wrap(q, t)),
                None => bail!("integer division by zero"),
            })
        }),
    }
}

/// A float operator: Rivet's broadcasting loop for float32 and float64, Candle's `general` for
/// the half types.
fn float_arith(op: Arith, general: fn(&CTensor, &CTensor) -> CResult<CTensor>) -> Kernel {
    kernel2(move |a, b| match broadcast_arith(a, b, op)? {
        Some(y) => Ok(y),
        None => general(a, b),
    })
}

/// Builds `Pow`.
fn build_pow(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[])?;
    let t = ctx.ty_where(0, |t| t.is_float() || matches!(t, Ty::I32 | Ty::I64), "float, int32, int64")?;
    let e = ctx.ty_where(1, Ty::is_numeric, "numbers")?;
    if ctx.opset < 12 && e != t {
        return Err(refuse!("exponent is {e}; before opset 12 it must match the base ({t})"));
    }
    let k = if t.is_float() {
        kernel2(|a, b| {
            let b = b.to_dtype(CDType::F64)?;
            zip_f64(a, &b, f64::powf)
        })
    } else {
        kernel2(move |a, b| {
            if e.is_float() {
                let af = a.to_dtype(CDType::F64)?;
                let bf = b.to_dtype(CDType::F64)?;
                let r = zip_f64(&af, &bf, f64::powf)?;
                cast(&r, Ty::F64, t)
            } else {
                zip_i64(a, b, |x, y| {
                    Ok(if y >= 0 {
                        wrap(x.wrapping_pow(y.min(u32::MAX as i64) as u32), t)
                    } else {
                        (x as f64).powf(y as f64) as i64
                    })
                })
            }
        })
    };
    Ok((k, vec![t]))
}

/// Builds `Mod`.
fn build_mod(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["fmod"])?;
    let t = ctx.ty_where(0, Ty::is_numeric, "numbers")?;
    ctx.same(&[0, 1], t)?;
    let fmod = ctx.int("fmod", 0)? != 0;
    let k = if t.is_float() && !fmod {
        // numpy's mod: the sign of the divisor.
        kernel2(|a, b| {
            zip_f64(a, b, |x, y| {
                let r = x % y;
                if r != 0.0 && (r < 0.0) != (y < 0.0) {
                    r + y
                } else {
                    r
                }
            })
        })
    } else if t.is_float() {
        kernel2(|a, b| zip_f64(a, b, |x, y| x % y))
    } else if fmod {
        kernel2(move |a, b| {
            zip_i64(a, b, |x, y| match x.checked_rem(y) {
                Some(r) => Ok(r),
                None => bail!("integer modulo by zero"),
            })
        })
    } else {
        kernel2(move |a, b| {
            zip_i64(a, b, |x, y| match x.checked_rem(y) {
                Some(r) if r != 0 && (r < 0) != (y < 0) => Ok(r + y),
                Some(r) => Ok(r),
                None => bail!("integer modulo by zero"),
            })
        })
    };
    Ok((k, vec![t]))
}

/// Builds `Max`, `Min`, `Sum` and `Mean`.
fn build_variadic(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    ctx.known(&[])?;
    if ctx.node.input.is_empty() {
        return Err("no inputs".into());
    }
    let t = ctx.ty_where(0, if op == "Sum" || op == "Mean" { floats } else { Ty::is_numeric }, "numbers")?;
    let n = ctx.node.input.len();
    let idx: Vec<usize> = (0..n).collect();
    ctx.same(&idx, t)?;
    if op == "Max" || op == "Min" {
        if ctx.opset < 12 && !t.is_float() {
            return Err(refuse!("{op} on {t} needs opset 12"));
        }
        let max = op == "Max";
        let k: Kernel = Box::new(move |x| {
            let mut acc = req(x, 0)?.clone();
            for i in 1..x.len() {
                let b = req(x, i)?;
                acc = if t.is_float() {
                    zip_f64(&acc, b, |p, q| {
                        if p.is_nan() || q.is_nan() {
                            f64::NAN
                        } else if max {
                            p.max(q)
                        } else {
                            p.min(q)
                        }
                    })?
                } else {
                    zip_i64(&acc, b, |p, q| Ok(if max { p.max(q) } else { p.min(q) }))?
                };
            }
            Ok(vec![acc])
        });
        Ok((k, vec![t]))
    } else {
        let mean = op == "Mean";
        let k: Kernel = Box::new(move |x| {
            let mut acc = req(x, 0)?.to_dtype(CDType::F64)?;
            for i in 1..x.len() {
                acc = acc.broadcast_add(&req(x, i)?.to_dtype(CDType::F64)?)?;
            }
            if mean {
                acc = (acc / x.len() as f64)?;
            }
            Ok(vec![acc.to_dtype(t.candle())?])
        });
        Ok((k, vec![t]))
    }
}

/// Builds `Equal`, `Less`, `LessOrEqual`, `Greater` and `GreaterOrEqual`.
fn build_comparison(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    ctx.known(&[])?;
    let t = ctx.ty(0)?;
    if op != "Equal" && t == Ty::Bool {
        return Err(refuse!("{op} on booleans is not allowed"));
    }
    ctx.same(&[0, 1], t)?;
    let k = match op {
        "Equal" => kernel2(|a, b| a.broadcast_eq(b)),
        "Less" => kernel2(|a, b| a.broadcast_lt(b)),
        "LessOrEqual" => kernel2(|a, b| a.broadcast_le(b)),
        "Greater" => kernel2(|a, b| a.broadcast_gt(b)),
        _ => kernel2(|a, b| a.broadcast_ge(b)),
    };
    Ok((k, vec![Ty::Bool]))
}

/// Builds `And`, `Or` and `Xor`.
fn build_logical(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    ctx.known(&[])?;
    ctx.ty_where(0, |t| t == Ty::Bool, "bool")?;
    ctx.same(&[0, 1], Ty::Bool)?;
    let k = match op {
        "And" => kernel2(|a, b| a.broadcast_mul(b)),
        "Or" => kernel2(|a, b| a.broadcast_maximum(b)),
        _ => kernel2(|a, b| a.broadcast_ne(b)),
    };
    Ok((k, vec![Ty::Bool]))
}

/// Builds `Not`.
fn build_not(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[])?;
    ctx.ty_where(0, |t| t == Ty::Bool, "bool")?;
    Ok((kernel1(|a| a.eq(&a.zeros_like()?)), vec![Ty::Bool]))
}

/// Builds `BitwiseAnd`, `BitwiseOr` and `BitwiseXor`.
fn build_bitwise(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    ctx.known(&[])?;
    let t = ctx.ty_where(0, Ty::is_int, "integers")?;
    ctx.same(&[0, 1], t)?;
    let k = match op {
        "BitwiseAnd" => kernel2(|a, b| zip_i64(a, b, |x, y| Ok(x & y))),
        "BitwiseOr" => kernel2(|a, b| zip_i64(a, b, |x, y| Ok(x | y))),
        _ => kernel2(|a, b| zip_i64(a, b, |x, y| Ok(x ^ y))),
    };
    Ok((k, vec![t]))
}

/// Builds `BitwiseNot`.
fn build_bitwise_not(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[])?;
    let t = ctx.ty_where(0, Ty::is_int, "integers")?;
    Ok((kernel1(move |a| map_i64(a, |x| wrap(!x, t))), vec![t]))
}

/// Builds `BitShift`.
fn build_bit_shift(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["direction"])?;
    let t = ctx.ty_where(0, Ty::is_int, "integers")?;
    ctx.same(&[0, 1], t)?;
    let left = match ctx.string("direction")?.as_deref() {
        Some("LEFT") => true,
        Some("RIGHT") => false,
        other => return Err(refuse!("direction {other:?} is not LEFT or RIGHT")),
    };
    let bits = match t {
        Ty::U8 | Ty::I8 => 8,
        Ty::I16 => 16,
        Ty::I32 | Ty::U32 => 32,
        _ => 64,
    };
    let k = kernel2(move |a, b| {
        zip_i64(a, b, |x, y| {
            // A shift past the width (or negative) shifts everything out.
            Ok(if y < 0 || y >= bits {
                if !left && x < 0 {
                    -1
                } else {
                    0
                }
            } else if left {
                wrap(x.wrapping_shl(y as u32), t)
            } else {
                x >> y
            })
        })
    });
    Ok((k, vec![t]))
}

/// Builds `Where`.
fn build_where(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[])?;
    ctx.ty_where(0, |t| t == Ty::Bool, "a bool condition")?;
    let t = ctx.ty(1)?;
    ctx.same(&[1, 2], t)?;
    let k: Kernel = Box::new(|x| {
        let b = broadcast_all(&[req(x, 0)?, req(x, 1)?, req(x, 2)?])?;
        Ok(vec![b[0].where_cond(&b[1].contiguous()?, &b[2].contiguous()?)?])
    });
    Ok((k, vec![t]))
}

/// Builds `IsNaN`.
fn build_is_nan(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[])?;
    ctx.ty_where(0, floats, "floats")?;
    Ok((kernel1(|a| a.ne(a)), vec![Ty::Bool]))
}

/// Builds `IsInf`.
fn build_is_inf(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["detect_negative", "detect_positive"])?;
    ctx.ty_where(0, floats, "floats")?;
    let neg = ctx.int("detect_negative", 1)? != 0;
    let pos = ctx.int("detect_positive", 1)? != 0;
    let k = kernel1(move |a| {
        let v: Vec<f64> = values(&a.to_dtype(CDType::F64)?)?;
        let o: Vec<u8> =
            v.into_iter().map(|f| u8::from(f.is_infinite() && (f > 0.0 && pos || f < 0.0 && neg))).collect();
        make(o, a.dims())
    });
    Ok((k, vec![Ty::Bool]))
}

/// Builds `Identity`.
fn build_identity(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[])?;
    let t = ctx.ty(0)?;
    Ok((kernel1(|a| Ok(a.clone())), vec![t]))
}

/// Builds `Dropout`.
fn build_dropout(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    // Inference: the input unchanged, and a mask of ones.
    ctx.known(&["seed", "ratio", "is_test"])?;
    let t = ctx.ty_where(0, floats, "floats")?;
    if ctx.has(2) {
        match ctx.konst(2) {
            Some(c) if scalar_f64(c).map_err(|e| e.to_string())? == 0.0 => {}
            _ => return Err("training_mode must be a constant false".into()),
        }
    }
    if ctx.opset < 7 && ctx.int("is_test", 0)? == 0 {
        return Err("is_test=0 (training) is not supported".into());
    }
    let k: Kernel = Box::new(|x| {
        let a = req(x, 0)?;
        Ok(vec![a.clone(), a.ones_like()?.to_dtype(CDType::U8)?])
    });
    Ok((k, vec![t, Ty::Bool]))
}

/// Builds `Cast` and `CastLike`.
fn build_cast(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    ctx.known(&["to", "saturate"])?;
    let from = ctx.ty(0)?;
    let to = if op == "Cast" {
        let code = ctx.int("to", 0)? as i32;
        Ty::from_onnx(code).ok_or_else(|| refuse!("cast to {} is not supported", Ty::onnx_name(code)))?
    } else {
        ctx.ty(1)?
    };
    Ok((kernel1(move |a| cast(a, from, to)), vec![to]))
}

/// Builds `Abs`, `Neg` and `Sign`.
fn build_abs_neg_sign(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    ctx.known(&[])?;
    let t = ctx.ty_where(0, if op == "Neg" { float_or_signed } else { Ty::is_numeric }, "numbers")?;
    let k = match (op, t.is_float()) {
        ("Abs", true) => map1(|a| a.abs()),
        ("Neg", true) => map1(|a| a.neg()),
        ("Sign", true) => kernel1(|a| {
            map_f64(a, |v| {
                if v > 0.0 {
                    1.0
                } else if v < 0.0 {
                    -1.0
                } else {
                    v
                }
            })
        }),
        ("Abs", false) => kernel1(move |a| map_i64(a, |v| wrap(v.wrapping_abs(), t))),
        ("Neg", false) => kernel1(move |a| map_i64(a, |v| wrap(v.wrapping_neg(), t))),
        _ => kernel1(|a| map_i64(a, i64::signum)),
    };
    Ok((k, vec![t]))
}

/// `max(x, 0)` of a float tensor: the executor's own loop for float32 and float64 (NaN stays
/// NaN, on the calling thread), Candle's for half types.
pub(crate) fn relu(x: &CTensor) -> CResult<CTensor> {
    match crate::kernels::conv::relu(x)? {
        Some(y) => Ok(y),
        None => x.relu(),
    }
}

/// Builds `Relu`.
fn build_relu(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let _floats = |t: Ty| t.is_float();
    ctx.known(&[])?;
    let t = ctx.ty_where(0, float_or_signed, "floats and signed integers")?;
    let k = if t.is_float() { kernel1(relu) } else { kernel1(|a| map_i64(a, |v| v.max(0))) };
    Ok((k, vec![t]))
}

/// Builds `Exp`, `Tanh`, `Reciprocal` and `Sigmoid`.
fn build_unary_float(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    ctx.known(&[])?;
    let t = ctx.ty_where(0, floats, "floats")?;
    let k = match op {
        "Exp" => map1(|a| a.exp()),
        "Tanh" => map1(|a| a.tanh()),
        "Reciprocal" => map1(|a| a.recip()),
        _ => map1(|a| {
            if a.dtype() == CDType::F32 {
                a.neg()?.exp()?.affine(1.0, 1.0)?.recip()
            } else {
                map_f64(a, |v| 1.0 / (1.0 + (-v).exp()))
            }
        }),
    };
    Ok((k, vec![t]))
}

/// Builds `Gelu`.
fn build_gelu(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["approximate"])?;
    let t = ctx.ty_where(0, floats, "floats")?;
    let k = match ctx.string("approximate")?.as_deref() {
        None | Some("none") => map1(|a| a.gelu_erf()),
        Some("tanh") => kernel1(|a| {
            map_f64(a, |x| {
                0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
            })
        }),
        Some(other) => return Err(refuse!("approximate=\"{other}\" is not none or tanh")),
    };
    Ok((k, vec![t]))
}

/// Builds `LeakyRelu`, `Elu`, `Selu`, `Celu`, `HardSigmoid`, `HardSwish`, `ThresholdedRelu`, `Shrink` and `Swish`.
fn build_parametric_activation(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    let t = ctx.ty_where(0, floats, "floats")?;
    let f: Box<dyn Fn(f64) -> f64 + Send + Sync> = match op {
        "LeakyRelu" => {
            ctx.known(&["alpha"])?;
            let a = ctx.float("alpha", 0.01)? as f64;
            Box::new(move |x| if x < 0.0 { a * x } else { x })
        }
        "Elu" => {
            ctx.known(&["alpha"])?;
            let a = ctx.float("alpha", 1.0)? as f64;
            Box::new(move |x| if x < 0.0 { a * x.exp_m1() } else { x })
        }
        "Selu" => {
            ctx.known(&["alpha", "gamma"])?;
            let a = ctx.float("alpha", 1.673_263_2)? as f64;
            let g = ctx.float("gamma", 1.050_701)? as f64;
            Box::new(move |x| if x <= 0.0 { g * (a * x.exp() - a) } else { g * x })
        }
        "Celu" => {
            ctx.known(&["alpha"])?;
            let a = ctx.float("alpha", 1.0)? as f64;
            Box::new(move |x| x.max(0.0) + (a * ((x / a).exp() - 1.0)).min(0.0))
        }
        "HardSigmoid" => {
            ctx.known(&["alpha", "beta"])?;
            let a = ctx.float("alpha", 0.2)? as f64;
            let b = ctx.float("beta", 0.5)? as f64;
            Box::new(move |x| (a * x + b).clamp(0.0, 1.0))
        }
        "Swish" => {
            ctx.known(&["alpha"])?;
            let a = ctx.float("alpha", 1.0)? as f64;
            Box::new(move |x| x / (1.0 + (-a * x).exp()))
        }
        "HardSwish" => {
            ctx.known(&[])?;
            Box::new(|x| x * (x / 6.0 + 0.5).clamp(0.0, 1.0))
        }
        "ThresholdedRelu" => {
            ctx.known(&["alpha"])?;
            let a = ctx.float("alpha", 1.0)? as f64;
            Box::new(move |x| if x > a { x } else { 0.0 })
        }
        _ => {
            ctx.known(&["bias", "lambd"])?;
            let b = ctx.float("bias", 0.0)? as f64;
            let l = ctx.float("lambd", 0.5)? as f64;
            Box::new(move |x| {
                if x < -l {
                    x + b
                } else if x > l {
                    x - b
                } else {
                    0.0
                }
            })
        }
    };
    Ok((kernel1(move |a| map_f64(a, &f)), vec![t]))
}

/// Builds `Clip`.
fn build_clip(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let t = ctx.ty_where(0, Ty::is_numeric, "numbers")?;
    if ctx.opset < 11 {
        ctx.known(&["min", "max"])?;
        let lo = ctx.float("min", f32::NEG_INFINITY)? as f64;
        let hi = ctx.float("max", f32::INFINITY)? as f64;
        Ok((kernel1(move |a| map_f64(a, |v| clip(v, lo, hi))), vec![t]))
    } else {
        ctx.known(&[])?;
        ctx.same(&[0, 1, 2], t)?;
        let k: Kernel = Box::new(move |x| {
            let a = req(x, 0)?;
            let bound = |i: usize, d: f64| -> CResult<f64> {
                match x.get(i).copied().flatten() {
                    Some(b) => scalar_f64(b),
                    None => Ok(d),
                }
            };
            let (lo, hi) = (bound(1, f64::NEG_INFINITY)?, bound(2, f64::INFINITY)?);
            if t.is_float() {
                Ok(vec![map_f64(a, |v| clip(v, lo, hi))?])
            } else {
                let (lo, hi) = (
                    x.get(1).copied().flatten().map(|b| super::ints(b).map(|v| v[0])).transpose()?,
                    x.get(2).copied().flatten().map(|b| super::ints(b).map(|v| v[0])).transpose()?,
                );
                Ok(vec![map_i64(a, |v| {
                    let v = lo.map_or(v, |l| v.max(l));
                    hi.map_or(v, |h| v.min(h))
                })?])
            }
        });
        Ok((k, vec![t]))
    }
}

/// Builds `PRelu`.
/// Builds `PRelu` at opsets 1 to 6, where the slope is one value for all channels or one per
/// channel (X's dim 1): a 1-D slope as long as dim 1 applies along it. Any other slope
/// broadcasts as numpy does, as in ONNX's reference evaluator.
fn build_prelu_legacy(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[])?;
    let t = ctx.ty_where(0, floats, "floats")?;
    ctx.same(&[0, 1], t)?;
    let k = kernel2(|a, s| {
        let s = match (a.dims(), s.dims()) {
            ([_, c, ..], [n]) if n == c && a.rank() > 2 => {
                let mut shape = vec![1; a.rank()];
                shape[1] = *n;
                s.reshape(shape)?
            }
            _ => s.clone(),
        };
        let shape = broadcast_shape(&[a.dims(), s.dims()])?;
        if shape != a.dims() {
            bail!(
                "slope of shape {:?} is neither one value, one per channel (dim 1 of X) nor broadcastable \
                 to X of shape {:?}",
                s.dims(),
                a.dims()
            );
        }
        zip_f64(a, &s, |x, s| if x < 0.0 { s * x } else { x })
    });
    Ok((k, vec![t]))
}

/// Builds `PRelu` (opset 7 on: the slope broadcasts to X as numpy does).
fn build_prelu(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[])?;
    let t = ctx.ty_where(0, floats, "floats")?;
    ctx.same(&[0, 1], t)?;
    let k = kernel2(|a, s| {
        let shape = broadcast_shape(&[a.dims(), s.dims()])?;
        if shape != a.dims() {
            bail!("slope of shape {:?} does not broadcast to X of shape {:?}", s.dims(), a.dims());
        }
        zip_f64(a, s, |x, s| if x < 0.0 { s * x } else { x })
    });
    Ok((k, vec![t]))
}

/// Builds the float functions of one variable (those [`float_fn`] knows).
fn build_float_math(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    let Some(f) = float_fn(op) else { return Err(refuse!("{op} is not a float function")) };
    ctx.known(&[])?;
    let t = ctx.ty_where(0, floats, "floats")?;
    let k = match op {
        "Sqrt" => map1(|a| if a.dtype() == CDType::F32 { a.sqrt() } else { map_f64(a, f64::sqrt) }),
        "Log" => map1(|a| if a.dtype() == CDType::F32 { a.log() } else { map_f64(a, f64::ln) }),
        "Erf" => kernel1(|a| {
            if a.dtype() == CDType::F32 {
                let mut v: Vec<f32> = values(a)?;
                erf_f32_in_place(&mut v);
                make(v, a.dims())
            } else {
                map_f64(a, libm_erf)
            }
        }),
        _ => kernel1(move |a| map_f64(a, f)),
    };
    Ok((k, vec![t]))
}

/// `min(max(v, lo), hi)`, NaN kept.
fn clip(v: f64, lo: f64, hi: f64) -> f64 {
    let v = if v < lo { lo } else { v };
    if v > hi {
        hi
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_erf_is_within_its_documented_bound_of_the_exact_value() {
        // Every 97th float from 1e-30 to 10, both signs, plus the edges.
        let mut xs: Vec<f32> = Vec::new();
        let mut bits = 1e-30f32.to_bits();
        while f32::from_bits(bits) < 10.0 {
            let x = f32::from_bits(bits);
            xs.extend([x, -x]);
            bits += 97;
        }
        xs.extend([0.0, -0.0, 4.0, -4.0, 3.6, 1e-40, f32::INFINITY, f32::NEG_INFINITY, f32::MAX]);
        let mut got = xs.clone();
        erf_f32_in_place(&mut got);
        let mut worst = 0.0f64;
        for (&x, &g) in xs.iter().zip(&got) {
            let want = libm_erf(f64::from(x));
            let err = (f64::from(g) - want).abs();
            let rel = err / want.abs().max(f64::MIN_POSITIVE);
            // Subnormal results hold fewer bits: there, within one of their steps (1.4e-45).
            let ok = rel <= 4.2e-7 || (want.abs() < f64::from(f32::MIN_POSITIVE) && err <= 1.5e-45);
            assert!(ok, "erf({x:e}) = {g:e}, exact {want:e}, relative error {rel:e}");
            if want.abs() >= f64::from(f32::MIN_POSITIVE) {
                worst = worst.max(rel);
            }
        }
        assert!(worst > 1e-8, "the comparison ran ({worst:e})");
        let mut edge = [f32::NAN, -0.0, 0.0, f32::INFINITY, f32::NEG_INFINITY];
        erf_f32_in_place(&mut edge);
        assert!(edge[0].is_nan());
        assert!(edge[1] == 0.0 && edge[1].is_sign_negative());
        assert!(edge[2] == 0.0 && edge[2].is_sign_positive());
        assert_eq!(&edge[3..], &[1.0, -1.0]);
    }
}
