//! The Rust side of what C++ calls: loading, running, reading outputs, registering scorers.

use std::fmt;
use std::sync::Arc;

use rivet::{Backend, Element, Error, Inputs, LoadOptions, Model, Outputs, TensorView};

use crate::convert::{from_dtype, to_dtype, to_spec};
use crate::ffi::{self, ErrorCode, ShadowConfig, ShadowStats, TensorRef, TensorSpec};
use crate::scorer::{ScorerBackendAdapter, ScorerModel};

/// The error C++ receives as `rust::Error`: its `what()` is `CODE_NAME: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeError {
    /// The stable code.
    pub code: ErrorCode,
    /// What went wrong, with the causes.
    pub message: String,
}

impl BridgeError {
    fn new(code: ErrorCode, message: impl Into<String>) -> BridgeError {
        BridgeError { code, message: message.into() }
    }
}

impl From<Error> for BridgeError {
    fn from(err: Error) -> BridgeError {
        let code = ErrorCode { repr: err.kind().code() };
        BridgeError { code, message: err.message_with_causes() }
    }
}

/// The name C++ code sees for each code (rivet.h's macro names).
const CODE_NAMES: [(ErrorCode, &str); 9] = [
    (ErrorCode::InvalidArgument, "RIVET_ERROR_INVALID_ARGUMENT"),
    (ErrorCode::InvalidInput, "RIVET_ERROR_INVALID_INPUT"),
    (ErrorCode::InvalidTensor, "RIVET_ERROR_INVALID_TENSOR"),
    (ErrorCode::ModelLoad, "RIVET_ERROR_MODEL_LOAD"),
    (ErrorCode::Unsupported, "RIVET_ERROR_UNSUPPORTED"),
    (ErrorCode::Backend, "RIVET_ERROR_BACKEND"),
    (ErrorCode::Io, "RIVET_ERROR_IO"),
    (ErrorCode::Panic, "RIVET_ERROR_PANIC"),
    (ErrorCode::InvalidOption, "RIVET_ERROR_INVALID_OPTION"),
];

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = CODE_NAMES.iter().find(|(c, _)| *c == self.code).map_or("RIVET_ERROR_BACKEND", |(_, n)| n);
        write!(f, "{name}: {}", self.message)
    }
}

impl std::error::Error for BridgeError {}

type BridgeResult<T> = Result<T, BridgeError>;

/// Runs `body`, turning a panic into a `RIVET_ERROR_PANIC` error: no panic reaches C++.
fn fenced<T>(what: &str, body: impl FnOnce() -> BridgeResult<T>) -> BridgeResult<T> {
    rivet::panics::catch_quietly(body).unwrap_or_else(|payload| {
        let detail = rivet::panics::panic_text(&*payload);
        Err(BridgeError::new(ErrorCode::Panic, format!("Rivet panicked in {what}: {detail}")))
    })
}

/// For functions C++ declares infallible: `fallback` if `body` panics.
fn fenced_or<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    rivet::panics::catch_quietly(body).unwrap_or(fallback)
}

/// Shapes of `refs` as Rivet's `usize` dimensions (a negative one is an error naming the input).
pub(crate) fn shapes_of(refs: &[TensorRef<'_>]) -> BridgeResult<Vec<Vec<usize>>> {
    refs.iter()
        .enumerate()
        .map(|(i, r)| {
            r.shape.iter().map(|&d| usize::try_from(d)).collect::<Result<Vec<usize>, _>>().map_err(|_| {
                let who =
                    if r.name.is_empty() { format!("input {i}") } else { format!("input \"{}\"", r.name) };
                BridgeError::new(
                    ErrorCode::InvalidTensor,
                    format!("invalid tensor: {who}: negative dimension in shape {:?}", r.shape),
                )
            })
        })
        .collect()
}

/// Borrowed views over `refs` (no copy); `shapes` from [`shapes_of`].
pub(crate) fn views_of<'a>(
    refs: &[TensorRef<'a>],
    shapes: &'a [Vec<usize>],
) -> BridgeResult<Vec<TensorView<'a>>> {
    refs.iter()
        .zip(shapes)
        .map(|(r, shape)| {
            let dtype = to_dtype(r.dtype).ok_or_else(|| {
                BridgeError::new(ErrorCode::InvalidArgument, format!("unknown dtype value {}", r.dtype.repr))
            })?;
            Ok(TensorView::new(dtype, shape, r.data)?)
        })
        .collect()
}

/// A loaded model, shared by every thread that runs it.
pub struct LoadedModel {
    model: Arc<dyn Model>,
    /// The shadow behind the model, when `shadow` made it.
    shadow: Option<Arc<rivet::Shadow>>,
}

