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
mod signature;
mod tensor;

pub use dtype::{DType, Element};
pub use error::{one_line, Error, ErrorKind, Result};
pub use format::ModelFormat;
pub use model::{Backend, Device, GraphOptimization, InferenceBackend, LoadOptions, Model, Outputs};
pub use signature::{Dim, Inputs, Signature, TensorSpec};
pub use tensor::{element_count, Tensor, TensorView, TENSOR_ALIGNMENT};

#[doc(hidden)]
pub use half;
