//! What `rivet bench` reports: one row per backend × batch × concurrency of each model.

use std::path::PathBuf;

use rivet::Tensor;
use serde::{Deserialize, Serialize};

use super::stats;

/// What happened to one row of `rivet bench` or `rivet compare` (JSON: `snake_case`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    /// Measured, and its outputs are within tolerance of the reference.
    Ok,
    /// Measured; its outputs are the reference other backends are compared with at this batch.
    Reference,
    /// Measured, but nothing independent was there to compare its outputs with.
    NoReference,
    /// Measured, but its outputs differ from the reference beyond tolerance.
    Mismatch,
    /// The backend does not support the model (said once per model and backend).
    Unsupported,
    /// Loading failed.
    LoadError,
    /// The inputs could not be made for this batch.
    InputError,
    /// A run failed.
    RunError,
    /// The worker process died.
    Crashed,
}

impl RowStatus {
    /// The word shown in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            RowStatus::Ok => "ok",
            RowStatus::Reference => "reference",
            RowStatus::NoReference => "no reference",
            RowStatus::Mismatch => "mismatch",
            RowStatus::Unsupported => "unsupported",
            RowStatus::LoadError => "load_error",
            RowStatus::InputError => "input_error",
            RowStatus::RunError => "run_error",
            RowStatus::Crashed => "crashed",
        }
    }

    /// Whether the row makes `rivet bench` fail.
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            RowStatus::Ok | RowStatus::Reference | RowStatus::NoReference | RowStatus::Unsupported
        )
    }
}

/// Output parity of one row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Parity {
    /// What the outputs were compared with.
    pub against: String,
    /// Largest absolute difference (`None` when the outputs could not be compared).
    pub max_abs_diff: Option<f64>,
    /// Largest relative difference (elements with a reference above 1e-6 in magnitude).
    pub max_rel_diff: Option<f64>,
    /// Whether every element is within atol + rtol * |ref|.
    pub within_tolerance: bool,
    /// Why the outputs could not be compared (names or shapes differ).
    pub error: Option<String>,
}

/// One backend × batch × concurrency of one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// The model (twin files share it).
    pub model: String,
    /// The file the backend loaded.
    pub file: PathBuf,
    /// The backend.
    pub backend: String,
    /// Rows per request.
    pub batch: usize,
    /// Client threads.
    pub concurrency: usize,
    /// Requests per second sent in all (`--rate`), or `None` for a closed loop.
    pub rate: Option<f64>,
    /// What happened.
    pub status: RowStatus,
    /// Why, when not "ok".
    pub error: Option<String>,
    /// Loading the model, in milliseconds.
    pub load_ms: Option<f64>,
    /// The first run, in milliseconds.
    pub first_inference_ms: Option<f64>,
    /// Requests counted.
    pub iterations: Option<usize>,
    /// Seconds they cover.
    pub measured_s: Option<f64>,
    /// Whether the stability rule was met (`None` with --iterations or --duration).
    pub stable: Option<bool>,
    /// Windows the stability rule looked at.
    pub windows: usize,
    /// Latency percentiles, mean, min and max, in milliseconds.
    pub latency_ms: Option<stats::Summary>,
    /// Requests per second.
    pub inferences_per_s: Option<f64>,
    /// Rows per second (requests per second × batch).
    pub samples_per_s: Option<f64>,
    /// Peak resident memory of the child process that ran it, in MiB.
    pub peak_rss_mib: Option<f64>,
    /// Output parity.
    pub parity: Option<Parity>,
    /// With `--shadow`: what the shadow compared, matched and dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<rivet::shadow::ShadowStats>,
}

/// Reference outputs for parity: where they came from and the tensors (named when known).
pub(super) type Reference = (String, Vec<(Option<String>, Tensor)>);

/// Where one model's inputs and reference came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Its name.
    pub model: String,
    /// Its files.
    pub files: Vec<PathBuf>,
    /// Where the inputs came from.
    pub inputs: String,
    /// What outputs are compared with.
    pub reference: String,
}

/// The build of this binary, as the report names it. The dev profile (what `make test` builds
/// and `make demo` runs) compiles the dependencies, the backends and this CLI as release does,
/// so its figures are release's within noise.
pub const BUILD: &str = match env!("RIVET_BUILD_PROFILE").as_bytes() {
    b"release" => "release",
    b"debug" => "dev profile (dependencies, backends and CLI optimised as in release)",
    _ => "unknown profile",
};

/// The whole report, as written by `--json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Rivet's version.
    pub rivet_version: String,
    /// Which build of Rivet measured: `release`, or the dev profile (see [`BUILD`]).
    #[serde(default)]
    pub build: String,
    /// CPUs the machine offers.
    pub cpus: usize,
    /// The settings used.
    pub settings: serde_json::Value,
    /// One entry per model.
    pub models: Vec<ModelInfo>,
    /// One entry per backend × batch × concurrency of each model.
    pub results: Vec<Row>,
}
