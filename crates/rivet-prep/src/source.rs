//! Tables from files: CSV (header row; empty fields are missing) and Parquet, whole or in
//! batches of rows with bounded memory.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::PrepError;

/// Whether `path` names a Parquet file (`.parquet` or `.pq`); anything else is read as CSV.
pub fn is_parquet(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e == "parquet" || e == "pq")
}

/// Reads a whole CSV or Parquet file (by extension: `.parquet` or `.pq`, else CSV).
pub fn read_table(path: &Path) -> Result<DataFrame, PrepError> {
    let df = if is_parquet(path) {
        let file = File::open(path).map_err(|e| PrepError::io(path, e))?;
        ParquetReader::new(file).finish()
    } else {
        if std::fs::metadata(path).map_err(|e| PrepError::io(path, e))?.len() == 0 {
            return Err(PrepError::io(path, "the file is empty"));
        }
        // Types are inferred from every row, so that a value that does not fit the column's
        // first rows leaves it text and the step that reads it names that value's row.
        CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(None)
            .try_into_reader_with_file_path(Some(path.into()))
            .and_then(|r| r.finish())
    };
    df.map_err(|e| PrepError::io(path, e))
}

/// A file read as consecutive tables of at most `batch_rows` rows each, with bounded memory:
/// CSV by records (a quoted field may hold newlines), one batch at a time, every batch parsed
/// with the column types of the first; Parquet one row group at a time (its unit of decoding:
/// memory follows the writer's row-group size), handed out in batches.
pub struct TableBatches {
    path: PathBuf,
    batch_rows: usize,
    rows_read: usize,
    source: Source,
}

enum Source {
    Parquet {
        file: File,
        total_rows: usize,
        /// Row counts of the row groups (a file is decoded one row group at a time).
        groups: Vec<usize>,
        /// The next row group to decode.
        next_group: usize,
        /// What is left of the decoded row group.
        pending: Option<DataFrame>,
    },
    Csv {
        reader: BufReader<File>,
        header: Vec<u8>,
        schema: Option<SchemaRef>,
        bytes_read: u64,
        bytes_total: u64,
        done: bool,
    },
}

impl TableBatches {
    /// Opens `path` for reading in batches of `batch_rows` rows (at least 1).
    pub fn open(path: &Path, batch_rows: usize) -> Result<TableBatches, PrepError> {
        let file = File::open(path).map_err(|e| PrepError::io(path, e))?;
        let source = if is_parquet(path) {
            let mut reader = ParquetReader::new(file.try_clone().map_err(|e| PrepError::io(path, e))?);
            let groups: Vec<usize> = reader
                .get_metadata()
                .map_err(|e| PrepError::io(path, e))?
                .row_groups
                .iter()
                .map(|g| g.num_rows())
                .collect();
            let total_rows = groups.iter().sum();
            Source::Parquet { file, total_rows, groups, next_group: 0, pending: None }
        } else {
            let bytes_total = file.metadata().map_err(|e| PrepError::io(path, e))?.len();
            let mut reader = BufReader::with_capacity(1 << 20, file);
            let mut header = Vec::new();
            reader.read_until(b'\n', &mut header).map_err(|e| PrepError::io(path, e))?;
            if header.iter().all(|b| b.is_ascii_whitespace()) {
                return Err(PrepError::io(path, "the file is empty"));
            }
            if header.last() != Some(&b'\n') {
                header.push(b'\n');
            }
            let bytes_read = header.len() as u64;
            Source::Csv { reader, header, schema: None, bytes_read, bytes_total, done: false }
        };
        Ok(TableBatches { path: path.to_path_buf(), batch_rows: batch_rows.max(1), rows_read: 0, source })
    }

    /// Rows handed out so far: the next batch's first row.
    pub fn rows_read(&self) -> usize {
        self.rows_read
    }

    /// How far through the file: `(done, total)` in rows for Parquet, in bytes for CSV.
    pub fn progress(&self) -> (u64, u64) {
        match &self.source {
            Source::Parquet { total_rows, .. } => (self.rows_read as u64, *total_rows as u64),
            Source::Csv { bytes_read, bytes_total, .. } => (*bytes_read, *bytes_total),
        }
    }

