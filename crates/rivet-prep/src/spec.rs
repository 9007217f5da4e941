//! The pipeline spec: an ordered list of steps over named columns, read from TOML or JSON.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::PrepError;

/// A preprocessing pipeline as written by its author, before fitting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineSpec {
    /// The steps, applied in order.
    pub steps: Vec<Step>,
}

/// How `impute` fills missing values (null or NaN), as scikit-learn's `SimpleImputer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImputeStrategy {
    /// The mean of the values present.
    Mean,
    /// The median of the values present (the mean of the two middle ones for an even count).
    Median,
    /// The most frequent value present (the smallest among ties).
    MostFrequent,
    /// The step's `value`.
    Constant,
}

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

/// One step. Columns are named; a step fails with the step's index and the column's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Keep only these columns, in this order.
    Select {
        /// The columns.
        columns: Vec<String>,
    },
    /// Rename columns, `old = "new"`.
    Rename {
        /// Old name to new name.
        columns: BTreeMap<String, String>,
    },
    /// Remove these columns.
    Drop {
        /// The columns.
        columns: Vec<String>,
    },
    /// Cast to 64-bit floats (every numeric step works in f64; integers and booleans cast
    /// exactly, text is parsed and an unparsable value is an error naming its row).
    Cast {
        /// The columns.
        columns: Vec<String>,
    },
    /// Fill missing values (null or NaN) with a fitted statistic or a constant.
    Impute {
        /// The columns.
        columns: Vec<String>,
        /// How.
        strategy: ImputeStrategy,
        /// The fill value of `constant`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
    },
    /// `(x - mean) / std` with the population deviation; near-constant columns keep scale 1
    /// (scikit-learn's `StandardScaler`).
    StandardScale {
        /// The columns.
        columns: Vec<String>,
    },
    /// `x * scale + min` mapping the fitted range onto `range` (scikit-learn's `MinMaxScaler`).
    MinMaxScale {
        /// The columns.
        columns: Vec<String>,
        /// The target range, `[0, 1]` by default.
        #[serde(default = "unit_range")]
        range: [f64; 2],
    },
    /// `ln(1 + x)`.
    Log1p {
        /// The columns.
        columns: Vec<String>,
    },
    /// One feature per category seen when fitting, `COLUMN_CATEGORY`, categories sorted
    /// (scikit-learn's `OneHotEncoder`); the new features replace the column, at the end.
    OneHot {
        /// Text columns.
        columns: Vec<String>,
        /// What an unseen category becomes.
        unseen: Unseen,
    },
    /// The category's index among the sorted categories seen (scikit-learn's `OrdinalEncoder`).
    Ordinal {
        /// Text columns.
        columns: Vec<String>,
        /// What an unseen category becomes (`error` or `ignore`).
        unseen: Unseen,
    },
    /// The interval each value falls in, as numpy's `digitize`: 0 below `boundaries[0]`, `i`
    /// for `boundaries[i-1] <= x < boundaries[i]`, `boundaries.len()` at or above the last.
    /// A missing value stays missing.
    Bucketize {
        /// The columns.
        columns: Vec<String>,
        /// Finite, strictly increasing edges.
        boundaries: Vec<f64>,
    },
    /// Parts of a timestamp as features `COLUMN_PART` that replace the column, at the end. The
    /// column holds text: RFC 3339 (converted to UTC), `YYYY-MM-DD[ HH:MM:SS[.f]]` with a space
    /// or `T`, or what `format` (chrono's `strftime` syntax) says. A missing timestamp gives
    /// missing parts; an unparsable one is an error naming its row.
    Datetime {
        /// The timestamp column.
        column: String,
        /// Which parts, in this order.
        parts: Vec<DatetimePart>,
        /// An explicit format, for example `"%d/%m/%Y %H:%M"`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<String>,
    },
    /// A new column (or a replaced one) computed from others: numbers, column names (in
    /// backticks when they hold other characters), `+ - * /`, unary minus and parentheses, in
    /// f64. A missing input gives a missing result.
    Derive {
        /// The column it writes.
        name: String,
        /// The arithmetic, for example `"income / (household + 1)"`.
        expr: String,
    },
    /// Limit to `[min, max]` (either may be left out).
    Clip {
        /// The columns.
        columns: Vec<String>,
        /// Lower bound.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        /// Upper bound.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
}

