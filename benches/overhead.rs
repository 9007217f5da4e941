//! Rivet's overhead per backend: `Model::run` on the bundled MLP at batch 1 against the same
//! call made directly on the backend library (input conversion and output copy included on
//! both sides).
//!
//! `cargo bench --bench overhead` (all), or `cargo bench --bench overhead -- overhead/ort`.

mod common;

use std::collections::HashMap;

use criterion::{criterion_group, Criterion};
use rivet::{Backend, Tensor};

use common::{load, models_dir};

fn input() -> Tensor {
    common::mlp_input()
}

fn bench_tch(c: &mut Criterion) {
    let path = models_dir().join("mlp/mlp.pt");
    let model = load(&path, Backend::TCH);
    let x = input();
    let data = x.as_slice::<f32>().unwrap().to_vec();
    let module = tch::CModule::load(&path).unwrap();
    let mut group = c.benchmark_group("overhead/tch");
    group.bench_function("rivet", |b| b.iter(|| model.run(&[&x]).unwrap()));
    group.bench_function("direct", |b| {
        b.iter(|| {
            let _guard = tch::no_grad_guard();
            let t = tch::Tensor::from_slice(&data).reshape([1, 16]);
            let out = module.forward_ts(&[t]).unwrap();
            let mut v = vec![0f32; 3];
            out.copy_data(&mut v, 3);
            v
        })
    });
    group.finish();
}

fn bench_ort(c: &mut Criterion) {
    let path = models_dir().join("mlp/mlp.onnx");
    let model = load(&path, Backend::ORT);
    let x = input();
    let data = x.as_slice::<f32>().unwrap().to_vec();
    let env = rivet::ort::environment().unwrap();
    let mut session = ort::session::Session::builder(env)
        .unwrap()
        .with_intra_threads(1)
        .unwrap()
        .commit_from_file(&path)
        .unwrap();
    let mut group = c.benchmark_group("overhead/ort");
    let mut direct = move || {
        let t = ort::value::TensorRef::from_array_view(([1usize, 16], &data[..])).unwrap();
        let out = session.run(ort::inputs!["features" => t]).unwrap();
        let (shape, values) = out["logits"].try_extract_tensor::<f32>().unwrap();
        (shape.to_vec(), values.to_vec())
    };
    group.bench_function("direct", |b| b.iter(&mut direct));
    group.bench_function("rivet", |b| b.iter(|| model.run(&[&x]).unwrap()));
    group.bench_function("direct_again", |b| b.iter(&mut direct));
    group.finish();
}

fn bench_candle(c: &mut Criterion) {
    let path = models_dir().join("mlp/mlp.onnx");
    let model = load(&path, Backend::CANDLE);
    let x = input();
    let data = x.as_slice::<f32>().unwrap().to_vec();
    let proto = candle_onnx::read_file(&path).unwrap();
    let mut group = c.benchmark_group("overhead/candle");
    group.bench_function("rivet", |b| b.iter(|| model.run(&[&x]).unwrap()));
    group.bench_function("direct", |b| {
        b.iter(|| {
            let t = candle_core::Tensor::from_slice(&data, (1, 16), &candle_core::Device::Cpu).unwrap();
            let feeds = HashMap::from([("features".to_owned(), t)]);
            let mut out = candle_onnx::simple_eval(&proto, feeds).unwrap();
            out.remove("logits").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_tch, bench_ort, bench_candle);

fn main() {
    // Before any rayon pool exists: Candle then runs on one thread, like the other backends.
    std::env::set_var("RAYON_NUM_THREADS", "1");
    benches();
    Criterion::default().configure_from_args().final_summary();
}
