//! A model folder's `config.toml` / `config.json`, and how the repository's folders are read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::StartError;

/// How one model is served; every field has a default, so the file is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// The model file inside the folder (default: the folder's only `.onnx`, `.pt` or `.pth`).
    pub model_file: Option<String>,
    /// The backend by name (`auto`, `tch`, `ort`, `candle` or a registered one).
    pub backend: String,
    /// The backend's own options, `key = value` (checked by the backend when it loads).
    pub options: BTreeMap<String, String>,
    /// Threads inside one operator (the backend's default when absent).
    pub threads: Option<usize>,
    /// Runs of this model allowed at once.
    pub instances: usize,
    /// The largest leading (batch) dimension a request or a formed batch may have; 0 means the
    /// model takes whole tensors and is never batched.
    pub max_batch_size: usize,
    /// Present: requests are queued and concatenated into batches (needs `max_batch_size > 0`).
    pub dynamic_batching: Option<DynamicBatching>,
    /// Requests allowed to wait for this model; one more is refused with 503 / UNAVAILABLE.
    pub max_queue_size: usize,
    /// The version this model is served as, when its folder holds the model file itself
    /// (in a folder of numbered version folders, each is served as its number).
    pub version: String,
    /// Which numbered version folders are served.
    pub version_policy: VersionPolicy,
    /// Present: another model of the repository runs beside this one on its requests, and
    /// where it disagrees is counted and captured; clients get this model's answers only.
    pub shadow: Option<ShadowConfig>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            model_file: None,
            backend: "auto".into(),
            options: BTreeMap::new(),
            threads: None,
            instances: 1,
            max_batch_size: 0,
            dynamic_batching: None,
            max_queue_size: 1024,
            version: "1".into(),
            version_policy: VersionPolicy::default(),
            shadow: None,
        }
    }
}

/// Which numbered version folders (`NAME/1/`, `NAME/2/`, …) a model serves, as Triton's
/// `version_policy`: `{ latest = N }` (default 1), `"all"` or `{ specific = [1, 3] }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum VersionPolicy {
    /// The N highest version numbers.
    Latest(usize),
    /// Every version folder.
    All,
    /// These versions.
    Specific(Vec<u64>),
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

impl VersionPolicy {
    /// The versions of `found` (sorted ascending) this policy serves, ascending; a specific
    /// version that is not there is named in the error.
    pub fn select(&self, found: &[u64]) -> Result<Vec<u64>, InvalidConfig> {
        match self {
            VersionPolicy::Latest(n) => Ok(found[found.len().saturating_sub(*n)..].to_vec()),
            VersionPolicy::All => Ok(found.to_vec()),
            VersionPolicy::Specific(wanted) => {
                if let Some(missing) = wanted.iter().find(|v| !found.contains(v)) {
                    return Err(InvalidConfig(format!(
                        "version_policy names version {missing}, but there is no folder {missing}/ (found: {found:?})"
                    )));
                }
                let mut chosen = wanted.clone();
                chosen.sort_unstable();
                chosen.dedup();
                Ok(chosen)
            }
        }
    }
}

/// A model's `[shadow]` table: the candidate model shadowing it and how they are compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShadowConfig {
    /// The candidate: another model of the repository, with the same inputs and outputs.
    pub model: String,
    /// The share of requests compared, from 0 to 1, evenly spread.
    pub sample: f64,
    /// Absolute tolerance: an element matches when `|candidate − primary| ≤ atol + rtol·|primary|`.
    pub atol: f64,
    /// Relative tolerance (see `atol`).
    pub rtol: f64,
    /// Comparisons that may be pending at once; beyond it they are dropped, never waited for.
    pub queue: usize,
    /// Where divergent requests are captured (relative to the model's folder), if anywhere.
    pub capture_dir: Option<PathBuf>,
    /// The most captures kept; the oldest go first.
    pub capture_max_count: usize,
    /// The most bytes the captures may take; the oldest go first.
    pub capture_max_bytes: u64,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        let defaults = rivet::ShadowOptions::default();
        let capture = rivet::shadow::CaptureOptions::new("");
        ShadowConfig {
            model: String::new(),
            sample: defaults.sample,
            atol: defaults.atol,
            rtol: defaults.rtol,
            queue: defaults.queue,
            capture_dir: None,
            capture_max_count: capture.max_count,
            capture_max_bytes: capture.max_bytes,
        }
    }
}

