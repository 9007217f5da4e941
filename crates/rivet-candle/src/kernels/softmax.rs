//! Softmax, LogSoftmax and Hardmax along an axis, with a vectorizable `exp`, and the
//! half-width variants that round each step as ONNX's reference does.

use super::{nan_max, strides};
use candle_core::{DType as CDType, Result as CResult, Tensor as CTensor};

/// Softmax, log-softmax or hardmax of `x` along `dim`.
pub(crate) fn softmax(x: &CTensor, dim: usize, kind: &str) -> CResult<CTensor> {
    if kind == "Hardmax" {
        let v: Vec<f64> = super::values(&x.to_dtype(CDType::F64)?)?;
        let d = x.dims()[dim];
        let st = strides(x.dims())[dim];
        let mut o = vec![0f64; v.len()];
        for base in 0..v.len() {
            if !(base / st).is_multiple_of(d) {
                continue;
            }
            let mut best = 0;
            for i in 1..d {
                if v[base + i * st] > v[base + best * st] {
                    best = i;
                }
            }
            o[base + best * st] = 1.0;
        }
        return super::make(o, x.dims())?.to_dtype(x.dtype());
    }
    let log = kind == "LogSoftmax";
    if x.dtype() == CDType::F64 {
        let mut v: Vec<f64> = super::values(x)?;
        crate::kernels::wide(SoftmaxRows { v: &mut v, dims: x.dims(), dim, log });
        return super::make(v, x.dims());
    }
    let mut v: Vec<f32> = super::values(&x.to_dtype(CDType::F32)?)?;
    match (x.dtype(), log) {
        (CDType::F16, false) => {
            // numpy sums a half row in float when it is contiguous, else one rounded addition
            // at a time.
            let strided = x.dims()[dim + 1..].iter().product::<usize>() != 1;
            softmax_half(&mut v, x.dims(), dim, |v| half::f16::from_f32(v).to_f32(), strided)
        }
        (CDType::BF16, false) => {
            softmax_half(&mut v, x.dims(), dim, |v| half::bf16::from_f32(v).to_f32(), true)
        }
        _ => crate::kernels::wide(SoftmaxRows { v: &mut v, dims: x.dims(), dim, log }),
    }
    super::make(v, x.dims())?.to_dtype(x.dtype())
}

/// Softmax of float16 or bfloat16 values held as floats (`round` rounds a float to the type),
/// rounded where ONNX's reference rounds: `x - max`, each exponential, the row's sum and each
/// quotient. The sum is kept in float and rounded once, or with `sum_in_type` rounded after
/// each addition, in order: numpy sums a contiguous float16 row in float, and reduces other
/// float16 rows and ml_dtypes' bfloat16 one rounded addition at a time.
pub(crate) fn softmax_half(
    v: &mut [f32],
    dims: &[usize],
    dim: usize,
    round: fn(f32) -> f32,
    sum_in_type: bool,
) {
    let d = dims[dim];
    let inner: usize = dims[dim + 1..].iter().product();
    let outer: usize = dims[..dim].iter().product();
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| o * d * inner + i + j * inner;
            let max = (0..d).map(|j| v[at(j)]).fold(f32::NEG_INFINITY, |m, x| {
                if x.is_nan() || m.is_nan() {
                    f32::NAN
                } else {
                    m.max(x)
                }
            });
            let mut sum = 0.0f32;
            for j in 0..d {
                let e = round(round(v[at(j)] - max).exp());
                v[at(j)] = e;
                sum = if sum_in_type { round(sum + e) } else { sum + e };
            }
            let sum = round(sum);
            for j in 0..d {
                v[at(j)] = round(v[at(j)] / sum);
            }
        }
    }
}

/// Element types softmax runs in, with the exponential it uses.
pub(crate) trait SoftmaxElem:
    candle_core::WithDType + num_traits::Float + std::ops::MulAssign + std::ops::AddAssign
{
    /// `e^x` for softmax's arguments (`x <= 0` after the row maximum is subtracted).
    fn softmax_exp(x: Self) -> Self;
}

impl SoftmaxElem for f64 {
    #[inline(always)]
    fn softmax_exp(x: f64) -> f64 {
        x.exp()
    }
}

impl SoftmaxElem for f32 {
    #[inline(always)]
    fn softmax_exp(x: f32) -> f32 {
        exp_f32(x)
    }
}

/// `e^x` in f32 without branches, so that loops over it vectorize: Cody-Waite reduction by
/// ln 2 and Cephes' degree-6 polynomial (within one ulp of the exact value for normal results).
/// Results below e^-86.9 (about 1.8e-38, near the smallest normal f32) are flushed to 0;
/// x > 88.72 gives infinity; NaN stays NaN.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const LOW: f32 = -86.9;
    const HIGH: f32 = 88.72;
    // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(LOW, HIGH);
    let shifted = xc * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // `shifted`'s low mantissa bits hold n, in [-125, 128]: 2^(n-1)'s exponent field, in
    // [1, 254], without a float-to-integer conversion (which would not vectorize); times 2.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let half_scale = f32::from_bits(n_bits.wrapping_add(126) << 23);
    let y = (e + e) * half_scale;
    let y = if x > HIGH { f32::INFINITY } else { y };
    if x < LOW {
        0.0
    } else {
        y
    }
}

