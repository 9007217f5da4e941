//! `cast`: columns as 64-bit floats.

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::table::map;
use super::{At, Fitted, Transform};
use crate::error::PrepError;

/// Cast to 64-bit floats (every numeric step works in f64; integers and booleans cast
/// exactly, text is parsed and an unparsable value is an error naming its row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cast {
    /// The columns.
    pub columns: Vec<String>,
}

impl Transform for Cast {
    type State = ();

    fn fit(&self, _: &DataFrame, _: &At) -> Result<(), PrepError> {
        Ok(())
    }

    fn apply(&self, _: &(), df: &mut DataFrame, at: &At) -> Result<(), PrepError> {
        map(df, &self.columns, at, &|_, v| v)
    }

    fn save(&self, _: &()) -> Fitted {
        Fitted::Stateless
    }

    fn restore(&self, fitted: Fitted) -> Option<()> {
        fitted.stateless()
    }
}
