//! Rivet's fitted statistics and outputs against scikit-learn's on a table with NaNs, a
//! constant column, a mode tie and an even-count median (sklearn_parity.py writes both), and
//! the round trips and bad inputs around them.

use std::path::{Path, PathBuf};
use std::process::Command;

use rivet_prep::{source::read_table, Fitted, FittedPipeline, PipelineSpec, PrepError};
use serde_json::{json, Value};

const TOLERANCE: f64 = 1e-6;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn spec() -> PipelineSpec {
    PipelineSpec::from_value(json!({"steps": [
        {"op": "impute", "columns": ["a"], "strategy": "mean"},
        {"op": "impute", "columns": ["b"], "strategy": "median"},
        {"op": "impute", "columns": ["c"], "strategy": "most_frequent"},
        {"op": "impute", "columns": ["d"], "strategy": "constant", "value": 7.0},
        {"op": "standard_scale", "columns": ["a", "b", "e"]},
        {"op": "min_max_scale", "columns": ["c", "d"], "range": [-1.0, 1.0]},
        {"op": "log1p", "columns": ["f"]},
        {"op": "clip", "columns": ["f"], "min": 0.0, "max": 2.0},
    ]}))
    .unwrap()
}

fn close(what: &str, got: &[f64], want: &Value) {
    let want: Vec<f64> = serde_json::from_value(want.clone()).unwrap();
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= TOLERANCE * (1.0 + w.abs()), "{what}[{i}]: {g} vs scikit-learn {w}");
    }
}

fn generated() -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    let python = option_env!("RIVET_PYTHON").map_or_else(|| root().join(".venv/bin/python"), PathBuf::from);
    let status = Command::new(python)
        .arg(root().join("crates/rivet-prep/tests/sklearn_parity.py"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let expected = serde_json::from_slice(&std::fs::read(dir.path().join("expected.json")).unwrap()).unwrap();
    (dir, expected)
}

#[test]
fn statistics_and_outputs_match_scikit_learn_and_every_source_and_round_trip_agrees() {
    let (dir, expected) = generated();
    let csv = read_table(&dir.path().join("data.csv")).unwrap();
    let fitted = FittedPipeline::fit(&spec(), &csv).unwrap();

    let impute: Vec<f64> = fitted.fitted()[..4]
        .iter()
        .map(|f| match f {
            Fitted::Impute { statistics } => statistics[0],
            other => panic!("{other:?}"),
        })
        .collect();
    close(
        "imputer statistics (mean, median, most frequent of a tie, constant)",
        &impute,
        &expected["impute"],
    );
    assert_eq!(impute[2], 1.0, "a tie goes to the smallest value");
    let Fitted::StandardScale { mean, var, scale } = &fitted.fitted()[4] else { panic!() };
    close("mean_", mean, &expected["standard"]["mean"]);
    close("var_", var, &expected["standard"]["var"]);
    close("scale_", scale, &expected["standard"]["scale"]);
    assert_eq!(scale[2], 1.0, "a constant column keeps scale 1");
    let Fitted::MinMaxScale { data_min, data_max, scale, min } = &fitted.fitted()[5] else { panic!() };
    close("data_min_", data_min, &expected["minmax"]["data_min"]);
    close("data_max_", data_max, &expected["minmax"]["data_max"]);
    close("minmax scale_", scale, &expected["minmax"]["scale"]);
    close("min_", min, &expected["minmax"]["min"]);

    let (tensor, names) = fitted.transform(&csv).unwrap();
    assert_eq!(names, ["a", "b", "c", "d", "e", "f"]);
    assert_eq!(tensor.shape(), &[200, 6]);
    let got: Vec<f64> = tensor.as_slice::<f32>().unwrap().iter().map(|&v| f64::from(v)).collect();
    let want: Vec<f64> = expected["output"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>())
        .collect();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        // The tensor is f32: compared at f32's precision.
        assert!(
            (g - w).abs() <= 1e-6 + 1e-6 * w.abs(),
            "row {}, feature {}: {g} vs scikit-learn {w}",
            i / 6,
            names[i % 6]
        );
    }

    // Parquet gives the same tensor; save -> load -> transform equals fit -> transform.
    let parquet = read_table(&dir.path().join("data.parquet")).unwrap();
    assert_eq!(fitted.transform(&parquet).unwrap().0, tensor);
    let saved = dir.path().join("fitted.json");
    fitted.save(&saved).unwrap();
    let loaded = FittedPipeline::load(&saved).unwrap();
    assert_eq!(loaded, fitted);
    assert_eq!(loaded.transform(&csv).unwrap().0, tensor);
}

