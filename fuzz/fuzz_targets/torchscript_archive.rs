#![no_main]
//! Fuzz target `torchscript_archive`: see `rivet_fuzz::torchscript_archive`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rivet_fuzz::torchscript_archive(data));
