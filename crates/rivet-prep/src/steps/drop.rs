//! `drop`: remove columns.

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::table::data_error;
use super::{At, Fitted, Transform};
use crate::error::PrepError;

/// Remove these columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropColumns {
    /// The columns.
    pub columns: Vec<String>,
}

impl Transform for DropColumns {
    type State = ();

    fn fit(&self, _: &DataFrame, _: &At) -> Result<(), PrepError> {
        Ok(())
    }

    fn apply(&self, _: &(), df: &mut DataFrame, at: &At) -> Result<(), PrepError> {
        for name in &self.columns {
            *df = df.drop(name).map_err(|_| data_error(format!("{at}: no column \"{name}\" to drop")))?;
        }
        Ok(())
    }

    fn save(&self, _: &()) -> Fitted {
        Fitted::Stateless
    }

    fn restore(&self, fitted: Fitted) -> Option<()> {
        fitted.stateless()
    }
}
