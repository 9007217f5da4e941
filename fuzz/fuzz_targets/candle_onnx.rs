#![no_main]
//! Fuzz target `candle_onnx`: see `rivet_fuzz::candle_onnx`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rivet_fuzz::candle_onnx(data));
