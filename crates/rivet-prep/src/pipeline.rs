//! Fitting a spec on a table, and transforming tables with what was fitted.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike};
use polars::prelude::*;
use rivet_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::PrepError;
use crate::expr::Expr;
use crate::spec::{DatetimePart, ImputeStrategy, PipelineSpec, Step, Unseen};

/// The version of the fitted-pipeline file format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// A column the pipeline was fitted on: production data must have it, with a compatible type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputColumn {
    /// The name.
    pub name: String,
    /// Its Polars type when fitted (`f64`, `i64`, `str`...).
    pub dtype: String,
}

/// What fitting learned for one step, with scikit-learn's names for the statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fitted {
    /// The step learns nothing (select, rename, drop, cast, log1p, clip).
    Stateless,
    /// `SimpleImputer.statistics_`, one per column.
    Impute {
        /// The fill value of each column.
        statistics: Vec<f64>,
    },
    /// `StandardScaler.mean_`, `var_`, `scale_`.
    StandardScale {
        /// Means.
        mean: Vec<f64>,
        /// Population variances.
        var: Vec<f64>,
        /// What each column is divided by (1 for near-constant columns).
        scale: Vec<f64>,
    },
    /// The sorted categories of each column (`OneHotEncoder.categories_`).
    Categories {
        /// Per column, its categories in order.
        categories: Vec<Vec<String>>,
    },
    /// `MinMaxScaler.data_min_`, `data_max_`, `scale_`, `min_`.
    MinMaxScale {
        /// Column minimums.
        data_min: Vec<f64>,
        /// Column maximums.
        data_max: Vec<f64>,
        /// Multipliers.
        scale: Vec<f64>,
        /// Offsets added after.
        min: Vec<f64>,
    },
}

/// A spec with everything fitting learned: saved as JSON, loaded in production.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedPipeline {
    /// [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The spec it was fitted from.
    pub spec: PipelineSpec,
    /// The input columns seen when fitting: those of a leading `select` step, or else every
    /// column of the training table. Tables transformed later must have them.
    pub input: Vec<InputColumn>,
    /// One entry per spec step.
    pub fitted: Vec<Fitted>,
    /// The output features, in tensor column order.
    pub features: Vec<String>,
}

fn data_error(message: String) -> PrepError {
    PrepError::Data(message)
}

/// A column as f64 with missing values (null or NaN) as NaN. Integers and booleans cast
/// exactly; text must parse, and the first value that does not is named with its row.
fn floats(df: &DataFrame, name: &str, at: &str, offset: usize) -> Result<Float64Chunked, PrepError> {
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
            let cast = series
                .cast(&DataType::Float64)
                .map_err(|e| data_error(format!("{at}: column \"{name}\": {e}")))?;
            // A value that did not parse became null where the text was not.
            let text = series.str().map_err(|e| data_error(e.to_string()))?;
            if let Some((row, value)) = text
                .iter()
                .zip(cast.f64().map_err(|e| data_error(e.to_string()))?.iter())
                .enumerate()
                .find_map(|(row, (t, v))| match (t, v) {
                    (Some(t), None) if !t.trim().is_empty() => Some((row, t.to_owned())),
                    _ => None,
                })
            {
                return Err(data_error(format!(
                    "{at}: column \"{name}\", row {}: \"{value}\" is not a number",
                    row + offset
                )));
            }
            cast
        }
        other => {
            return Err(data_error(format!("{at}: column \"{name}\" is {other}, not a number")));
        }
    };
    let ca = cast.f64().map_err(|e| data_error(e.to_string()))?;
    ca.fill_null_with_values(f64::NAN).map_err(|e| data_error(e.to_string()))
}

/// A text column's values; a missing value is an error naming its row.
fn texts(df: &DataFrame, name: &str, at: &str, offset: usize) -> Result<Vec<String>, PrepError> {
    let column = df.column(name).map_err(|_| data_error(format!("{at}: no column \"{name}\"")))?;
    let series = column.as_materialized_series();
    let text = series
        .str()
        .map_err(|_| data_error(format!("{at}: column \"{name}\" is {}, not text", series.dtype())))?;
    text.iter()
        .enumerate()
        .map(|(row, v)| {
            v.map(str::to_owned).ok_or_else(|| {
                data_error(format!("{at}: column \"{name}\", row {}: missing category", row + offset))
            })
        })
        .collect()
}

