//! Comparing the candidate's outputs with the primary's, element by element.

use rivet_core::{DType, Tensor};

/// How one output of one request compared.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OutputComparison {
    /// The output's name.
    pub name: String,
    /// The largest `|candidate − primary|`.
    pub max_abs_diff: f64,
    /// The largest `|candidate − primary| / |primary|` over elements where the primary is not 0.
    pub max_rel_diff: f64,
    /// Elements outside `atol + rtol·|primary|` (NaN matches only NaN).
    pub outside: u64,
    /// For a float output of shape [N, C]: the share of rows whose largest element differs.
    pub argmax_mismatch: Option<f64>,
    /// Why the output could not be compared element by element (dtype or shape differ).
    pub mismatch: Option<String>,
}

impl OutputComparison {
    /// Whether the output diverged.
    pub fn diverged(&self) -> bool {
        self.outside > 0 || self.mismatch.is_some()
    }
}

/// Compares every output; an error when the candidate returned a different number of them.
pub(super) fn compare_all(
    primary: &[Tensor],
    candidate: &[Tensor],
    names: &[String],
    atol: f64,
    rtol: f64,
) -> std::result::Result<Vec<OutputComparison>, String> {
    if primary.len() != candidate.len() {
        return Err(format!(
            "the candidate returned {} outputs where the primary returned {}",
            candidate.len(),
            primary.len()
        ));
    }
    Ok(primary
        .iter()
        .zip(candidate)
        .enumerate()
        .map(|(i, (p, c))| {
            let name = names.get(i).cloned().unwrap_or_else(|| format!("output_{i}"));
            compare(name, p, c, atol, rtol)
        })
        .collect())
}

/// A tensor's values as f64 (half floats widened, integers converted).
fn values(t: &Tensor) -> Vec<f64> {
    let b = t.as_bytes();
    let chunks = |n: usize| b.chunks_exact(n);
    match t.dtype() {
        DType::F32 => {
            chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default()) as f64).collect()
        }
        DType::F64 => chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default())).collect(),
        DType::F16 => chunks(2)
            .map(|c| rivet_core::half::f16::from_le_bytes(c.try_into().unwrap_or_default()).to_f64())
            .collect(),
        DType::BF16 => chunks(2)
            .map(|c| rivet_core::half::bf16::from_le_bytes(c.try_into().unwrap_or_default()).to_f64())
            .collect(),
        DType::I8 => b.iter().map(|&v| v as i8 as f64).collect(),
        DType::U8 | DType::Bool => b.iter().map(|&v| v as f64).collect(),
        DType::I16 => {
            chunks(2).map(|c| i16::from_le_bytes(c.try_into().unwrap_or_default()) as f64).collect()
        }
        DType::I32 => {
            chunks(4).map(|c| i32::from_le_bytes(c.try_into().unwrap_or_default()) as f64).collect()
        }
        DType::I64 => {
            chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()) as f64).collect()
        }
    }
}

/// One output's comparison (see [`OutputComparison`]).
pub fn compare(name: String, primary: &Tensor, candidate: &Tensor, atol: f64, rtol: f64) -> OutputComparison {
    let mut result = OutputComparison {
        name,
        max_abs_diff: 0.0,
        max_rel_diff: 0.0,
        outside: 0,
        argmax_mismatch: None,
        mismatch: None,
    };
    if primary.dtype() != candidate.dtype() || primary.shape() != candidate.shape() {
        result.mismatch = Some(format!(
            "the candidate returned {} {:?} where the primary returned {} {:?}",
            candidate.dtype(),
            candidate.shape(),
            primary.dtype(),
            primary.shape()
        ));
        return result;
    }
    let (p, c) = (values(primary), values(candidate));
    for (&pv, &cv) in p.iter().zip(&c) {
        if pv.is_nan() || cv.is_nan() {
            if pv.is_nan() != cv.is_nan() {
                result.outside += 1;
                result.max_abs_diff = f64::INFINITY;
            }
            continue;
        }
        let diff = if pv == cv { 0.0 } else { (cv - pv).abs() };
        result.max_abs_diff = result.max_abs_diff.max(diff);
        if pv != 0.0 {
            result.max_rel_diff = result.max_rel_diff.max(diff / pv.abs());
        }
        if diff > atol + rtol * pv.abs() {
            result.outside += 1;
        }
    }
    let float = matches!(primary.dtype(), DType::F16 | DType::BF16 | DType::F32 | DType::F64);
    if let (true, [rows, cols]) = (float, primary.shape()) {
        if *rows > 0 && *cols > 1 {
            let argmax = |v: &[f64]| {
                v.iter()
                    .enumerate()
                    .fold((0, f64::NEG_INFINITY), |best, (i, &x)| if x > best.1 { (i, x) } else { best })
                    .0
            };
            let differ = p.chunks(*cols).zip(c.chunks(*cols)).filter(|(a, b)| argmax(a) != argmax(b)).count();
            result.argmax_mismatch = Some(differ as f64 / *rows as f64);
        }
    }
    result
}
