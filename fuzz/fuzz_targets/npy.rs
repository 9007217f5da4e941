#![no_main]
//! Fuzz target `npy`: see `rivet_fuzz::npy`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rivet_fuzz::npy(data));
