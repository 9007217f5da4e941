//! A model that carries its fitted pipeline: raw tables in, model outputs out, in one call.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use polars::prelude::{Column, DataFrame, NamedFrom, Series};
use rivet_core::{DType, Dim, Model, Outputs, Tensor};

use crate::error::PrepError;
use crate::pipeline::FittedPipeline;
use crate::sink::TableSink;
use crate::source::{Batch, TableBatches};

/// A loaded model and the fitted pipeline that makes its one input from a table.
pub struct Scorer {
    model: Arc<dyn Model>,
    pipeline: FittedPipeline,
}

impl Scorer {
    /// Pairs `model` with `pipeline`, checking that the model takes one f32 input of
    /// `[rows, features]` whose feature count (when the model fixes it) is the pipeline's.
    pub fn new(model: Arc<dyn Model>, pipeline: FittedPipeline) -> Result<Scorer, PrepError> {
        let inputs = &model.signature().inputs;
        let [input] = inputs.as_slice() else {
            return Err(PrepError::Model(format!(
                "the model takes {} inputs; a pipeline feeds a model with one [rows, features] input",
                inputs.len()
            )));
        };
        if input.dtype.is_some_and(|d| d != DType::F32) {
            return Err(PrepError::Model(format!(
                "the model's input \"{}\" is {}; a pipeline makes f32 features",
                input.name,
                input.dtype.map(|d| d.name()).unwrap_or_default()
            )));
        }
        if let Some(shape) = &input.shape {
            let width = pipeline.features().len();
            match shape.as_slice() {
                [_, Dim::Fixed(n)] if *n != width => {
                    return Err(PrepError::Model(format!(
                        "the model's input \"{}\" has {n} features; the pipeline makes {width} ({})",
                        input.name,
                        pipeline.features().join(", ")
                    )))
                }
                [_, _] => {}
                other => {
                    return Err(PrepError::Model(format!(
                        "the model's input \"{}\" has rank {}; a pipeline makes [rows, features]",
                        input.name,
                        other.len()
                    )))
                }
            }
        }
        Ok(Scorer { model, pipeline })
    }

    /// Where a model's own pipeline is looked for: `NAME.pipeline.json` beside `NAME.pt` or
    /// `NAME.onnx`.
    pub fn pipeline_beside(model_path: &Path) -> PathBuf {
        let stem = model_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        model_path.with_file_name(format!("{stem}.pipeline.json"))
    }

    /// The model.
    pub fn model(&self) -> &Arc<dyn Model> {
        &self.model
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &FittedPipeline {
        &self.pipeline
    }

    /// Transforms `df` and runs the model on the features.
    pub fn predict(&self, df: &DataFrame) -> Result<Outputs, PrepError> {
        self.predict_rows(df, 0)
    }

    /// [`Scorer::predict`] on a part of a larger table starting at row `first_row` (for errors).
    pub fn predict_rows(&self, df: &DataFrame, first_row: usize) -> Result<Outputs, PrepError> {
        let (features, _) = self.pipeline.transform_rows(df, first_row)?;
        self.model.run(&[&features]).map_err(|e| PrepError::Model(e.to_string()))
    }
}

/// What [`Scorer::predict_file`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreSummary {
    /// Rows scored and written.
    pub rows: usize,
    /// Batches run.
    pub batches: usize,
}

impl Scorer {
    /// Streams `data` (CSV or Parquet) through the pipeline and the model in batches of
    /// `batch_rows` rows and writes the predictions to `out` (CSV or Parquet), after the
    /// `id_column` copied from the input when given. `progress` is called after each batch
    /// with the rows done and [`TableBatches::progress`]. `out` appears only when every row
    /// was scored; on an error nothing is left behind.
    pub fn predict_file(
        &self,
        data: &Path,
        out: &Path,
        id_column: Option<&str>,
        batch_rows: usize,
        progress: &mut dyn FnMut(usize, (u64, u64)),
    ) -> Result<ScoreSummary, PrepError> {
        let mut sink = TableSink::create(out)?;
        let mut count = 0;
        for batch in TableBatches::open_for(data, batch_rows, &self.pipeline)?.read_ahead(1) {
            let batch = batch?;
            let (features, _) = self.pipeline.transform_batch(&batch)?;
            let outputs = self.model.run(&[&features]).map_err(|e| PrepError::Model(e.to_string()))?;
            let Batch { df, progress: read, .. } = batch;
            let mut columns = Vec::new();
            if let Some(id) = id_column {
                let column = df.column(id).map_err(|_| {
                    PrepError::Data(format!("--id-column: no column \"{id}\" in {}", data.display()))
                })?;
                columns.push(column.clone());
            }
            for (name, tensor) in outputs.iter() {
                output_columns(name, tensor, df.height(), &mut columns)?;
            }
            let table = DataFrame::new(df.height(), columns).map_err(|e| PrepError::Data(e.to_string()))?;
            sink.write(&table)?;
            count += 1;
            progress(sink.rows(), read);
        }
        if sink.rows() == 0 {
            return Err(PrepError::Data(format!("{}: no rows to score", data.display())));
        }
        let rows = sink.rows();
        sink.finish()?;
        Ok(ScoreSummary { rows, batches: count })
    }
}

/// One output as prediction columns: `NAME` for `[rows]` or `[rows, 1]`, `NAME_0`, `NAME_1`...
/// for `[rows, k]`.
fn output_columns(name: &str, tensor: &Tensor, rows: usize, out: &mut Vec<Column>) -> Result<(), PrepError> {
    let width = match tensor.shape() {
        [r] if *r == rows => 1,
        [r, k] if *r == rows => *k,
        shape => {
            return Err(PrepError::Model(format!(
                "output \"{name}\" is {shape:?}; predictions are [rows] or [rows, k] with rows = {rows}"
            )))
        }
    };
    let names: Vec<String> =
        if width == 1 { vec![name.to_owned()] } else { (0..width).map(|k| format!("{name}_{k}")).collect() };
    for (k, column) in names.into_iter().enumerate() {
        let series = match tensor.dtype() {
            DType::F32 => strided::<f32>(tensor, &column, rows, width, k)?,
            DType::F64 => strided::<f64>(tensor, &column, rows, width, k)?,
            DType::I64 => strided::<i64>(tensor, &column, rows, width, k)?,
            DType::I32 => strided::<i32>(tensor, &column, rows, width, k)?,
            other => {
                return Err(PrepError::Model(format!(
                    "output \"{name}\" is {}; predictions are written from f32, f64, i32 or i64",
                    other.name()
                )))
            }
        };
        out.push(series.into());
    }
    Ok(())
}

/// Column `k` of a `[rows, width]` tensor of `T` as a Series named `name`.
fn strided<T>(tensor: &Tensor, name: &str, rows: usize, width: usize, k: usize) -> Result<Series, PrepError>
where
    T: rivet_core::Element,
    Series: NamedFrom<Vec<T>, [T]>,
{
    let values = tensor.as_slice::<T>().map_err(|e| PrepError::Model(e.to_string()))?;
    Ok(Series::new(name.into(), (0..rows).map(|r| values[r * width + k]).collect::<Vec<T>>()))
}
