//! Every dtype crosses each backend's tensor conversion unchanged, or is refused clearly.

mod common;

use common::*;
use rivet::{Backend, DType, LoadOptions, Tensor};

/// Six elements of `dtype` with distinct, valid bit patterns.
fn sample(dtype: DType) -> Tensor {
    let bytes: Vec<u8> = match dtype {
        DType::Bool => vec![1, 0, 0, 1, 1, 0],
        _ => (0..6 * dtype.size()).map(|i| (i * 37 % 61) as u8).collect(),
    };
    Tensor::from_bytes(dtype, &[2, 3], &bytes).unwrap()
}

#[test]
fn tch_round_trips_every_dtype() {
    let model = load(&models_dir().join("identity/identity.pt"), Backend::TCH);
    for dtype in DType::ALL {
        let x = sample(dtype);
        let out = model.run(&[&x]).unwrap();
        assert_eq!(out.get(0).unwrap(), &x, "{dtype}");
    }
}

#[test]
fn ort_round_trips_every_dtype() {
    for dtype in DType::ALL {
        let path = models_dir().join(format!("identity/identity_{dtype}.onnx"));
        let model = load(&path, Backend::ORT);
        let x = sample(dtype);
        assert_eq!(model.run(&[&x]).unwrap().get(0).unwrap(), &x, "{dtype}");
    }
}

#[test]
fn candle_round_trips_every_dtype() {
    // int8 included: the executor holds it as i16 and narrows it back on the way out.
    for dtype in DType::ALL {
        let path = models_dir().join(format!("identity/identity_{dtype}.onnx"));
        let model = rivet::load(&path, &LoadOptions::with_backend(Backend::CANDLE)).unwrap();
        let x = sample(dtype);
        assert_eq!(model.run(&[&x]).unwrap().get(0).unwrap(), &x, "{dtype}");
    }
}