    fn next_batch(&mut self) -> Result<Option<DataFrame>, PrepError> {
        let path = &self.path;
        let df = match &mut self.source {
            Source::Parquet { file, groups, next_group, pending, .. } => {
                if pending.as_ref().is_none_or(|df| df.height() == 0) {
                    // Decode the next non-empty row group whole: Parquet's unit of decoding.
                    while groups.get(*next_group) == Some(&0) {
                        *next_group += 1;
                    }
                    let Some(&rows) = groups.get(*next_group) else {
                        return Ok(None);
                    };
                    let start: usize = groups[..*next_group].iter().sum();
                    *next_group += 1;
                    let file = file.try_clone().map_err(|e| PrepError::io(path, e))?;
                    *pending = Some(
                        ParquetReader::new(file)
                            .with_slice(Some((start, rows)))
                            .finish()
                            .map_err(|e| PrepError::io(path, e))?,
                    );
                }
                let Some(group) = pending.take() else {
                    return Ok(None);
                };
                let take = self.batch_rows.min(group.height());
                *pending = Some(group.slice(take as i64, group.height() - take));
                group.slice(0, take)
            }
            Source::Csv { reader, header, schema, bytes_read, done, .. } => {
                if *done {
                    return Ok(None);
                }
                let mut chunk = header.clone();
                let records =
                    read_records(reader, self.batch_rows, &mut chunk).map_err(|e| PrepError::io(path, e))?;
                *bytes_read += (chunk.len() - header.len()) as u64;
                if records < self.batch_rows {
                    *done = true;
                }
                if records == 0 {
                    return Ok(None);
                }
                let mut options =
                    CsvReadOptions::default().with_has_header(true).with_infer_schema_length(None);
                if let Some(schema) = schema.clone() {
                    options = options.with_schema(Some(schema));
                }
                let df = match options.into_reader_with_file_handle(Cursor::new(&chunk)).finish() {
                    Ok(df) => df,
                    Err(e) => {
                        let first = self.rows_read;
                        return Err(schema
                            .as_ref()
                            .and_then(|schema| unparsable(&chunk, schema, first))
                            .unwrap_or_else(|| format!("rows {first} to {}: {e}", first + records - 1)))
                        .map_err(|message| PrepError::Data(format!("{}: {message}", path.display())));
                    }
                };
                schema.get_or_insert_with(|| df.schema().clone());
                df
            }
        };
        self.rows_read += df.height();
        Ok(Some(df))
    }
}

/// One batch read ahead: the table, its first row in the file, and the reader's progress after it.
pub struct Batch {
    /// The rows.
    pub df: DataFrame,
    /// The batch's first row in the whole file.
    pub first_row: usize,
    /// [`TableBatches::progress`] after this batch.
    pub progress: (u64, u64),
}

/// [`TableBatches`] read on a thread of their own, at most `depth` batches ahead, so that
/// reading and parsing the next batch overlaps with the work on this one. Memory stays bounded
/// by `depth + 2` batches; dropping it stops the reader.
pub struct ReadAhead {
    receiver: std::sync::mpsc::Receiver<Result<Batch, PrepError>>,
}

impl TableBatches {
    /// Moves the reading to a thread of its own, `depth` batches ahead (at least 1).
    pub fn read_ahead(mut self, depth: usize) -> ReadAhead {
        let (sender, receiver) = std::sync::mpsc::sync_channel(depth.max(1));
        std::thread::Builder::new()
            .name("rivet-prep-read".into())
            .spawn(move || loop {
                let first_row = self.rows_read;
                let item = match self.next_batch() {
                    Ok(None) => return,
                    Ok(Some(df)) => Ok(Batch { df, first_row, progress: self.progress() }),
                    Err(e) => Err(e),
                };
                let stop = item.is_err();
                if sender.send(item).is_err() || stop {
                    return;
                }
            })
            .map(|_| ReadAhead { receiver })
            .unwrap_or_else(|e| {
                let (sender, receiver) = std::sync::mpsc::sync_channel(1);
                let _ = sender.send(Err(PrepError::Io(format!("cannot start the reading thread: {e}"))));
                ReadAhead { receiver }
            })
    }
}

