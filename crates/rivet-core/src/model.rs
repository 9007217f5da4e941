//! The traits every backend implements, and the options models are loaded with.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

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

/// Which backend loads a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// Chosen by the file's format; for ONNX, [`LoadOptions::onnx_order`] is tried in turn.
    #[default]
    Auto,
    /// libtorch through `tch` (TorchScript).
    Tch,
    /// ONNX Runtime through `ort` (ONNX).
    Ort,
    /// Candle through `candle-onnx` (ONNX).
    Candle,
}

impl Backend {
    /// The concrete backends, in the order tables list them.
    pub const CONCRETE: [Backend; 3] = [Backend::Tch, Backend::Ort, Backend::Candle];

    /// Lowercase name: `auto`, `tch`, `ort`, `candle`.
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Tch => "tch",
            Backend::Ort => "ort",
            Backend::Candle => "candle",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Backend::Auto),
            "tch" | "torch" | "libtorch" => Ok(Backend::Tch),
            "ort" | "onnxruntime" => Ok(Backend::Ort),
            "candle" => Ok(Backend::Candle),
            _ => Err(format!("unknown backend \"{s}\" (expected auto, tch, ort or candle)")),
        }
    }
}

/// ONNX Runtime's graph optimization levels (other backends ignore this).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GraphOptimization {
    /// No graph rewrites.
    Disable,
    /// Constant folding and redundant node removal.
    Basic,
    /// Basic plus node fusions.
    Extended,
    /// Everything, layout optimizations included (ONNX Runtime's default).
    #[default]
    All,
}

/// How to load a model. `Default` gives: auto backend, CPU, library default threads, all graph
/// optimizations, one ORT session, ONNX tried on ORT then Candle.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Which backend; [`Backend::Auto`] picks by format.
    pub backend: Backend,
    /// Where to run.
    pub device: Device,
    /// Threads used inside one operator (ORT: per session; libtorch: process-wide, see README).
    pub intra_op_threads: Option<usize>,
    /// Threads used to run independent operators (ORT: per session; libtorch: process-wide).
    pub inter_op_threads: Option<usize>,
    /// ONNX Runtime graph optimization level.
    pub optimization: GraphOptimization,
    /// ORT sessions kept for concurrent `run` calls (like Triton's instance_group count).
    pub instances: usize,
    /// Backends tried, in order, for an ONNX model under [`Backend::Auto`].
    pub onnx_order: Vec<Backend>,
    /// A spec file to use instead of the sidecar next to the model (TorchScript).
    pub spec_path: Option<std::path::PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            backend: Backend::Auto,
            device: Device::Cpu,
            intra_op_threads: None,
            inter_op_threads: None,
            optimization: GraphOptimization::All,
            instances: 1,
            onnx_order: vec![Backend::Ort, Backend::Candle],
            spec_path: None,
        }
    }
}

/// A library that can load models: libtorch, ONNX Runtime or Candle.
pub trait InferenceBackend: Send + Sync {
    /// Which backend this is.
    fn kind(&self) -> Backend;

    /// Its name: `tch`, `ort` or `candle`.
    fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The model formats it loads.
    fn formats(&self) -> &'static [ModelFormat];

    /// Loads the model file at `path`.
    fn load(&self, path: &Path, options: &LoadOptions) -> Result<Box<dyn Model>>;
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
        self.run_inputs(Inputs::Positional(inputs.iter().map(|t| t.view()).collect()))
    }

    /// Runs the model on tensors given by input name, in any order.
    fn run_named(&self, inputs: &[(&str, &Tensor)]) -> Result<Outputs> {
        self.run_inputs(Inputs::Named(inputs.iter().map(|(n, t)| (*n, t.view())).collect()))
    }

    /// Runs the model on borrowed views, by position or by name. Nothing is copied before the
    /// backend sees the data.
    fn run_inputs(&self, inputs: Inputs<'_>) -> Result<Outputs> {
        let tensors = self.run_tensors(inputs)?;
        Ok(Outputs { names: self.signature().output_names(tensors.len()), tensors })
    }

    /// Like [`Model::run_inputs`], returning the output tensors without their names (saves the
    /// names' allocation where the caller knows them, as the C ABI does).
    fn run_tensors(&self, inputs: Inputs<'_>) -> Result<Vec<Tensor>> {
        let signature = self.signature();
        let bound = signature.bind(inputs)?;
        let tensors = self.execute(&bound)?;
        let declared = signature.outputs.len();
        if declared != 0 && declared != tensors.len() {
            return Err(Error::backend(
                self.backend().name(),
                format!("model declares {declared} output(s) but returned {}", tensors.len()),
            ));
        }
        Ok(tensors)
    }
}

/// The tensors a run returns, with their names.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    names: Vec<String>,
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
        assert_eq!("ONNXRuntime".parse::<Backend>(), Ok(Backend::Ort));
        let err = "tvm".parse::<Backend>().unwrap_err();
        assert_eq!(err, "unknown backend \"tvm\" (expected auto, tch, ort or candle)");
        assert!("gpu".parse::<Device>().unwrap_err().contains("cpu, cuda or cuda:N"));
    }
}
