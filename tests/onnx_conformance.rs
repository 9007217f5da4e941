//! The ONNX project's per-operator conformance suite (the node tests the `onnx` wheel
//! generates), run through Rivet's Candle executor and, for comparison, ONNX Runtime.
//!
//! Every case either matches its expected outputs within the suite's tolerances or is refused
//! at load with an error naming the operator; for Candle, a wrong answer, a run that errors
//! after a successful load, or a crash fails the test. The counts are printed and written to
//! `target/onnx-conformance.json` (the README quotes them). The Bernoulli cases' expected
//! outputs are numpy's random draws, so for them only the element type, the shape and that every
//! value is 0 or 1 are checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;
use rivet::{Backend, DType, ErrorKind, LoadOptions, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The generated suite, (re)written by `models/onnx_node_tests.py` when missing or older than
/// the script (once, however many tests ask for it).
fn suite() -> PathBuf {
    static SUITE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    SUITE.get_or_init(write_suite).clone()
}

fn write_suite() -> PathBuf {
    let dir = root().join("target/onnx-node-tests");
    let script = root().join("models/onnx_node_tests.py");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let stale = match (modified(&dir.join("manifest.json")), modified(&script)) {
        (Some(made), Some(edited)) => made < edited,
        _ => true,
    };
    if stale {
        let python = root().join(".venv/bin/python");
        assert!(python.exists(), "{} is missing: run ./bootstrap.sh first", python.display());
        let status = Command::new(python).arg(&script).arg(&dir).status().unwrap();
        assert!(status.success(), "models/onnx_node_tests.py failed");
    }
    dir
}

fn as_f64(t: &Tensor) -> Vec<f64> {
    let bytes = t.as_bytes();
    match t.dtype() {
        DType::F32 => {
            bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect()
        }
        DType::F64 => bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
        DType::F16 => {
            bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes(c.try_into().unwrap()).to_f64()).collect()
        }
        DType::BF16 => {
            bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes(c.try_into().unwrap()).to_f64()).collect()
        }
        DType::U8 | DType::Bool => bytes.iter().map(|&b| b as f64).collect(),
        DType::I8 => bytes.iter().map(|&b| b as i8 as f64).collect(),
        DType::I16 => {
            bytes.chunks_exact(2).map(|c| i16::from_le_bytes(c.try_into().unwrap()) as f64).collect()
        }
        DType::I32 => {
            bytes.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64).collect()
        }
        DType::I64 => {
            bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect()
        }
    }
}

