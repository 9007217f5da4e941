//! Outputs are ONNX Runtime's buffers handed over to Rivet's tensors, not copies: they count as
//! owned, outlive the model that made them, and never alias the caller's inputs.

use std::path::PathBuf;

use rivet_core::npy::read_npy;
use rivet_core::{DType, LoadOptions, Model, StorageKind, Tensor};
use rivet_ort::OrtBackend;

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

#[test]
fn outputs_are_owned_and_outlive_their_model() {
    let dir = models().join("mlp");
    let x = read_npy(&dir.join("cases/b1/input.features.npy")).unwrap();
    let expected = read_npy(&dir.join("cases/b1/output.logits.npy")).unwrap();
    let model = OrtBackend::new().load_model(&dir.join("mlp.onnx"), &LoadOptions::default()).unwrap();
    let logits = model.run(&[&x]).unwrap().into_tensors().remove(0);
    let again = model.run(&[&x]).unwrap().into_tensors().remove(0);
    assert_ne!(logits.as_bytes().as_ptr(), again.as_bytes().as_ptr(), "each run gets its own buffer");
    drop(model);
    assert_eq!(logits.storage_kind(), StorageKind::Owned, "handed over, used by this tensor alone");
    let shared = logits.clone();
    assert_eq!(logits.storage_kind(), StorageKind::Shared);
    drop(shared);
    // Read after the model (and its sessions' allocator) is gone: still the PyTorch reference.
    let (got, want) = (logits.as_slice::<f32>().unwrap(), expected.as_slice::<f32>().unwrap());
    assert_eq!(logits.shape(), expected.shape());
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "logit {i}: {a} vs PyTorch's {b}");
    }
    assert_eq!(again.as_slice::<f32>().unwrap(), got);
}

#[test]
fn an_identity_output_is_not_the_callers_memory() {
    for (file, dtype) in [("identity_f32.onnx", DType::F32), ("identity_bool.onnx", DType::Bool)] {
        let model = OrtBackend::new()
            .load_model(&models().join("identity").join(file), &LoadOptions::default())
            .unwrap();
        let bytes: Vec<u8> = (0..24u8).map(|b| if dtype == DType::Bool { b % 2 } else { b }).collect();
        let shape = if dtype == DType::Bool { [8, 3] } else { [2, 3] };
        let x = Tensor::from_bytes(dtype, &shape, &bytes).unwrap();
        let y = model.run(&[&x]).unwrap().into_tensors().remove(0);
        let (xs, ys) = (x.as_bytes().as_ptr_range(), y.as_bytes().as_ptr_range());
        assert!(ys.end <= xs.start || xs.end <= ys.start, "{file}: the output lies in the input");
        drop(x);
        assert_eq!(y.as_bytes(), &bytes[..], "{file}");
        assert_eq!((y.dtype(), y.shape()), (dtype, &shape[..]), "{file}");
    }
}

#[test]
fn an_output_lying_in_an_input_is_copied() {
    // ONNX Runtime copies even an Identity's output (above), so the case is made by hand: a value
    // whose buffer is also given as an input of the "run".
    rivet_ort::environment().unwrap();
    let value = ort::value::Tensor::from_array(([2usize, 2], vec![1.5f32, -2.0, 3.25, 4.0])).unwrap();
    let (_, data) = value.try_extract_tensor::<f32>().unwrap();
    let (ptr, len) = (data.as_ptr(), data.len());
    // SAFETY: `value` owns the buffer until `take_output` drops it, after its last use of `view`.
    let data = unsafe { std::slice::from_raw_parts(ptr, len) };
    let view = rivet_core::TensorView::from_slice(&[2, 2], data).unwrap();
    let tensor = rivet_ort::take_output("y", value.into_dyn(), &[view]).unwrap();
    assert_ne!(tensor.as_bytes().as_ptr(), ptr.cast(), "copied, not kept");
    assert_eq!(tensor.as_slice::<f32>().unwrap(), &[1.5, -2.0, 3.25, 4.0]);
    assert_eq!(tensor.storage_kind(), StorageKind::Owned);
    // A value of its own is kept without a copy.
    let value = ort::value::Tensor::from_array(([3usize], vec![7i64, 8, 9])).unwrap();
    let ptr = value.try_extract_tensor::<i64>().unwrap().1.as_ptr();
    let tensor = rivet_ort::take_output("z", value.into_dyn(), &[]).unwrap();
    assert_eq!(tensor.as_bytes().as_ptr(), ptr.cast(), "handed over");
    assert_eq!(tensor.as_slice::<i64>().unwrap(), &[7, 8, 9]);
}

