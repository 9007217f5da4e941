//! `standard_scale`: `(x - mean) / std` (scikit-learn's `StandardScaler`).

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::table::{map, present};
use super::{At, Fitted, Transform};
use crate::error::PrepError;

/// `(x - mean) / std` with the population deviation; near-constant columns keep scale 1
/// (scikit-learn's `StandardScaler`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardScale {
    /// The columns.
    pub columns: Vec<String>,
}

/// `StandardScaler.mean_`, `var_` and `scale_`, one per column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Moments {
    mean: Vec<f64>,
    var: Vec<f64>,
    scale: Vec<f64>,
}

impl Transform for StandardScale {
    type State = Moments;

    fn fit(&self, df: &DataFrame, at: &At) -> Result<Moments, PrepError> {
        let mut moments = Moments { mean: vec![], var: vec![], scale: vec![] };
        for values in present(df, &self.columns, at)? {
            let n = values.len() as f64;
            let m = values.mean().unwrap_or(f64::NAN);
            let v = values.var(0).unwrap_or(0.0);
            let eps = f64::EPSILON;
            let constant = v <= n * eps * v + (n * m * eps).powi(2);
            moments.mean.push(m);
            moments.var.push(v);
            moments.scale.push(nonzero_scale(v.sqrt(), constant));
        }
        Ok(moments)
    }

    fn apply(&self, m: &Moments, df: &mut DataFrame, at: &At) -> Result<(), PrepError> {
        map(df, &self.columns, at, &|k, v| (v - m.mean[k]) / m.scale[k])
    }

    fn save(&self, m: &Moments) -> Fitted {
        Fitted::StandardScale { mean: m.mean.clone(), var: m.var.clone(), scale: m.scale.clone() }
    }

    fn restore(&self, fitted: Fitted) -> Option<Moments> {
        let Fitted::StandardScale { mean, var, scale } = fitted else { return None };
        let n = self.columns.len();
        (mean.len() == n && var.len() == n && scale.len() == n).then_some(Moments { mean, var, scale })
    }
}

/// scikit-learn's rule for a scale that is zero or lost in rounding: use 1.
pub(super) fn nonzero_scale(scale: f64, constant: bool) -> f64 {
    if constant || scale < 10.0 * f64::EPSILON {
        1.0
    } else {
        scale
    }
}