/// The table with categorical columns as plain text: dictionary-encoded strings (pandas
/// categoricals through Arrow or Parquet) are text to every step, as in the CSV of the same
/// table.
fn plain_text(df: &DataFrame) -> Result<DataFrame, PrepError> {
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

/// The values present (neither null nor NaN).
fn present(ca: &Float64Chunked) -> Result<Float64Chunked, PrepError> {
    ca.filter(&ca.is_not_nan()).map_err(|e| data_error(e.to_string()))
}

fn replace(df: &mut DataFrame, name: &str, ca: Float64Chunked) -> Result<(), PrepError> {
    df.with_column(ca.with_name(name.into()).into_series().into()).map_err(|e| data_error(e.to_string()))?;
    Ok(())
}

/// scikit-learn's rule for a scale that is zero or lost in rounding: use 1.
fn nonzero_scale(scale: f64, constant: bool) -> f64 {
    if constant || scale < 10.0 * f64::EPSILON {
        1.0
    } else {
        scale
    }
}

fn most_frequent(values: &Float64Chunked) -> Option<f64> {
    let mut sorted: Vec<f64> = values.into_no_null_iter().collect();
    sorted.sort_by(f64::total_cmp);
    let mut best: Option<(f64, usize)> = None;
    for run in sorted.chunk_by(|a, b| a == b) {
        // Ascending order: a later run replaces only with a strictly larger count.
        if best.is_none_or(|(_, n)| run.len() > n) {
            best = Some((run[0], run.len()));
        }
    }
    best.map(|(v, _)| v)
}

impl FittedPipeline {
    /// Fits `spec` on `df`: each step is fitted on what the steps before it produced.
    pub fn fit(spec: &PipelineSpec, df: &DataFrame) -> Result<FittedPipeline, PrepError> {
        if df.height() == 0 {
            return Err(data_error("cannot fit on a table with no rows".into()));
        }
        // The input schema: the columns of a leading select, or else every column.
        let input = df
            .columns()
            .iter()
            .filter(|c| match spec.steps.first() {
                Some(Step::Select { columns }) => columns.iter().any(|n| n.as_str() == c.name().as_str()),
                _ => true,
            })
            .map(|c| InputColumn { name: c.name().to_string(), dtype: c.dtype().to_string() })
            .collect();
        let mut work = plain_text(df)?;
        let mut fitted = Vec::with_capacity(spec.steps.len());
        for (i, step) in spec.steps.iter().enumerate() {
            let at = format!("steps[{i}] ({})", step.op());
            let learned = fit_step(step, &work, &at)?;
            apply_step(step, &learned, &mut work, &at, 0)?;
            fitted.push(learned);
        }
        let features = work.get_column_names().iter().map(|n| n.to_string()).collect();
        Ok(FittedPipeline { format_version: FORMAT_VERSION, spec: spec.clone(), input, fitted, features })
    }

    /// Applies the fitted steps to `df` and returns the features as a `[rows, features]` f32
    /// tensor with their names. A value left missing, infinite or past f32's range (about
    /// ±3.4e38) is an error naming the feature and row.
    pub fn transform(&self, df: &DataFrame) -> Result<(Tensor, Vec<String>), PrepError> {
        self.transform_rows(df, 0)
    }

    /// [`FittedPipeline::transform`] of a part of a larger table whose first row is row
    /// `first_row` of the whole: errors name rows of the whole table.
    pub fn transform_rows(
        &self,
        df: &DataFrame,
        first_row: usize,
    ) -> Result<(Tensor, Vec<String>), PrepError> {
        let offset = first_row;
        let work = self.apply_rows(df, offset)?;
        let rows = work.height();
        let mut columns = Vec::with_capacity(self.features.len());
        for name in &self.features {
            let ca = floats(&work, name, "features", offset)?.rechunk().into_owned();
            // A value left missing, infinite or past f32's range has no feature value (the
            // tensor is f32, where 1e300 would become infinity): name the first.
            if let Some((row, value)) =
                ca.into_no_null_iter().enumerate().find(|(_, v)| !(*v as f32).is_finite())
            {
                let what = if value.is_nan() {
                    "missing (null or NaN)".to_owned()
                } else if value.is_infinite() {
                    "infinite".to_owned()
                } else {
                    format!("{value:e}, past f32's range,")
                };
                return Err(data_error(format!(
                    "feature \"{name}\", row {}: {what} after the pipeline; add an impute or clip step",
                    row + offset
                )));
            }
            columns.push(ca);
        }
        let slices: Vec<&[f64]> = columns
            .iter()
            .map(|ca| ca.cont_slice().map_err(|e| data_error(e.to_string())))
            .collect::<Result<_, _>>()?;
        let width = slices.len();
        let tensor = Tensor::from_fn_bytes(rivet_core::DType::F32, &[rows, width], |bytes| {
            for (row, out) in bytes.chunks_exact_mut(4 * width.max(1)).enumerate().take(rows) {
                for (j, column) in slices.iter().enumerate() {
                    out[4 * j..4 * j + 4].copy_from_slice(&(column[row] as f32).to_le_bytes());
                }
            }
            Ok(())
        })
        .map_err(|e| data_error(e.to_string()))?;
        Ok((tensor, self.features.clone()))
    }

    /// The table after every step, before it becomes a tensor: missing values are still NaN,
    /// and columns that are not features are still there. For inspecting what a pipeline does.
    pub fn apply(&self, df: &DataFrame) -> Result<DataFrame, PrepError> {
        self.apply_rows(df, 0)
    }

    fn apply_rows(&self, df: &DataFrame, offset: usize) -> Result<DataFrame, PrepError> {
        for column in &self.input {
            if df.column(&column.name).is_err() {
                return Err(data_error(format!(
                    "input: no column \"{}\" (the pipeline was fitted with it, as {})",
                    column.name, column.dtype
                )));
            }
        }
        let mut work = plain_text(df)?;
        for (i, (step, learned)) in self.spec.steps.iter().zip(&self.fitted).enumerate() {
            apply_step(step, learned, &mut work, &format!("steps[{i}] ({})", step.op()), offset)?;
        }
        Ok(work)
    }

    /// Writes the fitted pipeline as JSON.
    pub fn save(&self, path: &std::path::Path) -> Result<(), PrepError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| PrepError::io(path, e))?;
        std::fs::write(path, text).map_err(|e| PrepError::io(path, e))
    }

    /// Reads a fitted pipeline written by [`FittedPipeline::save`].
    pub fn load(path: &std::path::Path) -> Result<FittedPipeline, PrepError> {
        let text = std::fs::read_to_string(path).map_err(|e| PrepError::io(path, e))?;
        FittedPipeline::from_json(&text).map_err(|e| match e {
            PrepError::Spec(message) => PrepError::Spec(format!("{}: {message}", path.display())),
            other => other,
        })
    }

    /// A fitted pipeline from the JSON [`FittedPipeline::save`] writes. Its spec gets the same
    /// checks as a spec file, so a hand-edited or damaged one is refused here; statistics that
    /// do not fit their step (another kind, another column count) are refused, naming the step,
    /// when the pipeline transforms.
    pub fn from_json(text: &str) -> Result<FittedPipeline, PrepError> {
        let pipeline: FittedPipeline =
            serde_json::from_str(text).map_err(|e| PrepError::Spec(e.to_string()))?;
        if pipeline.format_version != FORMAT_VERSION {
            return Err(PrepError::Spec(format!(
                "format version {} (this build reads {FORMAT_VERSION})",
                pipeline.format_version
            )));
        }
        if pipeline.fitted.len() != pipeline.spec.steps.len() {
            return Err(PrepError::Spec(format!(
                "{} fitted entries for {} steps",
                pipeline.fitted.len(),
                pipeline.spec.steps.len()
            )));
        }
        pipeline.spec.check()?;
        Ok(pipeline)
    }
}

