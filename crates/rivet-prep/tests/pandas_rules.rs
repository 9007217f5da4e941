//! Where a difference from pandas and scikit-learn would be silent, the answers they give, run
//! at test time (pandas_rules.py writes the tables and their answers): StandardScaler's rule
//! for a constant feature, statistics on a large offset from any source, columns a step makes,
//! a reader that transforms what was fitted, pandas' CSV reading rules, one message for one bad
//! value, and random tables.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use rivet_prep::polars::prelude::*;
use rivet_prep::source::PANDAS_NA_VALUES;
use rivet_prep::{read_table, FittedPipeline, PipelineSpec, PrepError, TableBatches};
use serde_json::{json, Value};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The tables and their answers, written once for all the tests of this file, under
/// target/pandas_rules (replaced on each run).
fn generated() -> (&'static Path, &'static Value) {
    static GENERATED: OnceLock<(PathBuf, Value)> = OnceLock::new();
    let (dir, expected) = GENERATED.get_or_init(|| {
        let dir = root().join("target/pandas_rules");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let python =
            option_env!("RIVET_PYTHON").map_or_else(|| root().join(".venv/bin/python"), PathBuf::from);
        let output = Command::new(python)
            .arg(root().join("crates/rivet-prep/tests/pandas_rules.py"))
            .arg(&dir)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let expected = serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        (dir, expected)
    });
    (dir.as_path(), expected)
}

fn spec(steps: Value) -> PipelineSpec {
    PipelineSpec::from_value(json!({ "steps": steps })).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    serde_json::from_value(v.clone()).unwrap()
}

fn column(df: &DataFrame, name: &str) -> Vec<Option<f64>> {
    let series = df.column(name).unwrap().as_materialized_series().cast(&DataType::Float64).unwrap();
    series.f64().unwrap().iter().map(|v| v.filter(|v| !v.is_nan())).collect()
}

/// The features of `file` transformed in batches of `batch` rows, row after row.
fn features_in_batches(
    fitted: &FittedPipeline,
    file: &Path,
    batch: usize,
) -> Result<Vec<Vec<f32>>, PrepError> {
    let mut rows = Vec::new();
    for batch in TableBatches::open_for(file, batch, fitted)? {
        let (tensor, _) = fitted.transform_rows(&batch?, rows.len())?;
        let width = tensor.shape()[1];
        rows.extend(tensor.as_slice::<f32>().unwrap().chunks(width.max(1)).map(<[f32]>::to_vec));
    }
    Ok(rows)
}

fn data_error<T: std::fmt::Debug>(result: Result<T, PrepError>) -> String {
    match result {
        Err(PrepError::Data(message)) => message,
        other => panic!("expected a data error, got {other:?}"),
    }
}

#[test]
fn standard_scale_finds_a_constant_feature_as_scikit_learn_does() {
    let (dir, expected) = generated();
    let table = read_table(&dir.join("tiny.csv")).unwrap();
    let fitted =
        FittedPipeline::fit(&spec(json!([{"op": "standard_scale", "columns": ["x", "c", "near"]}])), &table)
            .unwrap();
    let rivet_prep::Fitted::StandardScale { scale, .. } = &fitted.fitted()[0] else { panic!() };
    let want = floats(&expected["tiny"]["scale"]);
    for (g, w) in scale.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-12 * w.abs(), "scale_ {scale:?} vs scikit-learn {want:?}");
    }
    let out = fitted.apply(&table).unwrap();
    let rows: Vec<Vec<f64>> = serde_json::from_value(expected["tiny"]["output"].clone()).unwrap();
    for (j, name) in ["x", "c", "near"].iter().enumerate() {
        for (i, got) in column(&out, name).iter().enumerate() {
            let (got, want) = (got.unwrap(), rows[i][j]);
            assert!((got - want).abs() <= 1e-6, "{name} row {i}: {got} vs scikit-learn {want}");
        }
    }
}

