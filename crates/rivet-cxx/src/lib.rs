//! Rivet's C++ API through [cxx](https://cxx.rs), both ways.
//!
//! - **C++ calls Rivet**: `rivet::load`, `LoadedModel::run` on borrowed `rust::Slice`s (no copy),
//!   outputs read in place. A Rivet error reaches C++ as `rust::Error` whose `what()` starts with
//!   the C ABI's code name (`RIVET_ERROR_INVALID_INPUT: ...`); `rivet::error_code(e)` gives the
//!   code.
//! - **Rivet calls C++**: a legacy scorer derived from `rivet::Scorer` (`include/rivet/scorer.h`)
//!   is wrapped as a [`rivet::Model`] ([`ScorerModel`]); a `rivet::ScorerBackend` is registered
//!   under a name ([`ScorerBackendAdapter`]), so `rivet::load`, `compare` and `bench` run it like
//!   any backend. [`export_scorer_backend!`] packages one as a backend library
//!   (`librivet_NAME.so`) for the `rivet` CLI.
//!
//! Every function C++ can call catches panics (a panic in an `extern "Rust"` function would
//! abort the host); every C++ function Rust calls is declared `Result`, and the bridge's
//! `trycatch` (scorer.h) turns any C++ exception into an error.
//!
//! The generated header is committed as `include/rivet/bridge.h` (a test checks it matches);
//! C++ code includes `include/rivet/cxx.hpp`.

#![warn(missing_docs)]
// cxx's generated code trips these.
#![allow(clippy::needless_lifetimes, clippy::missing_safety_doc)]

mod api;
mod convert;
mod scorer;

pub use api::{
    backends, default_shadow_config, error_code, error_message, load, load_with, new_load_config,
    register_scorer_backend, shadow, wrap_scorer, BridgeError, LoadConfig, LoadedModel, ModelOutputs,
};
pub use cxx;
#[doc(hidden)]
pub use rivet as __rivet_core;
pub use scorer::{ScorerBackendAdapter, ScorerLibrary, ScorerModel};

/// The bridge. Its items appear in C++ in namespace `rivet` (the scorer plumbing in
/// `rivet::bridge`).
#[cxx::bridge(namespace = "rivet")]
pub mod ffi {
    /// An element type; the values are rivet.h's `RIVET_DTYPE_*`. Defined in scorer.h.
    #[repr(u32)]
    #[derive(Debug)]
    enum DType {
        /// Not known (an output the model does not describe).
        Unknown = 0,
        /// IEEE 754 half precision.
        F16 = 1,
        /// bfloat16.
        BF16 = 2,
        /// IEEE 754 single precision.
        F32 = 3,
        /// IEEE 754 double precision.
        F64 = 4,
        /// Signed 8-bit integer.
        I8 = 5,
        /// Signed 16-bit integer.
        I16 = 6,
        /// Signed 32-bit integer.
        I32 = 7,
        /// Signed 64-bit integer.
        I64 = 8,
        /// Unsigned 8-bit integer.
        U8 = 9,
        /// Boolean, one byte, 0 or 1.
        Bool = 10,
    }

    /// A stable error code; the values are rivet.h's `RIVET_ERROR_*`.
    #[repr(u32)]
    #[derive(Debug)]
    enum ErrorCode {
        /// Not a Rivet error (`what()` carries no Rivet code).
        None = 0,
        /// A bad argument to the API itself (mixed named and unnamed inputs, an index out of range).
        InvalidArgument = 1,
        /// The inputs do not match the model's signature.
        InvalidInput = 2,
        /// Tensor bytes do not match dtype and shape, or are misaligned.
        InvalidTensor = 3,
        /// A model file could not be read, parsed or loaded.
        ModelLoad = 4,
        /// A backend lacks a format, dtype, device or operator.
        Unsupported = 5,
        /// A backend (or a C++ scorer) failed while running.
        Backend = 6,
        /// A file other than the model is missing or malformed.
        Io = 7,
        /// Rivet panicked; the panic was caught.
        Panic = 8,
        /// A load option is malformed or unknown, or names an unknown backend.
        InvalidOption = 9,
    }

    /// One input or output as a model declares it.
    #[derive(Debug, Clone)]
    struct TensorSpec {
        /// Its name.
        name: String,
        /// Its element type (`Unknown` where the model does not say).
        dtype: DType,
        /// One entry per dimension; -1 for a dimension of any size. Empty with dtype `Unknown`
        /// where the model does not say.
        shape: Vec<i64>,
    }

