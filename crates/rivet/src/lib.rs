//! Rivet: one inference API over libtorch (TorchScript), ONNX Runtime and Candle (ONNX).
//!
//! ```
//! use rivet::{LoadOptions, Tensor};
//! # fn main() -> rivet::Result<()> {
//! # let models = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models");
//! # std::env::set_current_dir(std::path::Path::new(models).parent().unwrap()).unwrap();
//! let model = rivet::load("models/mlp/mlp.onnx", &LoadOptions::default())?;
//! let x = Tensor::from_slice(&[1, 16], &[0.5f32; 16])?;
//! let outputs = model.run_named(&[("features", &x)])?;
//! println!("{:?}", outputs.by_name("logits").unwrap().as_slice::<f32>()?);
//! # Ok(())
//! # }
//! ```
//!
//! Backends are found by name in a registry ([`register_backend`], [`backend`]): the built-ins
//! `tch`, `ort` and `candle` (each a cargo feature, all on by default) and any a user registers.
//! The tch backend lives in its own library, `librivet_tch.so`, loaded when the first
//! TorchScript model is (see [`plugin`]), so a process that runs only ONNX never loads libtorch.
//! Any other backend can be packaged the same way: a name that is not registered is looked up
//! as `librivet_NAME.so` and registered when found.

#![warn(missing_docs)]

pub mod memory;
pub mod plugin;
mod registry;
pub mod shadow;

pub use registry::{
    backend, backends, backends_for, check_backend_name, load, load_explained, register_backend, Loaded,
};
pub use rivet_core::*;
pub use shadow::{Shadow, ShadowOptions};

#[cfg(feature = "candle")]
pub use rivet_candle as candle;
#[cfg(feature = "ort")]
pub use rivet_ort as ort;
