//! Tables from files: CSV (header row; empty fields are missing) and Parquet.

use std::path::Path;

use polars::prelude::*;

use crate::error::PrepError;

/// Reads a CSV or Parquet file (by extension: `.parquet` or `.pq`, else CSV).
pub fn read_table(path: &Path) -> Result<DataFrame, PrepError> {
    let parquet = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e == "parquet" || e == "pq");
    let df = if parquet {
        let file = std::fs::File::open(path).map_err(|e| PrepError::io(path, e))?;
        ParquetReader::new(file).finish()
    } else {
        if std::fs::metadata(path).map_err(|e| PrepError::io(path, e))?.len() == 0 {
            return Err(PrepError::io(path, "the file is empty"));
        }
        CsvReadOptions::default()
            .with_has_header(true)
            .try_into_reader_with_file_path(Some(path.into()))
            .and_then(|r| r.finish())
    };
    df.map_err(|e| PrepError::io(path, e))
}
