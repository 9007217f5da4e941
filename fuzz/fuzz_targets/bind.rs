#![no_main]
//! Fuzz target `bind`: see `rivet_fuzz::bind`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rivet_fuzz::bind(data));
