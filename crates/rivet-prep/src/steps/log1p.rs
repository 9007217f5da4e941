//! `log1p`: `ln(1 + x)`.

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::table::map;
use super::{At, Fitted, Transform};
use crate::error::PrepError;

/// `ln(1 + x)` (numpy's `log1p`): exact near 0, NaN below -1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log1p {
    /// The columns.
    pub columns: Vec<String>,
}

impl Transform for Log1p {
    type State = ();

    fn fit(&self, _: &DataFrame, _: &At) -> Result<(), PrepError> {
        Ok(())
    }

    fn apply(&self, _: &(), df: &mut DataFrame, at: &At) -> Result<(), PrepError> {
        map(df, &self.columns, at, &|_, v| v.ln_1p())
    }

    fn save(&self, _: &()) -> Fitted {
        Fitted::Stateless
    }

    fn restore(&self, fitted: Fitted) -> Option<()> {
        fitted.stateless()
    }
}
