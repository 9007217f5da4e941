//! Tables from files: CSV (read by pandas' `read_csv` rules, see [`CsvRules`]) and Parquet,
//! whole or in batches of rows with bounded memory.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::PrepError;
use crate::pipeline::FittedPipeline;

/// pandas' default `na_values` of `read_csv` (`pandas._libs.parsers.STR_NA_VALUES`).
pub const PANDAS_NA_VALUES: [&str; 19] = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
    "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// How CSV text becomes values: a spec's `[csv]` table, pandas' `read_csv` defaults unless
/// changed, so that a table means the same to Rivet and to pandas.
///
/// - A field whose whole text is one of `na_values` is missing (in every column).
/// - A column whose values (missing ones aside) all read as integers is `i64`, else as numbers
///   `f64`, else text; a number may have spaces around it (`" 7.5"` is 7.5), text keeps its
///   spaces.
/// - When a fitted pipeline reads a file in batches, its input columns are parsed as the types
///   they had when it was fitted, in every batch; a value that does not fit is an error naming
///   the column, the row and the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvRules {
    /// Field texts read as missing values: pandas' list ([`PANDAS_NA_VALUES`]) by default.
    #[serde(default = "pandas_na_values")]
    pub na_values: Vec<String>,
}

fn pandas_na_values() -> Vec<String> {
    PANDAS_NA_VALUES.iter().map(|v| (*v).to_owned()).collect()
}

impl Default for CsvRules {
    fn default() -> CsvRules {
        CsvRules { na_values: pandas_na_values() }
    }
}

impl CsvRules {
    /// Whether these are the defaults (a spec then leaves its `[csv]` table out).
    pub fn is_default(&self) -> bool {
        *self == CsvRules::default()
    }

    fn options(&self) -> CsvReadOptions {
        // The other `na_values` are applied after parsing, to text columns (`missing`): Polars'
        // own null-value matching compares every field with every listed value, a third of the
        // time of reading a file.
        CsvReadOptions::default().with_has_header(true).with_parse_options(
            CsvParseOptions::default().with_missing_is_null(self.na_values.iter().any(|v| v.is_empty())),
        )
    }

    /// The table with every text field that is one of `na_values` missing.
    fn missing(&self, mut df: DataFrame) -> Result<DataFrame, PolarsError> {
        // The listed values by length: most fields are longer than any of them, or of a
        // length none has, and are passed over without a comparison.
        let mut by_length: Vec<Vec<&str>> = Vec::new();
        for value in self.na_values.iter().filter(|v| !v.is_empty()) {
            if by_length.len() <= value.len() {
                by_length.resize(value.len() + 1, Vec::new());
            }
            by_length[value.len()].push(value);
        }
        if by_length.is_empty() {
            return Ok(df);
        }
        let is_na = |t: &str| by_length.get(t.len()).is_some_and(|values| values.contains(&t));
        let names: Vec<PlSmallStr> = df
            .columns()
            .iter()
            .filter(|c| c.dtype() == &DataType::String)
            .map(|c| c.name().clone())
            .collect();
        for name in names {
            let text = df.column(&name)?.as_materialized_series().str()?.clone();
            if text.iter().flatten().any(is_na) {
                let kept: StringChunked = text.iter().map(|t| t.filter(|t| !is_na(t))).collect();
                df.with_column(kept.with_name(name).into_series().into())?;
            }
        }
        Ok(df)
    }
}

/// Whether `path` names a Parquet file (`.parquet` or `.pq`); anything else is read as CSV.
pub fn is_parquet(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e == "parquet" || e == "pq")
}

/// Reads a whole CSV or Parquet file (by extension: `.parquet` or `.pq`, else CSV), CSV by
/// pandas' rules.
pub fn read_table(path: &Path) -> Result<DataFrame, PrepError> {
    read_table_with(path, &CsvRules::default())
}

