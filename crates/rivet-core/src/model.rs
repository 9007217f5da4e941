//! The traits every backend implements, and the options models are loaded with.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::error::{Error, Result};
use crate::format::ModelFormat;
use crate::signature::{Inputs, Signature};
use crate::tensor::{Tensor, TensorView};

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// The CPU.
    #[default]
    Cpu,
    /// A CUDA GPU, by ordinal.
    Cuda(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("unknown device \"{s}\" (expected cpu, cuda or cuda:N)")),
        }
    }
}

/// A backend's name: `tch`, `ort`, `candle`, or any name a backend was registered under.
/// [`Backend::AUTO`] stands for "chosen by the file's format".
///
/// Names are lowercase ASCII letters, digits, `_` and `-`. Parsing accepts the aliases `torch`
/// and `libtorch` (for `tch`) and `onnxruntime` (for `ort`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Backend(Cow<'static, str>);

impl Backend {
    /// Chosen by the file's format: the registered backends that read it, in
    /// [`LoadOptions::auto_order`] (default: registration order), first to load wins.
    pub const AUTO: Backend = Backend(Cow::Borrowed("auto"));
    /// libtorch through `tch` (TorchScript), loaded on first use.
    pub const TCH: Backend = Backend(Cow::Borrowed("tch"));
    /// ONNX Runtime through `ort` (ONNX).
    pub const ORT: Backend = Backend(Cow::Borrowed("ort"));
    /// Rivet's own ONNX executor on Candle (pure Rust).
    pub const CANDLE: Backend = Backend(Cow::Borrowed("candle"));

    /// A backend name, checked: non-empty, at most 64 characters of `a-z 0-9 _ -`.
    pub fn new(name: impl Into<String>) -> Result<Backend> {
        let name: String = name.into();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            return Err(Error::InvalidOption {
                backend: None,
                key: "backend".into(),
                message: format!(
                    "backend name \"{}\" is not valid (1 to 64 of a-z, 0-9, _ and -)",
                    crate::error::one_line(&name)
                ),
            });
        }
        Ok(match name.as_str() {
            "auto" => Backend::AUTO,
            "tch" => Backend::TCH,
            "ort" => Backend::ORT,
            "candle" => Backend::CANDLE,
            _ => Backend(Cow::Owned(name)),
        })
    }

    /// The name: `auto`, `tch`, `ort`, `candle`, or a registered backend's.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// Whether this is [`Backend::AUTO`].
    pub fn is_auto(&self) -> bool {
        self.0 == "auto"
    }
}

impl Default for Backend {
    fn default() -> Self {
        Backend::AUTO
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl PartialEq<str> for Backend {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Backend {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "torch" | "libtorch" => Ok(Backend::TCH),
            "onnxruntime" => Ok(Backend::ORT),
            _ => Backend::new(lower),
        }
    }
}

impl TryFrom<String> for Backend {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl std::borrow::Borrow<str> for Backend {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<Backend> for String {
    fn from(b: Backend) -> String {
        b.0.into_owned()
    }
}

/// How to load a model. `Default` gives: auto backend, CPU, library default threads, backends
/// tried in registration order (tch for TorchScript; ort, then candle for ONNX), and no
/// backend-specific options.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Which backend; [`Backend::AUTO`] picks by format.
    pub backend: Backend,
    /// Where to run.
    pub device: Device,
    /// Threads used inside one operator (ORT: per session; libtorch: process-wide, see README).
    pub intra_op_threads: Option<usize>,
    /// Threads used to run independent operators (ORT: per session; libtorch: process-wide).
    pub inter_op_threads: Option<usize>,
    /// Under [`Backend::AUTO`], the backends to try, in order (those that do not read the
    /// file's format are skipped). Empty: every registered backend, in registration order.
    pub auto_order: Vec<Backend>,
    /// Options that belong to one backend, as `key = value` strings, by backend name (ORT's
    /// `optimization` and `instances`, tch's `spec`). Each backend checks its own and refuses
    /// unknown keys, listing the ones it knows. Set them with [`LoadOptions::set_option`].
    pub backend_options: BTreeMap<Backend, BTreeMap<String, String>>,
}

impl LoadOptions {
    /// Options that load with `backend` and otherwise the defaults.
    pub fn with_backend(backend: Backend) -> LoadOptions {
        LoadOptions { backend, ..LoadOptions::default() }
    }

