//! The session pool: `instances=auto` (the default) adds a session when every one is busy,
//! `instances=N` makes N at load; bad values are refused naming the option.

use std::path::PathBuf;

use rivet_core::{Backend, ErrorKind, LoadOptions, Model, Tensor};
use rivet_ort::OrtBackend;

fn mlp() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/mlp/mlp.onnx")
}

fn input() -> Tensor {
    let values: Vec<f32> = (0..16).map(|i| i as f32 * 0.125 - 1.0).collect();
    Tensor::from_slice(&[1, 16], &values).unwrap()
}

#[test]
fn auto_instances_add_a_session_when_all_are_busy() {
    assert!(
        std::thread::available_parallelism().unwrap().get() >= 2,
        "this test needs 2 CPUs: auto instances stop at the CPU count"
    );
    let model = OrtBackend::new().load_model(&mlp(), &LoadOptions::default()).unwrap();
    assert_eq!(model.sessions(), 1, "one session at load");
    let x = input();
    let serial = model.run(&[&x]).unwrap().into_tensors();
    assert_eq!(model.sessions(), 1, "a lone caller never needs a second session");
    // While this thread holds the only session, another thread's run gets a new one instead
    // of waiting (with a fixed single session it would wait for ever here).
    let concurrent = std::thread::scope(|scope| {
        model.with_session(|_held| scope.spawn(|| model.run(&[&x]).unwrap().into_tensors()).join().unwrap())
    });
    assert_eq!(concurrent, serial, "the added session computes the same outputs");
    assert_eq!(model.sessions(), 2);
}

#[test]
fn fixed_instances_are_made_at_load_and_bad_values_are_refused() {
    let mut options = LoadOptions::default();
    options.set_option(&Backend::ORT, "instances", "3");
    let model = OrtBackend::new().load_model(&mlp(), &options).unwrap();
    assert_eq!(model.sessions(), 3);
    for bad in ["0", "many", "-1"] {
        let mut options = LoadOptions::default();
        options.set_option(&Backend::ORT, "instances", bad);
        let err = OrtBackend::new().load_model(&mlp(), &options).err().expect("refused");
        assert_eq!(err.kind(), ErrorKind::InvalidOption, "{err}");
        assert!(err.to_string().contains("expected auto or a whole number of at least 1"), "{bad}: {err}");
    }
}

/// Many threads sharing fewer sessions: every run gets a session of its own (a shared one would
/// corrupt outputs or crash ONNX Runtime), no caller waits for ever, and the pool never grows
/// past its fixed size. Covers the lock-free hand-back (`hot`) racing with callers that wait.
#[test]
fn threads_outnumbering_sessions_each_get_one_and_agree_with_serial_runs() {
    for instances in ["1", "2"] {
        let mut options = LoadOptions::default();
        options.set_option(&Backend::ORT, "instances", instances);
        options.intra_op_threads = Some(1);
        let model = OrtBackend::new().load_model(&mlp(), &options).unwrap();
        let inputs: Vec<Tensor> = (0..8)
            .map(|t| {
                let values: Vec<f32> = (0..16).map(|i| (i * (t + 1)) as f32 * 0.01 - 0.5).collect();
                Tensor::from_slice(&[1, 16], &values).unwrap()
            })
            .collect();
        let serial: Vec<Tensor> =
            inputs.iter().map(|x| model.run(&[x]).unwrap().into_tensors().remove(0)).collect();
        std::thread::scope(|scope| {
            for (x, want) in inputs.iter().zip(&serial) {
                let model = &model;
                scope.spawn(move || {
                    for run in 0..300 {
                        let got = model.run(&[x]).unwrap().into_tensors().remove(0);
                        assert_eq!(&got, want, "instances={instances}, run {run}");
                    }
                });
            }
        });
        assert_eq!(model.sessions().to_string(), instances);
    }
}
