//! Rivet's overhead per backend: `Model::run` on the bundled MLP at batch 1 against the same
//! call made directly on the backend library (input conversion and output copy included on
//! both sides).
//!
//! Also the C ABI against the Rust API on the same model (`capi/*` groups).
//!
//! `cargo bench --bench overhead` (all), or `cargo bench --bench overhead -- overhead/ort`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, Criterion};
use rivet::{Backend, LoadOptions, Tensor};

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// One intra-op thread everywhere (Candle reads RAYON_NUM_THREADS, set in `main`).
fn load(path: &Path, backend: Backend) -> Box<dyn rivet::Model> {
    let threads = (backend != Backend::Candle).then_some(1);
    let options = LoadOptions { backend, intra_op_threads: threads, ..LoadOptions::default() };
    rivet::load(path, &options).expect("bundled model loads")
}

fn input() -> Tensor {
    rivet::npy::read_npy(&models_dir().join("mlp/cases/b1/input.features.npy")).expect("bundled input")
}

fn bench_tch(c: &mut Criterion) {
    let path = models_dir().join("mlp/mlp.pt");
    let model = load(&path, Backend::Tch);
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
    let model = load(&path, Backend::Ort);
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
    let model = load(&path, Backend::Candle);
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

/// The C ABI (`rivet_model_run` on a view tensor, output freed) against the Rust API on the
/// same loaded model, batch 1 MLP, for each backend.
fn bench_capi(c: &mut Criterion) {
    use rivet_capi::*;
    for (file, backend, code) in [
        ("mlp.pt", "tch", RIVET_BACKEND_TCH),
        ("mlp.onnx", "ort", RIVET_BACKEND_ORT),
        ("mlp.onnx", "candle", RIVET_BACKEND_CANDLE),
    ] {
        let path = std::ffi::CString::new(models_dir().join("mlp").join(file).to_str().unwrap()).unwrap();
        let x = input();
        let shape = [1i64, 16];
        // SAFETY: every pointer below is live for the calls that use it.
        unsafe {
            let mut options = std::ptr::null_mut();
            assert!(rivet_load_options_new(&mut options).is_null());
            assert!(rivet_load_options_set_backend(options, code).is_null());
            if code != RIVET_BACKEND_CANDLE {
                assert!(rivet_load_options_set_intra_op_threads(options, 1).is_null());
            }
            let mut model = std::ptr::null_mut();
            assert!(rivet_model_load(path.as_ptr(), options, &mut model).is_null());
            rivet_load_options_free(options);
            let mut tensor = std::ptr::null_mut();
            let data = x.as_bytes();
            assert!(rivet_tensor_new_view(
                RIVET_DTYPE_F32,
                shape.as_ptr(),
                2,
                data.as_ptr().cast(),
                data.len(),
                &mut tensor
            )
            .is_null());
            let inputs = [tensor.cast_const()];
            let mut group = c.benchmark_group(format!("capi/{backend}"));
            group.bench_function("rust_api", |b| b.iter(|| (*model).model().run(&[&x]).unwrap()));
            group.bench_function("c_abi", |b| {
                b.iter(|| {
                    let mut out = [std::ptr::null_mut(); 1];
                    let err = rivet_model_run(
                        model,
                        std::ptr::null(),
                        inputs.as_ptr(),
                        1,
                        out.as_mut_ptr(),
                        1,
                        std::ptr::null_mut(),
                    );
                    assert!(err.is_null());
                    rivet_tensor_free(out[0]);
                })
            });
            group.finish();
            rivet_tensor_free(tensor);
            rivet_model_free(model);
        }
    }
}

criterion_group!(benches, bench_tch, bench_ort, bench_candle, bench_capi);

fn main() {
    // Before any rayon pool exists: Candle then runs on one thread, like the other backends.
    std::env::set_var("RAYON_NUM_THREADS", "1");
    benches();
    Criterion::default().configure_from_args().final_summary();
}