/// Shadow mode's defaults (see `rivet::ShadowOptions`), capture off.
pub fn default_shadow_config() -> ShadowConfig {
    let defaults = rivet::ShadowOptions::default();
    let capture = rivet::shadow::CaptureOptions::new("");
    ShadowConfig {
        atol: defaults.atol,
        rtol: defaults.rtol,
        sample: defaults.sample,
        queue: defaults.queue,
        capture_dir: String::new(),
        capture_max_count: capture.max_count,
        capture_max_bytes: capture.max_bytes,
    }
}

/// Wraps `primary` and `candidate` into a shadow answering with the primary.
pub fn shadow(
    primary: &LoadedModel,
    candidate: &LoadedModel,
    config: &ShadowConfig,
) -> BridgeResult<Box<LoadedModel>> {
    fenced("rivet::shadow", || {
        let options = rivet::ShadowOptions {
            atol: config.atol,
            rtol: config.rtol,
            sample: config.sample,
            queue: config.queue,
            capture: (!config.capture_dir.is_empty()).then(|| rivet::shadow::CaptureOptions {
                dir: config.capture_dir.clone().into(),
                max_count: config.capture_max_count,
                max_bytes: config.capture_max_bytes,
            }),
        };
        let shadow = Arc::new(rivet::Shadow::new(primary.model.clone(), candidate.model.clone(), options)?);
        Ok(Box::new(LoadedModel { model: shadow.clone(), shadow: Some(shadow) }))
    })
}

impl LoadedModel {
    /// Wraps a model loaded or made elsewhere.
    pub fn new(model: Arc<dyn Model>) -> LoadedModel {
        LoadedModel { model, shadow: None }
    }

    fn as_shadow(&self) -> BridgeResult<&rivet::Shadow> {
        self.shadow.as_deref().ok_or_else(|| {
            BridgeError::new(
                ErrorCode::InvalidArgument,
                "the model is not a shadow (make one with rivet::shadow)",
            )
        })
    }

    /// The shadow's counts and latencies.
    pub fn shadow_stats(&self) -> BridgeResult<ShadowStats> {
        fenced("LoadedModel::shadow_stats", || {
            let s = self.as_shadow()?.stats();
            Ok(ShadowStats {
                requests: s.requests,
                skipped: s.skipped,
                dropped: s.dropped,
                compared: s.compared,
                matched: s.matched,
                diverged: s.diverged,
                candidate_errors: s.candidate_errors,
                captured: s.captured,
                capture_errors: s.capture_errors,
                primary_p50_ms: s.primary_latency.p50_ms,
                primary_p99_ms: s.primary_latency.p99_ms,
                candidate_p50_ms: s.candidate_latency.p50_ms,
                candidate_p99_ms: s.candidate_latency.p99_ms,
            })
        })
    }

    /// Waits until the shadow's queued comparisons are done.
    pub fn shadow_flush(&self) -> BridgeResult<()> {
        fenced("LoadedModel::shadow_flush", || {
            self.as_shadow()?.flush();
            Ok(())
        })
    }

    /// The model.
    pub fn model(&self) -> &Arc<dyn Model> {
        &self.model
    }

    /// The name of the backend that runs the model.
    pub fn backend(&self) -> String {
        fenced_or(String::new(), || self.model.backend().to_string())
    }

    /// The inputs it takes, in positional order.
    pub fn inputs(&self) -> Vec<TensorSpec> {
        fenced_or(Vec::new(), || self.model.signature().inputs.iter().map(to_spec).collect())
    }

    /// The outputs it returns, in order.
    pub fn outputs(&self) -> Vec<TensorSpec> {
        fenced_or(Vec::new(), || self.model.signature().outputs.iter().map(to_spec).collect())
    }

    /// Runs the model on borrowed tensors (what `LoadedModel::run` does in C++).
    pub fn run(&self, inputs: &[TensorRef<'_>]) -> Result<Box<ModelOutputs>, BridgeError> {
        fenced("LoadedModel::run", || {
            let shapes = shapes_of(inputs)?;
            let views = views_of(inputs, &shapes)?;
            let named = inputs.iter().filter(|r| !r.name.is_empty()).count();
            let bound = if named == 0 {
                Inputs::Positional(views)
            } else if named == inputs.len() {
                Inputs::Named(inputs.iter().map(|r| r.name).zip(views).collect())
            } else {
                return Err(BridgeError::new(
                    ErrorCode::InvalidArgument,
                    "inputs must all be named or all unnamed (by position)",
                ));
            };
            Ok(Box::new(ModelOutputs { outputs: self.model.run_inputs(bound)? }))
        })
    }
}

/// How to load a model.
#[derive(Default)]
pub struct LoadConfig {
    options: LoadOptions,
}

impl LoadConfig {
    /// Chooses the backend by name.
    pub fn set_backend(&mut self, name: &str) -> Result<(), BridgeError> {
        fenced("LoadConfig::set_backend", || {
            self.options.backend = Backend::new(name)?;
            Ok(())
        })
    }