/// [`read_table`] with CSV read by `rules` (a spec's `[csv]` table).
pub fn read_table_with(path: &Path, rules: &CsvRules) -> Result<DataFrame, PrepError> {
    if is_parquet(path) {
        let file = File::open(path).map_err(|e| PrepError::io(path, e))?;
        return ParquetReader::new(file).finish().map_err(|e| PrepError::io(path, e));
    }
    if std::fs::metadata(path).map_err(|e| PrepError::io(path, e))?.len() == 0 {
        return Err(PrepError::io(path, "the file is empty"));
    }
    // Types are inferred from every row, so that a value that does not fit the column's first
    // rows leaves it text and the step that reads it names that value's row.
    let df = rules
        .options()
        .with_infer_schema_length(None)
        .try_into_reader_with_file_path(Some(path.into()))
        .and_then(|r| r.finish())
        .map_err(|e| PrepError::io(path, e))?;
    rules
        .missing(df)
        .and_then(|df| numbers_from_text(df, &Schema::default()))
        .map_err(|e| PrepError::io(path, e))
}

/// Text columns whose values all read as numbers once the spaces around them are taken off
/// become `i64` (all integers) or `f64` columns, as pandas reads them; `pinned` ones stay.
fn numbers_from_text(mut df: DataFrame, pinned: &Schema) -> Result<DataFrame, PolarsError> {
    let names: Vec<PlSmallStr> = df
        .columns()
        .iter()
        .filter(|c| c.dtype() == &DataType::String && pinned.get(c.name()).is_none())
        .map(|c| c.name().clone())
        .collect();
    for name in names {
        let text = df.column(&name)?.as_materialized_series().str()?.clone();
        if text.null_count() == text.len() {
            continue;
        }
        let converted = if text.iter().flatten().all(|t| t.trim().parse::<i64>().is_ok()) {
            Int64Chunked::from_iter_options(
                name.clone(),
                text.iter().map(|t| t.and_then(|t| t.trim().parse().ok())),
            )
            .into_series()
        } else if text.iter().flatten().all(|t| parse_f64(t).is_some()) {
            Float64Chunked::from_iter_options(name.clone(), text.iter().map(|t| t.and_then(parse_f64)))
                .into_series()
        } else {
            continue;
        };
        df.with_column(converted.into())?;
    }
    Ok(df)
}

/// A number as pandas reads one: spaces around it allowed, `inf`, `-inf` and `Infinity`
/// accepted (NaN spellings are `na_values`).
fn parse_f64(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.is_empty()
        || t.eq_ignore_ascii_case("nan")
        || t.eq_ignore_ascii_case("+nan")
        || t.eq_ignore_ascii_case("-nan")
    {
        return None;
    }
    t.parse().ok()
}

