//! Does the calling thread matter? The bundled CNN at batch 1 on tch, with libtorch's default
//! threads, run from the thread that loaded the model and from a thread spawned for the
//! measurement (as `rivet bench` clients and C++ services' worker threads are). Each sample is
//! `iters` runs on one thread, so thread start-up is outside the timing.
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

fn bench_threads(c: &mut Criterion) {
    let path = models_dir().join("cnn/cnn.pt");
    let model = rivet::load(&path, &LoadOptions::with_backend(Backend::TCH)).unwrap();
    let x = rivet::npy::read_npy(&models_dir().join("cnn/cases/b1/input.image.npy")).unwrap();
    // Warm up on the loading thread, as `rivet bench` does.
    runs(&*model, &x, 20);
    let mut group = c.benchmark_group("threads/tch_cnn_b1");
    group.bench_function("loading_thread", |b| b.iter_custom(|iters| runs(&*model, &x, iters)));
    group.bench_function("spawned_thread", |b| {
        b.iter_custom(|iters| std::thread::scope(|s| s.spawn(|| runs(&*model, &x, iters)).join().unwrap()))
    });
    // One long-lived worker thread, fed through a channel: the other common shape.
    let (jobs, inbox) = std::sync::mpsc::channel::<u64>();
    let (done, results) = std::sync::mpsc::channel::<Duration>();
    std::thread::scope(|s| {
        let (model, x) = (&model, &x);
        s.spawn(move || {
            for iters in inbox {
                let _ = done.send(runs(&**model, x, iters));
            }
        });
        group.bench_function("worker_thread", |b| {
            b.iter_custom(|iters| {
                jobs.send(iters).unwrap();
                results.recv().unwrap()
            })
        });
        drop(jobs);
    });
    group.finish();
}

criterion_group!(benches, bench_threads);

fn main() {
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
}
