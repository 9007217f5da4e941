//! Raw rows in: a model served with a fitted preprocessing pipeline takes the pipeline's raw
//! columns, one protocol input per column, and the server turns them into the model's features.
//!
//! The pipeline itself (Polars) is not part of this crate, so that a server without one does
//! not carry it: whoever starts the server passes a [`PipelineFinder`] that knows how to load
//! them (`rivet-tabular serve` does; `rivet serve` hands over to it when the repository holds a
//! pipeline).

use std::path::Path;
use std::sync::Arc;

use rivet::Tensor;

/// A fitted pipeline's file beside a model file `NAME.onnx` or `NAME.pt`: `NAME` + this.
pub const PIPELINE_SUFFIX: &str = ".pipeline.json";

/// What a raw column holds, as the protocol sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Text: `BYTES`.
    Text,
    /// Integers: `INT64`.
    Int,
    /// Numbers: `FP64`.
    Float,
    /// Flags: `BOOL`.
    Bool,
}

impl ColumnKind {
    /// The protocol datatype a column of this kind is sent as.
    pub fn datatype(self) -> &'static str {
        match self {
            ColumnKind::Text => "BYTES",
            ColumnKind::Int => "INT64",
            ColumnKind::Float => "FP64",
            ColumnKind::Bool => "BOOL",
        }
    }

    /// Triton's model-config type number (`TYPE_STRING` is 13).
    pub fn config_type(self) -> i32 {
        match self {
            ColumnKind::Text => 13,
            ColumnKind::Int => 9,
            ColumnKind::Float => 12,
            ColumnKind::Bool => 1,
        }
    }

    /// Triton's model-config type name.
    pub fn config_type_name(self) -> &'static str {
        match self {
            ColumnKind::Text => "TYPE_STRING",
            ColumnKind::Int => "TYPE_INT64",
            ColumnKind::Float => "TYPE_FP64",
            ColumnKind::Bool => "TYPE_BOOL",
        }
    }
}

/// One raw column a pipeline takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawColumn {
    /// Its name.
    pub name: String,
    /// What it holds.
    pub kind: ColumnKind,
}

/// One column's values, one per row; `None` (or NaN for numbers) is a missing value.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValues {
    /// Text.
    Text(Vec<Option<String>>),
    /// Integers.
    Int(Vec<i64>),
    /// Numbers (NaN: missing).
    Float(Vec<f64>),
    /// Flags.
    Bool(Vec<bool>),
}

impl ColumnValues {
    /// Rows.
    pub fn len(&self) -> usize {
        match self {
            ColumnValues::Text(v) => v.len(),
            ColumnValues::Int(v) => v.len(),
            ColumnValues::Float(v) => v.len(),
            ColumnValues::Bool(v) => v.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kind of values held.
    pub fn kind(&self) -> ColumnKind {
        match self {
            ColumnValues::Text(_) => ColumnKind::Text,
            ColumnValues::Int(_) => ColumnKind::Int,
            ColumnValues::Float(_) => ColumnKind::Float,
            ColumnValues::Bool(_) => ColumnKind::Bool,
        }
    }
}

/// A fitted pipeline as the server uses it: raw columns in, the model's features out.
pub trait RowPipeline: Send + Sync {
    /// The raw columns it takes, in order.
    fn columns(&self) -> &[RawColumn];
    /// The `[rows, features]` tensor for `columns` (each one of [`RowPipeline::columns`], in
    /// that order, all with the same rows); an error names the column and row at fault.
    fn features(&self, columns: Vec<(String, ColumnValues)>) -> Result<Tensor, String>;
}

/// Finds and loads the pipeline for a model file (`None` when it has none).
pub type PipelineFinder = Arc<dyn Fn(&Path) -> Result<Option<Arc<dyn RowPipeline>>, String> + Send + Sync>;

/// The pipeline file beside `model_file`, if there is one.
pub fn pipeline_beside(model_file: &Path) -> Option<std::path::PathBuf> {
    let stem = model_file.file_stem()?.to_str()?;
    let path = model_file.with_file_name(format!("{stem}{PIPELINE_SUFFIX}"));
    path.is_file().then_some(path)
}
