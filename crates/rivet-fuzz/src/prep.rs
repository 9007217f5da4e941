//! Preprocessing inputs: pipeline specs and fitted pipelines as text (`pipeline`), and Arrow
//! record batches handed to the C ABI (`arrow`).

use std::ffi::{c_char, c_void, CString};
use std::path::PathBuf;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use arbitrary::Unstructured;
use rivet_capi::{
    rivet_pipeline_load, rivet_pipeline_t, rivet_pipeline_transform_arrow, rivet_tensor_free, rivet_tensor_t,
    ArrowArray, ArrowSchema, RIVET_ERROR_INVALID_ARGUMENT, RIVET_ERROR_PREPROCESS,
};
use rivet_core::Tensor;
use rivet_prep::polars::prelude::*;
use rivet_prep::{FittedPipeline, PipelineSpec, PrepError};

use crate::capi::{take_error, tensor_of};

/// The table every spec is fitted on and transforms: short column names a fuzzer finds, one
/// of each kind a spec reads (numbers with gaps, integers, booleans, categories, timestamps,
/// numbers as text) and some that fail (a missing category, a bad timestamp, bad number text).
fn sample() -> &'static DataFrame {
    static FRAME: OnceLock<DataFrame> = OnceLock::new();
    FRAME.get_or_init(|| {
        df!(
            "a" => [Some(1.5), None, Some(f64::NAN), Some(-3.0), Some(1e300)],
            "b" => [1i64, 2, 2, 7, -4],
            "c" => ["x", "y", "x", "é", "y"],
            "t" => ["2024-01-02T03:04:05", "2024-02-29 23:59:59+02:00", "1999-12-31", "2024-01-02T03:04:05Z", "2000-06-15 12:00:00"],
            "d" => [true, false, true, true, false],
            "s" => ["1", "2.5", "", "-0", "1e3"],
            "n" => [Some("x"), None, Some("y"), Some("x"), Some("z")],
            "u" => ["2024-01-02", "yesterday", "2024-01-03", "2024-01-04", "2024-01-05"],
            "v" => ["1", "x", "2", "3", "4"],
        )
        .expect("the sample table")
    })
}

