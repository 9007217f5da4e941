//! libtorch enters a process only when it loads a TorchScript model: after loading and running
//! ONNX models this process maps no libtorch; after loading a TorchScript model it does. One test
//! in its own binary, so no other test loads TorchScript first (this crate links no libtorch).

use std::path::{Path, PathBuf};

use rivet::{Backend, LoadOptions, Tensor};

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// Whether a file whose path contains `needle` is mapped into this process.
fn mapped(needle: &str) -> bool {
    std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps").lines().any(|l| l.contains(needle))
}

fn load_and_run(path: &Path, backend: Backend) {
    let model = rivet::load(path, &LoadOptions::with_backend(backend)).unwrap();
    let x = Tensor::from_slice(&[1, 16], &[0.25f32; 16]).unwrap();
    let out = model.run_named(&[("features", &x)]).unwrap();
    assert_eq!(out.by_name("logits").unwrap().shape(), &[1, 3]);
}

#[test]
fn libtorch_is_mapped_only_after_a_torchscript_model_is_loaded() {
    assert!(!mapped("/libtorch"), "libtorch is mapped before any model is loaded");
    load_and_run(&models().join("mlp/mlp.onnx"), Backend::ORT);
    load_and_run(&models().join("mlp/mlp.onnx"), Backend::CANDLE);
    assert!(mapped("/libonnxruntime.so"), "ONNX Runtime is mapped after an ort run");
    assert!(!mapped("/libtorch"), "libtorch is mapped after running ONNX models only");
    assert!(!mapped("/librivet_tch.so"), "the tch backend library is mapped after running ONNX only");
    load_and_run(&models().join("mlp/mlp.pt"), Backend::AUTO);
    assert!(mapped("/libtorch_cpu.so"), "libtorch is not mapped after loading a TorchScript model");
    assert!(mapped("/librivet_tch.so"), "the tch backend library is not mapped after a TorchScript load");
}
