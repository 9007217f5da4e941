//! Links every `rivet_*` export of `rivet-capi` (the C ABI) and the cxx bridge of `rivet-cxx`
//! (the C++ API) into librivet.so and librivet.a.

pub use rivet_capi::*;
pub use rivet_cxx;
