//! The load options every command that loads models shares (`rivet` and `rivet-tabular`).

use std::path::PathBuf;

use clap::Args;
use rivet::{Backend, Device, LoadOptions, Result};

/// Options shared by the commands that load models.
#[derive(Args, Clone)]
pub(crate) struct LoadArgs {
    /// Where to run: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub(crate) device: Device,
    /// Threads per operator (tch: process-wide; candle: the model's own pool, and
    /// RAYON_NUM_THREADS for how Candle splits its work).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// A spec file for a TorchScript model (default: NAME.spec.json beside it); the same as
    /// `--option tch.spec=FILE`.
    #[arg(long)]
    pub(crate) spec: Option<PathBuf>,
    /// ONNX Runtime sessions to keep for concurrent runs; the same as `--option
    /// ort.instances=N`.
    #[arg(long)]
    pub(crate) instances: Option<usize>,
    /// A backend's own option, BACKEND.KEY=VALUE (KEY=VALUE when one --backend is chosen):
    /// ort.optimization=disable|basic|extended|all, ort.instances=N, tch.spec=FILE. The backend
    /// checks it when loading; an unknown key is an error listing the known ones.
    #[arg(long = "option", short = 'O', value_name = "[BACKEND.]KEY=VALUE")]
    pub(crate) options: Vec<String>,
}

impl LoadArgs {
    /// Load options for `backend`.
    pub(crate) fn options(&self, backend: &Backend) -> Result<LoadOptions> {
        let mut options = LoadOptions {
            backend: backend.clone(),
            device: self.device,
            intra_op_threads: self.threads,
            ..LoadOptions::default()
        };
        if let Some(spec) = &self.spec {
            options.set_option(&Backend::TCH, "spec", spec.display().to_string());
        }
        if let Some(n) = self.instances {
            options.set_option(&Backend::ORT, "instances", n.to_string());
        }
        for text in &self.options {
            options.set_option_str(text, backend)?;
        }
        Ok(options)
    }
}