fn fit_step(step: &Step, df: &DataFrame, at: &str) -> Result<Fitted, PrepError> {
    let each = |columns: &[String], f: &mut dyn FnMut(&str, Float64Chunked) -> Result<(), PrepError>| {
        for name in columns {
            let values = present(&floats(df, name, at, 0)?)?;
            if values.is_empty() {
                return Err(data_error(format!("{at}: column \"{name}\" has no values to fit on")));
            }
            f(name, values)?;
        }
        Ok::<(), PrepError>(())
    };
    Ok(match step {
        Step::Impute { columns, strategy, value } => {
            let mut statistics = Vec::with_capacity(columns.len());
            match (strategy, value) {
                (ImputeStrategy::Constant, Some(v)) => statistics.resize(columns.len(), *v),
                _ => each(columns, &mut |_, values| {
                    statistics.push(
                        match strategy {
                            ImputeStrategy::Mean => values.mean(),
                            ImputeStrategy::Median => values.median(),
                            _ => most_frequent(&values),
                        }
                        .unwrap_or(f64::NAN),
                    );
                    Ok(())
                })?,
            }
            Fitted::Impute { statistics }
        }
        Step::StandardScale { columns } => {
            let (mut mean, mut var, mut scale) = (vec![], vec![], vec![]);
            each(columns, &mut |_, values| {
                let n = values.len() as f64;
                let m = values.mean().unwrap_or(f64::NAN);
                let v = values.var(0).unwrap_or(0.0);
                let eps = f64::EPSILON;
                let constant = v <= n * eps * v + (n * m * eps).powi(2);
                mean.push(m);
                var.push(v);
                scale.push(nonzero_scale(v.sqrt(), constant));
                Ok(())
            })?;
            Fitted::StandardScale { mean, var, scale }
        }
        Step::MinMaxScale { columns, range } => {
            let (mut data_min, mut data_max, mut scale, mut min) = (vec![], vec![], vec![], vec![]);
            each(columns, &mut |_, values| {
                let (lo, hi) = (values.min().unwrap_or(f64::NAN), values.max().unwrap_or(f64::NAN));
                let s = (range[1] - range[0]) / nonzero_scale(hi - lo, false);
                data_min.push(lo);
                data_max.push(hi);
                scale.push(s);
                min.push(range[0] - lo * s);
                Ok(())
            })?;
            Fitted::MinMaxScale { data_min, data_max, scale, min }
        }
        Step::OneHot { columns, .. } | Step::Ordinal { columns, .. } => {
            let mut categories = Vec::with_capacity(columns.len());
            for name in columns {
                let mut seen = texts(df, name, at, 0)?;
                // Code-point order, as Python sorts strings.
                seen.sort_unstable();
                seen.dedup();
                categories.push(seen);
            }
            Fitted::Categories { categories }
        }
        _ => Fitted::Stateless,
    })
}