fn data_error(result: Result<impl std::fmt::Debug, PrepError>) -> String {
    match result {
        Err(PrepError::Data(message)) => message,
        other => panic!("expected a data error, got {other:?}"),
    }
}

#[test]
fn bad_specs_and_bad_data_are_named() {
    let err =
        PipelineSpec::from_value(json!({"steps": [{"op": "select", "columns": ["a"]}, {"op": "one_hot_x"}]}))
            .unwrap_err()
            .to_string();
    assert!(
        err.starts_with("invalid pipeline spec: steps[1] (op \"one_hot_x\"): unknown variant `one_hot_x`"),
        "{err}"
    );
    let err = PipelineSpec::from_value(json!({"steps": [{"op": "log1p", "columns": ["a"], "colums": 1}]}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("steps[0] (op \"log1p\"): unknown field `colums`"), "{err}");
    let err = PipelineSpec::from_value(json!({"steps": [], "stpes": []})).unwrap_err().to_string();
    assert_eq!(err, "invalid pipeline spec: unknown field `stpes` (a spec has `csv` and `steps`)");
    let err = PipelineSpec::from_value(
        json!({"steps": [{"op": "impute", "columns": ["a"], "strategy": "mean", "value": 1}]}),
    )
    .unwrap_err()
    .to_string();
    assert!(err.ends_with("`value` goes with strategy \"constant\" and only with it"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let table = read_table(&write("t.csv", "a,b\n1,x\n2,3\n,4\n")).unwrap();
    let scale =
        PipelineSpec::from_value(json!({"steps": [{"op": "standard_scale", "columns": ["a"]}]})).unwrap();
    let fitted = FittedPipeline::fit(&scale, &table.select(["a"]).unwrap()).unwrap();
    assert_eq!(
        data_error(fitted.transform(&table.select(["b"]).unwrap())),
        "input: no column \"a\" (the pipeline was fitted with it, as i64)"
    );
    assert_eq!(
        data_error(fitted.transform(&table)),
        "feature \"a\", row 2 (0-based): missing (null or NaN) after the pipeline; add an impute or clip step"
    );
    let cast = PipelineSpec::from_value(json!({"steps": [{"op": "cast", "columns": ["b"]}]})).unwrap();
    assert_eq!(
        data_error(FittedPipeline::fit(&cast, &table)),
        "steps[0] (cast): column \"b\", row 0 (0-based): \"x\" is not a number"
    );
    let missing = PipelineSpec::from_value(json!({"steps": [{"op": "log1p", "columns": ["z"]}]})).unwrap();
    assert_eq!(
        data_error(FittedPipeline::fit(&missing, &table)),
        "steps[0] (log1p): no column \"z\" (columns: a, b)"
    );
    let err = read_table(&write("empty.csv", "")).unwrap_err().to_string();
    assert!(err.ends_with("empty.csv: the file is empty"), "{err}");

    // Found by fuzzing (crates/rivet-fuzz, target `pipeline`):
    // clip bounds the wrong way round (or NaN, which TOML can write) panicked in f64::clamp.
    let err =
        PipelineSpec::from_text("[[steps]]\nop = \"clip\"\ncolumns = [\"a\"]\nmin = 5\nmax = 1\n", true)
            .unwrap_err()
            .to_string();
    assert_eq!(
        err,
        "invalid pipeline spec: steps[0] (op \"clip\"): min Some(5.0) and max Some(1.0) must be numbers with min <= max"
    );
    let err = PipelineSpec::from_text("[[steps]]\nop = \"clip\"\ncolumns = [\"a\"]\nmin = nan\n", true)
        .unwrap_err()
        .to_string();
    assert_eq!(err, "invalid pipeline spec: steps[0].min: numbers must be finite (nan and inf are not)");
    // A fitted pipeline gets the same checks as a spec file: this one's clip was edited.
    let clip =
        PipelineSpec::from_value(json!({"steps": [{"op": "clip", "columns": ["a"], "min": 0}]})).unwrap();
    let saved = serde_json::to_string(&FittedPipeline::fit(&clip, &table).unwrap()).unwrap();
    let edited = saved.replace("\"min\":0.0", "\"min\":0.0,\"max\":-1.0");
    assert_ne!(edited, saved);
    let err = FittedPipeline::from_json(&edited).unwrap_err().to_string();
    assert!(err.ends_with("must be numbers with min <= max"), "{err}");
    // A value finite in f64 but past f32's range became an infinite feature without a word.
    let big = read_table(&write("big.csv", "a\n1\n1e300\n")).unwrap();
    let cast = PipelineSpec::from_value(json!({"steps": [{"op": "cast", "columns": ["a"]}]})).unwrap();
    assert_eq!(
        data_error(FittedPipeline::fit(&cast, &big).unwrap().transform(&big)),
        "feature \"a\", row 1 (0-based): 1e300, past f32's range, after the pipeline; add an impute or clip step"
    );
}

#[test]
fn one_hot_and_ordinal_match_scikit_learn_on_unseen_categories() {
    let (dir, _) = generated();
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("expected_categorical.json")).unwrap())
            .unwrap();
    assert!(expected["unseen_city_rows"].as_u64().unwrap() > 0, "the test table must hold unseen cities");
    let train = read_table(&dir.path().join("cat_train.csv")).unwrap();
    let test = read_table(&dir.path().join("cat_test.csv")).unwrap();
    let spec = |unseen: &str| {
        PipelineSpec::from_value(json!({"steps": [
            {"op": "one_hot", "columns": ["city"], "unseen": unseen},
            {"op": "ordinal", "columns": ["plan"], "unseen": "ignore"},
        ]}))
        .unwrap()
    };
    let fitted = FittedPipeline::fit(&spec("ignore"), &train).unwrap();
    let Fitted::Categories { categories } = &fitted.fitted()[0] else { panic!() };
    assert_eq!(serde_json::to_value(&categories[0]).unwrap(), expected["city_categories"]);
    let Fitted::Categories { categories } = &fitted.fitted()[1] else { panic!() };
    assert_eq!(serde_json::to_value(&categories[0]).unwrap(), expected["plan_categories"]);
    let (tensor, names) = fitted.transform(&test).unwrap();
    assert_eq!(serde_json::to_value(&names).unwrap(), expected["features"]);
    let want: Vec<f32> = expected["output"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(tensor.as_slice::<f32>().unwrap(), want.as_slice());

    // "other" adds a feature that is 1 exactly where the city was unseen; "error" names it.
    let (other, names) = FittedPipeline::fit(&spec("other"), &train).unwrap().transform(&test).unwrap();
    assert_eq!(names.last().unwrap(), "city_other");
    let width = names.len();
    let flagged = other.as_slice::<f32>().unwrap().chunks(width).filter(|row| row[width - 1] == 1.0).count();
    assert_eq!(flagged as u64, expected["unseen_city_rows"].as_u64().unwrap());
    let err = data_error(FittedPipeline::fit(&spec("error"), &train).unwrap().transform(&test));
    assert!(err.starts_with("steps[0] (one_hot): column \"city\", row "), "{err}");
    assert!(err.ends_with("was not seen when fitting"), "{err}");
}

/// The column `name` of `df` as f64, NaN for missing.
fn column_f64(df: &rivet_prep::polars::prelude::DataFrame, name: &str) -> Vec<f64> {
    use rivet_prep::polars::prelude::*;
    let column = df.column(name).unwrap().cast(&DataType::Float64).unwrap();
    column.f64().unwrap().iter().map(|v| v.unwrap_or(f64::NAN)).collect()
}

fn same(what: &str, got: &[f64], want: &Value) {
    let want: Vec<Option<f64>> = serde_json::from_value(want.clone()).unwrap();
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        match w {
            None => assert!(g.is_nan(), "{what}[{i}]: {g}, pandas has it missing"),
            Some(w) => {
                assert!((g - w).abs() <= TOLERANCE * (1.0 + w.abs()), "{what}[{i}]: {g} vs pandas {w}")
            }
        }
    }
}

#[test]
fn datetime_parts_buckets_and_derived_columns_match_pandas_and_numpy() {
    let (dir, _) = generated();
    let d = dir.path();
    let expected: Value =
        serde_json::from_slice(&std::fs::read(d.join("expected_extra.json")).unwrap()).unwrap();
    let parts = ["year", "month", "day", "hour", "minute", "second", "weekday", "day_of_year"];
    let spec = PipelineSpec::from_value(json!({"steps": [
        {"op": "datetime", "column": "ts", "parts": parts},
        {"op": "derive", "name": "ratio", "expr": "(x * 2 - 1) / (y + 1)"},
        {"op": "bucketize", "columns": ["x"], "boundaries": [-1.0, 0.0, 2.0, 5.0]},
    ]}))
    .unwrap();
    let table = read_table(&d.join("extra.csv")).unwrap();
    let fitted = FittedPipeline::fit(&spec, &table).unwrap();
    let mut names: Vec<String> = parts.iter().map(|p| format!("ts_{p}")).collect();
    names.insert(0, "y".into());
    names.insert(0, "x".into());
    names.push("ratio".into());
    assert_eq!(fitted.features(), names);
    let out = fitted.apply(&table).unwrap();
    for part in parts {
        same(part, &column_f64(&out, &format!("ts_{part}")), &expected["parts"][part]);
    }
    same("bucketize", &column_f64(&out, "x"), &expected["bucket"]);
    same("derive", &column_f64(&out, "ratio"), &expected["ratio"]);

    // An explicit format, and a value that does not parse, named by row.
    let dates = tempfile::NamedTempFile::with_suffix(".csv").unwrap();
    std::fs::write(dates.path(), "when\n31/12/2023 22:15\n01/02/2024 07:00\n2024-01-01\n").unwrap();
    let df = read_table(dates.path()).unwrap();
    let spec = |format: &str| {
        PipelineSpec::from_value(json!({"steps": [
            {"op": "datetime", "column": "when", "parts": ["day", "month", "hour"], "format": format}
        ]}))
        .unwrap()
    };
    let error = FittedPipeline::fit(&spec("%d/%m/%Y %H:%M"), &df).unwrap_err().to_string();
    assert_eq!(
        error,
        "steps[0] (datetime): column \"when\", row 2 (0-based): \"2024-01-01\" is not a timestamp in format \"%d/%m/%Y %H:%M\""
    );
    let fitted = FittedPipeline::fit(&spec("%d/%m/%Y %H:%M"), &df.slice(0, 2)).unwrap();
    let (tensor, _) = fitted.transform(&df.slice(0, 2)).unwrap();
    assert_eq!(tensor.as_slice::<f32>().unwrap(), [31.0, 12.0, 22.0, 1.0, 2.0, 7.0]);

    // A division by zero is infinite, and refused by feature and row unless clipped.
    let spec = PipelineSpec::from_value(json!({"steps": [
        {"op": "select", "columns": ["x", "y"]},
        {"op": "impute", "columns": ["x", "y"], "strategy": "constant", "value": 1.0},
        {"op": "derive", "name": "r", "expr": "x / (y - y)"},
    ]}))
    .unwrap();
    let error = FittedPipeline::fit(&spec, &table).unwrap().transform(&table).unwrap_err().to_string();
    assert_eq!(
        error,
        "feature \"r\", row 0 (0-based): infinite after the pipeline; add an impute or clip step"
    );
}
