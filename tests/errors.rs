//! Bad input and bad files: each gives an error of the right kind whose message names what was
//! wrong, through every backend, and nothing panics.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use rivet::{Backend, Error, ErrorKind, LoadOptions, Model, Tensor};

fn with(backend: &Backend) -> LoadOptions {
    LoadOptions::with_backend(backend.clone())
}

fn load_err(path: &Path, backend: &Backend) -> Error {
    match rivet::load(path, &with(backend)) {
        Ok(_) => panic!("{backend} loaded {}", path.display()),
        Err(e) => e,
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rivet-errors-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The three MLP twins, each loaded by its backend.
fn mlps() -> Vec<Arc<dyn Model>> {
    let (pt, onnx) = model_files("mlp");
    vec![load(&pt, Backend::TCH), load(&onnx, Backend::ORT), load(&onnx, Backend::CANDLE)]
}

fn run_err(model: &dyn Model, inputs: &[(&str, &Tensor)]) -> String {
    let err =
        model.run_named(inputs).err().unwrap_or_else(|| panic!("{} accepted bad input", model.backend()));
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{}: {err}", model.backend());
    err.to_string()
}

#[test]
fn invalid_inputs_name_the_input_and_expected_vs_found() {
    let good = Tensor::from_slice(&[2, 16], &[0.1f32; 32]).unwrap();
    let wrong_dtype = Tensor::from_slice(&[2, 16], &[1i64; 32]).unwrap();
    let wrong_rank = Tensor::from_slice(&[32], &[0.1f32; 32]).unwrap();
    let wrong_dim = Tensor::from_slice(&[2, 15], &[0.1f32; 30]).unwrap();
    for model in mlps() {
        let b = model.backend();
        let err = model.run(&[&good, &good]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(err.to_string(), "invalid input: expected 1 input(s) (features), got 2", "{b}");
        assert_eq!(
            run_err(&*model, &[("feature", &good)]),
            "invalid input: input \"feature\": unknown input name; the model's inputs are: features"
        );
        assert_eq!(
            run_err(&*model, &[("features", &wrong_dtype)]),
            "invalid input: input \"features\": expected dtype f32, got i64"
        );
        assert_eq!(
            run_err(&*model, &[("features", &wrong_rank)]),
            "invalid input: input \"features\": expected rank 2 [batch, 16], got rank 1 [32]"
        );
        assert_eq!(
            run_err(&*model, &[("features", &wrong_dim)]),
            "invalid input: input \"features\": expected dimension 1 to be 16 (shape [batch, 16]), got 15 (shape [2, 15])"
        );
        assert_eq!(
            run_err(&*model, &[]),
            "invalid input: input \"features\": missing: no tensor given for it"
        );
        // The model still works after all that.
        assert_eq!(model.run(&[&good]).unwrap().get(0).unwrap().shape(), [2, 3]);
    }
}

#[test]
fn mismatched_dynamic_dims_between_inputs_are_caught() {
    let (pt, onnx) = model_files("encoder");
    let ids = Tensor::from_slice(&[2, 5], &[1i64; 10]).unwrap();
    let mask = Tensor::from_slice(&[2, 4], &[1i64; 8]).unwrap();
    for model in [load(&pt, Backend::TCH), load(&onnx, Backend::ORT)] {
        assert_eq!(
            run_err(&*model, &[("input_ids", &ids), ("attention_mask", &mask)]),
            "invalid input: input \"attention_mask\": dimension 1 (\"sequence\") is 4, but input \"input_ids\" has sequence = 5"
        );
    }
}

#[test]
fn missing_empty_truncated_and_corrupt_files_name_path_and_backend() {
    let dir = scratch("files");
    let (pt, onnx) = model_files("mlp");
    for (backend, real, ext) in
        [(Backend::TCH, &pt, "pt"), (Backend::ORT, &onnx, "onnx"), (Backend::CANDLE, &onnx, "onnx")]
    {
        let b = backend.name();
        let missing = dir.join(format!("missing.{ext}"));
        let err = load_err(&missing, &backend);
        assert_eq!(err.kind(), ErrorKind::ModelLoad);
        let text = err.to_string();
        assert!(text.starts_with(&format!("{b}: cannot load {}: ", missing.display())), "{text}");
        assert!(text.contains("No such file"), "{text}");

        let empty = dir.join(format!("empty.{ext}"));
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(
            load_err(&empty, &backend).to_string(),
            format!("{b}: cannot load {}: file is empty", empty.display())
        );

        let bytes = std::fs::read(real).unwrap();
        let truncated = dir.join(format!("truncated-{b}.{ext}"));
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_err(&truncated, &backend);
        assert_eq!(err.kind(), ErrorKind::ModelLoad, "{err}");
        assert!(err.to_string().starts_with(&format!("{b}: cannot load {}: ", truncated.display())), "{err}");

        let corrupt = dir.join(format!("corrupt-{b}.{ext}"));
        let mut junk = bytes.clone();
        for (i, byte) in junk.iter_mut().enumerate().skip(4) {
            *byte = (i * 7919 % 251) as u8;
        }
        std::fs::write(&corrupt, &junk).unwrap();
        let err = load_err(&corrupt, &backend);
        assert_eq!(err.kind(), ErrorKind::ModelLoad, "{err}");
        assert!(err.to_string().starts_with(&format!("{b}: cannot load {}: ", corrupt.display())), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_backend_refuses_formats_it_does_not_read() {
    let (pt, onnx) = model_files("mlp");
    let err = load_err(&onnx, &Backend::TCH);
    assert_eq!(
        err.to_string(),
        format!("tch: cannot load {}: ONNX files are not TorchScript; use ort or candle", onnx.display())
    );
    for backend in [Backend::ORT, Backend::CANDLE] {
        let err = load_err(&pt, &backend);
        assert_eq!(
            err.to_string(),
            format!("{backend}: cannot load {}: TorchScript files are not ONNX; use tch", pt.display())
        );
    }
}

#[test]
fn libtorch_exceptions_become_errors() {
    // A valid archive whose code calls an operator libtorch does not have: libtorch throws while
    // compiling it, and the exception must come back as a load error.
    let dir = scratch("exception");
    let (pt, _) = model_files("mlp");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&pt).unwrap()).unwrap();
    let broken = dir.join("broken.pt");
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&broken).unwrap());
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().to_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        if name.ends_with("code/__torch__/torch/nn/modules/linear.py") {
            data = String::from_utf8(data)
                .unwrap()
                .replace("torch.linear(", "torch.linear_nonexistent(")
                .into_bytes();
        }
        writer.start_file(name, stored).unwrap();
        std::io::Write::write_all(&mut writer, &data).unwrap();
    }
    writer.finish().unwrap();
    let err = load_err(&broken, &Backend::TCH);
    assert_eq!(err.kind(), ErrorKind::ModelLoad);
    let text = err.to_string();
    assert!(text.starts_with(&format!("tch: cannot load {}: ", broken.display())), "{text}");
    assert!(text.contains("linear_nonexistent"), "{text}");

    // Without a sidecar Rivet cannot check dtypes, so a wrong one reaches libtorch, which throws
    // while running: that is a backend error, not a crash.
    let bare = dir.join("bare.pt");
    std::fs::copy(&pt, &bare).unwrap();
    let model = load(&bare, Backend::TCH);
    assert_eq!(model.signature().inputs[0].to_string(), "features: ?dtype[?shape]");
    assert_eq!(model.signature().outputs[0].name, "output_0");
    let ints = Tensor::from_slice(&[1, 16], &[1i64; 16]).unwrap();
    let err = model.run(&[&ints]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(err.to_string().starts_with("tch: run failed: "), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_spec_file_that_disagrees_with_the_archive_is_refused() {
    let dir = scratch("spec");
    let spec = dir.join("wrong.spec.json");
    std::fs::write(&spec, r#"{"inputs":[{"name":"x","dtype":"f32","shape":[1,16]}],"outputs":[]}"#).unwrap();
    let (pt, _) = model_files("mlp");
    let options =
        LoadOptions::with_backend(Backend::TCH).option(&Backend::TCH, "spec", spec.display().to_string());
    let err = rivet::load(&pt, &options).err().unwrap();
    // The spec was read: the model is what cannot be loaded.
    assert_eq!(err.kind(), ErrorKind::ModelLoad);
    assert_eq!(
        err.to_string(),
        format!(
            "tch: cannot load {}: spec {} lists inputs [x] but forward takes [features]",
            pt.display(),
            spec.display()
        )
    );
    // A spec may leave out the outputs (as the README says): they are then output_0...
    std::fs::write(&spec, r#"{"inputs":[{"name":"features","dtype":"f32","shape":["batch",16]}]}"#).unwrap();
    let model = rivet::load(&pt, &options).unwrap();
    let x = rivet::npy::read_npy(&pt.parent().unwrap().join("cases/b1/input.features.npy")).unwrap();
    let reference = rivet::npy::read_npy(&pt.parent().unwrap().join("cases/b1/output.logits.npy")).unwrap();
    let outputs = model.run(&[&x]).unwrap();
    assert_eq!(outputs.names(), ["output_0"]);
    // libtorch's float sums may differ from PyTorch's in the last bit: the parity tolerance.
    assert_close(outputs.get(0).unwrap(), &reference, 1e-4, 1e-4, "mlp with a spec without outputs");
    std::fs::write(&spec, r#"{"inputs":[{"name":"features","dtype":"float33"}]}"#).unwrap();
    let err = rivet::load(&pt, &options).err().unwrap();
    assert!(err.to_string().contains("unknown dtype \"float33\""), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn auto_lists_every_backends_reason_when_all_fail() {
    let dir = scratch("auto");
    let bad = dir.join("bad.onnx");
    std::fs::write(&bad, b"\x08\x07garbage that is not a model").unwrap();
    let err = rivet::load(&bad, &LoadOptions::default()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::ModelLoad);
    let Error::NoBackend { attempts, .. } = &err else { panic!("{err}") };
    let tried: Vec<&str> = attempts.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(tried, ["ort", "candle"]);
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("no backend could load {}: [ort] ort: cannot load", bad.display())),
        "{text}"
    );
    assert!(text.contains("; [candle] candle: cannot load"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unsupported_dtypes_devices_and_options_are_errors_not_casts() {
    // uint16, which Candle cannot hold (and Rivet's tensors do not carry).
    let u16_model = models_dir().join("identity/identity_u16.onnx");
    let err = load_err(&u16_model, &Backend::CANDLE);
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert_eq!(
        err.to_string(),
        format!(
            "candle: unsupported {}: input \"x\" has element type uint16, which Candle cannot hold",
            u16_model.display()
        )
    );
    let (pt, onnx) = model_files("mlp");
    let cuda = |backend: &Backend| LoadOptions {
        backend: backend.clone(),
        device: rivet::Device::Cuda(0),
        ..LoadOptions::default()
    };
    for (path, backend) in [(&pt, Backend::TCH), (&onnx, Backend::ORT), (&onnx, Backend::CANDLE)] {
        let err = rivet::load(path, &cuda(&backend)).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        assert!(err.to_string().starts_with(&format!("{backend}: unsupported device cuda:0")), "{err}");
    }
    let zero = LoadOptions::with_backend(Backend::ORT).option(&Backend::ORT, "instances", "0");
    let err = rivet::load(&onnx, &zero).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidOption);
    assert_eq!(
        err.to_string(),
        "invalid option instances: ort: option instances = \"0\": expected auto or a whole number of at least 1"
    );
    // Candle: intra-op threads run the model on its own pool (same outputs); nodes run one
    // after another, so more than one inter-op thread is refused.
    let x = Tensor::from_slice(&[3, 16], &(0..48).map(|i| i as f32 / 48.0).collect::<Vec<_>>()).unwrap();
    let default = rivet::load(&onnx, &LoadOptions::with_backend(Backend::CANDLE)).unwrap();
    for n in [1, 2] {
        let threads =
            LoadOptions { backend: Backend::CANDLE, intra_op_threads: Some(n), ..LoadOptions::default() };
        let model = rivet::load(&onnx, &threads).unwrap();
        assert_eq!(model.run(&[&x]).unwrap().get(0), default.run(&[&x]).unwrap().get(0), "{n} threads");
    }
    let inter = LoadOptions { backend: Backend::CANDLE, inter_op_threads: Some(2), ..LoadOptions::default() };
    let err = rivet::load(&onnx, &inter).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert_eq!(
        err.to_string(),
        "candle: unsupported inter_op_threads other than 1: the Candle executor runs nodes one after another"
    );
}