#[test]
fn outputs_that_are_an_input_an_initializer_or_a_constant_outlive_the_model_and_the_input() {
    let path = models().join("identity/passthrough.onnx");
    let model = OrtBackend::new().load_model(&path, &LoadOptions::default()).unwrap();
    let xs = [0.5f32, -1.0, 2.0, 8.0, -16.0, 0.25];
    let x = Tensor::from_slice(&[2, 3], &xs).unwrap();
    let first = model.run(&[&x]).unwrap();
    let second = model.run(&[&x]).unwrap();
    assert_eq!(first.names(), ["x", "y", "w", "c"]);
    for (name, tensor) in first.iter() {
        let other = second.by_name(name).unwrap();
        assert_ne!(tensor.as_bytes().as_ptr(), other.as_bytes().as_ptr(), "{name}: one buffer for two runs");
        let (mine, input) = (tensor.as_bytes().as_ptr_range(), x.as_bytes().as_ptr_range());
        assert!(mine.end <= input.start || input.end <= mine.start, "{name}: lies in the input");
    }
    drop((model, x, second));
    let w: Vec<f32> = (0..6).map(|i| i as f32).collect();
    let y: Vec<f32> = xs.iter().zip(&w).map(|(a, b)| a + b).collect();
    let value = |name| first.by_name(name).unwrap().as_slice::<f32>().unwrap().to_vec();
    assert_eq!(value("x"), xs);
    assert_eq!(value("y"), y);
    assert_eq!(value("w"), w);
    assert_eq!(value("c"), [1.0; 6]);
}

#[test]
fn a_run_error_names_what_onnx_runtime_refused_and_the_model_keeps_serving() {
    let path = models().join("identity/broadcast.onnx");
    let model = OrtBackend::new().load_model(&path, &LoadOptions::default()).unwrap();
    let a = Tensor::from_slice(&[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let bad = Tensor::from_slice(&[4, 3], &[0.5f32; 12]).unwrap();
    // Both shapes fit the signature ([n, 3] and [m, 3]); ONNX Runtime refuses them at run time.
    let err = model.run(&[&a, &bad]).unwrap_err();
    assert_eq!(err.kind(), rivet_core::ErrorKind::Backend, "{err}");
    let text = err.to_string();
    assert!(text.starts_with("ort: "), "{text}");
    assert!(text.contains("Attempting to broadcast an axis by a dimension other than 1. 2 by 4"), "{text}");
    // The session went back to the pool: the next run works and gives a + b.
    let b = Tensor::from_slice(&[1, 3], &[10.0f32, 20.0, 30.0]).unwrap();
    let y = model.run(&[&a, &b]).unwrap().into_tensors().remove(0);
    assert_eq!(y.shape(), [2, 3]);
    assert_eq!(y.as_slice::<f32>().unwrap(), &[11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
}

#[test]
fn empty_batches_run_in_every_dtype() {
    for (file, dtype) in [
        ("identity_f32.onnx", DType::F32),
        ("identity_f16.onnx", DType::F16),
        ("identity_bf16.onnx", DType::BF16),
        ("identity_i64.onnx", DType::I64),
        ("identity_u8.onnx", DType::U8),
        ("identity_bool.onnx", DType::Bool),
    ] {
        let model = OrtBackend::new()
            .load_model(&models().join("identity").join(file), &LoadOptions::default())
            .unwrap();
        let x = Tensor::zeros(dtype, &[0, 3]).unwrap();
        let y = model.run(&[&x]).unwrap().into_tensors().remove(0);
        assert_eq!((y.dtype(), y.shape(), y.as_bytes().len()), (dtype, &[0usize, 3][..], 0), "{file}");
    }
}