impl ShadowConfig {
    /// The in-process shadow's options, with a relative capture directory under `dir`.
    pub fn options(&self, dir: &Path) -> rivet::ShadowOptions {
        rivet::ShadowOptions {
            atol: self.atol,
            rtol: self.rtol,
            sample: self.sample,
            queue: self.queue,
            capture: self.capture_dir.as_ref().map(|d| rivet::shadow::CaptureOptions {
                dir: dir.join(d),
                max_count: self.capture_max_count,
                max_bytes: self.capture_max_bytes,
            }),
        }
    }
}

/// Triton's dynamic batcher settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamicBatching {
    /// How long the first request of a batch waits for more before the batch runs anyway.
    pub max_queue_delay_us: u64,
    /// Batch sizes to stop collecting at before `max_batch_size` (reported in the config).
    pub preferred_batch_size: Vec<usize>,
    /// When a batch runs: after its delay (Triton's policy), or at once while the model is idle.
    pub policy: BatchingPolicy,
}

/// When a forming batch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchingPolicy {
    /// Triton's: a batch runs once it holds the preferred rows or its first request has waited
    /// `max_queue_delay_us`.
    #[default]
    WaitForDelay,
    /// A batch runs at once, with whatever waits, when no execution of the model is running;
    /// while one runs, the next batch forms and runs as soon as it ends (or at its preferred
    /// rows or its delay, as under `wait_for_delay`). A lone request never waits; batches form
    /// only under load.
    IdleFirst,
}

/// Values of a configuration that parse but cannot work together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidConfig(pub String);

/// The file names a model folder's configuration may have.
pub const CONFIG_FILES: [&str; 2] = ["config.toml", "config.json"];

/// File extensions taken for model files when `model_file` is not set.
const MODEL_EXTENSIONS: [&str; 3] = ["onnx", "pt", "pth"];