    /// Sets the backend-specific option `key = value` for `backend` (checked when it loads).
    pub fn set_option(&mut self, backend: &Backend, key: impl Into<String>, value: impl Into<String>) {
        self.backend_options.entry(backend.clone()).or_default().insert(key.into(), value.into());
    }

    /// Builder form of [`LoadOptions::set_option`].
    pub fn option(mut self, backend: &Backend, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_option(backend, key, value);
        self
    }

    /// Parses `[BACKEND.]KEY=VALUE` (the CLI's `--option` and the C ABI's string form). Without
    /// `BACKEND.`, the option is for `default_backend` (an error when that is `auto`).
    pub fn set_option_str(&mut self, text: &str, default_backend: &Backend) -> Result<()> {
        let bad = |message: String| Error::InvalidOption { backend: None, key: text.to_owned(), message };
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| bad(format!("option \"{text}\" is not KEY=VALUE or BACKEND.KEY=VALUE")))?;
        let (backend, key) = match key.split_once('.') {
            Some((backend, key)) => (backend.parse::<Backend>()?, key),
            None if default_backend.is_auto() => {
                return Err(bad(format!(
                    "option \"{text}\" names no backend: write BACKEND.{key}={value} (e.g. ort.{key}) \
                     or choose one backend"
                )))
            }
            None => (default_backend.clone(), key),
        };
        if key.trim().is_empty() {
            return Err(bad(format!("option \"{text}\" has an empty key")));
        }
        self.set_option(&backend, key.trim(), value.trim());
        Ok(())
    }

    /// The options set for `backend`, for it to read and check.
    pub fn options_for<'a>(&'a self, backend: &'a str) -> BackendOptions<'a> {
        BackendOptions { backend, values: self.backend_options.get(backend) }
    }
}

/// One option a backend accepts: its key and what it does (listed in errors and `--help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionInfo {
    /// The key, e.g. `instances`.
    pub key: &'static str,
    /// What it sets and which values it takes.
    pub help: &'static str,
}

/// The `key = value` options given to one backend ([`LoadOptions::options_for`]).
#[derive(Debug, Clone, Copy)]
pub struct BackendOptions<'a> {
    backend: &'a str,
    values: Option<&'a BTreeMap<String, String>>,
}

impl<'a> BackendOptions<'a> {
    /// Fails on the first key not in `known`, listing the known ones.
    pub fn check_known(&self, known: &[OptionInfo]) -> Result<()> {
        for key in self.values.into_iter().flat_map(|v| v.keys()) {
            if !known.iter().any(|k| k.key == key) {
                let list = if known.is_empty() {
                    "it takes no options".to_owned()
                } else {
                    let keys: Vec<&str> = known.iter().map(|k| k.key).collect();
                    format!("known options: {}", keys.join(", "))
                };
                return Err(Error::InvalidOption {
                    backend: Some(self.backend.to_owned()),
                    key: key.clone(),
                    message: format!("{}: unknown option \"{key}\"; {list}", self.backend),
                });
            }
        }
        Ok(())
    }

    /// Every `key = value` given, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.values.into_iter().flat_map(|v| v.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The raw value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.values.and_then(|v| v.get(key)).map(String::as_str)
    }

    /// The value of `key` parsed as `T`, or an error naming the key, the value and what was
    /// expected (`expected` reads like "a whole number of at least 1").
    pub fn parse<T: FromStr>(&self, key: &str, expected: &str) -> Result<Option<T>> {
        let Some(text) = self.get(key) else { return Ok(None) };
        text.parse().map(Some).map_err(|_| Error::InvalidOption {
            backend: Some(self.backend.to_owned()),
            key: key.to_owned(),
            message: format!("{}: option {key} = \"{text}\": expected {expected}", self.backend),
        })
    }
}

/// A library that can load models, registered under a name (`rivet::register_backend`).
pub trait InferenceBackend: Send + Sync {
    /// The name it is registered and chosen under: `tch`, `ort`, `candle`, or a user's own.
    fn name(&self) -> Backend;

    /// The model formats it loads; [`Backend::AUTO`] offers it files of these formats.
    fn formats(&self) -> &[ModelFormat];

    /// The backend-specific options it accepts ([`LoadOptions::backend_options`]).
    fn options(&self) -> &[OptionInfo] {
        &[]
    }

