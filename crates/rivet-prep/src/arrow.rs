//! Tables from Arrow's C Data Interface: a record batch (a struct array and its schema) made
//! by another library or language, imported without copying primitive columns.

use polars::prelude::*;
use polars_arrow::array::{Array as _, StructArray};
use polars_arrow::datatypes::ArrowDataType;
pub use polars_arrow::ffi::{ArrowArray, ArrowArrayStream, ArrowSchema};

use crate::error::PrepError;

/// Imports a record batch: `schema` describes a struct (format `+s`) whose fields are the
/// columns, `array` holds it. Both are moved in: their release callbacks run exactly once,
/// `schema`'s before this returns, `array`'s when the last column of the returned table (or of
/// anything sharing its buffers) is dropped, or before this returns when it fails. Primitive
/// columns stay in the producer's buffers; text is converted to Polars' layout.
///
/// # Safety
/// `array` and `schema` must follow the C Data Interface: not yet released, `array` laid out as
/// `schema` says, and every buffer valid until `array`'s release callback runs.
pub unsafe fn import_record_batch(array: ArrowArray, schema: ArrowSchema) -> Result<DataFrame, PrepError> {
    let error = |what: &str, e: PolarsError| PrepError::Data(format!("Arrow record batch: {what}: {e}"));
    // SAFETY: a valid schema (the caller's contract); it is released when dropped, below.
    let field = unsafe { polars_arrow::ffi::import_field_from_c(&schema) }.map_err(|e| error("schema", e))?;
    drop(schema);
    if !matches!(field.dtype(), ArrowDataType::Struct(_)) {
        // Dropping `array` releases it.
        return Err(not_a_batch(&field));
    }
    // SAFETY: `array` is laid out as the schema says (the caller's contract).
    let imported = unsafe { polars_arrow::ffi::import_array_from_c(array, field.dtype().clone()) }
        .map_err(|e| error("array", e))?;
    frame(&field, imported.as_ref())
}

fn not_a_batch(field: &polars_arrow::datatypes::Field) -> PrepError {
    PrepError::Data(format!(
        "Arrow record batch: the schema is {:?}; a record batch is a struct (format \"+s\") of columns",
        field.dtype()
    ))
}

/// The columns of an imported struct array as a table.
fn frame(
    field: &polars_arrow::datatypes::Field,
    imported: &dyn polars_arrow::array::Array,
) -> Result<DataFrame, PrepError> {
    let error = |what: &str, e: PolarsError| PrepError::Data(format!("Arrow record batch: {what}: {e}"));
    let ArrowDataType::Struct(fields) = field.dtype() else {
        return Err(not_a_batch(field));
    };
    let batch = imported
        .as_any()
        .downcast_ref::<StructArray>()
        .ok_or_else(|| PrepError::Data("Arrow record batch: the array is not a struct array".into()))?;
    if batch.null_count() > 0 {
        return Err(PrepError::Data(format!(
            "Arrow record batch: {} rows are null as a whole; a record batch has no null rows",
            batch.null_count()
        )));
    }
    let columns = fields
        .iter()
        .zip(batch.values())
        .map(|(f, values)| {
            Series::try_from((f, values.clone()))
                .map(Column::from)
                .map_err(|e| error(&format!("column \"{}\"", f.name), e))
        })
        .collect::<Result<Vec<Column>, PrepError>>()?;
    DataFrame::new(batch.len(), columns).map_err(|e| error("columns", e))
}

/// The record batches of an Arrow C stream (`ArrowArrayStream`), one table each.
pub struct RecordBatches {
    reader: polars_arrow::ffi::ArrowArrayStreamReader<Box<ArrowArrayStream>>,
    index: usize,
}

impl RecordBatches {
    /// Takes `stream`: its release callback runs exactly once, when this is dropped (or before
    /// this returns, when it fails). The stream's schema must be a struct of columns.
    ///
    /// # Safety
    /// `stream` must follow the C Stream Interface, and every batch it yields the C Data
    /// Interface, laid out as the stream's schema says.
    pub unsafe fn import(stream: ArrowArrayStream) -> Result<RecordBatches, PrepError> {
        // SAFETY: the caller's contract.
        let reader = unsafe { polars_arrow::ffi::ArrowArrayStreamReader::try_new(Box::new(stream)) }
            .map_err(|e| PrepError::Data(format!("Arrow stream: {e}")))?;
        if !matches!(reader.field().dtype(), ArrowDataType::Struct(_)) {
            return Err(not_a_batch(reader.field()));
        }
        Ok(RecordBatches { reader, index: 0 })
    }
}

impl Iterator for RecordBatches {
    type Item = Result<DataFrame, PrepError>;

    fn next(&mut self) -> Option<Self::Item> {
        // SAFETY: the stream and its batches follow the interfaces (`import`'s contract).
        let next = unsafe { self.reader.next() }?;
        let index = self.index;
        self.index += 1;
        Some(
            next.map_err(|e| PrepError::Data(format!("Arrow stream, batch {index}: {e}")))
                .and_then(|array| frame(self.reader.field(), array.as_ref())),
        )
    }
}
