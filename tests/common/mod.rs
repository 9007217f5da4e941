//! Helpers shared by the integration tests: the bundled models and their PyTorch references.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rivet::{npy, Backend, LoadOptions, Model, Tensor};

/// `models/` at the workspace root.
pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// The bundled model files of network `name`: (`.pt`, `.onnx`).
pub fn model_files(name: &str) -> (PathBuf, PathBuf) {
    let dir = models_dir().join(name);
    (dir.join(format!("{name}.pt")), dir.join(format!("{name}.onnx")))
}

/// One reference case: inputs and PyTorch eager outputs, by name.
pub struct Case {
    pub name: String,
    pub inputs: Vec<(String, Tensor)>,
    pub outputs: Vec<(String, Tensor)>,
}

/// Every case of network `name`, sorted by case name.
pub fn cases(name: &str) -> Vec<Case> {
    let dir = models_dir().join(name).join("cases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|d| {
            let mut case = Case {
                name: d.file_name().unwrap().to_string_lossy().into_owned(),
                inputs: vec![],
                outputs: vec![],
            };
            let mut files: Vec<PathBuf> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            for f in files {
                let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
                let tensor = npy::read_npy(&f).unwrap();
                if let Some(n) = stem.strip_prefix("input.") {
                    case.inputs.push((n.to_owned(), tensor));
                } else if let Some(n) = stem.strip_prefix("output.") {
                    case.outputs.push((n.to_owned(), tensor));
                }
            }
            assert!(!case.inputs.is_empty() && !case.outputs.is_empty(), "{}", d.display());
            case
        })
        .collect()
}

/// Loads `path` with `backend`.
pub fn load(path: &Path, backend: Backend) -> Arc<dyn Model> {
    let options = LoadOptions::with_backend(backend.clone());
    rivet::load(path, &options).unwrap_or_else(|e| panic!("{backend} cannot load {}: {e}", path.display()))
}

/// Runs `case` by input name.
pub fn run_case(model: &dyn Model, case: &Case) -> rivet::Outputs {
    let named: Vec<(&str, &Tensor)> = case.inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    model.run_named(&named).unwrap_or_else(|e| panic!("{} on case {}: {e}", model.backend(), case.name))
}

/// Largest absolute and relative differences between two f32 tensors of the same shape.
pub fn diff(actual: &Tensor, expected: &Tensor) -> (f32, f32) {
    assert_eq!(actual.shape(), expected.shape(), "shapes differ");
    let a = actual.as_slice::<f32>().unwrap();
    let e = expected.as_slice::<f32>().unwrap();
    a.iter().zip(e).fold((0f32, 0f32), |(abs, rel), (x, y)| {
        let d = (x - y).abs();
        (abs.max(d), rel.max(d / y.abs().max(f32::MIN_POSITIVE)))
    })
}

/// Asserts `|actual - expected| <= atol + rtol * |expected|` elementwise.
pub fn assert_close(actual: &Tensor, expected: &Tensor, atol: f32, rtol: f32, what: &str) {
    assert_eq!(actual.shape(), expected.shape(), "{what}: shapes differ");
    let a = actual.as_slice::<f32>().unwrap();
    let e = expected.as_slice::<f32>().unwrap();
    for (i, (x, y)) in a.iter().zip(e).enumerate() {
        assert!(
            (x - y).abs() <= atol + rtol * y.abs(),
            "{what}: element {i}: got {x}, expected {y} (diff {})",
            (x - y).abs()
        );
    }
}
