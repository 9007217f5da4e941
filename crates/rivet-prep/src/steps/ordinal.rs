//! `ordinal`: the category's index (scikit-learn's `OrdinalEncoder`).

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::categories::{self, Unseen};
use super::table::replace;
use super::{At, Fitted, Invalid, Transform};
use crate::error::PrepError;

/// The category's index among the sorted categories seen (scikit-learn's `OrdinalEncoder`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ordinal {
    /// Text columns.
    pub columns: Vec<String>,
    /// What an unseen category becomes (`error` or `ignore`).
    pub unseen: Unseen,
}

impl Transform for Ordinal {
    /// Per column, its sorted categories.
    type State = Vec<Vec<String>>;

    fn check(&self) -> Result<(), Invalid> {
        if self.unseen == Unseen::Other {
            return Err(Invalid("unseen = \"other\" is for one_hot; use \"error\" or \"ignore\" (-1)".into()));
        }
        Ok(())
    }

    fn fit(&self, df: &DataFrame, at: &At) -> Result<Vec<Vec<String>>, PrepError> {
        categories::fit(df, &self.columns, at)
    }

    fn apply(&self, categories: &Vec<Vec<String>>, df: &mut DataFrame, at: &At) -> Result<(), PrepError> {
        for (name, categories) in self.columns.iter().zip(categories) {
            let codes = categories::encode(df, name, categories, self.unseen, at)?;
            replace(df, name, codes.iter().map(|code| code.map_or(-1.0, |i| i as f64)).collect())?;
        }
        Ok(())
    }

    fn save(&self, categories: &Vec<Vec<String>>) -> Fitted {
        Fitted::Categories { categories: categories.clone() }
    }

    fn restore(&self, fitted: Fitted) -> Option<Vec<Vec<String>>> {
        categories::restore(fitted, &self.columns)
    }
}