    /// A tensor borrowed for one call: C++ buffers going into `LoadedModel::run`, and the
    /// inputs Rivet hands a `Scorer`. Nothing is copied; `data` must stay valid for the call.
    #[derive(Debug, Clone, Copy)]
    struct TensorRef<'a> {
        /// The input's name, or empty to go by position (all named or all empty).
        name: &'a str,
        /// The element type of `data`.
        dtype: DType,
        /// One entry per dimension, each >= 0.
        shape: &'a [i64],
        /// The elements, row-major: exactly product(shape) * size(dtype) bytes, aligned to the
        /// element size.
        data: &'a [u8],
    }

    /// How a shadow samples, compares and captures (`rivet::shadow`): start from
    /// `default_shadow_config()`.
    #[derive(Debug, Clone)]
    struct ShadowConfig {
        /// Absolute tolerance: an element matches when |candidate − primary| ≤ atol + rtol·|primary|.
        atol: f64,
        /// Relative tolerance.
        rtol: f64,
        /// The share of requests compared, 0 to 1, spread evenly.
        sample: f64,
        /// Comparisons pending at once, the running one included; beyond it they are dropped.
        queue: usize,
        /// Where divergent requests are captured; empty for nowhere.
        capture_dir: String,
        /// The most captures kept, the oldest going first.
        capture_max_count: usize,
        /// The most bytes the captures may take, the oldest going first.
        capture_max_bytes: u64,
    }

    /// What a shadow has done so far; latencies in milliseconds, 0 before any.
    #[derive(Debug, Clone, Copy)]
    struct ShadowStats {
        /// Requests the primary answered.
        requests: u64,
        /// Requests left out by sampling.
        skipped: u64,
        /// Comparisons dropped because the queue was full.
        dropped: u64,
        /// Requests compared.
        compared: u64,
        /// Compared requests whose every output matched.
        matched: u64,
        /// Compared requests with an output outside the tolerance.
        diverged: u64,
        /// Requests on which the candidate failed or panicked.
        candidate_errors: u64,
        /// Divergent requests captured.
        captured: u64,
        /// Captures that could not be written.
        capture_errors: u64,
        /// The primary's median run time.
        primary_p50_ms: f64,
        /// The primary's 99th-percentile run time.
        primary_p99_ms: f64,
        /// The candidate's median run time.
        candidate_p50_ms: f64,
        /// The candidate's 99th-percentile run time.
        candidate_p99_ms: f64,
    }

    /// One key=value option handed to a `ScorerBackend`'s `load`.
    #[derive(Debug, Clone)]
    struct BackendOption {
        /// The key, one of the backend's `option_keys()`.
        key: String,
        /// The value as given.
        value: String,
    }

    extern "Rust" {
        /// A loaded model, shared by every thread that runs it.
        type LoadedModel;

        /// Shadow mode's defaults: tolerances 1e-5, every request, a queue of 64, no capture
        /// (then 100 captures and 256 MiB once `capture_dir` is set).
        fn default_shadow_config() -> ShadowConfig;
        /// Wraps `primary` and `candidate` into one model that answers with the primary and
        /// compares the candidate on the same inputs on a thread of its own. Throws
        /// `RIVET_ERROR_INVALID_INPUT` when their signatures differ, `RIVET_ERROR_INVALID_OPTION`
        /// for a value out of range.
        fn shadow(
            primary: &LoadedModel,
            candidate: &LoadedModel,
            config: &ShadowConfig,
        ) -> Result<Box<LoadedModel>>;
        /// The shadow's counts and latencies; throws `RIVET_ERROR_INVALID_ARGUMENT` for a model
        /// that is not a shadow.
        fn shadow_stats(self: &LoadedModel) -> Result<ShadowStats>;
        /// Waits until every queued comparison is done (a shadow only, as `shadow_stats`).
        fn shadow_flush(self: &LoadedModel) -> Result<()>;
        /// How to load a model: backend, backend options, threads.
        type LoadConfig;
        /// The outputs of one run, owned by Rivet.
        type ModelOutputs;

        /// Loads the model at `path` on the backend named `backend` (`auto`, `tch`, `ort`,
        /// `candle`, or a registered or library backend). Throws `RIVET_ERROR_MODEL_LOAD`
        /// naming the path and backend, `RIVET_ERROR_INVALID_OPTION` for an unknown backend.
        fn load(path: &str, backend: &str) -> Result<Box<LoadedModel>>;
        /// Loads the model at `path` as `config` says.
        fn load_with(path: &str, config: &LoadConfig) -> Result<Box<LoadedModel>>;
        /// A configuration with Rivet's defaults (backend `auto`).
        fn new_load_config() -> Box<LoadConfig>;
        /// Chooses the backend by name.
        fn set_backend(self: &mut LoadConfig, name: &str) -> Result<()>;
        /// Adds a backend option, `[BACKEND.]KEY=VALUE` (the backend checks it at load).
        fn set_option(self: &mut LoadConfig, setting: &str) -> Result<()>;
        /// Threads for one operator and across operators; 0 keeps the backend's default.
        fn set_threads(self: &mut LoadConfig, intra_op: u32, inter_op: u32);

        /// The name of the backend that runs the model.
        fn backend(self: &LoadedModel) -> String;
        /// The inputs it takes, in positional order.
        fn inputs(self: &LoadedModel) -> Vec<TensorSpec>;
        /// The outputs it returns, in order (empty where the model does not say).
        fn outputs(self: &LoadedModel) -> Vec<TensorSpec>;
        /// Runs the model on borrowed tensors, by name or (all names empty) by position. Safe
        /// to call from many threads at once. Throws `RIVET_ERROR_INVALID_TENSOR` for bytes
        /// that do not match dtype and shape, `RIVET_ERROR_INVALID_INPUT` for inputs that do
        /// not match the signature, `RIVET_ERROR_BACKEND` when the backend fails.
        fn run(self: &LoadedModel, inputs: &[TensorRef]) -> Result<Box<ModelOutputs>>;

        /// How many outputs there are.
        fn size(self: &ModelOutputs) -> usize;
        /// The name of output `index`.
        fn name(self: &ModelOutputs, index: usize) -> Result<&str>;
        /// The index of the output called `name`; throws listing the names when there is none.
        fn index_of(self: &ModelOutputs, name: &str) -> Result<usize>;
        /// The element type of output `index`.
        fn dtype(self: &ModelOutputs, index: usize) -> Result<DType>;
        /// The shape of output `index`.
        fn shape(self: &ModelOutputs, index: usize) -> Result<Vec<i64>>;
        /// The bytes of output `index`, valid as long as these outputs.
        fn bytes(self: &ModelOutputs, index: usize) -> Result<&[u8]>;
        /// Output `index` as f32 values (throws if it is another dtype).
        fn f32s(self: &ModelOutputs, index: usize) -> Result<&[f32]>;
        /// Output `index` as f64 values.
        fn f64s(self: &ModelOutputs, index: usize) -> Result<&[f64]>;
        /// Output `index` as i64 values.
        fn i64s(self: &ModelOutputs, index: usize) -> Result<&[i64]>;
        /// Output `index` as i32 values.
        fn i32s(self: &ModelOutputs, index: usize) -> Result<&[i32]>;
        /// Output `index` as u8 values (dtype u8 or bool).
        fn u8s(self: &ModelOutputs, index: usize) -> Result<&[u8]>;

        /// Registers a C++ backend under `name`: `rivet::load(path, name)` then makes its
        /// scorers. Throws `RIVET_ERROR_INVALID_OPTION` for a bad or taken name.
        fn register_scorer_backend(name: &str, backend: UniquePtr<ScorerBackend>) -> Result<()>;
        /// Wraps one scorer as a model of the backend `name`: its inputs are checked against
        /// its declared signature like any model's.
        fn wrap_scorer(name: &str, scorer: UniquePtr<Scorer>) -> Result<Box<LoadedModel>>;
        /// The names of the registered backends.
        fn backends() -> Vec<String>;
        /// The code of a `rust::Error` thrown by this API, from its `what()`.
        fn error_code(what: &str) -> ErrorCode;
        /// The message of a `rust::Error` thrown by this API, without the code.
        fn error_message(what: &str) -> &str;
    }

    unsafe extern "C++" {
        include!("rivet/scorer.h");

        /// Defined in scorer.h; cxx checks the values match.
        type DType;
        /// A user's C++ model (scorer.h).
        type Scorer;
        /// A user's C++ backend: makes scorers from model files (scorer.h).
        type ScorerBackend;
        /// The outputs of one scorer run.
        #[namespace = "rivet::bridge"]
        type ScorerOutputs;

        /// Calls `scorer.run(inputs)`.
        #[namespace = "rivet::bridge"]
        fn run_scorer(scorer: &Scorer, inputs: &[TensorRef]) -> Result<UniquePtr<ScorerOutputs>>;
        /// Calls `scorer.inputs()`.
        #[namespace = "rivet::bridge"]
        fn scorer_inputs(scorer: &Scorer) -> Result<Vec<TensorSpec>>;
        /// Calls `scorer.outputs()`.
        #[namespace = "rivet::bridge"]
        fn scorer_outputs(scorer: &Scorer) -> Result<Vec<TensorSpec>>;
        /// Calls `scorer.thread_safe()`.
        #[namespace = "rivet::bridge"]
        fn scorer_thread_safe(scorer: &Scorer) -> Result<bool>;
        /// How many outputs a run returned.
        #[namespace = "rivet::bridge"]
        fn output_count(outputs: &ScorerOutputs) -> usize;
        /// Output `index`'s dtype (`index` < output_count).
        #[namespace = "rivet::bridge"]
        fn output_dtype(outputs: &ScorerOutputs, index: usize) -> DType;
        /// Output `index`'s shape.
        #[namespace = "rivet::bridge"]
        fn output_shape(outputs: &ScorerOutputs, index: usize) -> &[i64];
        /// Output `index`'s bytes.
        #[namespace = "rivet::bridge"]
        fn output_data(outputs: &ScorerOutputs, index: usize) -> &[u8];
        /// Calls `backend.load(path, options)`.
        #[namespace = "rivet::bridge"]
        fn load_scorer(
            backend: &ScorerBackend,
            path: &str,
            options: &[BackendOption],
        ) -> Result<UniquePtr<Scorer>>;
        /// Calls `backend.option_keys()`.
        #[namespace = "rivet::bridge"]
        fn backend_option_keys(backend: &ScorerBackend) -> Result<Vec<String>>;
    }
}
