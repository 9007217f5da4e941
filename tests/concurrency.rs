//! One loaded model shared by 8 threads × 500 runs gives exactly the serial outputs, per backend.

mod common;

use std::sync::Arc;

use common::*;
use rivet::{Backend, LoadOptions, Model, Tensor};

const THREADS: usize = 8;
const RUNS: usize = 500;

fn hammer(model: Arc<dyn Model>, inputs: Vec<Vec<(String, Tensor)>>) {
    let serial: Vec<Vec<Tensor>> = inputs
        .iter()
        .map(|case| {
            let named: Vec<(&str, &Tensor)> = case.iter().map(|(n, t)| (n.as_str(), t)).collect();
            model.run_named(&named).unwrap().into_tensors()
        })
        .collect();
    let inputs = Arc::new(inputs);
    let serial = Arc::new(serial);
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (model, inputs, serial) = (model.clone(), inputs.clone(), serial.clone());
            std::thread::spawn(move || {
                for run in 0..RUNS {
                    // Threads interleave different cases so a mix-up would show.
                    let i = (thread + run) % inputs.len();
                    let named: Vec<(&str, &Tensor)> =
                        inputs[i].iter().map(|(n, t)| (n.as_str(), t)).collect();
                    let out = model.run_named(&named).unwrap().into_tensors();
                    assert_eq!(out, serial[i], "{} thread {thread} run {run}", model.backend());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker thread");
    }
}

fn case_inputs(network: &str) -> Vec<Vec<(String, Tensor)>> {
    cases(network).into_iter().map(|c| c.inputs).collect()
}

fn shared(path: &std::path::Path, backend: Backend, instances: usize) -> Arc<dyn Model> {
    let mut options = LoadOptions::with_backend(backend);
    if options.backend == Backend::ORT {
        options.set_option(&Backend::ORT, "instances", instances.to_string());
    }
    rivet::load(path, &options).unwrap()
}

#[test]
fn tch_model_shared_by_threads_matches_serial() {
    let (pt, _) = model_files("mlp");
    hammer(shared(&pt, Backend::TCH, 1), case_inputs("mlp"));
}

#[test]
fn ort_model_shared_by_threads_matches_serial() {
    let (_, onnx) = model_files("mlp");
    hammer(shared(&onnx, Backend::ORT, 1), case_inputs("mlp"));
    hammer(shared(&onnx, Backend::ORT, 4), case_inputs("mlp"));
}

#[test]
fn candle_model_shared_by_threads_matches_serial() {
    let (_, onnx) = model_files("mlp");
    hammer(shared(&onnx, Backend::CANDLE, 1), case_inputs("mlp"));
}

#[test]
fn encoder_shared_by_threads_matches_serial() {
    let (pt, onnx) = model_files("encoder");
    hammer(shared(&pt, Backend::TCH, 1), case_inputs("encoder"));
    hammer(shared(&onnx, Backend::ORT, 2), case_inputs("encoder"));
    hammer(shared(&onnx, Backend::CANDLE, 1), case_inputs("encoder"));
}

#[test]
fn candle_cnn_shared_by_threads_matches_serial() {
    let (_, onnx) = model_files("cnn");
    hammer(shared(&onnx, Backend::CANDLE, 1), case_inputs("cnn"));
}
