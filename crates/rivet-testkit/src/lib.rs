//! What the workspace's tests and benchmarks share: where the bundled models are, their
//! reference cases (inputs and PyTorch's outputs, as `.npy` files), and builders of small ONNX
//! models. Never a dependency of anything users link.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

use rivet_core::{npy, Tensor};

pub mod onnx;

/// `models/` at the workspace root, as an absolute path without `..`.
pub fn models_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", root.display())).join("models")
}

/// The bundled model files of network `name`: (`.pt`, `.onnx`).
pub fn model_files(name: &str) -> (PathBuf, PathBuf) {
    let dir = models_dir().join(name);
    (dir.join(format!("{name}.pt")), dir.join(format!("{name}.onnx")))
}

/// One reference case: inputs and PyTorch's eager outputs, by name, each list sorted by name.
pub struct Case {
    /// The case's folder name (`b1`, `b8`...).
    pub name: String,
    /// Inputs, from `input.NAME.npy`.
    pub inputs: Vec<(String, Tensor)>,
    /// PyTorch's outputs, from `output.NAME.npy`.
    pub outputs: Vec<(String, Tensor)>,
}

/// Case `case` of network `name` (`models/NAME/cases/CASE/`). Panics, naming the file, when a
/// file is missing or unreadable: the bundled models are part of the checkout.
pub fn case(name: &str, case: &str) -> Case {
    read_case(&models_dir().join(name).join("cases").join(case))
}

/// Every case of network `name`, sorted by case name.
pub fn cases(name: &str) -> Vec<Case> {
    let dir = models_dir().join(name).join("cases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a readable folder entry").path())
        .collect();
    dirs.sort();
    dirs.iter().map(|d| read_case(d)).collect()
}

fn read_case(dir: &Path) -> Case {
    let mut case = Case {
        name: dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        inputs: vec![],
        outputs: vec![],
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a readable folder entry").path())
        .collect();
    files.sort();
    for f in files {
        let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let read = || npy::read_npy(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if let Some(n) = stem.strip_prefix("input.") {
            case.inputs.push((n.to_owned(), read()));
        } else if let Some(n) = stem.strip_prefix("output.") {
            case.outputs.push((n.to_owned(), read()));
        }
    }
    assert!(!case.inputs.is_empty() && !case.outputs.is_empty(), "{} holds no case", dir.display());
    case
}
