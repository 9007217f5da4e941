//! The one error type of preprocessing.

use std::path::Path;

/// What went wrong; every message names the file, step, column or row concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrepError {
    /// The spec (or a fitted pipeline's copy of it) is malformed.
    #[error("invalid pipeline spec: {0}")]
    Spec(String),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// The data does not fit the pipeline: a missing column, a wrong type, an unparsable value.
    #[error("{0}")]
    Data(String),
    /// The model does not fit the pipeline, or failed on its features.
    #[error("model: {0}")]
    Model(String),
}

impl PrepError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, error: impl std::fmt::Display) -> PrepError {
        PrepError::Io(format!("{}: {error}", path.display()))
    }
}
