//! The C ABI (`rivet_model_run` on a view tensor, output freed) against the Rust API on the same
//! loaded model: the bundled MLP at batch 1, one thread, per backend.
//!
//! `cargo bench --bench capi` (all), or `cargo bench --bench capi -- capi/ort`.

mod common;

use criterion::{criterion_group, Criterion};

fn bench_capi(c: &mut Criterion) {
    for backend in ["tch", "ort", "candle"] {
        let mlp = common::CapiMlp::load(backend);
        let mut group = c.benchmark_group(format!("capi/{backend}"));
        group.bench_function("rust_api", |b| b.iter(|| mlp.run_rust()));
        group.bench_function("c_abi", |b| b.iter(|| mlp.run_c()));
        group.finish();
    }
}

criterion_group!(benches, bench_capi);

fn main() {
    // Before any rayon pool exists: Candle then runs on one thread, like the other backends.
    std::env::set_var("RAYON_NUM_THREADS", "1");
    benches();
    Criterion::default().configure_from_args().final_summary();
}