/// A file read as consecutive tables of at most `batch_rows` rows each, with bounded memory:
/// CSV by records (a quoted field may hold newlines), one batch at a time, every batch parsed
/// with the column types of the first (or, opened for a pipeline, its input columns with the
/// types they had when it was fitted); Parquet one row group at a time (its unit of decoding:
/// memory follows the writer's row-group size), handed out in batches.
pub struct TableBatches {
    path: PathBuf,
    batch_rows: usize,
    rows_read: usize,
    rules: CsvRules,
    /// Columns parsed as these types in every CSV batch: a pipeline's input columns.
    pinned: Vec<(String, DataType)>,
    /// The CSV lines the last batch's rows start on (1-based, the header is line 1).
    lines: Option<Arc<Vec<usize>>>,
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
        /// The header's column names, once the first batch has read them.
        names: Option<Vec<String>>,
        schema: Option<SchemaRef>,
        /// The line the next record starts on.
        line: usize,
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
            let line = 1 + header.iter().filter(|b| **b == b'\n').count();
            Source::Csv {
                reader,
                header,
                names: None,
                schema: None,
                line,
                bytes_read,
                bytes_total,
                done: false,
            }
        };
        Ok(TableBatches {
            path: path.to_path_buf(),
            batch_rows: batch_rows.max(1),
            rows_read: 0,
            rules: CsvRules::default(),
            pinned: Vec::new(),
            lines: None,
            source,
        })
    }

    /// Opens `path` for `pipeline`: CSV by its spec's rules, its input columns parsed as the
    /// types they had when it was fitted, so a file reads the same whatever the batch size.
    pub fn open_for(
        path: &Path,
        batch_rows: usize,
        pipeline: &FittedPipeline,
    ) -> Result<TableBatches, PrepError> {
        let mut batches = TableBatches::open(path, batch_rows)?;
        batches.rules = pipeline.csv_rules().clone();
        batches.pinned = pipeline
            .input()
            .iter()
            .filter_map(|c| csv_dtype(&c.dtype).map(|dtype| (c.name.clone(), dtype)))
            .collect();
        Ok(batches)
    }

    /// The CSV lines the rows of the batch last read start on (1-based, the header is line 1);
    /// `None` for Parquet.
    pub fn lines(&self) -> Option<Arc<Vec<usize>>> {
        self.lines.clone()
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
            Source::Csv { reader, header, names, schema, line, bytes_read, done, .. } => {
                if *done {
                    return Ok(None);
                }
                let mut chunk = header.clone();
                let mut starts = Vec::new();
                let records = read_records(reader, self.batch_rows, &mut chunk, line, &mut starts)
                    .map_err(|e| PrepError::io(path, e))?;
                *bytes_read += (chunk.len() - header.len()) as u64;
                if records < self.batch_rows {
                    *done = true;
                }
                if records == 0 {
                    return Ok(None);
                }
                let names = match names {
                    Some(names) => names,
                    None => names.insert(
                        header_names(header, &self.rules)
                            .map_err(|e| PrepError::Data(format!("{}: the header: {e}", path.display())))?,
                    ),
                };
                let rows = Rows { path, header: names, first: self.rows_read, lines: &starts };
                let df = parse_batch(&chunk, &self.rules, schema.as_deref(), &self.pinned, &rows)?;
                schema.get_or_insert_with(|| df.schema().clone());
                self.lines = Some(Arc::new(starts));
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
    /// The CSV line each row starts on (1-based, the header is line 1); `None` for Parquet.
    pub lines: Option<Arc<Vec<usize>>>,
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
                    Ok(Some(df)) => {
                        Ok(Batch { df, first_row, progress: self.progress(), lines: self.lines() })
                    }
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

/// The type a pipeline's input column is parsed as in a CSV file, from the name Polars gave
/// it when fitted; `None` for types a CSV file does not hold (they are inferred).
fn csv_dtype(name: &str) -> Option<DataType> {
    Some(match name {
        "i64" => DataType::Int64,
        "i32" => DataType::Int32,
        "f64" => DataType::Float64,
        "f32" => DataType::Float32,
        "bool" => DataType::Boolean,
        "str" | "cat" | "enum" => DataType::String,
        _ => return None,
    })
}

/// Rows of a batch, for messages: the batch's first row in the file and each row's line.
struct Rows<'a> {
    path: &'a Path,
    /// The column names of the file's header.
    header: &'a [String],
    first: usize,
    lines: &'a [usize],
}

impl Rows<'_> {
    /// An error about these rows, naming the file.
    fn error(&self, message: impl std::fmt::Display) -> PrepError {
        PrepError::Data(format!("{}: {message}", self.path.display()))
    }

    fn name(&self, i: usize) -> String {
        match self.lines.get(i) {
            Some(line) => format!("row {} (0-based, CSV line {line})", self.first + i),
            None => format!("row {} (0-based)", self.first + i),
        }
    }
}

