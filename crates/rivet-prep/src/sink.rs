//! Tables written batch by batch to a temporary file that takes its final name only when
//! complete, so an interrupted or failed run never leaves a partial file that looks finished.

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::io::csv::write::BatchedWriter as CsvBatches;
use polars::io::parquet::write::BatchedWriter as ParquetBatches;
use polars::prelude::*;
use tempfile::NamedTempFile;

use crate::error::PrepError;
use crate::source::is_parquet;

/// A temporary file beside `path` (same folder, so the final rename is atomic), hidden and
/// named after it: `.NAME.XXXXXX.partial`.
fn temp_beside(path: &Path) -> Result<NamedTempFile, PrepError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|e| PrepError::io(path, e))
}

/// Gives a complete temporary file its final name, with the usual 0644 permissions (a
/// temporary file is private, 0600).
fn publish(temp: NamedTempFile, path: &Path) -> Result<(), PrepError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| PrepError::io(path, e))?;
    }
    temp.persist(path).map_err(|e| PrepError::io(path, e.error))?;
    Ok(())
}

enum Writer {
    Csv(CsvBatches<File>),
    Parquet(Box<ParquetBatches<File>>),
}

/// A CSV or Parquet file (by extension) written in batches, renamed into place by
/// [`TableSink::finish`]; dropped unfinished, it leaves nothing behind.
pub struct TableSink {
    path: PathBuf,
    temp: NamedTempFile,
    writer: Option<Writer>,
    rows: usize,
}

impl TableSink {
    /// Starts writing `path`: `.parquet` or `.pq` for Parquet, `.csv` for CSV.
    pub fn create(path: &Path) -> Result<TableSink, PrepError> {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !is_parquet(path) && extension != "csv" {
            return Err(PrepError::io(path, "write .csv, .parquet or .pq"));
        }
        let temp = temp_beside(path)?;
        Ok(TableSink { path: path.to_path_buf(), temp, writer: None, rows: 0 })
    }

    /// Appends a batch; every batch must have the first one's columns.
    pub fn write(&mut self, df: &DataFrame) -> Result<(), PrepError> {
        let path = &self.path;
        let error = |e: PolarsError| PrepError::io(path, e);
        if self.writer.is_none() {
            let file = self.temp.reopen().map_err(|e| PrepError::io(path, e))?;
            self.writer = Some(if is_parquet(path) {
                Writer::Parquet(Box::new(ParquetWriter::new(file).batched(df.schema()).map_err(error)?))
            } else {
                Writer::Csv(CsvWriter::new(file).batched(df.schema()).map_err(error)?)
            });
        }
        // The Parquet writer needs every column in the same chunks (columns copied from the
        // input may come in several).
        let mut df = df.clone();
        df.rechunk_mut();
        match self.writer.as_mut() {
            Some(Writer::Csv(w)) => w.write_batch(&df).map_err(error)?,
            Some(Writer::Parquet(w)) => w.write_batch(&df).map_err(error)?,
            None => {}
        }
        self.rows += df.height();
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Completes the file and gives it its name. Fails when nothing was written.
    pub fn finish(self) -> Result<(), PrepError> {
        let path = &self.path;
        let error = |e: PolarsError| PrepError::io(path, e);
        match self.writer {
            Some(Writer::Csv(mut w)) => w.finish().map_err(error)?,
            Some(Writer::Parquet(w)) => {
                w.finish().map_err(error)?;
            }
            None => return Err(PrepError::io(path, "no rows to write")),
        }
        self.temp.as_file().sync_all().map_err(|e| PrepError::io(path, e))?;
        publish(self.temp, path)
    }
}

/// A `.npy` file of f32 rows (`[rows, width]`, C order) written batch by batch: the header is
/// written with room for any row count and rewritten with the real one by
/// [`NpySink::finish`], which also gives the file its name.
pub struct NpySink {
    path: PathBuf,
    temp: NamedTempFile,
    out: Option<std::io::BufWriter<File>>,
    width: usize,
    rows: usize,
}

impl NpySink {
    /// Starts writing `path` with rows of `width` values.
    pub fn create(path: &Path, width: usize) -> Result<NpySink, PrepError> {
        let temp = temp_beside(path)?;
        let mut out =
            std::io::BufWriter::with_capacity(1 << 20, temp.reopen().map_err(|e| PrepError::io(path, e))?);
        std::io::Write::write_all(&mut out, &npy_header(0, width)).map_err(|e| PrepError::io(path, e))?;
        Ok(NpySink { path: path.to_path_buf(), temp, out: Some(out), width, rows: 0 })
    }

    /// Appends the rows of a `[rows, width]` f32 tensor.
    pub fn write(&mut self, features: &rivet_core::Tensor) -> Result<(), PrepError> {
        let path = &self.path;
        match features.shape() {
            [rows, width] if *width == self.width && features.dtype() == rivet_core::DType::F32 => {
                if let Some(out) = self.out.as_mut() {
                    std::io::Write::write_all(out, features.as_bytes())
                        .map_err(|e| PrepError::io(path, e))?;
                }
                self.rows += rows;
                Ok(())
            }
            shape => Err(PrepError::io(path, format!("rows of {} f32 values, got {shape:?}", self.width))),
        }
    }

    /// Writes the final header and gives the file its name.
    pub fn finish(mut self) -> Result<(), PrepError> {
        use std::io::{Seek, Write};
        let path = &self.path;
        let io = |e: std::io::Error| PrepError::io(path, e);
        let mut file =
            self.out.take().map(|out| out.into_inner().map_err(|e| io(e.into_error()))).transpose()?;
        if let Some(file) = file.as_mut() {
            file.rewind().map_err(io)?;
            file.write_all(&npy_header(self.rows, self.width)).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        publish(self.temp, path)
    }
}

/// A `.npy` 1.0 header for `[rows, width]` f32, always 128 bytes: the row count is padded to
/// 20 digits so that the final header can overwrite the first.
fn npy_header(rows: usize, width: usize) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows:>20}, {width}), }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((128 - unpadded % 128) % 128));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}