#[test]
fn statistics_on_a_large_offset_are_exact_and_the_same_from_every_source() {
    let (dir, expected) = generated();
    let steps = spec(json!([{"op": "standard_scale", "columns": ["x"]}]));
    let csv = read_table(&dir.join("offset.csv")).unwrap();
    let parquet = read_table(&dir.join("offset.parquet")).unwrap();
    // Batches as an Arrow stream delivers them: one chunk per batch, of uneven sizes.
    let mut stream = parquet.slice(0, 1);
    let mut at = 1;
    for size in [7, 4_000, 333, 9_999].iter().cycle() {
        if at >= parquet.height() {
            break;
        }
        stream.vstack_mut(&parquet.slice(at as i64, *size)).unwrap();
        at += size;
    }
    assert!(stream.first_col_n_chunks() > 3 && stream.height() == csv.height());
    let fitted = FittedPipeline::fit(&steps, &csv).unwrap();
    for (source, table) in [("parquet", &parquet), ("stream", &stream)] {
        let other = FittedPipeline::fit(&steps, table).unwrap();
        assert_eq!(other, fitted, "fitted from {source} and from CSV");
        assert_eq!(serde_json::to_string(&other).unwrap(), serde_json::to_string(&fitted).unwrap());
    }
    let rivet_prep::Fitted::StandardScale { mean, var, .. } = &fitted.fitted()[0] else { panic!() };
    let number = |key: &str| expected["offset"][key].as_f64().unwrap();
    assert_eq!(mean[0], number("exact_mean"), "the mean, correctly rounded");
    assert!((var[0] - number("exact_var")).abs() <= 1e-12 * number("exact_var"), "var {}", var[0]);
    assert!((mean[0] - number("mean")).abs() <= 1e-3, "mean {} vs scikit-learn {}", mean[0], number("mean"));
    assert!(
        (var[0] - number("var")).abs() <= 1e-9 * number("var"),
        "var {} vs scikit-learn {}",
        var[0],
        number("var")
    );
    let out = column(&fitted.apply(&csv).unwrap(), "x");
    let exact = floats(&expected["offset"]["exact_output"]);
    let sklearn = floats(&expected["offset"]["output"]);
    for (i, got) in out.iter().enumerate() {
        let got = got.unwrap();
        // The mean rounded to f64 alone moves an output by up to half a unit in its last
        // place over the deviation: 6e-5 / 100 here.
        assert!((got - exact[i]).abs() <= 1e-6, "row {i}: {got} vs exact {}", exact[i]);
        assert!((got - sklearn[i]).abs() <= 1e-5, "row {i}: {got} vs scikit-learn {}", sklearn[i]);
    }

    let huge = DataFrame::new(3, vec![Column::new("x".into(), [1e200, -1e200, 3e200])]).unwrap();
    assert_eq!(
        data_error(FittedPipeline::fit(&steps, &huge)),
        "steps[0] (standard_scale): column \"x\": its variance overflows f64 (values past about 1e154); \
         scale it down first, with a derive step"
    );
}

#[test]
fn a_step_never_replaces_a_column_by_making_one() {
    let table = |columns: &[(&str, &[&str])]| {
        let columns = columns.iter().map(|(name, values)| Column::new((*name).into(), *values)).collect();
        DataFrame::new(3, columns).unwrap()
    };
    let other = table(&[("seg", &["a", "other", "b"])]);
    assert_eq!(
        data_error(FittedPipeline::fit(&spec(json!([{"op": "one_hot", "columns": ["seg"], "unseen": "other"}])), &other)),
        "steps[0] (one_hot): column \"seg\" has a category \"other\", and unseen = \"other\" names the feature \
         of unseen categories \"seg_other\" too; use unseen = \"ignore\" or \"error\", or rename the category"
    );
    let ignored = FittedPipeline::fit(
        &spec(json!([{"op": "one_hot", "columns": ["seg"], "unseen": "ignore"}])),
        &other,
    )
    .unwrap();
    assert_eq!(ignored.features(), ["seg_a", "seg_b", "seg_other"]);

    let a_x = table(&[("a", &["x", "y", "x"]), ("a_x", &["1", "2", "3"])]);
    assert_eq!(
        data_error(FittedPipeline::fit(
            &spec(json!([{"op": "one_hot", "columns": ["a"], "unseen": "error"}])),
            &a_x
        )),
        "steps[0] (one_hot): column \"a\" makes the feature \"a_x\", but there is a column \"a_x\" already; \
         rename one of them first"
    );
    let t_year = table(&[("t", &["2024-01-01", "2025-01-01", "2026-01-01"]), ("t_year", &["1", "2", "3"])]);
    assert_eq!(
        data_error(FittedPipeline::fit(&spec(json!([{"op": "datetime", "column": "t", "parts": ["year"]}])), &t_year)),
        "steps[0] (datetime): column \"t\" makes the feature \"t_year\", but there is a column \"t_year\" already; \
         rename one of them first"
    );
    let ab = table(&[("a", &["1", "2", "3"]), ("b", &["4", "5", "6"])]);
    assert_eq!(
        data_error(FittedPipeline::fit(&spec(json!([{"op": "rename", "columns": {"a": "b"}}])), &ab)),
        "steps[0] (rename): cannot rename \"a\" to \"b\": there is a column \"b\" already"
    );
    assert_eq!(
        data_error(FittedPipeline::fit(&spec(json!([{"op": "rename", "columns": {"z": "y"}}])), &ab)),
        "steps[0] (rename): no column \"z\" to rename"
    );
}

