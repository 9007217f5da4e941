//! The C ABI (`rivet_model_run` on a view tensor, output freed) and the C++ API (cxx bridge:
//! `LoadedModel::run` called from C++, benches/cxx_call.cc) against the Rust API on the same
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
        // SAFETY: `model` is a live handle.
        let model = rivet_cxx::LoadedModel::new(unsafe { (*mlp.model).shared_model() });
        let features = mlp.input.as_slice::<f32>().expect("f32 input");
        let shape = [1i64, 16];
        group.bench_function("cxx_api", |b| {
            // SAFETY: the model, the features and the shape outlive the call.
            let model: *const rivet_cxx::LoadedModel = &model;
            b.iter(|| unsafe { rivet_bench_cxx_run(model.cast(), features.as_ptr(), shape.as_ptr()) })
        });
        group.finish();
    }
}

extern "C" {
    /// benches/cxx_call.cc: one run through the C++ API; returns the output's length.
    fn rivet_bench_cxx_run(model: *const std::ffi::c_void, features: *const f32, shape: *const i64) -> usize;
}

criterion_group!(benches, bench_capi);

fn main() {
    // Before any rayon pool exists: Candle then runs on one thread, like the other backends.
    std::env::set_var("RAYON_NUM_THREADS", "1");
    benches();
    Criterion::default().configure_from_args().final_summary();
}
