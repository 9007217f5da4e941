//! `rivet prep` and `rivet predict` end to end on the bundled tabular example, against what
//! pandas + scikit-learn + PyTorch make of the same table (predict/reference.py), and every
//! bad input named, with no output left behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rivet_prep::polars::prelude::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn tabular(file: &str) -> PathBuf {
    root().join("models/tabular").join(file)
}

fn rivet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rivet")).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = rivet(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "rivet {args:?} failed: {stderr}");
    stderr
}

/// Runs a command that must fail and returns its one error line.
fn fails(args: &[&str]) -> String {
    let out = rivet(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "rivet {args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"))
        .to_owned()
}

/// The reference: test.csv, test.parquet, features.npy, ids.npy, probability.npy.
fn reference() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let python = root().join(".venv/bin/python");
    let status = Command::new(python)
        .arg(root().join("crates/rivet-cli/tests/predict/reference.py"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "reference.py failed");
    dir
}

fn npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let tensor = rivet::npy::read_npy(path).unwrap();
    (tensor.shape().to_vec(), tensor.as_slice::<f32>().unwrap().to_vec())
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn predictions_match_pytorch_on_every_backend_and_format() {
    let dir = reference();
    let d = dir.path();
    let ids: Vec<i64> = rivet::npy::read_npy(&d.join("ids.npy")).unwrap().as_slice::<i64>().unwrap().to_vec();
    let (_, want) = npy_f32(&d.join("probability.npy"));
    let cases = [
        ("tabular.onnx", "ort", "test.parquet", "onnx.parquet", "700"),
        ("tabular.onnx", "ort", "test.csv", "onnx.csv", "8192"),
        ("tabular.pt", "tch", "test.csv", "tch.parquet", "333"),
        ("tabular.onnx", "candle", "test.parquet", "candle.csv", "1000"),
    ];
    for (model, backend, data, out, batch) in cases {
        let out = d.join(out);
        let stderr = ok(&[
            "predict",
            "--model",
            p(&tabular(model)),
            "--data",
            p(&d.join(data)),
            "--out",
            p(&out),
            "--id-column",
            "customer_id",
            "--batch-size",
            batch,
            "--backend",
            backend,
        ]);
        assert!(stderr.contains("3000 rows in") && stderr.contains(&format!("on {backend}")), "{stderr}");
        assert!(stderr.contains("rows/s"), "{stderr}");
        let table = rivet_prep::read_table(&out).unwrap();
        let names: Vec<&str> = table.get_column_names().iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["customer_id", "churn_probability"], "{out:?}");
        let got_ids: Vec<i64> =
            table.column("customer_id").unwrap().i64().unwrap().into_no_null_iter().collect();
        assert_eq!(got_ids, ids, "{out:?}");
        let column = table.column("churn_probability").unwrap().cast(&DataType::Float64).unwrap();
        let got: Vec<f64> = column.f64().unwrap().into_no_null_iter().collect();
        assert_eq!(got.len(), want.len());
        for (row, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - f64::from(*w)).abs() <= 1e-5, "{backend} {out:?} row {row}: {g} vs PyTorch {w}");
        }
    }
    // The same from Rust, in one call on an in-memory table: the model carries its pipeline.
    let model = tabular("tabular.onnx");
    let options = rivet::LoadOptions { backend: rivet::Backend::ORT, ..rivet::LoadOptions::default() };
    let pipeline = rivet_prep::FittedPipeline::load(&rivet_prep::Scorer::pipeline_beside(&model)).unwrap();
    let scorer = rivet_prep::Scorer::new(rivet::load(&model, &options).unwrap(), pipeline).unwrap();
    let outputs = scorer.predict(&rivet_prep::read_table(&d.join("test.parquet")).unwrap()).unwrap();
    let (name, tensor) = outputs.iter().next().unwrap();
    assert_eq!((name, tensor.shape()), ("churn_probability", &[3000, 1][..]));
    for (row, (g, w)) in tensor.as_slice::<f32>().unwrap().iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-5, "Scorer::predict row {row}: {g} vs PyTorch {w}");
    }
}

