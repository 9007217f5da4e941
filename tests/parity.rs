//! Every backend against PyTorch's own outputs on every bundled model, and against each other.

mod common;

use std::sync::Arc;

use common::*;
use rivet::{Backend, ErrorKind, LoadOptions, Model};

const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

fn check_against_reference(network: &str, model: &dyn Model) {
    assert!(cases(network).len() >= 2, "{network} needs two batch sizes");
    check_cases(network, model);
}

fn check_cases(network: &str, model: &dyn Model) {
    for case in &cases(network) {
        let outputs = run_case(model, case);
        assert_eq!(outputs.len(), case.outputs.len());
        for (name, expected) in &case.outputs {
            let actual = outputs.by_name(name).unwrap_or_else(|| panic!("no output {name}"));
            let what = format!("{network}/{} {} output {name}", case.name, model.backend());
            assert_close(actual, expected, ATOL, RTOL, &what);
        }
    }
}

#[test]
fn mlp_matches_pytorch_on_every_backend() {
    let (pt, onnx) = model_files("mlp");
    check_against_reference("mlp", &*load(&pt, Backend::TCH));
    check_against_reference("mlp", &*load(&onnx, Backend::ORT));
    check_against_reference("mlp", &*load(&onnx, Backend::CANDLE));
}

#[test]
fn cnn_matches_pytorch_on_every_backend() {
    let (pt, onnx) = model_files("cnn");
    check_against_reference("cnn", &*load(&pt, Backend::TCH));
    check_against_reference("cnn", &*load(&onnx, Backend::ORT));
    check_against_reference("cnn", &*load(&onnx, Backend::CANDLE));
}

#[test]
fn encoder_matches_pytorch_on_every_backend() {
    let (pt, onnx) = model_files("encoder");
    let names: Vec<String> = cases("encoder").into_iter().map(|c| c.name).collect();
    // Two batch sizes and two sequence lengths.
    assert_eq!(names, ["b1_s24", "b1_s8", "b4_s24", "b4_s8"]);
    check_against_reference("encoder", &*load(&pt, Backend::TCH));
    check_against_reference("encoder", &*load(&onnx, Backend::ORT));
    check_against_reference("encoder", &*load(&onnx, Backend::CANDLE));
}

/// `network`'s `cases` on Candle at 1 and 2 intra-op threads give the default thread count's
/// bits, and PyTorch's outputs within tolerance. At 2 threads each case runs 80 times: the
/// model keeps its mid-sized convolutions on the calling thread for its first 48 runs, then
/// tries them split and unsplit in turns (see `docs/backends.md`), and every way must give the
/// same bits.
fn same_bits_at_every_thread_count(network: &str, onnx: &std::path::Path, cases: &[Case]) {
    let default = load(onnx, Backend::CANDLE);
    let counted: Vec<(usize, Arc<dyn Model>)> = [1, 2]
        .into_iter()
        .map(|threads| {
            let mut options = LoadOptions::with_backend(Backend::CANDLE);
            options.intra_op_threads = Some(threads);
            (threads, rivet::load(onnx, &options).unwrap())
        })
        .collect();
    for case in cases {
        let base = run_case(&*default, case);
        for (threads, model) in &counted {
            for run in 0..if *threads == 2 { 80 } else { 1 } {
                let outputs = run_case(&**model, case);
                for (name, expected) in &case.outputs {
                    let what =
                        format!("{network}/{} output {name} at {threads} thread(s), run {run}", case.name);
                    let got = outputs.by_name(name).unwrap();
                    assert_eq!(
                        got.as_bytes(),
                        base.by_name(name).unwrap().as_bytes(),
                        "{what}: not the default's bits"
                    );
                    assert_close(got, expected, ATOL, RTOL, &what);
                }
            }
        }
    }
}

/// The Candle executor gives the same bits at 1 and 2 intra-op threads as with the default
/// thread count, and PyTorch's outputs, on every bundled model: a run stays on the calling
/// thread and only large products go to the model's pool.
#[test]
fn candle_gives_the_same_bits_at_every_thread_count() {
    for network in ["mlp", "cnn", "encoder"] {
        let (_, onnx) = model_files(network);
        same_bits_at_every_thread_count(network, &onnx, &cases(network));
    }
}

/// The first `n` rows of `t` (along axis 0).
fn first_rows(t: &rivet::Tensor, n: usize) -> rivet::Tensor {
    let mut shape = t.shape().to_vec();
    let per = t.as_bytes().len() / shape[0];
    shape[0] = n;
    rivet::Tensor::from_bytes(t.dtype(), &shape, &t.as_bytes()[..per * n]).unwrap()
}

/// ResNet-18 (random weights), exported on demand as `make bench-compare` does. Candle's
/// convolutions split over threads by image at batch 2 and by output channel at batch 1 (the
/// case's first image); both give one thread's bits.
#[test]
fn resnet18_matches_pytorch_on_ort_and_candle() {
    let dir = models_dir().join("resnet18");
    if !dir.join("resnet18.onnx").exists() {
        let root = models_dir().parent().unwrap().to_path_buf();
        let status = std::process::Command::new(root.join(".venv/bin/python"))
            .arg(root.join("models/export.py"))
            .arg("resnet18")
            .status()
            .expect("the venv's python (run ./bootstrap.sh)");
        assert!(status.success(), "models/export.py resnet18 failed");
    }
    let onnx = dir.join("resnet18.onnx");
    check_cases("resnet18", &*load(&onnx, Backend::ORT));
    check_cases("resnet18", &*load(&onnx, Backend::CANDLE));
    let mut all = cases("resnet18");
    let b2 = &all[0];
    let b1 = Case {
        name: "b1 (b2's first image)".into(),
        inputs: b2.inputs.iter().map(|(n, t)| (n.clone(), first_rows(t, 1))).collect(),
        outputs: b2.outputs.iter().map(|(n, t)| (n.clone(), first_rows(t, 1))).collect(),
    };
    all.push(b1);
    same_bits_at_every_thread_count("resnet18", &onnx, &all);
}

