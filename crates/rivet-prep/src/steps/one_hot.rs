//! `one_hot`: one feature per category (scikit-learn's `OneHotEncoder`).

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::categories::{self, Unseen};
use super::table::{create, data_error, drop};
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
        let categories = categories::fit(df, &self.columns, at)?;
        if self.unseen == Unseen::Other {
            if let Some(name) = self.columns.iter().zip(&categories).find_map(|(name, seen)| {
                seen.binary_search_by(|c| c.as_str().cmp("other")).is_ok().then_some(name)
            }) {
                return Err(data_error(format!(
                    "{at}: column \"{name}\" has a category \"other\", and unseen = \"other\" names the \
                     feature of unseen categories \"{name}_other\" too; use unseen = \"ignore\" or \"error\", \
                     or rename the category"
                )));
            }
        }
        Ok(categories)
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
                create(df, feature, name, values, at)?;
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
