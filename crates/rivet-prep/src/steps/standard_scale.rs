//! `standard_scale`: `(x - mean) / std` (scikit-learn's `StandardScaler`).

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::stats::mean_and_variance;
use super::table::{data_error, map, present};
use super::{At, Fitted, Transform};
use crate::error::PrepError;

/// `(x - mean) / std` with the population deviation, as scikit-learn's `StandardScaler`: a
/// column whose variance is within rounding of zero, relative to its mean, keeps scale 1.
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
        for (name, values) in self.columns.iter().zip(present(df, &self.columns, at)?) {
            let values: Vec<f64> = values.into_no_null_iter().collect();
            let (mean, var) = mean_and_variance(&values);
            if !var.is_finite() {
                return Err(data_error(format!(
                    "{at}: column \"{name}\": its variance overflows f64 (values past about 1e154); \
                     scale it down first, with a derive step"
                )));
            }
            // scikit-learn's `_is_constant_feature`: a variance within what rounding alone
            // could make of a constant column, relative to its mean, means scale 1.
            let (n, eps) = (values.len() as f64, f64::EPSILON);
            let constant = var <= n * eps * var + (n * mean * eps).powi(2);
            moments.mean.push(mean);
            moments.var.push(var);
            moments.scale.push(if constant { 1.0 } else { var.sqrt() });
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