#[test]
fn transform_matches_scikit_learn_streamed_or_whole_from_csv_or_parquet() {
    let dir = reference();
    let d = dir.path();
    let (shape, want) = npy_f32(&d.join("features.npy"));
    assert_eq!(shape, [3000, 16]);
    let pipeline = tabular("tabular.pipeline.json");
    let mut outputs = Vec::new();
    for (data, batch) in
        [("test.csv", "1"), ("test.csv", "777"), ("test.csv", "100000"), ("test.parquet", "512")]
    {
        let out = d.join(format!("features.{batch}.{data}.npy"));
        ok(&[
            "prep",
            "transform",
            "--pipeline",
            p(&pipeline),
            "--data",
            p(&d.join(data)),
            "--out",
            p(&out),
            "--batch-size",
            batch,
        ]);
        let (shape, got) = npy_f32(&out);
        assert_eq!(shape, [3000, 16]);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
                "{data} batch {batch}: [{}, {}] {g} vs scikit-learn {w}",
                i / 16,
                i % 16
            );
        }
        outputs.push(std::fs::read(&out).unwrap());
    }
    // Every batching and both formats give the same bytes.
    assert!(outputs.windows(2).all(|w| w[0] == w[1]));
    // And the in-memory path (a whole DataFrame, no batches) the same values.
    let fitted = rivet_prep::FittedPipeline::load(&pipeline).unwrap();
    for data in ["test.csv", "test.parquet"] {
        let (tensor, names) = fitted.transform(&rivet_prep::read_table(&d.join(data)).unwrap()).unwrap();
        assert_eq!(names.len(), 16);
        assert_eq!(tensor.as_bytes(), &outputs[0][128..], "{data}: in memory vs streamed");
    }

    // Fitting here gives the committed pipeline: training is reproducible.
    let train = d.join("train.csv");
    let status = Command::new(root().join(".venv/bin/python"))
        .args([p(&tabular("generate.py")), "--rows", "20000", "--seed", "1", "--label", "--out", p(&train)])
        .status()
        .unwrap();
    assert!(status.success());
    let fitted = d.join("fitted.json");
    ok(&["prep", "fit", "--spec", p(&tabular("spec.toml")), "--data", p(&train), "--out", p(&fitted)]);
    let read =
        |path: &Path| serde_json::from_slice::<serde_json::Value>(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(read(&fitted), read(&pipeline));
}

/// Writes `test.csv` with `edit` applied to its rows (the header is row 0 of `rows`).
fn edited(d: &Path, name: &str, edit: impl Fn(&mut Vec<Vec<String>>)) -> PathBuf {
    let text = std::fs::read_to_string(d.join("test.csv")).unwrap();
    let mut rows: Vec<Vec<String>> =
        text.lines().map(|l| l.split(',').map(str::to_owned).collect()).collect();
    edit(&mut rows);
    let path = d.join(name);
    let body: Vec<String> = rows.iter().map(|r| r.join(",")).collect();
    std::fs::write(&path, body.join("\n") + "\n").unwrap();
    path
}

