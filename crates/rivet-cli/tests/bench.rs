//! `rivet bench` end to end on the bundled MLP: every JSON field present and consistent, the
//! Markdown and the chart written, generated and saved inputs, clean errors. No test here
//! asserts a speed: only relations that hold however fast or slow the machine is.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn rivet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rivet")).args(args).current_dir(root()).output().unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rivet-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn success(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rivet bench failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn f(row: &Value, key: &str) -> f64 {
    row[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {row}"))
}

const ROW_FIELDS: [&str; 19] = [
    "model",
    "file",
    "backend",
    "batch",
    "concurrency",
    "rate",
    "status",
    "error",
    "load_ms",
    "first_inference_ms",
    "iterations",
    "measured_s",
    "stable",
    "windows",
    "latency_ms",
    "inferences_per_s",
    "samples_per_s",
    "peak_rss_mib",
    "parity",
];

/// Checks what holds for every measured row (compared with a reference, or being it).
fn check_row(row: &Value) {
    for key in ROW_FIELDS {
        assert!(row.get(key).is_some(), "{key} missing in {row}");
    }
    let status = row["status"].as_str().unwrap();
    assert!(status == "ok" || status == "reference", "{row}");
    let l = &row["latency_ms"];
    let order: Vec<f64> = ["min", "p50", "p90", "p95", "p99", "max"].iter().map(|k| f(l, k)).collect();
    assert!(order[0] > 0.0, "{l}");
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "percentiles out of order: {l}");
    assert!(f(l, "mean") >= order[0] && f(l, "mean") <= order[5], "{l}");
    assert_eq!(l["count"], row["iterations"]);
    assert!(f(row, "load_ms") > 0.0 && f(row, "first_inference_ms") > 0.0, "{row}");
    let batch = f(row, "batch");
    let throughput = f(row, "inferences_per_s");
    assert!((f(row, "samples_per_s") - throughput * batch).abs() <= 1e-6 * throughput * batch, "{row}");
    // The throughput is the count over the measured time...
    let expected = f(row, "iterations") / f(row, "measured_s");
    assert!((throughput - expected).abs() <= 1e-9 * expected, "{row}");
    // A Rust process with a model loaded holds a few MiB at least (Candle alone: about 9).
    assert!(f(row, "peak_rss_mib") > 4.0, "a process with a backend loaded: {row}");
    let parity = &row["parity"];
    if status == "ok" {
        assert!(f(parity, "max_abs_diff") <= 1e-4, "{row}");
    }
    assert_eq!(parity["within_tolerance"], true);
}