/// A spec or a fitted pipeline as text, the way `rivet prep`, `Scorer` and
/// `rivet_pipeline_load` read them. The first byte picks what the rest is: a spec in TOML
/// ([`PipelineSpec::from_text`]), a spec in JSON, or a fitted pipeline
/// ([`FittedPipeline::from_json`]). A spec that reads is fitted on a small table; a pipeline
/// that fits or loads transforms it. Verdicts: a spec error for text that does not read, a
/// spec or data error from fitting and transforming, or features of the advertised shape, all
/// finite, that a save and load of the pipeline reproduces exactly.
pub fn pipeline(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let fitted = match pick % 3 {
        kind @ (0 | 1) => match PipelineSpec::from_text(&text, kind == 0) {
            Ok(spec) => match FittedPipeline::fit(&spec, sample()) {
                Ok(fitted) => fitted,
                Err(e) => return assert!(matches!(e, PrepError::Spec(_) | PrepError::Data(_)), "{e:?}"),
            },
            Err(e) => return assert!(matches!(e, PrepError::Spec(_)), "{e:?}"),
        },
        _ => match FittedPipeline::from_json(&text) {
            Ok(fitted) => fitted,
            Err(e) => return assert!(matches!(e, PrepError::Spec(_)), "{e:?}"),
        },
    };
    let transformed = fitted.transform(sample());
    if let Ok((features, names)) = &transformed {
        check_features(features, names, &fitted, sample().height());
    } else if let Err(e) = &transformed {
        assert!(matches!(e, PrepError::Spec(_) | PrepError::Data(_)), "{e:?}");
    }
    // What `save` writes, `load` reads back into the same pipeline, transforming the same way.
    let json = serde_json::to_string(&fitted).expect("a fitted pipeline serialises");
    let again = FittedPipeline::from_json(&json)
        .unwrap_or_else(|e| panic!("Rivet's own pipeline JSON does not read back: {e}\n{json}"));
    assert_eq!(serde_json::to_string(&again).expect("serialises"), json, "save, load, save");
    match (transformed, again.transform(sample())) {
        (Ok(a), Ok(b)) => assert_eq!(bits(&a.0), bits(&b.0), "transform after save and load"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("transform before and after save and load: {a:?} / {b:?}"),
    }
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.as_slice::<f32>().expect("f32 features").iter().map(|v| v.to_bits()).collect()
}

fn check_features(features: &Tensor, names: &[String], fitted: &FittedPipeline, rows: usize) {
    assert_eq!(names, fitted.features(), "feature names as fitted");
    assert_eq!(features.shape(), &[rows, names.len()], "a [rows, features] tensor");
    let values = features.as_slice::<f32>().expect("f32 features");
    assert!(values.iter().all(|v| v.is_finite()), "non-finite features: {values:?}");
}

// ---------------------------------------------------------------------------------------------
// Arrow record batches through the C ABI.

/// The pipeline the `arrow` target transforms with: fitted on [`sample`] once, saved, and
/// loaded through `rivet_pipeline_load` as a C caller would.
fn arrow_pipeline() -> &'static (usize, FittedPipeline) {
    static PIPELINE: OnceLock<(usize, FittedPipeline)> = OnceLock::new();
    PIPELINE.get_or_init(|| {
        let spec = PipelineSpec::from_text(
            r#"steps = [
                { op = "select", columns = ["a", "b", "c", "t"] },
                { op = "impute", columns = ["a"], strategy = "median" },
                { op = "clip", columns = ["a"], min = -10.0, max = 10.0 },
                { op = "standard_scale", columns = ["a", "b"] },
                { op = "one_hot", columns = ["c"], unseen = "ignore" },
                { op = "datetime", column = "t", parts = ["year", "hour"] },
            ]"#,
            true,
        )
        .expect("the arrow target's spec");
        let fitted = FittedPipeline::fit(&spec, sample()).expect("fits the sample");
        let path: PathBuf =
            std::env::temp_dir().join(format!("rivet-fuzz-{}.pipeline.json", std::process::id()));
        fitted.save(&path).expect("saves");
        let c_path = CString::new(path.to_str().expect("a UTF-8 temp dir")).expect("no NUL");
        let mut handle: *mut rivet_pipeline_t = ptr::null_mut();
        // SAFETY: a NUL-terminated path and a writable out pointer.
        assert!(take_error(unsafe { rivet_pipeline_load(c_path.as_ptr(), &mut handle) }).is_none());
        let _ = std::fs::remove_file(&path);
        // The handle lives as long as the process (a usize, so the static is Sync).
        (handle as usize, fitted)
    })
}

/// Release callbacks as a producer writes them: count the call, release the children and the
/// dictionary not yet released, mark the struct released. The memory stays with [`Producer`],
/// which outlives the call.
unsafe extern "C" fn release_schema(s: *mut ArrowSchema) {
    // SAFETY: called by the consumer on a live struct this producer made.
    unsafe {
        (*(*s).private_data.cast::<AtomicU32>()).fetch_add(1, Ordering::SeqCst);
        for i in 0..(*s).n_children as usize {
            let child = *(*s).children.add(i);
            if let Some(release) = (*child).release {
                release(child);
            }
        }
        if let Some(dictionary) = (*s).dictionary.as_mut() {
            if let Some(release) = dictionary.release {
                release(dictionary);
            }
        }
        (*s).release = None;
    }
}

unsafe extern "C" fn release_array(a: *mut ArrowArray) {
    // SAFETY: as release_schema.
    unsafe {
        (*(*a).private_data.cast::<AtomicU32>()).fetch_add(1, Ordering::SeqCst);
        for i in 0..(*a).n_children as usize {
            let child = *(*a).children.add(i);
            if let Some(release) = (*child).release {
                release(child);
            }
        }
        if let Some(dictionary) = (*a).dictionary.as_mut() {
            if let Some(release) = dictionary.release {
                release(dictionary);
            }
        }
        (*a).release = None;
    }
}

