//! Links every `rivet_*` export of `rivet-capi` into librivet.so and librivet.a.

pub use rivet_capi::*;
