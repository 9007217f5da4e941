//! Set-up shared by the benchmarks: the bundled models, one-thread loading, and a model loaded
//! through the C ABI with its input tensor.
#![allow(dead_code)] // each bench target uses part of it

use std::path::Path;

use rivet::{Backend, LoadOptions, Tensor};
use rivet_capi::*;

#[allow(unused_imports)] // each bench target uses part of it
pub use rivet_testkit::models_dir;

/// Loads `path` on `backend` with one intra-op thread (Candle reads RAYON_NUM_THREADS, which
/// each bench's `main` sets to 1 before any pool starts).
pub fn load(path: &Path, backend: Backend) -> std::sync::Arc<dyn rivet::Model> {
    let threads = (backend != Backend::CANDLE).then_some(1);
    let options = LoadOptions { backend, intra_op_threads: threads, ..LoadOptions::default() };
    rivet::load(path, &options).expect("bundled model loads")
}

/// The bundled MLP's batch-1 input, `features` f32[1, 16].
pub fn mlp_input() -> Tensor {
    rivet::npy::read_npy(&models_dir().join("mlp/cases/b1/input.features.npy")).expect("bundled input")
}

/// The bundled MLP loaded through the C ABI, with a view tensor of its batch-1 input.
pub struct CapiMlp {
    /// The model handle.
    pub model: *mut rivet_model_t,
    /// A view of `input`.
    pub tensor: *mut rivet_tensor_t,
    /// The data `tensor` views (kept alive here).
    pub input: Tensor,
    shape: [i64; 2],
}

impl CapiMlp {
    /// Loads `mlp.pt` (tch) or `mlp.onnx` (ort, candle) with one intra-op thread.
    pub fn load(backend: &str) -> CapiMlp {
        let file = if backend == "tch" { "mlp.pt" } else { "mlp.onnx" };
        let name = std::ffi::CString::new(backend).expect("name without NUL");
        let path = std::ffi::CString::new(models_dir().join("mlp").join(file).to_string_lossy().into_owned())
            .expect("path without NUL");
        let mut mlp = CapiMlp {
            model: std::ptr::null_mut(),
            tensor: std::ptr::null_mut(),
            input: mlp_input(),
            shape: [1, 16],
        };
        // SAFETY: every pointer passed is live for the call; `input` outlives `tensor` (Drop).
        unsafe {
            let mut options = std::ptr::null_mut();
            assert!(rivet_load_options_new(&mut options).is_null());
            assert!(rivet_load_options_set_backend(options, name.as_ptr()).is_null());
            if backend != "candle" {
                assert!(rivet_load_options_set_intra_op_threads(options, 1).is_null());
            }
            assert!(rivet_model_load(path.as_ptr(), options, &mut mlp.model).is_null());
            rivet_load_options_free(options);
            let data = mlp.input.as_bytes();
            let err = rivet_tensor_new_view(
                RIVET_DTYPE_F32,
                mlp.shape.as_ptr(),
                2,
                data.as_ptr().cast(),
                data.len(),
                &mut mlp.tensor,
            );
            assert!(err.is_null());
        }
        mlp
    }

    /// One run through the C ABI, its outputs freed.
    pub fn run_c(&self) {
        let inputs = [self.tensor.cast_const()];
        let mut out = std::ptr::null_mut();
        // SAFETY: the handles are live; `out` receives the outputs handle.
        unsafe {
            let err = rivet_model_run(self.model, std::ptr::null(), inputs.as_ptr(), 1, &mut out);
            assert!(err.is_null());
            rivet_outputs_free(std::hint::black_box(out));
        }
    }

    /// The same run through the Rust API of the same loaded model.
    pub fn run_rust(&self) -> rivet::Outputs {
        // SAFETY: `model` is a live handle.
        unsafe { (*self.model).model().run(&[&self.input]).expect("run") }
    }
}

impl Drop for CapiMlp {
    fn drop(&mut self) {
        // SAFETY: both handles came from the C ABI and are freed once.
        unsafe {
            rivet_tensor_free(self.tensor);
            rivet_model_free(self.model);
        }
    }
}
