//! ONNX Runtime starts no thread of its own beyond a session's pools: its Linux builds start
//! a telemetry thread in `CreateEnv` unless `ORT_DISABLE_TELEMETRY` is set, and ONNX Runtime's
//! static destructors join that thread at `exit()` after freeing memory it reads. Alone in its
//! test binary, so no other test's threads come and go meanwhile.

use std::path::PathBuf;

use rivet_core::{LoadOptions, Model, Tensor};
use rivet_ort::OrtBackend;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").expect("/proc/self/task").count()
}

#[test]
fn creating_the_environment_and_running_a_single_threaded_session_starts_no_thread() {
    assert!(std::env::var_os("ORT_DISABLE_TELEMETRY").is_none(), "run without ORT_DISABLE_TELEMETRY set");
    let before = threads();
    let options =
        LoadOptions { intra_op_threads: Some(1), inter_op_threads: Some(1), ..LoadOptions::default() };
    let mlp = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/mlp/mlp.onnx");
    let model = OrtBackend::new().load_model(&mlp, &options).unwrap();
    let x = Tensor::from_slice(&[1, 16], &[0.5f32; 16]).unwrap();
    assert_eq!(model.run(&[&x]).unwrap().len(), 1);
    assert_eq!(threads(), before, "threads before and after ONNX Runtime started");
    assert_eq!(std::env::var("ORT_DISABLE_TELEMETRY").as_deref(), Ok("1"));
}