#[test]
fn a_file_that_fits_transforms_in_batches_of_any_size() {
    let (dir, expected) = generated();
    let file = dir.join("late_float.csv");
    let table = read_table(&file).unwrap();
    assert_eq!(expected["late_float"]["dtype"], "float64");
    assert_eq!(table.column("x").unwrap().dtype(), &DataType::Float64, "as pandas reads it");
    let steps = spec(json!([{"op": "standard_scale", "columns": ["x"]}]));
    let fitted = FittedPipeline::fit(&steps, &table).unwrap();
    let (whole, _) = fitted.transform(&table).unwrap();
    let whole: Vec<f32> = whole.as_slice::<f32>().unwrap().to_vec();
    for batch in [1_000, 65_999, 66_001] {
        let rows = features_in_batches(&fitted, &file, batch).unwrap();
        assert_eq!(rows.concat(), whole, "batches of {batch}");
    }
    // Fitted where the column held whole numbers only, it stays i64: 2.5 is named.
    let integers = read_table(&file).unwrap().slice(0, 66_000);
    assert_eq!(integers.column("x").unwrap().dtype(), &DataType::Float64);
    let ints = std::fs::read_to_string(&file).unwrap().lines().take(66_001).collect::<Vec<_>>().join("\n");
    let ints_file = dir.join("ints.csv");
    std::fs::write(&ints_file, ints + "\n").unwrap();
    let fitted = FittedPipeline::fit(&steps, &read_table(&ints_file).unwrap()).unwrap();
    assert_eq!(fitted.input()[0].dtype, "i64");
    for batch in [1_000, 100_000] {
        let error = data_error(features_in_batches(&fitted, &file, batch));
        assert_eq!(
            error,
            format!(
                "{}: column \"x\", row 66000 (0-based, CSV line 66002): \"2.5\" is not an integer (i64, as when \
                 the pipeline was fitted)",
                file.display()
            ),
            "batches of {batch}"
        );
    }
}

#[test]
fn a_column_fitted_as_text_stays_text() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (letters, digits) = (dir.join("letters.csv"), dir.join("digits.csv"));
    std::fs::write(&letters, "c\na\nb\n").unwrap();
    std::fs::write(&digits, "c\n7\n8\n").unwrap();
    let steps = spec(json!([{"op": "one_hot", "columns": ["c"], "unseen": "ignore"}]));
    let fitted = FittedPipeline::fit(&steps, &read_table(&letters).unwrap()).unwrap();
    assert_eq!(features_in_batches(&fitted, &digits, 1).unwrap(), vec![vec![0.0, 0.0]; 2]);
}

#[test]
fn csv_is_read_by_pandas_rules() {
    let (dir, expected) = generated();
    let mut listed: Vec<&str> = PANDAS_NA_VALUES.to_vec();
    listed.sort_unstable();
    assert_eq!(json!(listed), expected["na_values"], "pandas' default na_values");

    let file = dir.join("rules.csv");
    let table = read_table(&file).unwrap();
    let want: Vec<Option<f64>> = serde_json::from_value(expected["rules"]["n"].clone()).unwrap();
    assert_eq!(column(&table, "n"), want, "numbers with spaces and NA spellings");
    let cat: Vec<Option<String>> = table
        .column("cat")
        .unwrap()
        .as_materialized_series()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.map(str::to_owned))
        .collect();
    assert_eq!(json!(cat), expected["rules"]["cat"], "NA spellings in a text column");

    let parts = spec(json!([{"op": "datetime", "column": "ts", "parts": ["day", "hour", "minute"]}]));
    let fitted = FittedPipeline::fit(&parts, &table).unwrap();
    let out = fitted.apply(&table).unwrap();
    for part in ["day", "hour", "minute"] {
        let want: Vec<Option<f64>> = serde_json::from_value(expected["rules"][part].clone()).unwrap();
        assert_eq!(column(&out, &format!("ts_{part}")), want, "timestamps with offsets: {part}");
    }

    // The spec's own list replaces pandas': "NA" is text, "?" is missing.
    let own = dir.join("own.csv");
    std::fs::write(&own, "c,n\nNA,1\n?,?\nb,3\n").unwrap();
    let rules = PipelineSpec::from_value(json!({"csv": {"na_values": ["?"]}, "steps": []})).unwrap();
    let table = rivet_prep::read_table_with(&own, &rules.csv).unwrap();
    let c: Vec<Option<&str>> =
        table.column("c").unwrap().as_materialized_series().str().unwrap().iter().collect();
    assert_eq!(c, [Some("NA"), None, Some("b")]);
    assert_eq!(column(&table, "n"), [Some(1.0), None, Some(3.0)]);
    assert!(PipelineSpec::from_value(json!({"csv": {"na_value": ["?"]}, "steps": []}))
        .unwrap_err()
        .to_string()
        .contains("csv: unknown field `na_value`"));
}