/// A CSV batch as a table: with the types of `schema` (the first batch's) when given, else
/// inferred with the `pinned` columns as these types. A value that does not parse as its
/// column's type is read again as text to name it, and a number with spaces around it is
/// read as pandas reads it.
fn parse_batch(
    chunk: &[u8],
    rules: &CsvRules,
    schema: Option<&Schema>,
    pinned: &[(String, DataType)],
    rows: &Rows,
) -> Result<DataFrame, PrepError> {
    let names = rows.header;
    let pinned: Schema = pinned
        .iter()
        .filter(|(name, _)| names.iter().any(|n| n.as_str() == name))
        .map(|(name, dtype)| Field::new(name.as_str().into(), dtype.clone()))
        .collect();
    // Every column pinned (a pipeline without a leading select): nothing left to infer.
    let complete: Option<Schema> = (schema.is_none() && names.len() == pinned.len())
        .then(|| names.iter().filter_map(|n| pinned.get_field(n)).collect());
    let mut options = rules.options().with_infer_schema_length(None);
    options = match schema.or(complete.as_ref()) {
        Some(schema) => options.with_schema(Some(Arc::new(schema.clone()))),
        None => options.with_schema_overwrite((!pinned.is_empty()).then(|| Arc::new(pinned.clone()))),
    };
    if let Ok(df) = options.into_reader_with_file_handle(Cursor::new(chunk)).finish() {
        let df = rules.missing(df).map_err(|e| rows.error(e))?;
        return if schema.is_some() {
            Ok(df)
        } else {
            numbers_from_text(df, &pinned).map_err(|e| rows.error(e))
        };
    }
    // Every column as text, then each to its type by the rules, naming the first value that
    // does not fit.
    let text = rules
        .options()
        .with_infer_schema_length(Some(0))
        .into_reader_with_file_handle(Cursor::new(chunk))
        .finish()
        .map_err(|e| rows.error(format_args!("{} and after: {e}", rows.name(0))))?;
    let text = rules.missing(text).map_err(|e| rows.error(e))?;
    let inferred = numbers_from_text(text.clone(), &pinned).map_err(|e| rows.error(e))?;
    let mut columns = Vec::with_capacity(text.width());
    for column in text.columns() {
        let name = column.name().as_str();
        let target =
            schema.and_then(|s| s.get(name)).or_else(|| pinned.get(name)).cloned().unwrap_or_else(|| {
                inferred.column(name).map(|c| c.dtype().clone()).unwrap_or(DataType::String)
            });
        columns.push(
            convert(column.as_materialized_series().str().map_err(|e| rows.error(e))?, &target, rows)?.into(),
        );
    }
    DataFrame::new(text.height(), columns).map_err(|e| rows.error(e))
}

/// The column names of a CSV header line.
fn header_names(header: &[u8], rules: &CsvRules) -> Result<Vec<String>, PolarsError> {
    let table = rules
        .options()
        .with_n_rows(Some(0))
        .with_infer_schema_length(Some(0))
        .into_reader_with_file_handle(Cursor::new(header))
        .finish()?;
    Ok(table.get_column_names().iter().map(|n| n.to_string()).collect())
}

