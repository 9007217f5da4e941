//! The legacy C++ MLP scorer (`cpp-examples/legacy_scorer/mlp_scorer.cpp`) packaged as the
//! Rivet backend library `librivet_legacy_mlp.so`: `rivet compare ... --backend legacy_mlp`
//! finds it by name beside the binary (or through `RIVET_BACKEND_PATH`).

extern "C" {
    /// Defined in mlp_scorer.cpp: a new `legacy::MlpBackend`.
    fn legacy_mlp_backend() -> *mut rivet_cxx::ffi::ScorerBackend;
}

rivet_cxx::export_scorer_backend!("legacy_mlp", legacy_mlp_backend);