/// Each row's category index in `categories`, `None` for an unseen one (or an error).
fn encode(
    df: &DataFrame,
    name: &str,
    categories: &[String],
    unseen: Unseen,
    at: &str,
    offset: usize,
) -> Result<Vec<Option<usize>>, PrepError> {
    let column = df.column(name).map_err(|_| data_error(format!("{at}: no column \"{name}\"")))?;
    let series = column.as_materialized_series();
    let text = series
        .str()
        .map_err(|_| data_error(format!("{at}: column \"{name}\" is {}, not text", series.dtype())))?;
    let index: std::collections::HashMap<&str, usize> =
        categories.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
    text.iter()
        .enumerate()
        .map(|(row, value)| match value {
            None => {
                Err(data_error(format!("{at}: column \"{name}\", row {}: missing category", row + offset)))
            }
            Some(value) => match index.get(value) {
                Some(&i) => Ok(Some(i)),
                None if unseen == Unseen::Error => Err(data_error(format!(
                    "{at}: column \"{name}\", row {}: category \"{value}\" was not seen when fitting",
                    row + offset
                ))),
                None => Ok(None),
            },
        })
        .collect()
}

fn apply_step(
    step: &Step,
    learned: &Fitted,
    df: &mut DataFrame,
    at: &str,
    offset: usize,
) -> Result<(), PrepError> {
    let map = |df: &mut DataFrame, columns: &[String], f: &dyn Fn(usize, f64) -> f64| {
        for (k, name) in columns.iter().enumerate() {
            let ca = floats(df, name, at, offset)?;
            replace(df, name, ca.apply_values(|v| f(k, v)))?;
        }
        Ok::<(), PrepError>(())
    };
    let mismatch = || PrepError::Spec(format!("{at}: the fitted statistics do not match the step"));
    match (step, learned) {
        (Step::Select { columns }, _) => {
            if let Some(name) = columns.iter().find(|name| df.column(name.as_str()).is_err()) {
                return Err(data_error(format!("{at}: no column \"{name}\" to select")));
            }
            *df = df
                .select(columns.iter().map(|c| c.as_str()))
                .map_err(|e| data_error(format!("{at}: {e}")))?;
        }
        (Step::Drop { columns }, _) => {
            for name in columns {
                *df = df.drop(name).map_err(|_| data_error(format!("{at}: no column \"{name}\" to drop")))?;
            }
        }
        (Step::Rename { columns }, _) => {
            for (old, new) in columns {
                df.rename(old, new.as_str().into())
                    .map_err(|_| data_error(format!("{at}: no column \"{old}\" to rename")))?;
            }
        }
        (Step::Cast { columns }, _) => map(df, columns, &|_, v| v)?,
        (Step::Log1p { columns }, _) => map(df, columns, &|_, v| v.ln_1p())?,
        (Step::Clip { columns, min, max }, _) => {
            let (lo, hi) = (min.unwrap_or(f64::NEG_INFINITY), max.unwrap_or(f64::INFINITY));
            map(df, columns, &|_, v| if v.is_nan() { v } else { v.clamp(lo, hi) })?
        }
        (Step::Impute { columns, .. }, Fitted::Impute { statistics })
            if statistics.len() == columns.len() =>
        {
            map(df, columns, &|k, v| if v.is_nan() { statistics[k] } else { v })?
        }
        (Step::StandardScale { columns }, Fitted::StandardScale { mean, scale, .. })
            if mean.len() == columns.len() && scale.len() == columns.len() =>
        {
            map(df, columns, &|k, v| (v - mean[k]) / scale[k])?
        }
        (Step::MinMaxScale { columns, .. }, Fitted::MinMaxScale { scale, min, .. })
            if scale.len() == columns.len() && min.len() == columns.len() =>
        {
            map(df, columns, &|k, v| v * scale[k] + min[k])?
        }
        (Step::OneHot { columns, unseen }, Fitted::Categories { categories })
            if categories.len() == columns.len() =>
        {
            for (name, categories) in columns.iter().zip(categories) {
                let codes = encode(df, name, categories, *unseen, at, offset)?;
                *df = df.drop(name).map_err(|e| data_error(e.to_string()))?;
                let mut outputs: Vec<String> = categories.iter().map(|c| format!("{name}_{c}")).collect();
                if *unseen == Unseen::Other {
                    outputs.push(format!("{name}_other"));
                }
                for (k, feature) in outputs.iter().enumerate() {
                    let values: Vec<f64> = codes
                        .iter()
                        .map(|code| f64::from(u8::from(code.unwrap_or(categories.len()) == k)))
                        .collect();
                    replace(df, feature, Float64Chunked::from_vec(feature.as_str().into(), values))?;
                }
            }
        }
        (Step::Ordinal { columns, unseen }, Fitted::Categories { categories })
            if categories.len() == columns.len() =>
        {
            for (name, categories) in columns.iter().zip(categories) {
                let codes = encode(df, name, categories, *unseen, at, offset)?;
                let values: Vec<f64> = codes.iter().map(|code| code.map_or(-1.0, |i| i as f64)).collect();
                replace(df, name, Float64Chunked::from_vec(name.as_str().into(), values))?;
            }
        }
        (Step::Bucketize { columns, boundaries }, _) => map(df, columns, &|_, v| {
            if v.is_nan() {
                v
            } else {
                boundaries.partition_point(|b| *b <= v) as f64
            }
        })?,
        (Step::Derive { name, expr }, _) => {
            let expr = Expr::parse(expr).map_err(|e| PrepError::Spec(format!("{at}: expr: {e}")))?;
            let mut inputs = std::collections::HashMap::new();
            for column in expr.columns() {
                let values: Vec<f64> = floats(df, column, at, offset)?.into_no_null_iter().collect();
                inputs.insert(column.to_owned(), values);
            }
            let values = expr.eval(df.height(), &|c| inputs[c].clone());
            replace(df, name, Float64Chunked::from_vec(name.as_str().into(), values))?;
        }
        (Step::Datetime { column, parts, format }, _) => {
            let values = timestamps(df, column, format.as_deref(), at, offset)?;
            *df = df.drop(column).map_err(|e| data_error(e.to_string()))?;
            for part in parts {
                let feature = format!("{column}_{}", part.name());
                let values: Vec<f64> =
                    values.iter().map(|t| t.map_or(f64::NAN, |t| datetime_part(&t, *part))).collect();
                replace(df, &feature, Float64Chunked::from_vec(feature.as_str().into(), values))?;
            }
        }
        _ => return Err(mismatch()),
    }
    Ok(())
}