/// A text column as `dtype`, by pandas' rules for numbers; the first value that does not fit
/// is an error naming the column, row and value.
fn convert(text: &StringChunked, dtype: &DataType, rows: &Rows) -> Result<Series, PrepError> {
    let name = text.name().clone();
    let bad = |i: usize, value: &str| {
        let what = match dtype {
            DataType::Int64 | DataType::Int32 => {
                format!("an integer ({dtype}, as when the pipeline was fitted)")
            }
            DataType::Boolean => "a boolean".to_owned(),
            _ => "a number".to_owned(),
        };
        rows.error(format_args!("column \"{name}\", {}: \"{value}\" is not {what}", rows.name(i)))
    };
    let parse = |f: &dyn Fn(&str) -> Option<f64>| -> Result<Vec<Option<f64>>, PrepError> {
        text.iter()
            .enumerate()
            .map(|(i, t)| match t {
                None => Ok(None),
                Some(t) => f(t).map(Some).ok_or_else(|| bad(i, t)),
            })
            .collect()
    };
    Ok(match dtype {
        DataType::String => text.clone().into_series(),
        DataType::Int64 | DataType::Int32 => {
            let values: Vec<Option<i64>> = text
                .iter()
                .enumerate()
                .map(|(i, t)| match t {
                    None => Ok(None),
                    Some(t) => t.trim().parse::<i64>().map(Some).map_err(|_| bad(i, t)),
                })
                .collect::<Result<_, PrepError>>()?;
            Int64Chunked::from_iter_options(name.clone(), values.into_iter())
                .into_series()
                .cast(dtype)
                .map_err(|e| rows.error(e))?
        }
        DataType::Boolean => {
            let values = parse(&|t| match t.trim() {
                "True" | "TRUE" | "true" => Some(1.0),
                "False" | "FALSE" | "false" => Some(0.0),
                _ => None,
            })?;
            BooleanChunked::from_iter_options(name.clone(), values.into_iter().map(|v| v.map(|v| v == 1.0)))
                .into_series()
        }
        DataType::Float64 | DataType::Float32 => {
            Float64Chunked::from_iter_options(name.clone(), parse(&parse_f64)?.into_iter())
                .into_series()
                .cast(dtype)
                .map_err(|e| rows.error(e))?
        }
        other => text
            .clone()
            .into_series()
            .cast(other)
            .map_err(|e| rows.error(format_args!("column \"{name}\": {e}")))?,
    })
}

/// Appends up to `limit` CSV records (lines, where a newline inside double quotes does not end
/// one) to `out`; returns how many, and pushes the line each starts on to `starts` (`line` is
/// the line the next record starts on, and moves on). Blank lines are skipped, as the CSV
/// parser does.
fn read_records(
    reader: &mut impl BufRead,
    limit: usize,
    out: &mut Vec<u8>,
    line: &mut usize,
    starts: &mut Vec<usize>,
) -> std::io::Result<usize> {
    let mut records = 0;
    let mut quoted = false;
    let mut line_start = out.len();
    let mut record_line = *line;
    while records < limit {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            // A last record without a newline.
            if out[line_start..].iter().any(|b| !b.is_ascii_whitespace()) {
                out.push(b'\n');
                starts.push(record_line);
                records += 1;
                *line += 1;
            } else {
                out.truncate(line_start);
            }
            break;
        }
        let mut used = 0;
        for i in memchr::memchr2_iter(b'"', b'\n', buf) {
            if buf[i] == b'"' {
                quoted = !quoted;
            } else if quoted {
                *line += 1;
            } else {
                let text = &buf[..=i];
                let blank = out[line_start..].iter().chain(&text[used..]).all(|b| b.is_ascii_whitespace());
                out.extend_from_slice(&buf[used..=i]);
                used = i + 1;
                if blank {
                    out.truncate(line_start);
                } else {
                    starts.push(record_line);
                    records += 1;
                }
                *line += 1;
                record_line = *line;
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
        let n = read_records(&mut reader, limit, &mut out, &mut 2, &mut Vec::new()).unwrap();
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

    #[test]
    fn records_know_the_line_they_start_on() {
        let text = "1,\"a\nb\"\n2,x\n\n3,y\n4,\"\n\n\"\n5,z";
        let mut reader = std::io::BufReader::with_capacity(3, text.as_bytes());
        let (mut line, mut starts, mut out) = (2, Vec::new(), Vec::new());
        assert_eq!(super::read_records(&mut reader, 2, &mut out, &mut line, &mut starts).unwrap(), 2);
        assert_eq!(super::read_records(&mut reader, 9, &mut out, &mut line, &mut starts).unwrap(), 3);
        assert_eq!(starts, [2, 4, 6, 7, 10]);
    }
}
