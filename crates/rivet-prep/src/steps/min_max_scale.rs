//! `min_max_scale`: the fitted range onto a target range (scikit-learn's `MinMaxScaler`).

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::table::{map, present};
use super::{At, Fitted, Invalid, Transform};
use crate::error::PrepError;

/// `x * scale + min` mapping the fitted range onto `range` (scikit-learn's `MinMaxScaler`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinMaxScale {
    /// The columns.
    pub columns: Vec<String>,
    /// The target range, `[0, 1]` by default.
    #[serde(default = "unit_range")]
    pub range: [f64; 2],
}

fn unit_range() -> [f64; 2] {
    [0.0, 1.0]
}

/// `MinMaxScaler.data_min_`, `data_max_`, `scale_` and `min_`, one per column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Range {
    data_min: Vec<f64>,
    data_max: Vec<f64>,
    scale: Vec<f64>,
    min: Vec<f64>,
}

impl Transform for MinMaxScale {
    type State = Range;

    fn check(&self) -> Result<(), Invalid> {
        let range = self.range;
        if range.iter().any(|v| v.is_nan()) || range[0] >= range[1] {
            return Err(Invalid(format!("range {range:?} must have min < max")));
        }
        Ok(())
    }

    fn fit(&self, df: &DataFrame, at: &At) -> Result<Range, PrepError> {
        let [low, high] = self.range;
        let mut r = Range { data_min: vec![], data_max: vec![], scale: vec![], min: vec![] };
        for values in present(df, &self.columns, at)? {
            let (lo, hi) = (values.min().unwrap_or(f64::NAN), values.max().unwrap_or(f64::NAN));
            // scikit-learn's `_handle_zeros_in_scale`: a range lost in rounding divides by 1.
            let range = if hi - lo < 10.0 * f64::EPSILON { 1.0 } else { hi - lo };
            let s = (high - low) / range;
            r.data_min.push(lo);
            r.data_max.push(hi);
            r.scale.push(s);
            r.min.push(low - lo * s);
        }
        Ok(r)
    }

    fn apply(&self, r: &Range, df: &mut DataFrame, at: &At) -> Result<(), PrepError> {
        map(df, &self.columns, at, &|k, v| v * r.scale[k] + r.min[k])
    }

    fn save(&self, r: &Range) -> Fitted {
        Fitted::MinMaxScale {
            data_min: r.data_min.clone(),
            data_max: r.data_max.clone(),
            scale: r.scale.clone(),
            min: r.min.clone(),
        }
    }

    fn restore(&self, fitted: Fitted) -> Option<Range> {
        let Fitted::MinMaxScale { data_min, data_max, scale, min } = fitted else { return None };
        let n = self.columns.len();
        [&data_min, &data_max, &scale, &min]
            .iter()
            .all(|v| v.len() == n)
            .then_some(Range { data_min, data_max, scale, min })
    }
}
