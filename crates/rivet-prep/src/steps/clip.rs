//! `clip`: limit values to a range.

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::table::map;
use super::{At, Fitted, Invalid, Transform};
use crate::error::PrepError;

/// Limit to `[min, max]` (either may be left out); a missing value stays missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clip {
    /// The columns.
    pub columns: Vec<String>,
    /// Lower bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Upper bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl Transform for Clip {
    type State = ();

    fn check(&self) -> Result<(), Invalid> {
        let (min, max) = (self.min, self.max);
        if min.is_some_and(f64::is_nan)
            || max.is_some_and(f64::is_nan)
            || min.zip(max).is_some_and(|(lo, hi)| lo > hi)
        {
            return Err(Invalid(format!("min {min:?} and max {max:?} must be numbers with min <= max")));
        }
        Ok(())
    }

    fn fit(&self, _: &DataFrame, _: &At) -> Result<(), PrepError> {
        Ok(())
    }

    fn apply(&self, _: &(), df: &mut DataFrame, at: &At) -> Result<(), PrepError> {
        let (lo, hi) = (self.min.unwrap_or(f64::NEG_INFINITY), self.max.unwrap_or(f64::INFINITY));
        map(df, &self.columns, at, &|_, v| if v.is_nan() { v } else { v.clamp(lo, hi) })
    }

    fn save(&self, _: &()) -> Fitted {
        Fitted::Stateless
    }

    fn restore(&self, fitted: Fitted) -> Option<()> {
        fitted.stateless()
    }
}