#[test]
fn bad_input_is_named_and_leaves_no_output() {
    let dir = reference();
    let d = dir.path();
    let header: Vec<String> = std::fs::read_to_string(d.join("test.csv"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let bad_age = edited(d, "bad_age.csv", |rows| rows[1235][col("age")] = "abc".into());
    let bad_plan = edited(d, "bad_plan.csv", |rows| rows[2346][col("plan")] = "gold".into());
    let bad_ts = edited(d, "bad_ts.csv", |rows| rows[11][col("signup_ts")] = "yesterday".into());
    let no_income = edited(d, "no_income.csv", |rows| {
        let k = col("income");
        for row in rows.iter_mut() {
            row.remove(k);
        }
    });
    let empty = d.join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let header_only = d.join("header.csv");
    std::fs::write(&header_only, header.join(",") + "\n").unwrap();
    let out_dir = d.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("preds.parquet");
    // A previous complete output stays as it was when a run fails.
    std::fs::write(&out, "previous").unwrap();

    let model = tabular("tabular.onnx");
    let predict = |data: &Path, batch: &str, extra: &[&str]| {
        let mut args =
            vec!["predict", "--model", p(&model), "--data", p(data), "--out", p(&out), "--batch-size", batch];
        args.extend_from_slice(extra);
        fails(&args)
    };
    // A value that does not parse: the reader names it, with the types the pipeline was
    // fitted with, whatever the batch it falls in.
    for batch in ["5000", "500"] {
        assert_eq!(
            predict(&bad_age, batch, &[]),
            format!(
                "error: {}: column \"age\", row 1234 (0-based, CSV line 1236): \"abc\" is not a number",
                bad_age.display()
            )
        );
    }
    assert_eq!(
        predict(&bad_plan, "500", &[]),
        "error: steps[12] (ordinal): column \"plan\", row 2345 (0-based, CSV line 2347): category \"gold\" was not \
         seen when fitting"
    );
    assert_eq!(
        predict(&bad_ts, "500", &[]),
        "error: steps[1] (datetime): column \"signup_ts\", row 10 (0-based, CSV line 12): \"yesterday\" is not a \
         timestamp"
    );
    assert_eq!(
        predict(&no_income, "500", &[]),
        "error: input: no column \"income\" (the pipeline was fitted with it, as f64)"
    );
    assert_eq!(predict(&empty, "500", &[]), format!("error: {}: the file is empty", empty.display()));
    assert_eq!(
        predict(&header_only, "500", &[]),
        format!("error: {}: no rows to score", header_only.display())
    );
    assert_eq!(
        predict(&d.join("test.csv"), "500", &["--id-column", "id"]),
        format!("error: --id-column: no column \"id\" in {}", d.join("test.csv").display())
    );
    assert_eq!(predict(&d.join("test.csv"), "0", &[]), "error: --batch-size must be at least 1");
    assert_eq!(std::fs::read(&out).unwrap(), b"previous");
    assert_eq!(files_in(&out_dir), ["preds.parquet"], "a partial file was left behind");

    // A model the pipeline cannot feed, and a model without a pipeline beside it.
    let csv = d.join("test.csv");
    let cnn = root().join("models/cnn/cnn.onnx");
    let pipeline = tabular("tabular.pipeline.json");
    assert_eq!(
        fails(&[
            "predict",
            "--model",
            p(&cnn),
            "--pipeline",
            p(&pipeline),
            "--data",
            p(&csv),
            "--out",
            p(&out)
        ]),
        "error: model: the model's input \"image\" has rank 4; a pipeline makes [rows, features]"
    );
    let mlp = root().join("models/mlp/mlp.onnx");
    assert_eq!(
        fails(&["predict", "--model", p(&mlp), "--data", p(&csv), "--out", p(&out)]),
        format!(
            "error: no --pipeline given and no fitted pipeline beside the model ({} does not exist)",
            root().join("models/mlp/mlp.pipeline.json").display()
        )
    );
    let txt = out_dir.join("preds.txt");
    assert_eq!(
        fails(&["predict", "--model", p(&model), "--data", p(&csv), "--out", p(&txt)]),
        format!("error: {}: write .csv, .parquet or .pq", txt.display())
    );

    // Bad specs say which step and what.
    let spec = d.join("spec.json");
    let spec_error = |text: &str| {
        std::fs::write(&spec, text).unwrap();
        fails(&["prep", "fit", "--spec", p(&spec), "--data", p(&csv), "--out", p(&d.join("f.json"))])
    };
    let at = spec.display();
    assert_eq!(
        spec_error(r#"{"steps": [{"op": "select", "columns": ["age"]}, {"op": "bucketise", "columns": ["age"]}]}"#),
        format!("error: invalid pipeline spec: {at}: steps[1] (op \"bucketise\"): unknown variant `bucketise`, expected one of `select`, `rename`, `drop`, `cast`, `impute`, `standard_scale`, `min_max_scale`, `log1p`, `one_hot`, `ordinal`, `bucketize`, `datetime`, `derive`, `clip`")
    );
    assert_eq!(
        spec_error(r#"{"steps": [{"op": "bucketize", "columns": ["age"], "boundaries": [3, 2]}]}"#),
        format!("error: invalid pipeline spec: {at}: steps[0] (op \"bucketize\"): boundaries [3.0, 2.0] must be finite and strictly increasing, at least one")
    );
    assert_eq!(
        spec_error(r#"{"steps": [{"op": "derive", "name": "r", "expr": "age / (income"}]}"#),
        format!("error: invalid pipeline spec: {at}: steps[0] (op \"derive\"): expr: expected `)` at character 14 of \"age / (income\"")
    );
    assert_eq!(
        spec_error(r#"{"steps": [{"op": "datetime", "column": "signup_ts", "parts": ["year", "week"]}]}"#),
        format!("error: invalid pipeline spec: {at}: steps[0] (op \"datetime\"): unknown variant `week`, expected one of `year`, `month`, `day`, `hour`, `minute`, `second`, `weekday`, `day_of_year`")
    );
    assert_eq!(
        spec_error(r#"{"steps": [{"op": "derive", "name": "r", "expr": "age / nope"}]}"#),
        "error: steps[0] (derive): no column \"nope\" (columns: customer_id, signup_ts, age, income, balance, tenure_months, num_products, region, plan)"
    );
}
