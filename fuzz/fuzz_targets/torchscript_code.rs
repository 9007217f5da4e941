#![no_main]
//! Fuzz target `torchscript_code`: see `rivet_fuzz::torchscript_code`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rivet_fuzz::torchscript_code(data));
