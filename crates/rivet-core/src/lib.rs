//! Rivet's core: tensors, dtypes, signatures, errors, and the traits every backend implements.
//!
//! Nothing here links a native library; the backends live in `rivet-tch`, `rivet-ort` and
//! `rivet-candle`, and the `rivet` facade puts them together.

#![warn(missing_docs)]

mod dtype;
mod error;
pub mod format;
mod model;
pub mod npy;
pub mod panics;
pub mod plugin;
mod signature;
mod tensor;
#[cfg(feature = "torchscript")]
pub mod torchscript;

pub use dtype::{DType, Element};
pub use error::{one_line, Error, ErrorKind, Result, Source};
pub use format::ModelFormat;
pub use model::{Backend, BackendOptions, Device, InferenceBackend, LoadOptions, Model, OptionInfo, Outputs};
pub use signature::{Dim, Inputs, Signature, TensorSpec};
pub use tensor::{element_count, Release, StorageKind, Tensor, TensorView, TENSOR_ALIGNMENT};

#[doc(hidden)]
pub use half;
