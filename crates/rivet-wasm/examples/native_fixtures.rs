//! Writes what the native Candle executor does on the node-suite sample, for the WebAssembly
//! build's tests to compare with (`crates/rivet-wasm/tests/node_suite.test.mjs`).
//!
//! For each case of the sample: the refusal (code and message) when native Rivet refuses the
//! model, else per data set its inputs and native outputs as raw little-endian files, or the
//! run's error. `OUT/manifest.json` lists it all.
//!
//! Usage: cargo run -p rivet-wasm --example native_fixtures -- SUITE_DIR SAMPLE_FILE OUT_DIR

use std::path::{Path, PathBuf};

use rivet_candle::CandleModel;
use rivet_core::{Error, Model, Tensor};
use serde_json::{json, Value};

fn error_json(error: &Error) -> Value {
    json!({ "code": error.kind().code(), "message": error.message_with_causes() })
}

fn write_tensor(dir: &Path, file: String, tensor: &Tensor) -> Value {
    std::fs::write(dir.join(&file), tensor.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    json!({ "file": file, "dtype": tensor.dtype().name(), "shape": tensor.shape() })
}

/// The tensors `role_0.pb`, `role_1.pb`... of a data set, or `None` when one has an element
/// type Rivet tensors do not carry.
fn read_set(data: &Path, role: &str) -> Option<Vec<Tensor>> {
    (0..)
        .map(|i| data.join(format!("{role}_{i}.pb")))
        .take_while(|p| p.exists())
        .map(|p| rivet_testkit::onnx::read_tensor(&p))
        .collect()
}

fn case(suite: &Path, out: &Path, entry: &Value) -> Value {
    let name = entry["name"].as_str().expect("a case name");
    let dir = suite.join(name);
    let model_path = dir.join("model.onnx");
    let bytes = std::fs::read(&model_path).unwrap_or_else(|e| panic!("{}: {e}", model_path.display()));
    let mut record = json!({
        "name": name,
        "model": model_path,
        "rtol": entry["rtol"],
        "atol": entry["atol"],
        "random": name.starts_with("test_bernoulli"),
    });
    let model = match CandleModel::from_bytes(&bytes, Path::new("model.onnx")) {
        Ok(model) => model,
        Err(e) => {
            record["refused"] = error_json(&e);
            return record;
        }
    };
    let mut sets = Vec::new();
    for k in 0..entry["data_sets"].as_u64().unwrap_or(1) {
        let data = dir.join(format!("test_data_set_{k}"));
        let Some(inputs) = read_set(&data, "input") else {
            sets.push(json!({ "untestable": "an input's element type is not one Rivet tensors carry" }));
            continue;
        };
        let case_out = out.join(name).join(format!("set_{k}"));
        std::fs::create_dir_all(&case_out).unwrap();
        let written: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| write_tensor(&case_out, format!("input_{i}.bin"), t))
            .collect();
        let refs: Vec<&Tensor> = inputs.iter().collect();
        let rel = |v: Vec<Value>| -> Vec<Value> {
            v.into_iter()
                .map(|mut t| {
                    t["file"] = json!(format!("{name}/set_{k}/{}", t["file"].as_str().unwrap()));
                    t
                })
                .collect()
        };
        match model.run(&refs) {
            Ok(outputs) => {
                let outs: Vec<Value> = outputs
                    .iter()
                    .enumerate()
                    .map(|(i, (_, t))| write_tensor(&case_out, format!("output_{i}.bin"), t))
                    .collect();
                sets.push(json!({ "inputs": rel(written), "outputs": rel(outs) }));
            }
            Err(e) => sets.push(json!({ "inputs": rel(written), "error": error_json(&e) })),
        }
    }
    record["sets"] = json!(sets);
    record
}

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [suite, sample, out] = args.as_slice() else {
        eprintln!("usage: native_fixtures SUITE_DIR SAMPLE_FILE OUT_DIR");
        std::process::exit(2);
    };
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(suite.join("manifest.json"))
            .expect("the suite's manifest.json (models/onnx_node_tests.py)"),
    )
    .expect("a JSON manifest");
    let wanted: Vec<String> = std::fs::read_to_string(sample)
        .expect("the sample list")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).unwrap();
    let cases = manifest["cases"].as_array().expect("a list of cases");
    let records: Vec<Value> = wanted
        .iter()
        .map(|name| {
            let entry = cases
                .iter()
                .find(|c| c["name"] == name.as_str())
                .unwrap_or_else(|| panic!("{name} is not in {}", suite.display()));
            case(suite, out, entry)
        })
        .collect();
    let refused = records.iter().filter(|r| r.get("refused").is_some()).count();
    std::fs::write(out.join("manifest.json"), serde_json::to_vec_pretty(&records).unwrap()).unwrap();
    println!("{} cases ({refused} refused natively) -> {}", records.len(), out.display());
}
