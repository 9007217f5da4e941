//! The pipelines behind `rivet serve`'s raw-row models: a fitted pipeline beside a model file,
//! taking the protocol's columns into a Polars table and out as the model's features.

use std::path::Path;
use std::sync::Arc;

use rivet::Tensor;
use rivet_prep::polars::prelude::{Column, DataFrame, NamedFrom, Series};
use rivet_prep::FittedPipeline;
use rivet_server::rows::{pipeline_beside, ColumnKind, ColumnValues, PipelineFinder, RawColumn, RowPipeline};

/// A fitted pipeline and the protocol's view of its input columns.
struct Rows {
    pipeline: FittedPipeline,
    columns: Vec<RawColumn>,
}

/// The finder `rivet-tabular serve` gives the server: `NAME.pipeline.json` beside the model.
pub(crate) fn finder() -> PipelineFinder {
    Arc::new(|model_file: &Path| {
        let Some(path) = pipeline_beside(model_file) else { return Ok(None) };
        let pipeline = FittedPipeline::load(&path).map_err(|e| e.to_string())?;
        let columns = pipeline
            .input()
            .iter()
            .map(|c| {
                let kind = match c.dtype.as_str() {
                    "str" => ColumnKind::Text,
                    "bool" => ColumnKind::Bool,
                    "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" => ColumnKind::Int,
                    "f32" | "f64" => ColumnKind::Float,
                    other => {
                        return Err(format!(
                            "{}: column \"{}\" was fitted as {other}, which the protocol cannot send \
                             (text, integers, numbers and booleans can)",
                            path.display(),
                            c.name
                        ))
                    }
                };
                Ok(RawColumn { name: c.name.clone(), kind })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Some(Arc::new(Rows { pipeline, columns }) as Arc<dyn RowPipeline>))
    })
}

impl RowPipeline for Rows {
    fn columns(&self) -> &[RawColumn] {
        &self.columns
    }

    fn features(&self, columns: Vec<(String, ColumnValues)>) -> Result<Tensor, String> {
        let rows = columns.first().map_or(0, |(_, v)| v.len());
        let columns: Vec<Column> = columns
            .into_iter()
            .map(|(name, values)| {
                let name = name.as_str().into();
                match values {
                    ColumnValues::Text(v) => Series::new(name, v),
                    ColumnValues::Int(v) => Series::new(name, v),
                    // NaN is pandas' missing number; the pipeline's missing is null, as an
                    // empty CSV cell reads.
                    ColumnValues::Float(v) => Series::new(
                        name,
                        v.into_iter().map(|x| (!x.is_nan()).then_some(x)).collect::<Vec<_>>(),
                    ),
                    ColumnValues::Bool(v) => Series::new(name, v),
                }
                .into()
            })
            .collect();
        let table = DataFrame::new(rows, columns).map_err(|e| e.to_string())?;
        self.pipeline.transform(&table).map(|(features, _)| features).map_err(|e| e.to_string())
    }
}
