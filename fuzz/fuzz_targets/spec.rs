#![no_main]
//! Fuzz target `spec`: see `rivet_fuzz::spec`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rivet_fuzz::spec(data));