    /// Adds a backend option, `[BACKEND.]KEY=VALUE`.
    pub fn set_option(&mut self, setting: &str) -> Result<(), BridgeError> {
        fenced("LoadConfig::set_option", || {
            let backend = self.options.backend.clone();
            Ok(self.options.set_option_str(setting, &backend)?)
        })
    }

    /// Threads for one operator and across operators; 0 keeps the default.
    pub fn set_threads(&mut self, intra_op: u32, inter_op: u32) {
        fenced_or((), || {
            let as_option = |n: u32| (n > 0).then_some(n as usize);
            self.options.intra_op_threads = as_option(intra_op);
            self.options.inter_op_threads = as_option(inter_op);
        })
    }
}

/// The outputs of one run.
pub struct ModelOutputs {
    outputs: Outputs,
}

impl ModelOutputs {
    /// How many outputs there are.
    pub fn size(&self) -> usize {
        fenced_or(0, || self.outputs.len())
    }

    fn tensor(&self, index: usize) -> BridgeResult<&rivet::Tensor> {
        self.outputs.get(index).ok_or_else(|| {
            BridgeError::new(
                ErrorCode::InvalidArgument,
                format!("output index {index} out of range: the model returned {}", self.outputs.len()),
            )
        })
    }

    /// The name of output `index`.
    pub fn name(&self, index: usize) -> BridgeResult<&str> {
        fenced("ModelOutputs::name", || {
            self.tensor(index)?;
            Ok(self.outputs.names()[index].as_str())
        })
    }

    /// The index of the output called `name`.
    pub fn index_of(&self, name: &str) -> BridgeResult<usize> {
        fenced("ModelOutputs::index_of", || {
            self.outputs.names().iter().position(|n| n == name).ok_or_else(|| {
                BridgeError::new(
                    ErrorCode::InvalidArgument,
                    format!("no output named \"{name}\" (outputs: {})", self.outputs.names().join(", ")),
                )
            })
        })
    }

    /// The dtype of output `index`.
    pub fn dtype(&self, index: usize) -> BridgeResult<ffi::DType> {
        fenced("ModelOutputs::dtype", || Ok(from_dtype(self.tensor(index)?.dtype())))
    }

    /// The shape of output `index`.
    pub fn shape(&self, index: usize) -> BridgeResult<Vec<i64>> {
        fenced("ModelOutputs::shape", || Ok(self.tensor(index)?.shape().iter().map(|&d| d as i64).collect()))
    }

    /// The bytes of output `index`.
    pub fn bytes(&self, index: usize) -> BridgeResult<&[u8]> {
        fenced("ModelOutputs::bytes", || Ok(self.tensor(index)?.as_bytes()))
    }

    fn values<T: Element>(&self, index: usize) -> BridgeResult<&[T]> {
        fenced("ModelOutputs values", || {
            let tensor = self.tensor(index)?;
            tensor.as_slice::<T>().map_err(|_| {
                BridgeError::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "output \"{}\" is {}, not {}",
                        self.outputs.names()[index],
                        tensor.dtype(),
                        T::DTYPE
                    ),
                )
            })
        })
    }

    /// Output `index` as f32 values.
    pub fn f32s(&self, index: usize) -> BridgeResult<&[f32]> {
        self.values(index)
    }

    /// Output `index` as f64 values.
    pub fn f64s(&self, index: usize) -> BridgeResult<&[f64]> {
        self.values(index)
    }

    /// Output `index` as i64 values.
    pub fn i64s(&self, index: usize) -> BridgeResult<&[i64]> {
        self.values(index)
    }

    /// Output `index` as i32 values.
    pub fn i32s(&self, index: usize) -> BridgeResult<&[i32]> {
        self.values(index)
    }

    /// Output `index` as bytes (dtype u8 or bool).
    pub fn u8s(&self, index: usize) -> BridgeResult<&[u8]> {
        fenced("ModelOutputs::u8s", || {
            let tensor = self.tensor(index)?;
            match tensor.dtype() {
                rivet::DType::U8 | rivet::DType::Bool => Ok(tensor.as_bytes()),
                other => Err(BridgeError::new(
                    ErrorCode::InvalidArgument,
                    format!("output \"{}\" is {other}, not u8 or bool", self.outputs.names()[index]),
                )),
            }
        })
    }
}

