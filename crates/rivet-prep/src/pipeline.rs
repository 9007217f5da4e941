//! Fitting a spec on a table, and transforming tables with what was fitted.

use polars::prelude::*;
use rivet_core::Tensor;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::PrepError;
use crate::source::{Batch, CsvRules};
use crate::spec::{PipelineSpec, Step};
use crate::steps::table::{data_error, floats, plain_text};
pub use crate::steps::Fitted;
use crate::steps::{At, FittedStep, Position};

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

/// A spec with everything fitting learned: saved as JSON, loaded in production. Each step
/// holds its own fitted state, so statistics that do not fit their step (another kind,
/// another column count) are refused when read, naming the step.
#[derive(Debug, Clone, PartialEq)]
pub struct FittedPipeline {
    csv: CsvRules,
    input: Vec<InputColumn>,
    steps: Vec<FittedStep>,
    features: Vec<String>,
}

/// The fitted-pipeline file, field for field.
#[derive(Serialize, Deserialize)]
struct PipelineFile {
    /// [`FORMAT_VERSION`] when written.
    format_version: u32,
    spec: PipelineSpec,
    input: Vec<InputColumn>,
    /// One entry per spec step.
    fitted: Vec<Fitted>,
    features: Vec<String>,
}

impl Serialize for FittedPipeline {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        PipelineFile {
            format_version: FORMAT_VERSION,
            spec: self.spec(),
            input: self.input.clone(),
            fitted: self.fitted(),
            features: self.features.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for FittedPipeline {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<FittedPipeline, D::Error> {
        FittedPipeline::from_file(PipelineFile::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

impl FittedPipeline {
    /// Fits `spec` on `df`: each step is fitted on what the steps before it produced.
    pub fn fit(spec: &PipelineSpec, df: &DataFrame) -> Result<FittedPipeline, PrepError> {
        spec.check()?;
        if df.height() == 0 {
            return Err(data_error("cannot fit on a table with no rows".into()));
        }
        // The input schema: the columns of a leading select, or else every column.
        let selected =
            if let Some(Step::Select(select)) = spec.steps.first() { Some(&select.columns) } else { None };
        let input = df
            .columns()
            .iter()
            .filter(|c| selected.is_none_or(|names| names.iter().any(|n| n.as_str() == c.name().as_str())))
            .map(|c| InputColumn { name: c.name().to_string(), dtype: c.dtype().to_string() })
            .collect();
        let mut work = plain_text(df)?;
        let mut steps = Vec::with_capacity(spec.steps.len());
        for (i, step) in spec.steps.iter().enumerate() {
            let at = At::new(i, step.op(), &Position::default());
            let fitted = step.fit(&work, &at)?;
            fitted.apply(&mut work, &at)?;
            steps.push(fitted);
        }
        let features = work.get_column_names().iter().map(|n| n.to_string()).collect();
        Ok(FittedPipeline { csv: spec.csv.clone(), input, steps, features })
    }

    /// The spec it was fitted from.
    pub fn spec(&self) -> PipelineSpec {
        PipelineSpec { csv: self.csv.clone(), steps: self.steps.iter().map(FittedStep::spec).collect() }
    }

    /// How CSV files are read for it: its spec's `[csv]` table.
    pub fn csv_rules(&self) -> &CsvRules {
        &self.csv
    }

    /// What each step learned, one entry per spec step.
    pub fn fitted(&self) -> Vec<Fitted> {
        self.steps.iter().map(FittedStep::save).collect()
    }

    /// The input columns seen when fitting: those of a leading `select` step, or else every
    /// column of the training table. Tables transformed later must have them.
    pub fn input(&self) -> &[InputColumn] {
        &self.input
    }

    /// The output features, in tensor column order.
    pub fn features(&self) -> &[String] {
        &self.features
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
        self.transform_at(df, &Position { first_row, lines: None })
    }

    /// [`FittedPipeline::transform`] of a batch read by [`TableBatches`](crate::TableBatches): errors name rows of
    /// the whole file and, for CSV, the line each is on.
    pub fn transform_batch(&self, batch: &Batch) -> Result<(Tensor, Vec<String>), PrepError> {
        self.transform_at(&batch.df, &Position { first_row: batch.first_row, lines: batch.lines.clone() })
    }

    fn transform_at(&self, df: &DataFrame, position: &Position) -> Result<(Tensor, Vec<String>), PrepError> {
        let work = self.apply_rows(df, position)?;
        let at = At::labelled("features".into(), position);
        let rows = work.height();
        let mut columns = Vec::with_capacity(self.features.len());
        for name in &self.features {
            let ca = floats(&work, name, &at)?.rechunk().into_owned();
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
                    "feature \"{name}\", {}: {what} after the pipeline; add an impute or clip step",
                    at.row(row)
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
        self.apply_rows(df, &Position::default())
    }

    fn apply_rows(&self, df: &DataFrame, position: &Position) -> Result<DataFrame, PrepError> {
        for column in &self.input {
            if df.column(&column.name).is_err() {
                return Err(data_error(format!(
                    "input: no column \"{}\" (the pipeline was fitted with it, as {})",
                    column.name, column.dtype
                )));
            }
        }
        let mut work = plain_text(df)?;
        for (i, step) in self.steps.iter().enumerate() {
            step.apply(&mut work, &At::new(i, step.op(), position))?;
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
    /// checks as a spec file, and each step's statistics must be its own (their kind, one per
    /// column), so a hand-edited or damaged file is refused here, naming the step.
    pub fn from_json(text: &str) -> Result<FittedPipeline, PrepError> {
        let file: PipelineFile = serde_json::from_str(text).map_err(|e| PrepError::Spec(e.to_string()))?;
        FittedPipeline::from_file(file)
    }

    fn from_file(file: PipelineFile) -> Result<FittedPipeline, PrepError> {
        if file.format_version != FORMAT_VERSION {
            return Err(PrepError::Spec(format!(
                "format version {} (this build reads {FORMAT_VERSION})",
                file.format_version
            )));
        }
        if file.fitted.len() != file.spec.steps.len() {
            return Err(PrepError::Spec(format!(
                "{} fitted entries for {} steps",
                file.fitted.len(),
                file.spec.steps.len()
            )));
        }
        file.spec.check()?;
        let steps = file
            .spec
            .steps
            .iter()
            .zip(file.fitted)
            .enumerate()
            .map(|(i, (step, fitted))| {
                step.restore(fitted).ok_or_else(|| {
                    PrepError::Spec(format!(
                        "steps[{i}] (op \"{}\"): the fitted statistics do not match the step",
                        step.op()
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(FittedPipeline { csv: file.spec.csv, input: file.input, steps, features: file.features })
    }
}