/// A part of a timestamp that [`Step::Datetime`] extracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatetimePart {
    /// The year.
    Year,
    /// 1 to 12.
    Month,
    /// Day of the month, 1 to 31.
    Day,
    /// 0 to 23.
    Hour,
    /// 0 to 59.
    Minute,
    /// 0 to 59 (a leap second counts as 59).
    Second,
    /// Monday 0 to Sunday 6 (pandas' `dayofweek`).
    Weekday,
    /// 1 to 366.
    DayOfYear,
}

impl DatetimePart {
    /// The part's name as written in a spec and in feature names.
    pub fn name(self) -> &'static str {
        match self {
            DatetimePart::Year => "year",
            DatetimePart::Month => "month",
            DatetimePart::Day => "day",
            DatetimePart::Hour => "hour",
            DatetimePart::Minute => "minute",
            DatetimePart::Second => "second",
            DatetimePart::Weekday => "weekday",
            DatetimePart::DayOfYear => "day_of_year",
        }
    }
}

fn unit_range() -> [f64; 2] {
    [0.0, 1.0]
}

impl Step {
    /// The step's name as written in a spec (`op = "..."`).
    pub fn op(&self) -> &'static str {
        match self {
            Step::Select { .. } => "select",
            Step::Rename { .. } => "rename",
            Step::Drop { .. } => "drop",
            Step::Cast { .. } => "cast",
            Step::Impute { .. } => "impute",
            Step::StandardScale { .. } => "standard_scale",
            Step::MinMaxScale { .. } => "min_max_scale",
            Step::Log1p { .. } => "log1p",
            Step::Clip { .. } => "clip",
            Step::Bucketize { .. } => "bucketize",
            Step::Datetime { .. } => "datetime",
            Step::Derive { .. } => "derive",
            Step::OneHot { .. } => "one_hot",
            Step::Ordinal { .. } => "ordinal",
        }
    }
}

impl PipelineSpec {
    /// Reads a spec file: TOML (`.toml`) or JSON (anything else).
    pub fn from_file(path: &Path) -> Result<PipelineSpec, PrepError> {
        let text = std::fs::read_to_string(path).map_err(|e| PrepError::io(path, e))?;
        PipelineSpec::from_text(&text, path.extension().is_some_and(|e| e == "toml")).map_err(|e| match e {
            PrepError::Spec(message) => PrepError::Spec(format!("{}: {message}", path.display())),
            other => other,
        })
    }

    /// A spec from its text: TOML when `toml`, JSON otherwise.
    pub fn from_text(text: &str, toml: bool) -> Result<PipelineSpec, PrepError> {
        let value: serde_json::Value = if toml {
            let table: toml::Table =
                toml::from_str(text).map_err(|e| PrepError::Spec(e.message().to_owned()))?;
            // JSON has no NaN or infinity: converted, they would silently become "absent".
            if let Some(path) = table.iter().find_map(|(key, value)| non_finite(value, key.clone())) {
                return Err(PrepError::Spec(format!("{path}: numbers must be finite (nan and inf are not)")));
            }
            serde_json::to_value(table).map_err(|e| PrepError::Spec(e.to_string()))?
        } else {
            serde_json::from_str(text).map_err(|e| PrepError::Spec(e.to_string()))?
        };
        PipelineSpec::from_value(value)
    }