#[test]
fn bench_reports_every_backend_batch_and_concurrency_with_consistent_figures() {
    let dir = scratch("full");
    let (json, md, svg) = (dir.join("r.json"), dir.join("r.md"), dir.join("r.svg"));
    let out = rivet(&[
        "bench",
        "models/mlp",
        "--batch",
        "1,3",
        "--concurrency",
        "1,2",
        "--iterations",
        "60",
        "--warmup",
        "2",
        "--threads",
        "1",
        "--json",
        json.to_str().unwrap(),
        "--markdown",
        md.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let stdout = success(&out);
    assert!(stdout.contains("p99 ms") && stdout.contains(&format!("chart: {}", svg.display())), "{stdout}");
    // The table names the build that measured: this test runs the dev profile's binary.
    let build = "dev profile (dependencies, backends and CLI optimised as in release)";
    assert!(stdout.contains(&format!("\nbuild: {build}\n")), "{stdout}");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["build"], build);
    assert_eq!(report["settings"]["stop"]["iterations"], 60);
    assert_eq!(report["models"][0]["model"], "mlp");
    assert!(report["models"][0]["reference"].as_str().unwrap().contains("PyTorch eager"));
    let rows = report["results"].as_array().unwrap();
    let mut seen: Vec<(String, u64, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["backend"].as_str().unwrap().to_owned(),
                r["batch"].as_u64().unwrap(),
                r["concurrency"].as_u64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    let mut expected = Vec::new();
    for backend in ["candle", "ort", "tch"] {
        for batch in [1, 3] {
            for clients in [1, 2] {
                expected.push((backend.to_owned(), batch, clients));
            }
        }
    }
    assert_eq!(seen, expected);
    for row in rows {
        check_row(row);
        assert_eq!(row["iterations"], 60);
        assert_eq!(row["stable"], Value::Null, "no stability rule with --iterations");
        // Closed loop, no think time: clients x measured time >= total latency (Little's law),
        // and the clients were busy for most of it.
        let busy = f(&row["latency_ms"], "mean") / 1e3 * 60.0;
        let capacity = f(row, "concurrency") * f(row, "measured_s");
        assert!(busy <= capacity * 1.0001, "more latency than client time: {row}");
        assert!(busy >= capacity * 0.2, "clients idle most of the run: {row}");
    }

    let markdown = std::fs::read_to_string(&md).unwrap();
    assert!(markdown.contains("| model | backend | batch | clients |"), "{markdown}");
    assert!(
        markdown.starts_with(&format!("Rivet {} ({build}) `rivet bench`", env!("CARGO_PKG_VERSION"))),
        "{markdown}"
    );
    assert_eq!(markdown.lines().filter(|l| l.starts_with("| mlp |")).count(), 12, "{markdown}");
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("Latency percentiles"), "{}", &chart[..100]);
    for label in ["p50", "p99", "mlp tch", "mlp ort", "mlp candle", "client threads"] {
        assert!(chart.contains(label), "chart lacks {label}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rate_keeps_its_schedule_and_png_charts_are_written() {
    let dir = scratch("rate");
    let (json, png) = (dir.join("r.json"), dir.join("chart.png"));
    let out = rivet(&[
        "bench",
        "models/mlp/mlp.onnx",
        "--backend",
        "ort",
        "--rate",
        "400",
        "--iterations",
        "40",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
    ]);
    success(&out);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let row = &report["results"][0];
    check_row(row);
    assert_eq!(f(row, "rate"), 400.0);
    // Request 39 is not sent before 39/400 s: the run lasts that long at least, and cannot
    // exceed the rate it was sent at.
    assert!(f(row, "measured_s") >= 39.0 / 400.0, "{row}");
    assert!(f(row, "inferences_per_s") <= 400.0 * 40.0 / 39.0, "{row}");
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.len() > 1000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} bytes", bytes.len());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stability_rule_and_generated_inputs_without_a_case() {
    // The ONNX model alone in a folder: no case, so inputs come from the signature (seed 0) at
    // the batch asked, and parity is against the first backend.
    let dir = scratch("generated");
    std::fs::copy(root().join("models/mlp/mlp.onnx"), dir.join("net.onnx")).unwrap();
    let saved = dir.join("inputs");
    let json = dir.join("r.json");
    let out = rivet(&[
        "bench",
        dir.join("net.onnx").to_str().unwrap(),
        "--batch",
        "5",
        "--window-ms",
        "100",
        "--max-windows",
        "6",
        "--stability",
        "50",
        "--save-inputs",
        saved.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    success(&out);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["models"][0]["inputs"], "generated from the signature (seed 0)");
    // A lone backend with no case has nothing to be compared with, and the table says so.
    let alone = rivet(&[
        "bench",
        dir.join("net.onnx").to_str().unwrap(),
        "--backend",
        "ort",
        "--iterations",
        "5",
        "--json",
        "-",
    ]);
    success(&alone);
    let alone: Value = serde_json::from_slice(&alone.stdout).unwrap();
    let row = &alone["results"][0];
    assert_eq!(row["status"], "no_reference", "{row}");
    assert!(row["parity"]["max_abs_diff"].is_null(), "{row}");
    let rows = report["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "ort and candle read ONNX");
    for row in rows {
        check_row(row);
        assert!(row["stable"].is_boolean(), "{row}");
        let windows = row["windows"].as_u64().unwrap();
        assert!((3..=6).contains(&windows), "{row}");
        // Only the three agreeing windows count.
        assert!((f(row, "measured_s") - 0.3).abs() < 1e-9, "{row}");
    }
    // The first backend is the reference: no difference with itself is shown as a figure.
    assert_eq!(rows[0]["status"], "reference", "{}", rows[0]);
    assert!(rows[0]["parity"]["max_abs_diff"].is_null(), "{}", rows[0]);
    assert_eq!(rows[1]["status"], "ok", "{}", rows[1]);
    assert!(rows[1]["parity"]["against"].as_str().unwrap().starts_with(rows[0]["backend"].as_str().unwrap()));
    let input = rivet::npy::read_npy(&saved.join("net/b5/input.features.npy")).unwrap();
    assert_eq!(input.shape(), &[5, 16]);
    let values = input.as_slice::<f32>().unwrap();
    assert!(values[..16] != values[16..32], "generated rows differ");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_exit_non_zero_with_a_clear_line() {
    for (args, expected) in [
        (vec!["--batch", "0"], "--batch: expected sizes of 1 or more, got 0"),
        (vec!["--concurrency", "1,0"], "--concurrency: expected 1 or more client threads, got 0"),
        (vec!["--rate=-3"], "--rate: expected requests/s > 0, got -3"),
        (vec!["--plot", "chart.gif"], "expected a file name ending in .svg or .png, got \"chart.gif\""),
        (vec!["--backend", "tensorflow"], "--backend"),
        (vec!["--duration", "1", "--iterations", "5"], "cannot be used with"),
    ] {
        let mut all = vec!["bench", "models/mlp"];
        all.extend(&args);
        let out = rivet(&all);
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // An input whose leading dimension is fixed cannot run at another batch: the row says so,
    // naming the input, and the exit status is a failure.
    let dir = scratch("fixed");
    let spec = dir.join("fixed.spec.json");
    std::fs::write(
        &spec,
        r#"{"inputs": [{"name": "features", "dtype": "f32", "shape": [1, 16]}],
            "outputs": [{"name": "logits", "dtype": "f32", "shape": [1, 3]}]}"#,
    )
    .unwrap();
    let out = rivet(&[
        "bench",
        "models/mlp/mlp.pt",
        "--batch",
        "2",
        "--iterations",
        "3",
        "--spec",
        spec.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stderr.contains("tch on mlp batch 2: input_error"), "{stderr}");
    assert!(
        stdout.contains("features")
            && stdout.contains("leading dimension is fixed at 1; batch 2 needs a dynamic batch dimension"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let out = rivet(&["bench", "models/nowhere"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("models/nowhere"));
}

#[test]
fn a_shadowed_row_beside_each_backend_accounts_for_every_request() {
    let dir = scratch("shadow");
    let json = dir.join("s.json");
    let out = rivet(&[
        "bench",
        "models/mlp/mlp.onnx",
        "--backend",
        "ort",
        "--shadow",
        "candle",
        "--iterations",
        "100",
        "--json",
        json.to_str().unwrap(),
    ]);
    success(&out);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = report["results"].as_array().unwrap();
    let backends: Vec<&str> = rows.iter().map(|r| r["backend"].as_str().unwrap()).collect();
    assert_eq!(backends, ["ort", "ort+shadow:candle"]);
    assert!(rows[0].get("shadow").is_none(), "{}", rows[0]);
    let row = &rows[1];
    check_row(row);
    // The shadow answers with ORT's outputs: the same parity against PyTorch's.
    assert_eq!(row["parity"]["max_abs_diff"], rows[0]["parity"]["max_abs_diff"], "{row}");
    let s = &row["shadow"];
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k} in {s}"));
    // The first run, the warm-up runs and the measured ones all went through the shadow.
    assert!(n("requests") >= 100, "{s}");
    assert_eq!(n("requests"), n("compared") + n("dropped") + n("skipped") + n("candidate_errors"), "{s}");
    assert!(n("compared") >= 1 && n("matched") == n("compared") && n("candidate_errors") == 0, "{s}");
    std::fs::remove_dir_all(&dir).unwrap();
}
