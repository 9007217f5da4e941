//! Candle's own executor against ONNX Runtime and against the `candle_onnx::simple_eval` path
//! it replaced, one thread, on the bundled models (and ResNet-18 when exported), at batch 1 and
//! 8 (a case's first sample, repeated). `cargo bench --bench candle` (release) or `--profile
//! dev` for a quick look.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{load, models_dir};
use criterion::{criterion_group, Criterion};
use rivet::{Backend, Tensor};

/// The case inputs of `network`'s case `case`, in signature order.
fn case_inputs(network: &str, case: &str) -> Vec<(String, Tensor)> {
    let dir = models_dir().join(network).join("cases").join(case);
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|f| {
            let stem = f.file_stem()?.to_string_lossy().into_owned();
            let name = stem.strip_prefix("input.")?.to_owned();
            Some((name, rivet::npy::read_npy(&f).unwrap()))
        })
        .collect()
}

fn to_candle(t: &Tensor) -> candle_core::Tensor {
    let dtype = match t.dtype() {
        rivet::DType::F32 => candle_core::DType::F32,
        rivet::DType::I64 => candle_core::DType::I64,
        other => panic!("bench inputs are f32 or i64, not {other}"),
    };
    candle_core::Tensor::from_raw_buffer(t.as_bytes(), dtype, t.shape(), &candle_core::Device::Cpu).unwrap()
}

/// `t`'s first sample repeated `n` times along axis 0.
fn batch_of(t: &Tensor, n: usize) -> Tensor {
    let per = t.as_bytes().len() / t.shape()[0];
    let mut shape = t.shape().to_vec();
    shape[0] = n;
    Tensor::from_bytes(t.dtype(), &shape, &t.as_bytes()[..per].repeat(n)).unwrap()
}

fn bench_models(c: &mut Criterion) {
    // (network, case whose first sample is repeated, whether `simple_eval` can run it)
    let mut runs = vec![("mlp", "b1", true), ("cnn", "b1", true), ("encoder", "b1_s24", false)];
    if models_dir().join("resnet18/resnet18.onnx").exists() {
        runs.push(("resnet18", "b2", false));
    }
    for (network, case, simple_eval) in runs {
        let path = models_dir().join(network).join(format!("{network}.onnx"));
        let models: Vec<_> =
            [Backend::ORT, Backend::CANDLE].into_iter().map(|b| (b.clone(), load(&path, b))).collect();
        let proto = simple_eval.then(|| candle_onnx::read_file(&path).unwrap());
        for batch in [1, 8] {
            let inputs: Vec<(String, Tensor)> =
                case_inputs(network, case).into_iter().map(|(n, t)| (n, batch_of(&t, batch))).collect();
            let named: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
            let mut group = c.benchmark_group(format!("candle/{network}/b{batch}"));
            for (backend, model) in &models {
                group.bench_function(backend.to_string(), |b| b.iter(|| model.run_named(&named).unwrap()));
            }
            if let Some(proto) = &proto {
                group.bench_function("simple_eval", |b| {
                    b.iter(|| {
                        let feeds: HashMap<String, candle_core::Tensor> =
                            inputs.iter().map(|(n, t)| (n.clone(), to_candle(t))).collect();
                        candle_onnx::simple_eval(proto, feeds).unwrap()
                    })
                });
            }
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench_models
}

fn main() {
    // Before any rayon pool exists: Candle then runs on one thread, like the other backends.
    std::env::set_var("RAYON_NUM_THREADS", "1");
    benches();
    Criterion::default().configure_from_args().final_summary();
}
