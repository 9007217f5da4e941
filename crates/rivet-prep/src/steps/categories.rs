//! What the encoders (`one_hot`, `ordinal`) share: the categories they learn and how a
//! category becomes its index.

use std::collections::HashMap;

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::table::{data_error, text};
use super::{At, Fitted};
use crate::error::PrepError;

/// What an encoder does with a category it did not see when fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unseen {
    /// Refuse the table, naming the column, row and value.
    Error,
    /// One-hot: all zeros (scikit-learn's `handle_unknown="ignore"`); ordinal: -1
    /// (`handle_unknown="use_encoded_value", unknown_value=-1`).
    Ignore,
    /// One-hot only: a `COLUMN_other` feature that is 1 for unseen categories.
    Other,
}

/// Per column, the categories seen, sorted in code-point order as Python sorts strings; a
/// missing value is an error naming its row.
pub(crate) fn fit(df: &DataFrame, columns: &[String], at: &At) -> Result<Vec<Vec<String>>, PrepError> {
    columns
        .iter()
        .map(|name| {
            let mut seen = text(df, name, "text", at)?
                .iter()
                .enumerate()
                .map(|(row, v)| v.map(str::to_owned).ok_or_else(|| missing(name, row, at)))
                .collect::<Result<Vec<String>, PrepError>>()?;
            seen.sort_unstable();
            seen.dedup();
            Ok(seen)
        })
        .collect()
}

/// The categories back from a file: one list per column.
pub(crate) fn restore(fitted: Fitted, columns: &[String]) -> Option<Vec<Vec<String>>> {
    let Fitted::Categories { categories } = fitted else { return None };
    (categories.len() == columns.len()).then_some(categories)
}

fn missing(name: &str, row: usize, at: &At) -> PrepError {
    data_error(format!("{at}: column \"{name}\", {}: missing category", at.row(row)))
}

/// Each row's category index in `categories`, `None` for an unseen one (or an error).
pub(crate) fn encode(
    df: &DataFrame,
    name: &str,
    categories: &[String],
    unseen: Unseen,
    at: &At,
) -> Result<Vec<Option<usize>>, PrepError> {
    let index: HashMap<&str, usize> = categories.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
    text(df, name, "text", at)?
        .iter()
        .enumerate()
        .map(|(row, value)| {
            let value = value.ok_or_else(|| missing(name, row, at))?;
            match (index.get(value), unseen) {
                (Some(&i), _) => Ok(Some(i)),
                (None, Unseen::Error) => Err(data_error(format!(
                    "{at}: column \"{name}\", {}: category \"{value}\" was not seen when fitting",
                    at.row(row)
                ))),
                (None, Unseen::Ignore | Unseen::Other) => Ok(None),
            }
        })
        .collect()
}