/// numpy's `assert_allclose` (NaN equals NaN), plus equal dtype and shape.
fn compare(actual: &Tensor, expected: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    if actual.dtype() != expected.dtype() {
        return Err(format!("dtype {} where {} was expected", actual.dtype(), expected.dtype()));
    }
    if actual.shape() != expected.shape() {
        return Err(format!("shape {:?} where {:?} was expected", actual.shape(), expected.shape()));
    }
    if !matches!(actual.dtype(), DType::F16 | DType::BF16 | DType::F32 | DType::F64) {
        return if actual.as_bytes() == expected.as_bytes() { Ok(()) } else { Err("integers differ".into()) };
    }
    for (i, (a, e)) in as_f64(actual).into_iter().zip(as_f64(expected)).enumerate() {
        let ok = (a.is_nan() && e.is_nan()) || a == e || (a - e).abs() <= atol + rtol * e.abs();
        if !ok {
            return Err(format!("element {i}: {a} where {e} was expected"));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Passed,
    Refused(String),
    Wrong(String),
    RunError(String),
    Crashed,
}

/// For random draws (the Bernoulli cases, whose expected outputs are numpy's own draws): equal
/// dtype and shape, and every value 0 or 1.
fn compare_draws(actual: &Tensor, expected: &Tensor) -> Result<(), String> {
    if actual.dtype() != expected.dtype() || actual.shape() != expected.shape() {
        return Err(format!(
            "{} {:?} where {} {:?} was expected",
            actual.dtype(),
            actual.shape(),
            expected.dtype(),
            expected.shape()
        ));
    }
    match as_f64(actual).into_iter().position(|v| v != 0.0 && v != 1.0) {
        Some(i) => Err(format!("element {i} is neither 0 nor 1")),
        None => Ok(()),
    }
}

/// Cases whose outputs are random draws, checked by [`compare_draws`].
fn draws(name: &str) -> bool {
    name.starts_with("test_bernoulli")
}

fn run_case(dir: &Path, sets: usize, rtol: f64, atol: f64, backend: &Backend) -> Outcome {
    let random = draws(&dir.file_name().unwrap().to_string_lossy());
    let model = match rivet::load(dir.join("model.onnx"), &LoadOptions::with_backend(backend.clone())) {
        Ok(m) => m,
        Err(e) => {
            return match e.kind() {
                ErrorKind::Unsupported | ErrorKind::ModelLoad => Outcome::Refused(e.to_string()),
                _ => Outcome::RunError(format!("load: {e}")),
            }
        }
    };
    for k in 0..sets {
        let data = dir.join(format!("test_data_set_{k}"));
        let read = |role: &str| -> Option<Vec<Tensor>> {
            let mut v = Vec::new();
            for i in 0.. {
                let p = data.join(format!("{role}_{i}.pb"));
                if !p.exists() {
                    break;
                }
                v.push(rivet_testkit::onnx::read_tensor(&p)?);
            }
            Some(v)
        };
        let (Some(inputs), Some(expected)) = (read("input"), read("output")) else {
            return Outcome::Wrong("loaded a model whose data Rivet tensors cannot carry".into());
        };
        let refs: Vec<&Tensor> = inputs.iter().collect();
        let outputs = match model.run(&refs) {
            Ok(o) => o,
            Err(e) => return Outcome::RunError(e.to_string()),
        };
        if outputs.len() != expected.len() {
            return Outcome::Wrong(format!(
                "{} outputs where {} were expected",
                outputs.len(),
                expected.len()
            ));
        }
        for (i, e) in expected.iter().enumerate() {
            let actual = outputs.get(i).unwrap();
            let checked = if random { compare_draws(actual, e) } else { compare(actual, e, rtol, atol) };
            if let Err(why) = checked {
                return Outcome::Wrong(format!("data set {k}, output {i}: {why}"));
            }
        }
    }
    Outcome::Passed
}

#[test]
fn onnx_node_suite() {
    let dir = suite();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let cases = manifest["cases"].as_array().unwrap();
    let backends = [Backend::CANDLE, Backend::ORT];
    let mut counts: BTreeMap<String, BTreeMap<&str, usize>> = BTreeMap::new();
    let mut report = Vec::new();
    let mut failures = Vec::new();
    // The floor: the cases each backend is known to pass, committed; any of them that no
    // longer passes fails the test by name, and a new pass is reported so the list can grow.
    let floor = |b: &Backend| -> std::collections::BTreeSet<String> {
        let path = root().join(format!("tests/onnx_conformance/{b}.passing"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect()
    };
    let floors: Vec<_> = backends.iter().map(floor).collect();
    let mut passing: Vec<std::collections::BTreeSet<String>> = vec![Default::default(); backends.len()];
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let sets = case["data_sets"].as_u64().unwrap() as usize;
        let (rtol, atol) = (case["rtol"].as_f64().unwrap(), case["atol"].as_f64().unwrap());
        let source = case["source"].as_str().unwrap_or("onnx");
        let mut row = serde_json::Map::new();
        row.insert("name".into(), name.into());
        for (k, b) in backends.iter().enumerate() {
            let outcome = std::panic::catch_unwind(|| run_case(&dir.join(name), sets, rtol, atol, b))
                .unwrap_or(Outcome::Crashed);
            let (class, detail) = match &outcome {
                Outcome::Passed => ("passed", String::new()),
                Outcome::Refused(w) => ("refused", w.clone()),
                Outcome::Wrong(w) => ("wrong", w.clone()),
                Outcome::RunError(w) => ("run error", w.clone()),
                Outcome::Crashed => ("crashed", String::new()),
            };
            *counts.entry(format!("{b} ({source})")).or_default().entry(class).or_default() += 1;
            if outcome == Outcome::Passed {
                passing[k].insert(name.to_owned());
            } else if floors[k].contains(name) {
                failures.push(format!("{name} on {b}: passed before, now {class}: {detail}"));
            }
            row.insert(b.to_string(), serde_json::json!({"outcome": class, "detail": detail}));
            if *b == Backend::CANDLE && !matches!(outcome, Outcome::Passed | Outcome::Refused(_)) {
                failures.push(format!("{name}: {class}: {detail}"));
            } else if *b == Backend::CANDLE && source == "rivet" && outcome != Outcome::Passed {
                // Rivet's own cases use operators the executor implements: they must pass.
                failures.push(format!("{name}: {class}: {detail}"));
            }
        }
        report.push(serde_json::Value::Object(row));
    }
    let summary = serde_json::json!({"onnx": manifest["onnx"], "cases": cases.len(), "counts": counts, "results": report});
    std::fs::write(root().join("target/onnx-conformance.json"), serde_json::to_vec_pretty(&summary).unwrap())
        .unwrap();
    for (b, c) in &counts {
        let get = |k: &str| c.get(k).copied().unwrap_or(0);
        println!(
            "onnx node suite, {b}: {} passed, {} refused at load, {} wrong, {} run errors, {} crashed",
            get("passed"),
            get("refused"),
            get("wrong"),
            get("run error"),
            get("crashed")
        );
    }
    for (k, b) in backends.iter().enumerate() {
        let new: Vec<&String> = passing[k].difference(&floors[k]).collect();
        let missing: Vec<&String> =
            floors[k].iter().filter(|n| !cases.iter().any(|c| c["name"] == n.as_str())).collect();
        if !new.is_empty() {
            println!(
                "onnx node suite, {b}: {} case(s) pass that tests/onnx_conformance/{b}.passing does not list \
                 (add them): {}",
                new.len(),
                new.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(" ")
            );
        }
        for name in missing {
            failures.push(format!("{name} on {b}: listed as passing, but the suite has no such case"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) neither passed nor were refused, or no longer pass:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A network at opset 6 as exporters of that time wrote it (`broadcast` and `axis` on Add and
/// Gemm, BatchNormalization with `is_test`, PRelu per channel), which ONNX Runtime refuses:
/// `auto` loads it on Candle, naming the backend it skipped and why, and it answers as ONNX's
/// reference evaluator does. A legacy form whose semantics Candle does not implement (training
/// statistics, `is_test=0`) is refused at load with its operator and opset named.
#[test]
fn legacy_opsets_load_on_candle_under_auto() {
    let case = suite().join("rivet_legacy_network");
    let loaded = rivet::load_explained(case.join("model.onnx"), &LoadOptions::default()).unwrap();
    assert_eq!(loaded.model.backend(), Backend::CANDLE);
    let skipped: Vec<String> = loaded.skipped.iter().map(|(b, e)| format!("{b}: {e}")).collect();
    assert_eq!(loaded.skipped.len(), 1, "{skipped:?}");
    assert_eq!(loaded.skipped[0].0, Backend::ORT, "{skipped:?}");
    assert!(skipped[0].contains("Could not find an implementation for Add(6)"), "{skipped:?}");
    let data = case.join("test_data_set_0");
    let input = rivet_testkit::onnx::read_tensor(&data.join("input_0.pb")).unwrap();
    let expected = rivet_testkit::onnx::read_tensor(&data.join("output_0.pb")).unwrap();
    let outputs = loaded.model.run(&[&input]).unwrap();
    compare(outputs.get(0).unwrap(), &expected, 1e-5, 1e-7).unwrap();

    use candle_onnx::onnx::{attribute_proto::AttributeType, AttributeProto, GraphProto, NodeProto};
    use rivet_testkit::onnx::{model_of, value};
    let int = |name: &str, i: i64| AttributeProto {
        name: name.into(),
        i,
        r#type: AttributeType::Int as i32,
        ..Default::default()
    };
    let names = ["x", "scale", "bias", "mean", "var"];
    let graph = GraphProto {
        node: vec![NodeProto {
            op_type: "BatchNormalization".into(),
            name: "bn".into(),
            input: names.iter().map(|n| n.to_string()).collect(),
            output: vec!["y".into()],
            attribute: vec![int("is_test", 0)],
            ..Default::default()
        }],
        input: [value("x", 1, &[1, 2, 3])]
            .into_iter()
            .chain(names[1..].iter().map(|n| value(n, 1, &[2])))
            .collect(),
        output: vec![value("y", 1, &[1, 2, 3])],
        ..Default::default()
    };
    let mut model = model_of(graph);
    model.ir_version = 3;
    model.opset_import[0].version = 6;
    let path = std::env::temp_dir().join(format!("rivet-legacy-bn-{}.onnx", std::process::id()));
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    let err = rivet::load(&path, &LoadOptions::with_backend(Backend::CANDLE))
        .err()
        .expect("is_test=0 must be refused");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    let text = err.to_string();
    assert!(text.contains("BatchNormalization (opset 6): node \"bn\": is_test=0 (training"), "{text}");
}
