//! Tensor conversion in and out of each backend: a Rivet tensor into the backend's own tensor
//! type (`in`) and back (`out`), for the MLP's batch-1 input (f32[1, 16], 64 B) and a CNN batch
//! (f32[64, 3, 32, 32], 768 KiB). ONNX Runtime wraps inputs without copying; libtorch and
//! Candle copy.
//!
//! `cargo bench --bench conversion` (all), or `cargo bench --bench conversion -- conversion/tch`.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use rivet::Tensor;

fn tensors() -> Vec<(&'static str, Tensor)> {
    let small: Vec<f32> = (0..16).map(|i| i as f32 * 0.5).collect();
    let large: Vec<f32> = (0..64 * 3 * 32 * 32).map(|i| (i % 255) as f32 / 255.0).collect();
    vec![
        ("1x16", Tensor::from_slice(&[1, 16], &small).unwrap()),
        ("64x3x32x32", Tensor::from_slice(&[64, 3, 32, 32], &large).unwrap()),
    ]
}

fn bench_tch(c: &mut Criterion) {
    let mut group = c.benchmark_group("conversion/tch");
    for (name, t) in tensors() {
        group.throughput(Throughput::Bytes(t.as_bytes().len() as u64));
        group.bench_with_input(BenchmarkId::new("in", name), &t, |b, t| {
            b.iter(|| rivet_tch::to_tch(&t.view(), tch::Device::Cpu).unwrap())
        });
        let theirs = rivet_tch::to_tch(&t.view(), tch::Device::Cpu).unwrap();
        group.bench_with_input(BenchmarkId::new("out", name), &theirs, |b, x| {
            b.iter(|| rivet_tch::from_tch(x).unwrap())
        });
    }
    group.finish();
}

fn bench_ort(c: &mut Criterion) {
    rivet::ort::environment().unwrap();
    let mut group = c.benchmark_group("conversion/ort");
    for (name, t) in tensors() {
        group.throughput(Throughput::Bytes(t.as_bytes().len() as u64));
        group.bench_with_input(BenchmarkId::new("in", name), &t, |b, t| {
            b.iter(|| {
                let view = t.view();
                rivet::ort::to_ort(&view).map(drop).unwrap()
            })
        });
        let shape: Vec<usize> = t.shape().to_vec();
        let data = t.as_slice::<f32>().unwrap().to_vec();
        let theirs = ort::value::Tensor::<f32>::from_array((shape, data)).unwrap().into_dyn();
        group.bench_with_input(BenchmarkId::new("out", name), &theirs, |b, x| {
            b.iter(|| rivet::ort::from_ort("y", x).unwrap())
        });
    }
    group.finish();
}

fn bench_candle(c: &mut Criterion) {
    let mut group = c.benchmark_group("conversion/candle");
    for (name, t) in tensors() {
        group.throughput(Throughput::Bytes(t.as_bytes().len() as u64));
        group.bench_with_input(BenchmarkId::new("in", name), &t, |b, t| {
            b.iter(|| rivet::candle::to_candle(&t.view()).unwrap())
        });
        let theirs = rivet::candle::to_candle(&t.view()).unwrap();
        group.bench_with_input(BenchmarkId::new("out", name), &theirs, |b, x| {
            b.iter(|| rivet::candle::from_candle(x, None).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_tch, bench_ort, bench_candle);

fn main() {
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
}
