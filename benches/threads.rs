//! Does the calling thread matter? The bundled CNN at batch 1 on tch, with libtorch's default
//! threads, run from the thread that loaded the model and from a thread spawned for the
//! measurement (as `rivet bench` clients and C++ services' worker threads are), with libtorch
//! called on the calling thread (`executor=caller`) and on the backend's executor thread (the
//! default). Each sample is `iters` runs on one thread, so thread start-up is outside the timing.
//!
//! `cargo bench --bench threads`, or `make bench BENCH=threads`.

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use rivet::{Backend, LoadOptions, Model, Tensor};

use common::models_dir;

fn runs(model: &dyn Model, x: &Tensor, iters: u64) -> Duration {
    let started = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(model.run(&[x]).unwrap());
    }
    started.elapsed()
}

/// The placement this process measures (set by `main` for each child it starts).
const PLACEMENT_VAR: &str = "RIVET_BENCH_TCH_EXECUTOR";

fn bench_threads(c: &mut Criterion) {
    let placement = std::env::var(PLACEMENT_VAR).unwrap_or_else(|_| "thread".into());
    let path = models_dir().join("cnn/cnn.pt");
    let x = rivet::npy::read_npy(&models_dir().join("cnn/cases/b1/input.image.npy")).unwrap();
    let options = LoadOptions::with_backend(Backend::TCH).option(&Backend::TCH, "executor", &placement);
    let model = rivet::load(&path, &options).unwrap();
    // Warm up on the loading thread, as `rivet bench` does.
    runs(&*model, &x, 20);
    let mut group = c.benchmark_group(format!("threads/tch_cnn_b1/{placement}"));
    group.bench_function("loading_thread", |b| b.iter_custom(|iters| runs(&*model, &x, iters)));
    group.bench_function("spawned_thread", |b| {
        b.iter_custom(|iters| std::thread::scope(|s| s.spawn(|| runs(&*model, &x, iters)).join().unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bench_threads);

/// Each placement is measured in its own process: OpenMP's per-thread teams outlive a model, so
/// one placement's threads would skew the other's figures.
fn main() {
    if std::env::var_os(PLACEMENT_VAR).is_some() {
        benches();
        Criterion::default().configure_from_args().final_summary();
        return;
    }
    let exe = std::env::current_exe().expect("the bench executable");
    for placement in ["caller", "thread"] {
        let status = std::process::Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .env(PLACEMENT_VAR, placement)
            .status()
            .expect("starting the bench for one placement");
        assert!(status.success(), "the {placement} run failed");
    }
}