#[test]
fn a_bad_value_has_one_message_whatever_the_batching() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let good = dir.join("good.csv");
    std::fs::write(&good, "x,note\n1.5,\"a\nb\"\n2,b\n3,c\n").unwrap();
    let steps = spec(json!([
        {"op": "standard_scale", "columns": ["x"]},
        {"op": "one_hot", "columns": ["note"], "unseen": "error"},
    ]));
    let fitted = FittedPipeline::fit(&steps, &read_table(&good).unwrap()).unwrap();
    assert_eq!(fitted.input()[0].dtype, "f64");
    // Row 0 spans lines 2 and 3 (a quoted newline), so row 2 is on line 5.
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "x,note\n1,\"a\nb\"\n2,b\n abc ,c\n").unwrap();
    let messages: Vec<String> =
        [1, 2, 100].iter().map(|&batch| data_error(features_in_batches(&fitted, &bad, batch))).collect();
    assert_eq!(
        messages[0],
        format!("{}: column \"x\", row 2 (0-based, CSV line 5): \" abc \" is not a number", bad.display())
    );
    assert!(messages.iter().all(|m| *m == messages[0]), "{messages:?}");
    // The same value in a table already in memory: the step names it alike.
    let table =
        DataFrame::new(1, vec![Column::new("x".into(), [" abc "]), Column::new("note".into(), ["a"])])
            .unwrap();
    assert_eq!(
        data_error(fitted.transform(&table)),
        "steps[0] (standard_scale): column \"x\", row 0 (0-based): \" abc \" is not a number"
    );
    // A step's message names the line too when the batch came from a CSV file.
    let unseen = dir.join("unseen.csv");
    std::fs::write(&unseen, "x,note\n1,\"a\nb\"\n2,zzz\n").unwrap();
    let mut batches = TableBatches::open_for(&unseen, 10, &fitted).unwrap().read_ahead(1);
    let batch = batches.next().unwrap().unwrap();
    assert_eq!(
        data_error(fitted.transform_batch(&batch)),
        "steps[1] (one_hot): column \"note\", row 1 (0-based, CSV line 4): category \"zzz\" was not seen when fitting"
    );
}

#[test]
fn random_tables_match_scikit_learn_from_every_source_and_batching() {
    let (dir, expected) = generated();
    let steps = spec(json!([
        {"op": "impute", "columns": ["x"], "strategy": "mean"},
        {"op": "standard_scale", "columns": ["x"]},
        {"op": "min_max_scale", "columns": ["y"]},
        {"op": "one_hot", "columns": ["cat"], "unseen": "ignore"},
    ]));
    for case in expected["random"].as_array().unwrap() {
        let file = dir.join(case["file"].as_str().unwrap());
        let name = file.display();
        let fitted = FittedPipeline::fit(&steps, &read_table(&file).unwrap()).unwrap();
        let parquet =
            FittedPipeline::fit(&steps, &read_table(&file.with_extension("parquet")).unwrap()).unwrap();
        assert_eq!(
            serde_json::to_string(&parquet).unwrap(),
            serde_json::to_string(&fitted).unwrap(),
            "{name}: fitted from Parquet and from CSV"
        );
        let rivet_prep::Fitted::StandardScale { mean, var, scale } = &fitted.fitted()[1] else { panic!() };
        for (what, got, want) in [
            ("mean", mean[0], &case["mean"]),
            ("var", var[0], &case["var"]),
            ("scale", scale[0], &case["scale"]),
        ] {
            let want = want.as_f64().unwrap();
            assert!(
                (got - want).abs() <= 1e-9 * want.abs().max(1e-300),
                "{name}: {what} {got} vs scikit-learn {want}"
            );
        }
        assert_eq!(json!(fitted.features()), case["names"], "{name}: feature names");
        let want: Vec<Vec<f64>> = serde_json::from_value(case["features"].clone()).unwrap();
        for batch in [3, 17, 1_000] {
            let rows = features_in_batches(&fitted, &file, batch).unwrap();
            assert_eq!(rows.len(), want.len(), "{name}");
            for (i, (got, want)) in rows.iter().zip(&want).enumerate() {
                for (j, (g, w)) in got.iter().zip(want).enumerate() {
                    assert!(
                        (f64::from(*g) - w).abs() <= 1e-6 * (1.0 + w.abs()),
                        "{name} batch {batch} row {i} feature {j}: {g} vs {w}"
                    );
                }
            }
        }
    }
}
