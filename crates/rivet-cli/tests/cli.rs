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
    assert_eq!(summary, [("tch", "ok"), ("ort", "ok"), ("candle", "unsupported")]);
    for row in &rows[..2] {
        assert!(row["max_abs_diff"].as_f64().unwrap() < 1e-4, "{row}");
        let latency = &row["latency_ms"];
        assert!(latency["min"].as_f64().unwrap() <= latency["p50"].as_f64().unwrap(), "{row}");
    }
    assert!(rows[2]["error"].as_str().unwrap().contains("LayerNormalization"));
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
