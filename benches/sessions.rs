//! ONNX Runtime sessions under concurrency: 16 client threads sharing the bundled MLP (batch 1)
//! with `instances=1` (every run waits for the one session), `instances=auto` (the default: a
//! session is added whenever all are busy, up to the CPU count) and `instances=4`. Criterion's
//! time per iteration is the wall time per run with all 16 clients busy, so runs/s = 1 / time.
//!
//! `cargo bench --bench sessions`, or `make bench BENCH=sessions`.

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use rivet::{Backend, LoadOptions, Model, Tensor};

use common::models_dir;

const CLIENTS: u64 = 16;

/// `iters` runs split over the clients; the wall time from the first start to the last end.
fn runs(model: &dyn Model, x: &Tensor, iters: u64) -> Duration {
    let started = Instant::now();
    std::thread::scope(|s| {
        for client in 0..CLIENTS {
            let share = iters / CLIENTS + u64::from(client < iters % CLIENTS);
            s.spawn(move || {
                for _ in 0..share {
                    std::hint::black_box(model.run(&[x]).unwrap());
                }
            });
        }
    });
    started.elapsed()
}

fn bench_sessions(c: &mut Criterion) {
    let path = models_dir().join("mlp/mlp.onnx");
    let x = rivet::npy::read_npy(&models_dir().join("mlp/cases/b1/input.features.npy")).unwrap();
    let mut group = c.benchmark_group("sessions/ort_mlp_b1_16_clients");
    for instances in ["1", "auto", "4"] {
        let options = LoadOptions::with_backend(Backend::ORT).option(&Backend::ORT, "instances", instances);
        let model = rivet::load(&path, &options).unwrap();
        // Warm up with every client, so `auto` has grown before the measurement.
        runs(&*model, &x, CLIENTS * 50);
        group.bench_function(format!("instances={instances}"), |b| {
            b.iter_custom(|iters| runs(&*model, &x, iters))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_sessions);
criterion_main!(benches);
