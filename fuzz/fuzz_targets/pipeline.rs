#![no_main]
//! Fuzz target `pipeline`: see `rivet_fuzz::pipeline`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rivet_fuzz::pipeline(data));
