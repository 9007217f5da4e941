//! The pipeline spec: an ordered list of steps over named columns, read from TOML or JSON.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::PrepError;
use crate::source::CsvRules;
pub use crate::steps::{
    Bucketize, Cast, Clip, Datetime, DatetimePart, Derive, DropColumns, Expression, Impute, ImputeStrategy,
    Log1p, MinMaxScale, OneHot, Ordinal, Rename, Select, StandardScale, Step, Unseen,
};

/// A preprocessing pipeline as written by its author, before fitting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineSpec {
    /// How CSV files are read: pandas' `read_csv` rules unless the spec's `[csv]` table says
    /// otherwise.
    #[serde(default, skip_serializing_if = "CsvRules::is_default")]
    pub csv: CsvRules,
    /// The steps, applied in order.
    pub steps: Vec<Step>,
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
        let csv = match top.remove("csv") {
            None => CsvRules::default(),
            Some(csv) => serde_json::from_value(csv).map_err(|e| PrepError::Spec(format!("csv: {e}")))?,
        };
        if let Some(extra) = top.keys().next() {
            return Err(PrepError::Spec(format!("unknown field `{extra}` (a spec has `csv` and `steps`)")));
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
        let spec = PipelineSpec { csv, steps };
        spec.check()?;
        Ok(spec)
    }

    /// Checks what the steps' types cannot say: every error names the step. Run on every spec
    /// read, and on the copy a fitted pipeline carries.
    pub fn check(&self) -> Result<(), PrepError> {
        for (i, step) in self.steps.iter().enumerate() {
            step.check().map_err(|e| PrepError::Spec(format!("steps[{i}] (op \"{}\"): {e}", step.op())))?;
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
