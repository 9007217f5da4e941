//! Rivet's preprocessing: a pipeline spec fitted on a table with Polars, saved as JSON, and
//! applied in production to turn raw tables into `[rows, features]` f32 tensors, with
//! scikit-learn's semantics where a step has a scikit-learn twin.
//!
//! Work in progress (issue 10): numeric steps, one-hot and ordinal encoding, CSV and Parquet
//! sources.

#![warn(missing_docs)]

mod error;
pub mod pipeline;
pub mod source;
pub mod spec;

pub use error::PrepError;
pub use pipeline::{Fitted, FittedPipeline, InputColumn};
pub use spec::{ImputeStrategy, PipelineSpec, Step, Unseen};
