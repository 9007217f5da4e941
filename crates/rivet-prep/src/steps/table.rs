//! Reading and writing a table's columns, for the steps.

use polars::prelude::*;

use super::At;
use crate::error::PrepError;

pub(crate) fn data_error(message: String) -> PrepError {
    PrepError::Data(message)
}

/// A column as f64 with missing values (null or NaN) as NaN. Integers and booleans cast
/// exactly; text must parse, and the first value that does not is named with its row.
pub(crate) fn floats(df: &DataFrame, name: &str, at: &At) -> Result<Float64Chunked, PrepError> {
    let column = df.column(name).map_err(|_| {
        let names: Vec<String> = df.get_column_names().iter().map(|n| n.to_string()).collect();
        data_error(format!("{at}: no column \"{name}\" (columns: {})", names.join(", ")))
    })?;
    let series = column.as_materialized_series();
    let cast = match series.dtype() {
        DataType::Float64 => series.clone(),
        dtype if dtype.is_primitive_numeric() || dtype.is_bool() => series
            .cast(&DataType::Float64)
            .map_err(|e| data_error(format!("{at}: column \"{name}\": {e}")))?,
        DataType::String => {
            // Spaces around a number are allowed, as pandas reads them; blank text is missing.
            let text = series.str().map_err(|e| data_error(e.to_string()))?;
            let mut values = Vec::with_capacity(text.len());
            for (row, t) in text.iter().enumerate() {
                values.push(match t.map(str::trim) {
                    None | Some("") => f64::NAN,
                    Some(trimmed) => trimmed.parse::<f64>().map_err(|_| {
                        data_error(format!(
                            "{at}: column \"{name}\", {}: \"{}\" is not a number",
                            at.row(row),
                            t.unwrap_or_default()
                        ))
                    })?,
                });
            }
            return Ok(Float64Chunked::from_vec(name.into(), values));
        }
        other => {
            return Err(data_error(format!("{at}: column \"{name}\" is {other}, not a number")));
        }
    };
    let ca = cast.f64().map_err(|e| data_error(e.to_string()))?;
    ca.fill_null_with_values(f64::NAN).map_err(|e| data_error(e.to_string()))
}

/// A text column; an error names the column and its type when it holds something else.
pub(crate) fn text<'a>(
    df: &'a DataFrame,
    name: &str,
    what: &str,
    at: &At,
) -> Result<&'a StringChunked, PrepError> {
    let column = df.column(name).map_err(|_| data_error(format!("{at}: no column \"{name}\"")))?;
    let series = column.as_materialized_series();
    series.str().map_err(|_| data_error(format!("{at}: column \"{name}\" is {}, not {what}", series.dtype())))
}

/// The table with categorical columns as plain text: dictionary-encoded strings (pandas
/// categoricals through Arrow or Parquet) are text to every step, as in the CSV of the same
/// table.
pub(crate) fn plain_text(df: &DataFrame) -> Result<DataFrame, PrepError> {
    let mut out = df.clone();
    for column in df.columns() {
        if matches!(column.dtype(), DataType::Categorical(..) | DataType::Enum(..)) {
            let text = column
                .cast(&DataType::String)
                .map_err(|e| data_error(format!("column \"{}\": {e}", column.name())))?;
            out.with_column(text).map_err(|e| data_error(e.to_string()))?;
        }
    }
    Ok(out)
}

/// Each column's values present (neither null nor NaN), for fitting a statistic; a column
/// with none is an error.
pub(crate) fn present(df: &DataFrame, columns: &[String], at: &At) -> Result<Vec<Float64Chunked>, PrepError> {
    columns
        .iter()
        .map(|name| {
            let ca = floats(df, name, at)?;
            let values = ca.filter(&ca.is_not_nan()).map_err(|e| data_error(e.to_string()))?;
            if values.is_empty() {
                return Err(data_error(format!("{at}: column \"{name}\" has no values to fit on")));
            }
            Ok(values)
        })
        .collect()
}

/// Writes `values` as column `name`, replacing one of that name or adding it at the end.
pub(crate) fn replace(df: &mut DataFrame, name: &str, values: Vec<f64>) -> Result<(), PrepError> {
    let ca = Float64Chunked::from_vec(name.into(), values);
    df.with_column(ca.into_series().into()).map_err(|e| data_error(e.to_string()))?;
    Ok(())
}

/// Adds column `name`, made by the step from column `source`. A step that makes columns never
/// replaces one: a name already taken is an error naming both.
pub(crate) fn create(
    df: &mut DataFrame,
    name: &str,
    source: &str,
    values: Vec<f64>,
    at: &At,
) -> Result<(), PrepError> {
    if df.column(name).is_ok() {
        return Err(data_error(format!(
            "{at}: column \"{source}\" makes the feature \"{name}\", but there is a column \"{name}\" already; \
             rename one of them first"
        )));
    }
    replace(df, name, values)
}

/// Replaces each of `columns` (as f64) by `f(k, value)`, `k` the column's place in the list.
pub(crate) fn map(
    df: &mut DataFrame,
    columns: &[String],
    at: &At,
    f: &dyn Fn(usize, f64) -> f64,
) -> Result<(), PrepError> {
    for (k, name) in columns.iter().enumerate() {
        let ca = floats(df, name, at)?.apply_values(|v| f(k, v));
        df.with_column(ca.with_name(name.as_str().into()).into_series().into())
            .map_err(|e| data_error(e.to_string()))?;
    }
    Ok(())
}

/// Removes column `name`.
pub(crate) fn drop(df: &mut DataFrame, name: &str, at: &At) -> Result<(), PrepError> {
    *df = df.drop(name).map_err(|_| data_error(format!("{at}: no column \"{name}\"")))?;
    Ok(())
}
