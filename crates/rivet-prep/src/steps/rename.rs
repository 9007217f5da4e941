//! `rename`: new names for columns.

use std::collections::BTreeMap;

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::table::data_error;
use super::{At, Fitted, Transform};
use crate::error::PrepError;

/// Rename columns, `old = "new"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    /// Old name to new name.
    pub columns: BTreeMap<String, String>,
}

impl Transform for Rename {
    type State = ();

    fn fit(&self, _: &DataFrame, _: &At) -> Result<(), PrepError> {
        Ok(())
    }

    fn apply(&self, _: &(), df: &mut DataFrame, at: &At) -> Result<(), PrepError> {
        for (old, new) in &self.columns {
            if df.column(old).is_err() {
                return Err(data_error(format!("{at}: no column \"{old}\" to rename")));
            }
            if old != new && df.column(new).is_ok() {
                return Err(data_error(format!(
                    "{at}: cannot rename \"{old}\" to \"{new}\": there is a column \"{new}\" already"
                )));
            }
            df.rename(old, new.as_str().into()).map_err(|e| data_error(format!("{at}: {e}")))?;
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
