//! Helpers shared by the integration tests: loading and running the bundled models and their
//! PyTorch references (found through the dev-only rivet-testkit), and comparing outputs.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use rivet::{Backend, LoadOptions, Model, Tensor};

#[allow(unused_imports)] // each test target uses part of it
pub use rivet_testkit::{cases, model_files, models_dir, Case};

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
