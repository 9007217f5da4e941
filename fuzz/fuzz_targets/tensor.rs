#![no_main]
//! Fuzz target `tensor`: see `rivet_fuzz::tensor`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rivet_fuzz::tensor(data));