    /// Loads the model file at `path`. Checks its own options (an unknown key is an error).
    fn load(&self, path: &Path, options: &LoadOptions) -> Result<Arc<dyn Model>>;
}

/// A loaded model. `Send + Sync`: `run` may be called from many threads at once.
pub trait Model: Send + Sync {
    /// The inputs and outputs the model declares.
    fn signature(&self) -> &Signature;

    /// Which backend runs it.
    fn backend(&self) -> Backend;

    /// Runs inputs that [`Signature::bind`] has already validated and put in signature order.
    /// Call [`Model::run`], [`Model::run_named`] or [`Model::run_inputs`] instead.
    fn execute(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>>;

    /// Runs the model on tensors given in signature order.
    fn run(&self, inputs: &[&Tensor]) -> Result<Outputs> {
        // On the stack for the usual few inputs: a run allocates nothing of its own to bind them.
        let tensors = if let [one] = inputs {
            run_checked(self, &[one.view()])?
        } else {
            let mut views = SmallVec::<[TensorView<'_>; 4]>::new();
            for tensor in inputs {
                views.push(tensor.view());
            }
            run_checked(self, &views)?
        };
        Ok(Outputs { names: self.output_names(tensors.len()), tensors })
    }

    /// Runs the model on tensors given by input name, in any order.
    fn run_named(&self, inputs: &[(&str, &Tensor)]) -> Result<Outputs> {
        self.run_inputs(Inputs::Named(inputs.iter().map(|(n, t)| (*n, t.view())).collect()))
    }

    /// Runs the model on borrowed views, by position or by name. Nothing is copied before the
    /// backend sees the data.
    fn run_inputs(&self, inputs: Inputs<'_>) -> Result<Outputs> {
        let tensors = self.run_tensors(inputs)?;
        Ok(Outputs { names: self.output_names(tensors.len()), tensors })
    }

    /// The names of `count` outputs: the declared ones, or `output_0`... where the model names
    /// none. Backends may return a list they keep, so a run allocates no names.
    fn output_names(&self, count: usize) -> Arc<[String]> {
        self.signature().output_names(count).into()
    }

    /// Like [`Model::run_inputs`], returning the output tensors without their names (saves the
    /// names' allocation where the caller knows them, as the C ABI does).
    fn run_tensors(&self, inputs: Inputs<'_>) -> Result<Vec<Tensor>> {
        let bound = match inputs {
            Inputs::Positional(views) => views,
            Inputs::Named(named) => self.signature().order_named(named)?,
        };
        run_checked(self, &bound)
    }
}

/// Checks inputs given in signature order, runs them, and checks the output count.
fn run_checked<M: Model + ?Sized>(model: &M, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
    let signature = model.signature();
    signature.check(inputs)?;
    let tensors = model.execute(inputs)?;
    let declared = signature.outputs.len();
    if declared != 0 && declared != tensors.len() {
        return Err(Error::backend(
            model.backend().name(),
            format!("model declares {declared} output(s) but returned {}", tensors.len()),
        ));
    }
    Ok(tensors)
}

/// The tensors a run returns, with their names.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    names: Arc<[String]>,
    tensors: Vec<Tensor>,
}

impl Outputs {
    /// Output names, in order (`output_0`... where the model names none).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of outputs.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The output at `index`.
    pub fn get(&self, index: usize) -> Option<&Tensor> {
        self.tensors.get(index)
    }

    /// The output called `name`.
    pub fn by_name(&self, name: &str) -> Option<&Tensor> {
        self.names.iter().position(|n| n == name).map(|i| &self.tensors[i])
    }

    /// `(name, tensor)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.names.iter().map(String::as_str).zip(&self.tensors)
    }

    /// The tensors, in order.
    pub fn into_tensors(self) -> Vec<Tensor> {
        self.tensors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_errors_list_choices() {
        assert_eq!("cuda:1".parse::<Device>(), Ok(Device::Cuda(1)));
        assert_eq!("ONNXRuntime".parse::<Backend>().unwrap(), Backend::ORT);
        assert_eq!("My-Scorer".parse::<Backend>().unwrap().name(), "my-scorer");
        let err = "a b".parse::<Backend>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid option backend: backend name \"a b\" is not valid (1 to 64 of a-z, 0-9, _ and -)"
        );
        assert!("gpu".parse::<Device>().unwrap_err().contains("cpu, cuda or cuda:N"));
    }
}