/// Everything a record batch points at, kept at stable addresses until the end of the call
/// (boxed: the structs point at one another, so they must not move as the vectors grow).
#[derive(Default)]
#[allow(clippy::vec_box)]
struct Producer {
    strings: Vec<CString>,
    words: Vec<Vec<u64>>,
    buffer_lists: Vec<Box<[*const c_void]>>,
    schema_lists: Vec<Box<[*mut ArrowSchema]>>,
    array_lists: Vec<Box<[*mut ArrowArray]>>,
    schemas: Vec<Box<ArrowSchema>>,
    arrays: Vec<Box<ArrowArray>>,
    counters: Vec<Box<AtomicU32>>,
}

impl Producer {
    fn text(&mut self, s: &str) -> *const c_char {
        let c = CString::new(s.replace('\0', "")).expect("no NUL left");
        let p = c.as_ptr();
        self.strings.push(c);
        p
    }

    fn counter(&mut self) -> *mut c_void {
        self.counters.push(Box::new(AtomicU32::new(0)));
        let last: &AtomicU32 = self.counters.last().expect("just pushed");
        ptr::from_ref(last).cast_mut().cast::<c_void>()
    }

    /// A buffer of these bytes, 64-byte aligned.
    fn buffer(&mut self, bytes: &[u8]) -> *const c_void {
        let mut words = vec![0u64; bytes.len().div_ceil(8) + 8];
        let start = words.as_ptr().align_offset(64);
        // SAFETY: `words` has room for the alignment padding (at most 7 words) plus the bytes.
        unsafe {
            let base = words.as_mut_ptr().add(start).cast::<u8>();
            ptr::copy_nonoverlapping(bytes.as_ptr(), base, bytes.len());
        }
        let p = words.as_ptr().wrapping_add(start).cast::<c_void>();
        self.words.push(words);
        p
    }

    fn schema(
        &mut self,
        format: &str,
        name: &str,
        children: Vec<*mut ArrowSchema>,
        dictionary: *mut ArrowSchema,
    ) -> *mut ArrowSchema {
        let n_children = children.len() as i64;
        let mut list: Box<[*mut ArrowSchema]> = children.into_boxed_slice();
        let children = if list.is_empty() { ptr::null_mut() } else { list.as_mut_ptr() };
        self.schema_lists.push(list);
        let mut s = Box::new(ArrowSchema {
            format: self.text(format),
            name: self.text(name),
            metadata: ptr::null(),
            flags: 2, // ARROW_FLAG_NULLABLE
            n_children,
            children,
            dictionary,
            release: Some(release_schema),
            private_data: self.counter(),
        });
        let p = ptr::from_mut::<ArrowSchema>(&mut s);
        self.schemas.push(s);
        p
    }

    #[allow(clippy::too_many_arguments)]
    fn array(
        &mut self,
        length: usize,
        null_count: i64,
        offset: usize,
        buffers: Vec<*const c_void>,
        children: Vec<*mut ArrowArray>,
        dictionary: *mut ArrowArray,
    ) -> *mut ArrowArray {
        let (n_buffers, n_children) = (buffers.len() as i64, children.len() as i64);
        let mut buffers: Box<[*const c_void]> = buffers.into_boxed_slice();
        let buffer_ptr = if buffers.is_empty() { ptr::null_mut() } else { buffers.as_mut_ptr() };
        self.buffer_lists.push(buffers);
        let mut list: Box<[*mut ArrowArray]> = children.into_boxed_slice();
        let children = if list.is_empty() { ptr::null_mut() } else { list.as_mut_ptr() };
        self.array_lists.push(list);
        let mut a = Box::new(ArrowArray {
            length: length as i64,
            null_count,
            offset: offset as i64,
            n_buffers,
            n_children,
            buffers: buffer_ptr,
            children,
            dictionary,
            release: Some(release_array),
            private_data: self.counter(),
        });
        let p = ptr::from_mut::<ArrowArray>(&mut a);
        self.arrays.push(a);
        p
    }
}

