//! `bucketize`: the interval each value falls in.

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::table::map;
use super::{At, Fitted, Invalid, Transform};
use crate::error::PrepError;

/// The interval each value falls in, as numpy's `digitize`: 0 below `boundaries[0]`, `i`
/// for `boundaries[i-1] <= x < boundaries[i]`, `boundaries.len()` at or above the last.
/// A missing value stays missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bucketize {
    /// The columns.
    pub columns: Vec<String>,
    /// Finite, strictly increasing edges.
    pub boundaries: Vec<f64>,
}

impl Transform for Bucketize {
    type State = ();

    fn check(&self) -> Result<(), Invalid> {
        let b = &self.boundaries;
        if b.is_empty() || b.iter().any(|b| !b.is_finite()) || b.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Invalid(format!("boundaries {b:?} must be finite and strictly increasing, at least one")));
        }
        Ok(())
    }

    fn fit(&self, _: &DataFrame, _: &At) -> Result<(), PrepError> {
        Ok(())
    }

    fn apply(&self, _: &(), df: &mut DataFrame, at: &At) -> Result<(), PrepError> {
        let boundaries = &self.boundaries;
        map(df, &self.columns, at, &|_, v| {
            if v.is_nan() {
                v
            } else {
                boundaries.partition_point(|b| *b <= v) as f64
            }
        })
    }

    fn save(&self, _: &()) -> Fitted {
        Fitted::Stateless
    }

    fn restore(&self, fitted: Fitted) -> Option<()> {
        fitted.stateless()
    }
}
