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