    /// A spec from parsed JSON or TOML; an unknown step or field is an error saying which step.
    pub fn from_value(value: serde_json::Value) -> Result<PipelineSpec, PrepError> {
        let serde_json::Value::Object(mut top) = value else {
            return Err(PrepError::Spec("a spec is a table with a `steps` list".into()));
        };
        let steps = top.remove("steps").ok_or_else(|| PrepError::Spec("missing field `steps`".into()))?;
        if let Some(extra) = top.keys().next() {
            return Err(PrepError::Spec(format!("unknown field `{extra}` (a spec has only `steps`)")));
        }
        let serde_json::Value::Array(items) = steps else {
            return Err(PrepError::Spec("`steps` must be a list".into()));
        };
        let steps = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let op = item.get("op").and_then(|o| o.as_str()).unwrap_or("?").to_owned();
                serde_json::from_value::<Step>(item)
                    .map_err(|e| PrepError::Spec(format!("steps[{i}] (op \"{op}\"): {e}")))
            })
            .collect::<Result<Vec<Step>, PrepError>>()?;
        let spec = PipelineSpec { steps };
        spec.check()?;
        Ok(spec)
    }

    /// Checks what the steps' types cannot say: every error names the step. Run on every spec
    /// read, and on the copy a fitted pipeline carries.
    pub fn check(&self) -> Result<(), PrepError> {
        let steps = &self.steps;
        for (i, step) in steps.iter().enumerate() {
            if let Step::Impute { strategy, value, .. } = step {
                if (*strategy == ImputeStrategy::Constant) != value.is_some() {
                    return Err(PrepError::Spec(format!(
                        "steps[{i}] (op \"impute\"): `value` goes with strategy \"constant\" and only with it"
                    )));
                }
            }
            if let Step::Ordinal { unseen: Unseen::Other, .. } = step {
                return Err(PrepError::Spec(format!(
                    "steps[{i}] (op \"ordinal\"): unseen = \"other\" is for one_hot; use \"error\" or \"ignore\" (-1)"
                )));
            }
            if let Step::MinMaxScale { range, .. } = step {
                if range.iter().any(|v| v.is_nan()) || range[0] >= range[1] {
                    return Err(PrepError::Spec(format!(
                        "steps[{i}] (op \"min_max_scale\"): range {range:?} must have min < max"
                    )));
                }
            }
        }
        for (i, step) in steps.iter().enumerate() {
            let at = format!("steps[{i}] (op \"{}\")", step.op());
            match step {
                Step::Bucketize { boundaries, .. }
                    if boundaries.is_empty()
                        || boundaries.iter().any(|b| !b.is_finite())
                        || boundaries.windows(2).any(|w| w[0] >= w[1]) =>
                {
                    return Err(PrepError::Spec(format!(
                        "{at}: boundaries {boundaries:?} must be finite and strictly increasing, at least one"
                    )));
                }
                Step::Datetime { parts, .. } if parts.is_empty() => {
                    return Err(PrepError::Spec(format!("{at}: `parts` lists no part")));
                }
                Step::Derive { expr, .. } => {
                    crate::expr::Expr::parse(expr)
                        .map_err(|e| PrepError::Spec(format!("{at}: expr: {e}")))?;
                }
                Step::Clip { min, max, .. }
                    if min.is_some_and(f64::is_nan)
                        || max.is_some_and(f64::is_nan)
                        || min.zip(*max).is_some_and(|(lo, hi)| lo > hi) =>
                {
                    return Err(PrepError::Spec(format!(
                        "{at}: min {min:?} and max {max:?} must be numbers with min <= max"
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Where the first NaN or infinity in a TOML value is, as `steps[2].min`.
fn non_finite(value: &toml::Value, at: String) -> Option<String> {
    match value {
        toml::Value::Float(f) if !f.is_finite() => Some(at),
        toml::Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, v)| non_finite(v, format!("{at}[{i}]")))
        }
        toml::Value::Table(table) => table.iter().find_map(|(k, v)| non_finite(v, format!("{at}.{k}"))),
        _ => None,
    }
}
