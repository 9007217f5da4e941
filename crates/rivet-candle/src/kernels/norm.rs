//! Normalizing rows: minus their mean, times their inverse standard deviation.

use candle_core::{DType as CDType, Result as CResult, Tensor as CTensor};

/// Mean and variance normalization over the trailing axes from `from`, in f32 (or f64).
pub(crate) fn normalize(x: &CTensor, from: usize, eps: f64) -> CResult<(CTensor, CTensor, CTensor)> {
    let outer: usize = x.dims()[..from].iter().product();
    let inner: usize = x.dims()[from..].iter().product();
    if x.dtype() == CDType::F64 {
        let (y, mean, inv) = normalize_rows::<f64>(super::values(x)?, outer, inner, eps);
        return Ok((
            super::make(y, x.dims())?,
            super::make(mean, &[outer, 1])?,
            super::make(inv, &[outer, 1])?,
        ));
    }
    let (y, mean, inv) = normalize_rows::<f32>(super::values(&x.to_dtype(CDType::F32)?)?, outer, inner, eps);
    Ok((super::make(y, x.dims())?, super::make(mean, &[outer, 1])?, super::make(inv, &[outer, 1])?))
}

/// Each row of `v` (`outer` rows of `inner`) minus its mean, times the inverse standard
/// deviation (population variance plus `eps`); statistics accumulated in f64. Returns the
/// result, the means and the inverse deviations.
pub(crate) fn normalize_rows<T: candle_core::WithDType>(
    mut v: Vec<T>,
    outer: usize,
    inner: usize,
    eps: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let mut means = Vec::with_capacity(outer);
    let mut invs = Vec::with_capacity(outer);
    for r in 0..outer {
        let row = &mut v[r * inner..(r + 1) * inner];
        let mean = row.iter().map(|x| x.to_f64()).sum::<f64>() / inner as f64;
        let var = row.iter().map(|x| (x.to_f64() - mean).powi(2)).sum::<f64>() / inner as f64;
        let inv = 1.0 / (var + eps).sqrt();
        for x in row.iter_mut() {
            *x = T::from_f64((x.to_f64() - mean) * inv);
        }
        means.push(T::from_f64(mean));
        invs.push(T::from_f64(inv));
    }
    (v, means, invs)
}

/// LayerNormalization of float rows in one kernel: each `inner`-long row of `x` normalized as
/// [`normalize_rows`] does (statistics in f64, the normalized value rounded to f32), then
/// times `scale` and plus `bias` in f32, one rounding each: the same values as normalizing,
/// multiplying and adding in three passes, without the two intermediate tensors.
pub(crate) fn layer_norm_f32(
    x: &[f32],
    inner: usize,
    scale: &[f32],
    bias: Option<&[f32]>,
    eps: f64,
) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    if inner > 0 {
        crate::kernels::wide(LayerNormRows { x, out: &mut out, inner, scale, bias, eps });
    }
    out
}

/// [`layer_norm_f32`]'s loop, to run through [`crate::kernels::wide`].
struct LayerNormRows<'a> {
    x: &'a [f32],
    out: &'a mut [f32],
    inner: usize,
    scale: &'a [f32],
    bias: Option<&'a [f32]>,
    eps: f64,
}

/// Independent partial sums per row: enough to fill two AVX2 registers of f64.
const NORM_LANES: usize = 8;

/// Rows [`LayerNormRows`] takes through each step together: every row's mean, then every
/// row's variance, then every row's outputs, so that the rows' chains of dependent additions,
/// divisions and square roots overlap. One row at a time, the encoder's rows of 32 values took
/// about 55 ns each, most of it waiting on those chains.
const NORM_BLOCK: usize = 16;

/// The mean of `row` in f64: [`NORM_LANES`] partial sums, then their sum, over `n` values.
#[inline(always)]
fn row_mean(row: &[f32], n: f64) -> f64 {
    let mut lanes = [0f64; NORM_LANES];
    let mut chunks = row.chunks_exact(NORM_LANES);
    for chunk in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l += v as f64;
        }
    }
    for (l, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *l += v as f64;
    }
    lanes.iter().sum::<f64>() / n
}

/// One over the standard deviation of `row` about `mean` (population variance plus `eps`), in
/// f64 as [`row_mean`] sums.
#[inline(always)]
fn row_inv(row: &[f32], mean: f64, n: f64, eps: f64) -> f64 {
    let mut lanes = [0f64; NORM_LANES];
    let mut chunks = row.chunks_exact(NORM_LANES);
    for chunk in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            let d = v as f64 - mean;
            *l += d * d;
        }
    }
    for (l, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        let d = v as f64 - mean;
        *l += d * d;
    }
    1.0 / (lanes.iter().sum::<f64>() / n + eps).sqrt()
}

impl crate::kernels::WideKernel for LayerNormRows<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let LayerNormRows { x, out, inner, scale, bias, eps } = self;
        let n = inner as f64;
        let block = inner * NORM_BLOCK;
        for (rows, dsts) in x.chunks(block).zip(out.chunks_mut(block)) {
            let mut stats = [(0f64, 0f64); NORM_BLOCK];
            for (st, row) in stats.iter_mut().zip(rows.chunks_exact(inner)) {
                st.0 = row_mean(row, n);
            }
            for (st, row) in stats.iter_mut().zip(rows.chunks_exact(inner)) {
                st.1 = row_inv(row, st.0, n, eps);
            }
            let rows = rows.chunks_exact(inner).zip(dsts.chunks_exact_mut(inner));
            for (&(mean, inv), (row, dst)) in stats.iter().zip(rows) {
                match bias {
                    Some(b) => {
                        for (((d, &v), &s), &b) in dst.iter_mut().zip(row).zip(scale).zip(b) {
                            *d = ((v as f64 - mean) * inv) as f32 * s + b;
                        }
                    }
                    None => {
                        for ((d, &v), &s) in dst.iter_mut().zip(row).zip(scale) {
                            *d = ((v as f64 - mean) * inv) as f32 * s;
                        }
                    }
                }
            }
        }
    }
}
