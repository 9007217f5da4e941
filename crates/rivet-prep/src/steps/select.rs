//! `select`: keep only these columns, in this order.

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::table::data_error;
use super::{At, Fitted, Transform};
use crate::error::PrepError;

/// Keep only these columns, in this order. As the first step, it also names the input
/// columns a fitted pipeline requires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Select {
    /// The columns.
    pub columns: Vec<String>,
}

impl Transform for Select {
    type State = ();

    fn fit(&self, _: &DataFrame, _: &At) -> Result<(), PrepError> {
        Ok(())
    }

    fn apply(&self, _: &(), df: &mut DataFrame, at: &At) -> Result<(), PrepError> {
        if let Some(name) = self.columns.iter().find(|name| df.column(name.as_str()).is_err()) {
            return Err(data_error(format!("{at}: no column \"{name}\" to select")));
        }
        *df = df.select(self.columns.iter().map(|c| c.as_str())).map_err(|e| data_error(format!("{at}: {e}")))?;
        Ok(())
    }

    fn save(&self, _: &()) -> Fitted {
        Fitted::Stateless
    }

    fn restore(&self, fitted: Fitted) -> Option<()> {
        fitted.stateless()
    }
}
