//! `one_hot`: one feature per category (scikit-learn's `OneHotEncoder`).

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::categories::{self, Unseen};
use super::table::{drop, replace};
use super::{At, Fitted, Transform};
use crate::error::PrepError;

/// One feature per category seen when fitting, `COLUMN_CATEGORY`, categories sorted
/// (scikit-learn's `OneHotEncoder`); the new features replace the column, at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneHot {
    /// Text columns.
    pub columns: Vec<String>,
    /// What an unseen category becomes.
    pub unseen: Unseen,
}

impl Transform for OneHot {
    /// Per column, its sorted categories.
    type State = Vec<Vec<String>>;

    fn fit(&self, df: &DataFrame, at: &At) -> Result<Vec<Vec<String>>, PrepError> {
        categories::fit(df, &self.columns, at)
    }

    fn apply(&self, categories: &Vec<Vec<String>>, df: &mut DataFrame, at: &At) -> Result<(), PrepError> {
        for (name, categories) in self.columns.iter().zip(categories) {
            let codes = categories::encode(df, name, categories, self.unseen, at)?;
            drop(df, name, at)?;
            let mut outputs: Vec<String> = categories.iter().map(|c| format!("{name}_{c}")).collect();
            if self.unseen == Unseen::Other {
                outputs.push(format!("{name}_other"));
            }
            for (k, feature) in outputs.iter().enumerate() {
                let values =
                    codes.iter().map(|code| f64::from(u8::from(code.unwrap_or(categories.len()) == k))).collect();
                replace(df, feature, values)?;
            }
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
