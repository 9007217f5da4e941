//! Rivet's preprocessing: a pipeline spec fitted on a table with Polars, saved as JSON, and
//! applied in production to turn raw tables into `[rows, features]` f32 tensors, with
//! scikit-learn's semantics where a step has a scikit-learn twin.
//!
//! A [`Scorer`] pairs a model with its pipeline; [`TableBatches`] reads files larger than
//! memory batch by batch.

#![warn(missing_docs)]

pub mod arrow;
mod error;
mod expr;
pub mod pipeline;
pub mod scorer;
pub mod sink;
pub mod source;
pub mod spec;
mod steps;

pub use error::PrepError;
pub use expr::ExpressionError;
pub use pipeline::{Fitted, FittedPipeline, InputColumn};
/// The Polars this crate is built on, for in-memory `DataFrame` sources.
pub use polars;
pub use scorer::{ScoreSummary, Scorer};
pub use sink::{NpySink, TableSink};
pub use source::{read_table, read_table_with, Batch, CsvRules, ReadAhead, TableBatches};
pub use spec::{DatetimePart, ImputeStrategy, PipelineSpec, Step, Unseen};