/// Loads the model at `path` on the backend named `backend`.
pub fn load(path: &str, backend: &str) -> Result<Box<LoadedModel>, BridgeError> {
    fenced("rivet::load", || {
        let options = LoadOptions::with_backend(Backend::new(backend)?);
        Ok(Box::new(LoadedModel::new(rivet::load(path, &options)?)))
    })
}

/// Loads the model at `path` as `config` says.
pub fn load_with(path: &str, config: &LoadConfig) -> Result<Box<LoadedModel>, BridgeError> {
    fenced("rivet::load_with", || Ok(Box::new(LoadedModel::new(rivet::load(path, &config.options)?))))
}

/// A configuration with Rivet's defaults.
pub fn new_load_config() -> Box<LoadConfig> {
    fenced_or(Box::default(), Box::default)
}

/// Registers a C++ backend under `name`.
pub fn register_scorer_backend(
    name: &str,
    backend: cxx::UniquePtr<ffi::ScorerBackend>,
) -> Result<(), BridgeError> {
    fenced("rivet::register_scorer_backend", || {
        // A taken name is refused before the adapter is built: building it reads the backend's
        // option keys into strings that a registered backend keeps for the life of the process.
        let wanted = Backend::new(name)?;
        if !wanted.is_auto() {
            rivet::check_backend_name(&wanted)?;
        }
        let adapter = ScorerBackendAdapter::new(name, backend)?;
        Ok(rivet::register_backend(Arc::new(adapter))?)
    })
}

/// Wraps one C++ scorer as a model of the backend `name`.
pub fn wrap_scorer(name: &str, scorer: cxx::UniquePtr<ffi::Scorer>) -> Result<Box<LoadedModel>, BridgeError> {
    fenced("rivet::wrap_scorer", || {
        let model = ScorerModel::new(Backend::new(name)?, scorer)?;
        Ok(Box::new(LoadedModel::new(Arc::new(model))))
    })
}

/// The names of the registered backends.
pub fn backends() -> Vec<String> {
    fenced_or(Vec::new(), || rivet::backends().into_iter().map(String::from).collect())
}

/// The code at the start of a `what()` this API produced; `None` for any other text.
pub fn error_code(what: &str) -> ErrorCode {
    fenced_or(ErrorCode::None, || {
        CODE_NAMES
            .iter()
            .find(|(_, name)| what.strip_prefix(name).is_some_and(|rest| rest.starts_with(": ")))
            .map_or(ErrorCode::None, |(code, _)| *code)
    })
}

/// The message of a `what()` this API produced, without its code; any other text unchanged.
pub fn error_message(what: &str) -> &str {
    fenced_or(what, || {
        CODE_NAMES
            .iter()
            .find_map(|(_, name)| what.strip_prefix(name).and_then(|rest| rest.strip_prefix(": ")))
            .unwrap_or(what)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_carries_the_code_and_round_trips() {
        let err: BridgeError = Error::invalid_input("x", "expected dtype f32, got i64").into();
        let what = err.to_string();
        assert_eq!(
            what,
            "RIVET_ERROR_INVALID_INPUT: invalid input: input \"x\": expected dtype f32, got i64"
        );
        assert_eq!(error_code(&what), ErrorCode::InvalidInput);
        assert_eq!(error_message(&what), "invalid input: input \"x\": expected dtype f32, got i64");
        assert_eq!(error_code("std::bad_alloc"), ErrorCode::None);
        assert_eq!(error_message("std::bad_alloc"), "std::bad_alloc");
        // Every kind maps to the code of the same name.
        for (code, name) in CODE_NAMES {
            let what = BridgeError::new(code, "m").to_string();
            assert_eq!((error_code(&what), what.as_str()), (code, format!("{name}: m").as_str()));
        }
    }

    #[test]
    fn a_panic_becomes_an_error() {
        let err = fenced::<()>("test", || panic!("boom")).unwrap_err();
        assert_eq!(err.code, ErrorCode::Panic);
        assert_eq!(err.message, "Rivet panicked in test: boom");
    }

    #[test]
    fn dtypes_match_rivets() {
        for dtype in rivet::DType::ALL {
            assert_eq!(to_dtype(from_dtype(dtype)), Some(dtype));
        }
        assert_eq!(to_dtype(ffi::DType::Unknown), None);
        assert_eq!(to_dtype(ffi::DType { repr: 99 }), None);
    }
}