/// Softmax (or log-softmax) of every line of `v` along `dim`, in place: contiguous lines (the
/// last axis) in place, others through a copy.
/// [`softmax_rows`]'s arguments, to run it through [`crate::kernels::wide`].
pub(crate) struct SoftmaxRows<'a, T> {
    pub(crate) v: &'a mut [T],
    pub(crate) dims: &'a [usize],
    pub(crate) dim: usize,
    pub(crate) log: bool,
}

impl<T: SoftmaxElem> crate::kernels::WideKernel for SoftmaxRows<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        softmax_rows(self.v, self.dims, self.dim, self.log)
    }
}

// Plain `for` loops in these two, not `for_each` or `fold`: the adaptors are not always
// inlined, and what is not inlined into `wide`'s copies runs 4 floats at a time.
#[inline(always)]
pub(crate) fn softmax_rows<T: SoftmaxElem>(v: &mut [T], dims: &[usize], dim: usize, log: bool) {
    let d = dims[dim];
    let inner: usize = dims[dim + 1..].iter().product();
    let outer: usize = dims[..dim].iter().product();
    if d == 0 {
        return;
    }
    if inner == 1 && !log {
        softmax_contiguous(v, d);
        return;
    }
    if inner == 1 {
        for line in v.chunks_exact_mut(d) {
            softmax_line(line, log);
        }
        return;
    }
    let mut line = vec![T::zero(); d];
    for o in 0..outer {
        for i in 0..inner {
            let base = o * d * inner + i;
            for (j, l) in line.iter_mut().enumerate() {
                *l = v[base + j * inner];
            }
            softmax_line(&mut line, log);
            for (j, l) in line.iter().enumerate() {
                v[base + j * inner] = *l;
            }
        }
    }
}

/// The most lines [`softmax_contiguous`] takes through each step together.
const BLOCK_LINES: usize = 64;

/// Softmax of each contiguous line of `d` values in `v`, in place: what [`softmax_line`]
/// computes, line by line the same operations in the same order (so the same bits), but in
/// blocks of short lines one step at a time (every line's maximum, every difference from it,
/// every exponential, every sum, every quotient), so that the lines' steps overlap. One line
/// at a time, each step waits for the step before on the same few values: attention's lines
/// of 24 values took about 48 ns each that way, and 38 ns in blocks.
#[inline(always)]
fn softmax_contiguous<T: SoftmaxElem>(v: &mut [T], d: usize) {
    let lines = (2048 / d).clamp(1, BLOCK_LINES);
    let mut per_line = [T::zero(); BLOCK_LINES];
    for block in v.chunks_mut(d * lines) {
        for (m, line) in per_line.iter_mut().zip(block.chunks_exact(d)) {
            *m = line_max(line);
        }
        for (&m, line) in per_line.iter().zip(block.chunks_exact_mut(d)) {
            map_in_lanes(line, |l| l - m);
        }
        for l in block.iter_mut() {
            *l = T::softmax_exp(*l);
        }
        for (inv, line) in per_line.iter_mut().zip(block.chunks_exact(d)) {
            *inv = T::one() / line_sum(line);
        }
        for (&inv, line) in per_line.iter().zip(block.chunks_exact_mut(d)) {
            map_in_lanes(line, |l| l * inv);
        }
    }
}

/// `f` on each value of `line`, in place, in chunks of [`LANES`] and then the rest: a short
/// line's loop runs as whole vectors.
#[inline(always)]
fn map_in_lanes<T: Copy>(line: &mut [T], f: impl Fn(T) -> T) {
    let mut chunks = line.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for l in chunk {
            *l = f(*l);
        }
    }
    for l in chunks.into_remainder() {
        *l = f(*l);
    }
}

/// Softmax (or log-softmax) of one line, in place.
#[inline(always)]
pub(crate) fn softmax_line<T: SoftmaxElem>(line: &mut [T], log: bool) {
    let m = line_max(line);
    if log {
        let mut sum = T::zero();
        for &l in line.iter() {
            sum += (l - m).exp();
        }
        let ls = sum.ln();
        for l in line.iter_mut() {
            *l = (*l - m) - ls;
        }
        return;
    }
    for l in line.iter_mut() {
        *l = T::softmax_exp(*l - m);
    }
    let inv = T::one() / line_sum(line);
    for l in line.iter_mut() {
        *l *= inv;
    }
}

/// Lanes of the reductions below: independent chains that hide the adder's latency and fill
/// an AVX2 register of f32, and few enough that folding them costs little on attention's short
/// rows (16 was slower than 8 on 24-token rows).
pub(crate) const LANES: usize = 8;

/// The largest value of `line` (NaN if any is NaN, -inf if empty), over [`LANES`] running
/// maxima: the same answer as one running maximum, without its chain of dependent compares.
#[inline(always)]
pub(crate) fn line_max<T: SoftmaxElem>(line: &[T]) -> T {
    let mut lanes = [T::neg_infinity(); LANES];
    let mut chunks = line.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            nan_max(lane, v);
        }
    }
    for (lane, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        nan_max(lane, v);
    }
    let mut m = lanes[0];
    for &lane in &lanes[1..] {
        nan_max(&mut m, lane);
    }
    m
}

/// The sum of `line` over [`LANES`] partial sums (as vectorized libraries add: the rounding
/// differs from a left-to-right sum by an ulp or so, never more than that sum's own error).
#[inline(always)]
pub(crate) fn line_sum<T: SoftmaxElem>(line: &[T]) -> T {
    let mut lanes = [T::zero(); LANES];
    let mut chunks = line.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    for (lane, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *lane += v;
    }
    let mut sum = T::zero();
    for &lane in &lanes {
        sum += lane;
    }
    sum
}
