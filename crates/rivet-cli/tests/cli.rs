//! The `rivet` binary: run and compare on bundled models, and clean error exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rivet::npy::read_npy;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn rivet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rivet")).args(args).current_dir(root()).output().unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rivet-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn run_writes_outputs_matching_pytorch_on_each_backend() {
    let case = root().join("models/mlp/cases/b8");
    let input = format!("features={}", case.join("input.features.npy").display());
    let reference = read_npy(&case.join("output.logits.npy")).unwrap();
    for (model, backend) in [("mlp.pt", "tch"), ("mlp.onnx", "ort"), ("mlp.onnx", "candle")] {
        let out = scratch(backend);
        let model = format!("models/mlp/{model}");
        let result =
            rivet(&["run", &model, "--backend", backend, "--input", &input, "--out", out.to_str().unwrap()]);
        assert!(result.status.success(), "{backend}: {}", String::from_utf8_lossy(&result.stderr));
        let stdout = String::from_utf8_lossy(&result.stdout);
        assert!(stdout.starts_with("logits: f32[8, 3] -> "), "{stdout}");
        let logits = read_npy(&out.join("logits.npy")).unwrap();
        assert_eq!(logits.shape(), reference.shape());
        for (a, e) in logits.as_slice::<f32>().unwrap().iter().zip(reference.as_slice::<f32>().unwrap()) {
            assert!((a - e).abs() <= 1e-4 + 1e-4 * e.abs(), "{backend}: {a} vs {e}");
        }
        std::fs::remove_dir_all(&out).unwrap();
    }
}

