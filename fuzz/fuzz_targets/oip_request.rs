#![no_main]
//! Fuzz target `oip_request`: see `rivet_fuzz::oip_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| rivet_fuzz::oip_request(data));