/// One column's logical values, for the reference table built without Arrow.
enum Values {
    I64(Vec<Option<i64>>),
    F64(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Text(Vec<Option<String>>),
    /// A type the reference does not build: no comparison for this batch.
    Other,
}

const WORDS: [&str; 8] = ["x", "y", "é", "", "2024-01-02T03:04:05", "z", "1.5", "x y"];
const STAMPS: [&str; 4] =
    ["2024-01-02T03:04:05", "1999-12-31", "2024-02-29 23:59:59+02:00", "2000-06-15 12:00:00Z"];

fn random_name(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    Ok(match u.int_in_range(0..=6u8)? {
        0 => "a".to_owned(),
        1 => "b".to_owned(),
        2 => "c".to_owned(),
        3 => "t".to_owned(),
        4 => "n".to_owned(),
        5 => WORDS[u.choose_index(WORDS.len())?].to_owned(),
        _ => u.arbitrary::<String>()?,
    })
}

/// A validity bitmap over `len` slots (`None`: no bitmap) and each slot's validity.
fn validity(u: &mut Unstructured<'_>, len: usize) -> arbitrary::Result<(Option<Vec<u8>>, Vec<bool>)> {
    if !u.ratio(1, 3)? {
        return Ok((None, vec![true; len]));
    }
    let bits: Vec<bool> = (0..len).map(|_| u.ratio(3, 4)).collect::<arbitrary::Result<_>>()?;
    let mut bytes = vec![0u8; len.div_ceil(8)];
    for (i, &valid) in bits.iter().enumerate() {
        bytes[i / 8] |= u8::from(valid) << (i % 8);
    }
    Ok((Some(bytes), bits))
}

/// Builds one column of `rows` rows (plus `skip` leading slots its parent's offset skips):
/// its schema, its array and its logical values.
fn column(
    u: &mut Unstructured<'_>,
    p: &mut Producer,
    rows: usize,
    skip: usize,
    wanted: Option<(&str, &[u8])>,
) -> arbitrary::Result<(*mut ArrowSchema, *mut ArrowArray, Values)> {
    let name = match wanted {
        Some((name, _)) => name.to_owned(),
        None => random_name(u)?,
    };
    let offset = if u.ratio(1, 4)? { u.int_in_range(1..=3usize)? } else { 0 };
    // Slots the buffers hold: the column's own offset, the parent's, then the rows.
    let len = offset + skip + rows;
    let (bitmap, valid) =
        if wanted.is_some() && !u.ratio(1, 8)? { (None, vec![true; len]) } else { validity(u, len)? };
    let seen = offset..len;
    let nulls = valid[seen.clone()].iter().filter(|v| !**v).count() as i64;
    // Unknown (-1) is allowed only with a bitmap: without one the count must be 0.
    let null_count = if bitmap.is_some() && u.ratio(1, 4)? { -1 } else { nulls };
    let validity_ptr = match &bitmap {
        Some(b) => p.buffer(b),
        None => ptr::null(),
    };
    let logical = |i: usize| seen.start + skip + i;
    let kind = match wanted {
        Some((_, kinds)) => kinds[u.choose_index(kinds.len())?],
        None => u.int_in_range(0..=8u8)?,
    };
    let timestamps = wanted.is_some_and(|(name, _)| name == "t");
    let (format, buffers, values, dictionary_schema, dictionary_array): (
        String,
        Vec<*const c_void>,
        Values,
        _,
        _,
    ) = match kind {
        0 | 1 => {
            // int64 "l" or int32 "i", arbitrary values.
            let wide = kind == 0;
            let raw: Vec<i64> = (0..len)
                .map(|_| if wide { u.arbitrary::<i64>() } else { u.arbitrary::<i32>().map(i64::from) })
                .collect::<arbitrary::Result<_>>()?;
            let bytes: Vec<u8> = if wide {
                raw.iter().flat_map(|v| v.to_le_bytes()).collect()
            } else {
                raw.iter().flat_map(|v| (*v as i32).to_le_bytes()).collect()
            };
            let values = (0..rows).map(|i| valid[logical(i)].then_some(raw[logical(i)])).collect();
            let format = if wide { "l" } else { "i" };
            (
                format.into(),
                vec![validity_ptr, p.buffer(&bytes)],
                Values::I64(values),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        }
        2 | 3 => {
            // float64 "g" or float32 "f", any bits.
            let wide = kind == 2;
            let raw: Vec<f64> = (0..len)
                .map(|_| {
                    if wide {
                        u.arbitrary::<u64>().map(f64::from_bits)
                    } else {
                        u.arbitrary::<u32>().map(|b| f64::from(f32::from_bits(b)))
                    }
                })
                .collect::<arbitrary::Result<_>>()?;
            let bytes: Vec<u8> = if wide {
                raw.iter().flat_map(|v| v.to_le_bytes()).collect()
            } else {
                raw.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect()
            };
            let values = (0..rows).map(|i| valid[logical(i)].then_some(raw[logical(i)])).collect();
            let format = if wide { "g" } else { "f" };
            (
                format.into(),
                vec![validity_ptr, p.buffer(&bytes)],
                Values::F64(values),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        }
        4 => {
            let raw: Vec<bool> = (0..len).map(|_| u.arbitrary::<bool>()).collect::<arbitrary::Result<_>>()?;
            let mut bytes = vec![0u8; len.div_ceil(8)];
            for (i, &b) in raw.iter().enumerate() {
                bytes[i / 8] |= u8::from(b) << (i % 8);
            }
            let values = (0..rows).map(|i| valid[logical(i)].then_some(raw[logical(i)])).collect();
            (
                "b".into(),
                vec![validity_ptr, p.buffer(&bytes)],
                Values::Bool(values),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        }
        5 | 6 => {
            // utf8 "u" (i32 offsets) or large utf8 "U" (i64 offsets).
            let large = kind == 6;
            let raw: Vec<String> = (0..len)
                .map(|_| {
                    Ok(if u.ratio(1, 8)? {
                        u.arbitrary::<String>()?
                    } else if timestamps {
                        STAMPS[u.choose_index(STAMPS.len())?].to_owned()
                    } else {
                        WORDS[u.choose_index(WORDS.len())?].to_owned()
                    })
                })
                .collect::<arbitrary::Result<_>>()?;
            let (offsets, data) = utf8_buffers(&raw, large);
            let values = (0..rows).map(|i| valid[logical(i)].then(|| raw[logical(i)].clone())).collect();
            let format = if large { "U" } else { "u" };
            (
                format.into(),
                vec![validity_ptr, p.buffer(&offsets), p.buffer(&data)],
                Values::Text(values),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        }
        7 => {
            // Dictionary-encoded text (pandas categoricals arrive so): int32 indices into a
            // utf8 dictionary, every index in range.
            let words: Vec<String> = (0..u.int_in_range(1..=4usize)?).map(|i| WORDS[i].to_owned()).collect();
            let raw: Vec<i32> = (0..len)
                .map(|_| u.choose_index(words.len()).map(|i| i as i32))
                .collect::<arbitrary::Result<_>>()?;
            let bytes: Vec<u8> = raw.iter().flat_map(|v| v.to_le_bytes()).collect();
            let (offsets, data) = utf8_buffers(&words, false);
            let dict_schema = p.schema("u", "", Vec::new(), ptr::null_mut());
            let dict_buffers = vec![ptr::null(), p.buffer(&offsets), p.buffer(&data)];
            let dict_array = p.array(words.len(), 0, 0, dict_buffers, Vec::new(), ptr::null_mut());
            let values = (0..rows)
                .map(|i| valid[logical(i)].then(|| words[raw[logical(i)] as usize].clone()))
                .collect();
            ("i".into(), vec![validity_ptr, p.buffer(&bytes)], Values::Text(values), dict_schema, dict_array)
        }
        _ => {
            // A format no Arrow type has: refused when the schema is read, before any buffer.
            let format = format!("?{}", u.arbitrary::<String>()?);
            (format, Vec::new(), Values::Other, ptr::null_mut(), ptr::null_mut())
        }
    };
    let schema = p.schema(&format, &name, Vec::new(), dictionary_schema);
    let array = p.array(skip + rows, null_count, offset, buffers, Vec::new(), dictionary_array);
    Ok((schema, array, values))
}

fn utf8_buffers(strings: &[String], large: bool) -> (Vec<u8>, Vec<u8>) {
    let mut offsets = Vec::new();
    let mut data = Vec::new();
    let mut push = |n: usize| {
        if large {
            offsets.extend_from_slice(&(n as i64).to_le_bytes());
        } else {
            offsets.extend_from_slice(&(n as i32).to_le_bytes());
        }
    };
    push(0);
    for s in strings {
        data.extend_from_slice(s.as_bytes());
        push(data.len());
    }
    (offsets, data)
}

/// The same columns as a Polars table, built without Arrow's C interface.
fn reference(columns: &[(String, Values)]) -> Option<DataFrame> {
    let mut built = Vec::new();
    for (name, values) in columns {
        let name = PlSmallStr::from(name.as_str());
        let series = match values {
            Values::I64(v) => Series::new(name, v),
            Values::F64(v) => Series::new(name, v),
            Values::Bool(v) => Series::new(name, v),
            Values::Text(v) => Series::new(name, v),
            Values::Other => return None,
        };
        built.push(Column::from(series));
    }
    DataFrame::new_infer_height(built).ok()
}

/// An Arrow record batch through `rivet_pipeline_transform_arrow`, as a C caller hands one:
/// a struct of up to six columns (int32/64, float32/64, bool, utf8, large utf8, dictionary
/// text, or a format no Arrow type has), with column and parent offsets, validity bitmaps,
/// known or unknown null counts, null rows, and now and then a schema that is not a struct or a
/// struct already released. The producer keeps its side of the contract (buffers as long as
/// the layout needs); the verdict: every release callback ran exactly once, the caller's
/// structs are marked released, and the result is a preprocessing or argument error, or
/// features equal, bit for bit, to those the same pipeline makes from the same values given to
/// it as a Polars table.
pub fn arrow(data: &[u8]) {
    let _ = arrow_batch(&mut Unstructured::new(data));
}

fn arrow_batch(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let (handle, fitted) = arrow_pipeline();
    let handle = *handle as *const rivet_pipeline_t;
    let mut p = Producer::default();
    // The batch-level choices first, while the fuzzer's bytes last.
    let rows = u.int_in_range(0..=12usize)?;
    let skip = if u.ratio(1, 6)? { u.int_in_range(1..=2usize)? } else { 0 };
    let lone = u.ratio(1, 16)?;
    let struct_nulls = u.ratio(1, 16)?;
    let released_first = u.ratio(1, 32)?;
    // Mostly the columns the pipeline reads (a, b: numbers; c, t: text) in any order, of any
    // type that can hold them, now and then with one more column; otherwise anything.
    let mut wanted: Vec<(&str, &[u8])> = Vec::new();
    if !lone && !u.ratio(1, 4)? {
        wanted = vec![("a", &[0, 1, 2, 3, 5]), ("b", &[0, 1, 2, 3]), ("c", &[5, 6, 7]), ("t", &[5, 6])];
        for i in (1..wanted.len()).rev() {
            wanted.swap(i, u.int_in_range(0..=i)?);
        }
    }
    let extra = if lone { 0 } else { u.int_in_range(0..=if wanted.is_empty() { 6usize } else { 1 })? };
    let mut schemas = Vec::new();
    let mut arrays = Vec::new();
    let mut columns = Vec::new();
    let chosen = wanted.into_iter().map(Some).chain(std::iter::repeat_n(None, extra));
    for want in chosen {
        let (s, a, values) = column(u, &mut p, rows, skip, want)?;
        // SAFETY: `s` is live in the producer; its name is a C string made from a Rust string.
        let name = unsafe { std::ffi::CStr::from_ptr((*s).name) }.to_string_lossy().into_owned();
        schemas.push(s);
        arrays.push(a);
        columns.push((name, values));
    }
    let (root_schema, root_array) = if lone {
        // Not a record batch: a lone int64 column.
        let s = p.schema("l", "", Vec::new(), ptr::null_mut());
        let values = p.buffer(&vec![0u8; 8 * rows]);
        (s, p.array(rows, 0, 0, vec![ptr::null(), values], Vec::new(), ptr::null_mut()))
    } else {
        let s = p.schema("+s", "", schemas, ptr::null_mut());
        let (bitmap, nulls) = if struct_nulls && rows > 0 {
            let mut b = vec![0xffu8; (skip + rows).div_ceil(8)];
            b[skip / 8] &= !(1 << (skip % 8));
            (p.buffer(&b), 1)
        } else {
            (ptr::null(), 0)
        };
        (s, p.array(rows, nulls, skip, vec![bitmap], arrays, ptr::null_mut()))
    };
    if released_first {
        // SAFETY: the producer's own live struct.
        unsafe { release_schema(root_schema) };
    }
    let mut out: *mut rivet_tensor_t = ptr::null_mut();
    // SAFETY: valid C Data Interface structs (or a released schema, which Rivet must refuse),
    // kept alive by `p` until the end of this function; `out` writable.
    let error = unsafe { rivet_pipeline_transform_arrow(handle, root_array, root_schema, &mut out) };
    let verdict = take_error(error);
    // SAFETY: the producer's live structs.
    unsafe {
        assert!((*root_schema).release.is_none(), "the schema is left unreleased");
        if released_first {
            // Rivet refused the batch and took nothing: the caller releases its array.
            assert!((*root_array).release.is_some(), "a refused batch's array was taken");
            release_array(root_array);
        }
        assert!((*root_array).release.is_none(), "the array is left unreleased");
    }
    let result = match verdict {
        Some((code, message)) => {
            assert!(out.is_null(), "out set on failure");
            assert!(
                code == RIVET_ERROR_PREPROCESS || code == RIVET_ERROR_INVALID_ARGUMENT,
                "error code {code}: {message}"
            );
            Err(message)
        }
        None => {
            // SAFETY: a live tensor handle from Rivet, freed once.
            let tensor = unsafe { tensor_of(out) };
            unsafe { rivet_tensor_free(out) };
            check_features(&tensor, fitted.features(), fitted, rows);
            Ok(tensor)
        }
    };
    for counter in &p.counters {
        assert_eq!(counter.load(Ordering::SeqCst), 1, "a release callback ran other than once");
    }
    // The same values as a Polars table: the same features (when the reference can be built).
    let plain = !released_first && !struct_nulls && root_is_struct(root_schema);
    if let (true, Some(table)) = (plain, reference(&columns)) {
        match (&result, fitted.transform(&table)) {
            (Ok(a), Ok((b, _))) => assert_eq!(bits(a), bits(&b), "Arrow and Polars tables transform alike"),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("Arrow batch: {a:?}; the same values as a Polars table: {b:?}"),
        }
    }
    Ok(())
}

fn root_is_struct(schema: *mut ArrowSchema) -> bool {
    // SAFETY: the producer's live struct; its format is a C string.
    unsafe { std::ffi::CStr::from_ptr((*schema).format) }.to_bytes() == b"+s"
}