impl Iterator for ReadAhead {
    type Item = Result<Batch, PrepError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.receiver.recv().ok()
    }
}

impl Iterator for TableBatches {
    type Item = Result<DataFrame, PrepError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}

/// Why a CSV batch did not parse with the first batch's column types: the first value that
/// does not convert, by column and row (`first_row` is the batch's first row in the file).
fn unparsable(chunk: &[u8], schema: &Schema, first_row: usize) -> Option<String> {
    let df = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .into_reader_with_file_handle(Cursor::new(chunk))
        .finish()
        .ok()?;
    for (name, dtype) in schema.iter() {
        let text = df.column(name.as_str()).ok()?.as_materialized_series().str().ok()?.clone();
        let cast = text.clone().into_series().cast(dtype).ok()?;
        let bad =
            text.iter().zip(cast.is_null().iter()).position(|(t, null)| t.is_some() && null.unwrap_or(false));
        if let Some(row) = bad {
            let value = text.get(row).unwrap_or_default();
            return Some(format!(
                "column \"{name}\", row {}: \"{value}\" is not {dtype} like the rows before it",
                first_row + row
            ));
        }
    }
    None
}

/// Appends up to `limit` CSV records (lines, where a newline inside double quotes does not end
/// one) to `out`; returns how many. Blank lines are skipped, as the CSV parser does.
fn read_records(reader: &mut impl BufRead, limit: usize, out: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut records = 0;
    let mut quoted = false;
    let mut line_start = out.len();
    while records < limit {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            // A last record without a newline.
            if out[line_start..].iter().any(|b| !b.is_ascii_whitespace()) {
                out.push(b'\n');
                records += 1;
            } else {
                out.truncate(line_start);
            }
            break;
        }
        let mut used = 0;
        for i in memchr::memchr2_iter(b'"', b'\n', buf) {
            if buf[i] == b'"' {
                quoted = !quoted;
            } else if !quoted {
                let line = &buf[..=i];
                let blank = out[line_start..].iter().chain(&line[used..]).all(|b| b.is_ascii_whitespace());
                out.extend_from_slice(&buf[used..=i]);
                used = i + 1;
                if blank {
                    out.truncate(line_start);
                } else {
                    records += 1;
                }
                line_start = out.len();
                if records == limit {
                    break;
                }
            }
        }
        if records < limit {
            out.extend_from_slice(&buf[used..]);
            used = buf.len();
        }
        reader.consume(used);
    }
    Ok(records)
}

/// Reads the CSV remainder after a header line; exposed for the tests of record splitting.
#[cfg(test)]
fn split_all(text: &str, limit: usize) -> Vec<String> {
    let mut file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
    std::io::Seek::rewind(&mut file).unwrap();
    let mut reader = BufReader::with_capacity(4, file);
    let mut parts = Vec::new();
    loop {
        let mut out = Vec::new();
        let n = read_records(&mut reader, limit, &mut out).unwrap();
        if n == 0 {
            break;
        }
        parts.push(String::from_utf8(out).unwrap());
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    assert!(rest.is_empty());
    parts
}

#[cfg(test)]
mod tests {
    use super::split_all;

    #[test]
    fn records_split_on_newlines_outside_quotes_only() {
        let text = "1,\"a\nb\"\n2,x\n\n3,\"\"\"q\"\"\"\r\n4,y";
        assert_eq!(split_all(text, 2), vec!["1,\"a\nb\"\n2,x\n", "3,\"\"\"q\"\"\"\r\n4,y\n"]);
        assert_eq!(split_all(text, 3), vec!["1,\"a\nb\"\n2,x\n3,\"\"\"q\"\"\"\r\n", "4,y\n"]);
        assert_eq!(split_all("1\n2\n", 5), vec!["1\n2\n"]);
        assert!(split_all("\n\n", 5).is_empty());
    }
}