/// A text column's timestamps (UTC for RFC 3339 ones with an offset); `None` where missing.
fn timestamps(
    df: &DataFrame,
    name: &str,
    format: Option<&str>,
    at: &str,
    offset: usize,
) -> Result<Vec<Option<NaiveDateTime>>, PrepError> {
    let column = df.column(name).map_err(|_| data_error(format!("{at}: no column \"{name}\"")))?;
    let series = column.as_materialized_series();
    let text = series.str().map_err(|_| {
        data_error(format!("{at}: column \"{name}\" is {}, not text timestamps", series.dtype()))
    })?;
    let parse = |t: &str| -> Option<NaiveDateTime> {
        let t = t.trim();
        if format.is_none() {
            if let Some(dt) = iso_fast(t.as_bytes()) {
                return Some(dt);
            }
        }
        if let Some(format) = format {
            return NaiveDateTime::parse_from_str(t, format)
                .ok()
                .or_else(|| NaiveDate::parse_from_str(t, format).ok().and_then(|d| d.and_hms_opt(0, 0, 0)));
        }
        if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
            return Some(dt.naive_utc());
        }
        ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
            .or_else(|| NaiveDate::parse_from_str(t, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
    };
    text.iter()
        .enumerate()
        .map(|(row, value)| match value {
            None => Ok(None),
            Some(t) if t.trim().is_empty() => Ok(None),
            Some(t) => parse(t).map(Some).ok_or_else(|| {
                data_error(format!(
                    "{at}: column \"{name}\", row {}: \"{t}\" is not a timestamp{}",
                    row + offset,
                    format.map(|f| format!(" in format \"{f}\"")).unwrap_or_default()
                ))
            }),
        })
        .collect()
}

/// `YYYY-MM-DD HH:MM:SS` or with `T` (no fraction, no offset), the common case, without
/// chrono's format machinery; anything else returns `None` and goes the general way.
fn iso_fast(b: &[u8]) -> Option<NaiveDateTime> {
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b' ' || b[10] == b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    date.and_hms_opt(num(11..13)?, num(14..16)?, num(17..19)?)
}

fn datetime_part(t: &NaiveDateTime, part: DatetimePart) -> f64 {
    f64::from(match part {
        DatetimePart::Year => t.year(),
        DatetimePart::Month => t.month() as i32,
        DatetimePart::Day => t.day() as i32,
        DatetimePart::Hour => t.hour() as i32,
        DatetimePart::Minute => t.minute() as i32,
        DatetimePart::Second => t.second().min(59) as i32,
        DatetimePart::Weekday => t.weekday().num_days_from_monday() as i32,
        DatetimePart::DayOfYear => t.ordinal() as i32,
    })
}