impl ModelConfig {
    /// Reads `DIR/config.toml` or `DIR/config.json` (defaults when neither exists) and checks it.
    pub fn read(dir: &Path) -> Result<ModelConfig, StartError> {
        let found: Vec<PathBuf> = CONFIG_FILES.iter().map(|f| dir.join(f)).filter(|p| p.is_file()).collect();
        let config = match found.as_slice() {
            [] => ModelConfig::default(),
            [path] => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| StartError::Io { path: path.clone(), source })?;
                let parsed = if path.extension().is_some_and(|e| e == "json") {
                    serde_json::from_str(&text).map_err(|e| e.to_string())
                } else {
                    toml::from_str(&text).map_err(|e| e.message().to_owned())
                };
                parsed.map_err(|message| StartError::Config { path: path.clone(), message })?
            }
            _ => {
                return Err(StartError::Config {
                    path: dir.to_path_buf(),
                    message: "has both config.toml and config.json: keep one".into(),
                })
            }
        };
        config.check().map_err(|e| StartError::Config { path: dir.to_path_buf(), message: e.0 })?;
        Ok(config)
    }

    /// Checks values that parse but cannot work together.
    pub fn check(&self) -> Result<(), InvalidConfig> {
        if self.instances == 0 {
            return Err(InvalidConfig("instances must be 1 or more".into()));
        }
        if self.max_queue_size == 0 {
            return Err(InvalidConfig("max_queue_size must be 1 or more".into()));
        }
        if self.version.is_empty() || self.version.contains('/') {
            return Err(InvalidConfig(format!("version \"{}\" is not a valid version name", self.version)));
        }
        if self.version_policy == VersionPolicy::Latest(0) {
            return Err(InvalidConfig("version_policy latest must be 1 or more".into()));
        }
        if let Some(shadow) = &self.shadow {
            if shadow.model.is_empty() {
                return Err(InvalidConfig("[shadow] needs model = \"NAME\", the candidate model".into()));
            }
        }
        if let Some(batching) = &self.dynamic_batching {
            if self.max_batch_size == 0 {
                return Err(InvalidConfig("dynamic_batching needs max_batch_size of 1 or more".into()));
            }
            if let Some(&bad) =
                batching.preferred_batch_size.iter().find(|&&n| n == 0 || n > self.max_batch_size)
            {
                return Err(InvalidConfig(format!(
                    "preferred_batch_size {bad} is not between 1 and max_batch_size {}",
                    self.max_batch_size
                )));
            }
        }
        Ok(())
    }

    /// The model file in `dir` this config names, or the folder's only model file.
    pub fn model_path(&self, dir: &Path) -> Result<PathBuf, StartError> {
        if let Some(file) = &self.model_file {
            let path = dir.join(file);
            return if path.is_file() {
                Ok(path)
            } else {
                Err(StartError::ModelFile(format!(
                    "model_file \"{file}\" is not a file in {}",
                    dir.display()
                )))
            };
        }
        let entries =
            std::fs::read_dir(dir).map_err(|source| StartError::Io { path: dir.to_path_buf(), source })?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension().and_then(|e| e.to_str()).is_some_and(|e| MODEL_EXTENSIONS.contains(&e))
            })
            .collect();
        found.sort();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(StartError::ModelFile(format!("{} holds no .onnx, .pt or .pth file", dir.display()))),
            n => Err(StartError::ModelFile(format!(
                "{} holds {n} model files ({}): name one with model_file in config.toml",
                dir.display(),
                found.iter().filter_map(|p| p.file_name()?.to_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_toml_and_rejects_unknown_fields_and_bad_combinations() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ModelConfig::read(dir.path()).unwrap(), ModelConfig::default());

        std::fs::write(
            dir.path().join("config.toml"),
            "backend = \"ort\"\nmax_batch_size = 8\n[dynamic_batching]\nmax_queue_delay_us = 500\n",
        )
        .unwrap();
        let config = ModelConfig::read(dir.path()).unwrap();
        assert_eq!(config.backend, "ort");
        assert_eq!(config.dynamic_batching.unwrap().max_queue_delay_us, 500);

        std::fs::write(dir.path().join("config.toml"), "max_batch = 8\n").unwrap();
        let err = ModelConfig::read(dir.path()).unwrap_err();
        assert!(matches!(&err, StartError::Config { path, .. } if path.ends_with("config.toml")), "{err:?}");
        let err = err.to_string();
        assert!(err.contains("unknown field `max_batch`"), "{err}");

        std::fs::write(dir.path().join("config.toml"), "[dynamic_batching]\n").unwrap();
        let err = ModelConfig::read(dir.path()).unwrap_err();
        assert!(matches!(err, StartError::Config { .. }), "{err:?}");
        let err = err.to_string();
        assert!(err.ends_with("dynamic_batching needs max_batch_size of 1 or more"), "{err}");

        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let err = ModelConfig::read(dir.path()).unwrap_err().to_string();
        assert!(err.ends_with("has both config.toml and config.json: keep one"), "{err}");
    }

    #[test]
    fn finds_the_one_model_file_or_says_why_not() {
        let dir = tempfile::tempdir().unwrap();
        let config = ModelConfig::default();
        let err = config.model_path(dir.path()).unwrap_err();
        assert!(matches!(err, StartError::ModelFile(_)), "{err:?}");
        assert!(err.to_string().ends_with("holds no .onnx, .pt or .pth file"), "{err}");
        std::fs::write(dir.path().join("a.onnx"), b"").unwrap();
        assert_eq!(config.model_path(dir.path()).unwrap(), dir.path().join("a.onnx"));
        std::fs::write(dir.path().join("a.pt"), b"").unwrap();
        let err = config.model_path(dir.path()).unwrap_err().to_string();
        assert!(
            err.ends_with("holds 2 model files (a.onnx, a.pt): name one with model_file in config.toml"),
            "{err}"
        );
    }
}
