//! Builds `librivet_tch.so`: the tch backend behind Rivet's backend-library entry point, so that
//! libtorch is loaded only by a process that loads a TorchScript model.

rivet_core::export_backend_plugin!(rivet_tch::TchBackend::new());
