//! Counts what the C ABI adds to a run, in instructions rather than noisy seconds:
//!
//! ```sh
//! cargo bench --bench abi_probe --no-run   # builds target/release/deps/abi_probe-*
//! for api in rust c; do for n in 1000 3000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/abi_probe-HASH ort $api $n
//! done; done   # (total at 3000 - total at 1000) / 2000 = instructions per run
//! ```
//!
//! Arguments: BACKEND (tch|ort|candle) API (rust|c) RUNS. Runs the bundled MLP at batch 1.

use std::path::Path;

use rivet_capi::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 || args[3].parse::<usize>().is_err() {
        eprintln!("usage: abi_probe tch|ort|candle rust|c RUNS");
        std::process::exit(2);
    }
    let (file, code) = match args[1].as_str() {
        "tch" => ("mlp.pt", RIVET_BACKEND_TCH),
        "ort" => ("mlp.onnx", RIVET_BACKEND_ORT),
        _ => ("mlp.onnx", RIVET_BACKEND_CANDLE),
    };
    let runs: usize = args[3].parse().unwrap_or(0);
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mlp");
    let x = rivet::npy::read_npy(&models.join("cases/b1/input.features.npy")).expect("bundled input");
    let path = std::ffi::CString::new(models.join(file).to_string_lossy().into_owned()).expect("path");
    let shape = [1i64, 16];
    // SAFETY: every pointer passed below is live for the call that uses it.
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
        let err = rivet_tensor_new_view(
            RIVET_DTYPE_F32,
            shape.as_ptr(),
            2,
            data.as_ptr().cast(),
            data.len(),
            &mut tensor,
        );
        assert!(err.is_null());
        let inputs = [tensor.cast_const()];
        for _ in 0..runs {
            if args[2] == "rust" {
                std::hint::black_box((*model).model().run(&[&x]).expect("run"));
            } else {
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
                rivet_tensor_free(std::hint::black_box(out[0]));
            }
        }
        rivet_tensor_free(tensor);
        rivet_model_free(model);
    }
}