#[test]
fn run_takes_positional_inputs_and_names_unnamed_outputs() {
    // A bare archive (no spec file): outputs have no names, so files are output_0.npy...
    let dir = scratch("bare");
    std::fs::copy(root().join("models/identity/identity.pt"), dir.join("bare.pt")).unwrap();
    let x = root().join("models/mlp/cases/b1/input.features.npy");
    let result = rivet(&[
        "run",
        dir.join("bare.pt").to_str().unwrap(),
        "-i",
        x.to_str().unwrap(),
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert_eq!(read_npy(&dir.join("output_0.npy")).unwrap(), read_npy(&x).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compare_reports_every_backend_against_the_reference_as_json() {
    let result =
        rivet(&["compare", "models/mlp", "models/encoder", "--case", "b4_s8", "--json", "--iterations", "3"]);
    // The MLP folder has no case b4_s8: a clear error naming the folder.
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(stderr.trim(), "error: models/mlp/cases/b4_s8: no such case folder");

    let result = rivet(&["compare", "models/encoder", "--case", "b4_s8", "--json", "--iterations", "3"]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let json: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    let model = &json["models"][0];
    assert_eq!(model["model"], "encoder");
    assert!(model["reference"].as_str().unwrap().starts_with("PyTorch eager outputs in "));
    let rows = model["results"].as_array().unwrap();
    let summary: Vec<(&str, &str)> =
        rows.iter().map(|r| (r["backend"].as_str().unwrap(), r["status"].as_str().unwrap())).collect();
    // The encoder (LayerNormalization, attention) runs on Candle's own executor too.
    assert_eq!(summary, [("tch", "ok"), ("ort", "ok"), ("candle", "ok")]);
    for row in rows {
        assert!(row["max_abs_diff"].as_f64().unwrap() < 1e-4, "{row}");
        let latency = &row["latency_ms"];
        assert!(latency["min"].as_f64().unwrap() <= latency["p50"].as_f64().unwrap(), "{row}");
    }
}

#[test]
fn compare_prints_a_table_for_twins() {
    let result = rivet(&["compare", "models/mlp/mlp.pt", "models/mlp/mlp.onnx", "--iterations", "2"]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let stdout = String::from_utf8_lossy(&result.stdout);
    let rows: Vec<&str> = stdout.lines().filter(|l| l.contains("┆ mlp.")).collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    for (row, backend) in rows.iter().zip(["tch", "ort", "candle"]) {
        assert!(
            row.contains(&format!("┆ {backend} ")) && row.trim_end_matches('│').trim().ends_with("ok"),
            "{row}"
        );
    }
}

#[test]
fn bad_input_exits_non_zero_with_one_clear_line() {
    let ids = root().join("models/encoder/cases/b1_s8/input.input_ids.npy");
    let result = rivet(&["run", "models/mlp/mlp.onnx", "--input", &format!("features={}", ids.display())]);
    assert_eq!(result.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&result.stderr),
        "error: invalid input: input \"features\": expected dtype f32, got i64\n"
    );
    let x = root().join("models/mlp/cases/b1/input.features.npy");
    let result = rivet(&["run", "models/mlp/missing.onnx", "--input", x.to_str().unwrap()]);
    assert_eq!(result.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.starts_with("error: auto: cannot load models/mlp/missing.onnx: No such file"), "{stderr}");
    let result = rivet(&["run", "models/mlp/mlp.onnx", "--input", "x.npy"]);
    assert_eq!(result.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.starts_with("error: x.npy: ") && stderr.lines().count() == 1, "{stderr}");
    let mut no_ort = Command::new(env!("CARGO_BIN_EXE_rivet"));
    no_ort.args(["run", "models/mlp/mlp.onnx", "-b", "ort", "-i", x.to_str().unwrap()]);
    let result =
        no_ort.env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so").current_dir(root()).output().unwrap();
    assert_eq!(result.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&result.stderr),
        "error: ort: cannot load models/mlp/mlp.onnx: libonnxruntime not found at \
         /nonexistent/libonnxruntime.so (set ORT_DYLIB_PATH to the library)\n"
    );
    let result = rivet(&["run", "models/mlp/mlp.onnx", "--input", "=x.npy"]);
    assert_eq!(result.status.code(), Some(2), "usage errors exit 2");
    assert!(String::from_utf8_lossy(&result.stderr).contains("the name before '=' is empty"));
}

#[test]
fn twins_in_two_folders_are_compared_with_each_other() {
    // No case beside either file, so the first backend's outputs are the reference; the others
    // are compared with it, and the reference row says so instead of a zero difference.
    let (a, b) = (scratch("twin-a"), scratch("twin-b"));
    for file in ["mlp.pt", "mlp.spec.json"] {
        std::fs::copy(root().join("models/mlp").join(file), a.join(file)).unwrap();
    }
    std::fs::copy(root().join("models/mlp/mlp.onnx"), b.join("mlp.onnx")).unwrap();
    let (pt, onnx) = (a.join("mlp.pt"), b.join("mlp.onnx"));
    let out = rivet(&["compare", pt.to_str().unwrap(), onnx.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let models = report["models"].as_array().unwrap();
    assert_eq!(models.len(), 1, "one model, two files: {report}");
    let rows = models[0]["results"].as_array().unwrap();
    let statuses: Vec<(&str, &str)> =
        rows.iter().map(|r| (r["backend"].as_str().unwrap(), r["status"].as_str().unwrap())).collect();
    assert_eq!(statuses, [("tch", "reference"), ("ort", "ok"), ("candle", "ok")]);
    assert!(rows[0]["max_abs_diff"].is_null());
    let diff = rows[1]["max_abs_diff"].as_f64().unwrap();
    assert!(diff > 0.0 && diff < 1e-5, "ort against tch: {diff}");

    // One backend alone has nothing to be compared with.
    let out = rivet(&["compare", onnx.to_str().unwrap(), "--backend", "ort"]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("no reference") && !table.contains("0.00e0"), "{table}");
    assert!(
        table.contains("reference: none (one backend ran and no PyTorch reference was given)"),
        "{table}"
    );
    for dir in [a, b] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// A model of the `affine` example backend (librivet_affine.so, built by `cargo build`):
/// y = 2x + 0.5 on f32[batch, 4].
fn affine_model(dir: &Path) -> PathBuf {
    let path = dir.join("double.json");
    std::fs::write(&path, r#"{"input": "x", "output": "y", "features": 4, "scale": 2.0, "bias": 0.5}"#)
        .unwrap();
    path
}

#[test]
fn a_backend_library_is_used_by_name_like_a_built_in() {
    let dir = scratch("affine");
    let model = affine_model(&dir);
    let x = rivet::Tensor::from_slice(&[2, 4], &[0f32, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]).unwrap();
    let input = dir.join("x.npy");
    rivet::npy::write_npy(&input, &x).unwrap();
    let model_arg = model.to_str().unwrap();
    let input_arg = format!("x={}", input.display());
    let out_dir = dir.join("out");
    let out = rivet(&[
        "run",
        model_arg,
        "--backend",
        "affine",
        "-i",
        &input_arg,
        "-o",
        out_dir.to_str().unwrap(),
        "-O",
        "clip=9",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let y = read_npy(&out_dir.join("y.npy")).unwrap();
    assert_eq!(y.as_slice::<f32>().unwrap(), &[0.5, 2.5, 4.5, 6.5, 8.5, 9.0, 9.0, 9.0]);

    // Its options are checked by it: an unknown key lists the known ones.
    let out = rivet(&["run", model_arg, "--backend", "affine", "-i", &input_arg, "-O", "clamp=9"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: invalid option clamp: affine: unknown option \"clamp\"; known options: clip"
    );
    // Validation is Rivet's, before the backend sees the inputs.
    let wide = dir.join("wide.npy");
    rivet::npy::write_npy(&wide, &rivet::Tensor::from_slice(&[1, 5], &[0f32; 5]).unwrap()).unwrap();
    let out = rivet(&["run", model_arg, "--backend", "affine", "-i", wide.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("input \"x\": expected dimension 1 to be 4"));

    // compare and bench take it by name too, with the given reference.
    let reference = dir.join("y.npy");
    std::fs::copy(out_dir.join("y.npy"), &reference).unwrap();
    let out = rivet(&[
        "compare",
        model_arg,
        "--backend",
        "affine",
        "-O",
        "affine.clip=9",
        "-i",
        &input_arg,
        "-r",
        &format!("y={}", reference.display()),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &report["models"][0]["results"][0];
    assert_eq!((row["backend"].as_str(), row["status"].as_str()), (Some("affine"), Some("ok")), "{row}");
    assert_eq!(row["max_abs_diff"], 0.0);
    let out = rivet(&[
        "bench",
        model_arg,
        "--backend",
        "affine",
        "-i",
        &input_arg,
        "--iterations",
        "20",
        "--json",
        "-",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &report["results"][0];
    assert_eq!(row["backend"], "affine");
    assert_eq!(row["iterations"], 20, "{row}");

    // A name with no library says where it looked.
    let out = rivet(&["run", model_arg, "--backend", "tvm", "-i", &input_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no backend is registered as \"tvm\" (registered: tch, ort, candle)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("librivet_tvm.so (not found)") && stderr.contains("RIVET_TVM_LIBRARY"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The legacy C++ scorer packaged as a backend library (librivet_legacy_mlp.so, built by
/// `cargo build`) next to tch, ort and candle: each backend gets the file it reads, and each
/// agrees with PyTorch's reference.
#[test]
fn a_cxx_scorer_library_is_compared_and_benchmarked_with_the_built_ins() {
    let mlp = root().join("models/mlp");
    let files: Vec<String> =
        ["mlp.pt", "mlp.onnx", "mlp.weights"].iter().map(|f| mlp.join(f).display().to_string()).collect();
    let mut args = vec!["compare"];
    args.extend(files.iter().map(String::as_str));
    args.extend(["--backend", "tch,ort,candle,legacy_mlp", "--json"]);
    let out = rivet(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows: Vec<(String, String, String)> = report["models"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let file =
                Path::new(r["file"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned();
            (file, r["backend"].as_str().unwrap().to_owned(), r["status"].as_str().unwrap().to_owned())
        })
        .collect();
    let expected: Vec<(String, String, String)> =
        [("mlp.pt", "tch"), ("mlp.onnx", "ort"), ("mlp.onnx", "candle"), ("mlp.weights", "legacy_mlp")]
            .iter()
            .map(|(f, b)| (f.to_string(), b.to_string(), "ok".to_string()))
            .collect();
    assert_eq!(rows, expected);
    let legacy = &report["models"][0]["results"][3];
    assert!(legacy["max_abs_diff"].as_f64().unwrap() < 1e-5, "{legacy}");

    let mut args = vec!["bench"];
    args.extend(files.iter().map(String::as_str));
    args.extend(["--backend", "ort,legacy_mlp", "--iterations", "20", "--json", "-"]);
    let out = rivet(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let backends: Vec<&str> =
        report["results"].as_array().unwrap().iter().map(|r| r["backend"].as_str().unwrap()).collect();
    assert_eq!(backends, ["ort", "legacy_mlp"]);
}

/// `rivet run` says which backend ran, and when `auto` fell back, why the earlier ones were
/// skipped: on stderr, and in `--json`.
#[test]
fn run_says_which_backend_ran_and_why_others_were_skipped() {
    let dir = scratch("which-backend");
    let input = root().join("models/mlp/cases/b1/input.features.npy").display().to_string();
    let out_dir = dir.join("out").display().to_string();
    let out = rivet(&["run", "models/mlp/mlp.onnx", "-i", &input, "-o", &out_dir]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "backend: ort\n");

    // ONNX Runtime's library missing: auto falls back to Candle, and says so.
    let out = Command::new(env!("CARGO_BIN_EXE_rivet"))
        .args(["run", "models/mlp/mlp.onnx", "-i", &input, "-o", &out_dir, "--json"])
        .env("ORT_DYLIB_PATH", dir.join("missing/libonnxruntime.so"))
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(
            "backend: candle\n  skipped ort: cannot load models/mlp/mlp.onnx: libonnxruntime not found at "
        ),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["backend"], "candle");
    assert_eq!(report["skipped"][0]["backend"], "ort");
    assert_eq!(report["skipped"][0]["kind"], "model_load");
    assert_eq!(report["outputs"][0]["name"], "logits");
    assert_eq!(report["outputs"][0]["shape"], serde_json::json!([1, 3]));
    let logits = read_npy(Path::new(report["outputs"][0]["file"].as_str().unwrap())).unwrap();
    let reference = read_npy(&root().join("models/mlp/cases/b1/output.logits.npy")).unwrap();
    let diff = logits
        .as_slice::<f32>()
        .unwrap()
        .iter()
        .zip(reference.as_slice::<f32>().unwrap())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-5, "candle's logits differ from PyTorch's by {diff}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn inspect_ops_lists_the_candle_registry() {
    let result = rivet(&["inspect", "--ops", "--json"]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let ops: Vec<serde_json::Value> = serde_json::from_slice(&result.stdout).unwrap();
    let find = |name: &str| ops.iter().find(|o| o["name"] == name).cloned();
    assert_eq!(find("Gemm").unwrap()["family"], "matrix products");
    assert_eq!(find("Resize").unwrap()["opsets"], "11+");
    assert_eq!(find("Scan").unwrap()["domain"], "ai.onnx");
    assert!(find("Det").is_none(), "Det is not implemented");
    assert_eq!(ops.len(), rivet::candle::operators().unwrap().len());

    let text = rivet(&["inspect", "--ops"]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["convolution", "Conv", "1+", "ai.onnx"]));
    assert!(stdout.trim_end().ends_with(&format!("{} operators", ops.len())), "{stdout}");

    let other = rivet(&["inspect", "--ops", "--backend", "ort"]);
    assert_eq!(other.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&other.stderr).trim(),
        "error: invalid option backend: only the candle backend lists its operators; ort runs what its own \
         library implements"
    );
    let neither = rivet(&["inspect"]);
    assert_eq!(neither.status.code(), Some(2), "a model or --ops is required");
}
