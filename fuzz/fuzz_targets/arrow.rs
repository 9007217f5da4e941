#![no_main]
//! Fuzz target `arrow`: see `rivet_fuzz::arrow`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rivet_fuzz::arrow(data));