/// A one-node ONNX model of `op` (opset 17, node "n0") with one f32 input and output.
fn one_node_model(op: &str) -> std::path::PathBuf {
    use candle_onnx::onnx;
    use prost::Message;
    use rivet_testkit::onnx::{model_of, value};
    let model = model_of(onnx::GraphProto {
        name: "g".into(),
        node: vec![onnx::NodeProto {
            op_type: op.into(),
            name: "n0".into(),
            input: vec!["x".into()],
            output: vec!["y".into()],
            ..Default::default()
        }],
        input: vec![value("x", 1, &[2, 2])],
        output: vec![value("y", 1, &[2, 2])],
        ..Default::default()
    });
    let path = std::env::temp_dir().join(format!("rivet-parity-{}-{op}.onnx", std::process::id()));
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

#[test]
fn candle_refuses_an_unimplemented_operator_naming_it_its_opset_and_node() {
    let path = one_node_model("Det");
    let options = rivet::LoadOptions { backend: Backend::CANDLE, ..Default::default() };
    let err = rivet::load(&path, &options).err().expect("the Candle executor has no Det");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert_eq!(
        err.to_string(),
        format!(
            "candle: unsupported {}: the Candle executor does not implement Det (opset 17): node \"n0\": this operator is not implemented",
            path.display()
        )
    );
    // Auto with Candle first falls through to ONNX Runtime, which has Det.
    let candle_first =
        rivet::LoadOptions { auto_order: vec![Backend::CANDLE, Backend::ORT], ..Default::default() };
    assert_eq!(rivet::load(&path, &candle_first).unwrap().backend(), Backend::ORT);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn twins_agree_across_backends() {
    for network in ["mlp", "cnn", "encoder"] {
        let (pt, onnx) = model_files(network);
        let models = [load(&pt, Backend::TCH), load(&onnx, Backend::ORT), load(&onnx, Backend::CANDLE)];
        for case in cases(network) {
            let outputs: Vec<_> = models.iter().map(|m| run_case(&**m, &case)).collect();
            for (model, out) in models.iter().zip(&outputs).skip(1) {
                for (name, _) in &case.outputs {
                    let what = format!("{network}/{}: {} vs tch, {name}", case.name, model.backend());
                    let first = outputs[0].by_name(name).unwrap();
                    assert_close(out.by_name(name).unwrap(), first, 2e-5, 1e-4, &what);
                }
            }
        }
    }
}

#[test]
fn signatures_report_names_dtypes_and_dynamic_dims() {
    let (pt, onnx) = model_files("encoder");
    let expected_inputs = ["input_ids: i64[batch, sequence]", "attention_mask: i64[batch, sequence]"];
    for model in [load(&pt, Backend::TCH), load(&onnx, Backend::ORT)] {
        let sig = model.signature();
        let inputs: Vec<String> = sig.inputs.iter().map(|s| s.to_string()).collect();
        assert_eq!(inputs, expected_inputs, "{}", model.backend());
        assert_eq!(sig.outputs[0].to_string(), "hidden_states: f32[batch, sequence, 32]");
    }
    let (_, onnx) = model_files("cnn");
    let sig = load(&onnx, Backend::CANDLE).signature().clone();
    assert_eq!(sig.inputs[0].to_string(), "image: f32[batch, 3, 32, 32]");
    assert_eq!(sig.outputs[0].to_string(), "logits: f32[batch, 10]");
}

#[test]
fn auto_picks_by_format() {
    let (pt, onnx) = model_files("mlp");
    let auto = rivet::LoadOptions::default();
    assert_eq!(rivet::load(&pt, &auto).unwrap().backend(), Backend::TCH);
    assert_eq!(rivet::load(&onnx, &auto).unwrap().backend(), Backend::ORT);
    let candle_first = rivet::LoadOptions { auto_order: vec![Backend::CANDLE, Backend::ORT], ..auto.clone() };
    assert_eq!(rivet::load(&onnx, &candle_first).unwrap().backend(), Backend::CANDLE);
    // The encoder runs on Candle's own executor too.
    let (_, enc) = model_files("encoder");
    assert_eq!(rivet::load(&enc, &candle_first).unwrap().backend(), Backend::CANDLE);
}

#[test]
fn tch_placements_agree_and_its_options_are_checked() {
    let (pt, _) = model_files("mlp");
    // On the executor thread (default), on the calling thread, and with two executor threads
    // called from several threads at once: the same outputs as PyTorch.
    for (key, value) in [("executor", "thread"), ("executor", "caller"), ("executors", "2")] {
        let options = LoadOptions::with_backend(Backend::TCH).option(&Backend::TCH, key, value);
        let model = rivet::load(&pt, &options).unwrap();
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| check_against_reference("mlp", &*model));
            }
        });
    }
    for (key, value, expected) in [
        ("executor", "gpu", "tch: option executor = \"gpu\": expected thread or caller"),
        ("executors", "0", "tch: option executors = \"0\": expected a whole number of at least 1"),
        ("retain_memory", "maybe", "tch: option retain_memory = \"maybe\": expected true or false"),
        (
            "threads",
            "2",
            "tch: unknown option \"threads\"; known options: spec, executor, retain_memory, executors",
        ),
    ] {
        let options = LoadOptions::with_backend(Backend::TCH).option(&Backend::TCH, key, value);
        let err = rivet::load(&pt, &options).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::InvalidOption);
        assert_eq!(err.to_string(), format!("invalid option {key}: {expected}"));
    }
}
