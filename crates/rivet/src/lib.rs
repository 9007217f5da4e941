//! Rivet: one inference API over libtorch (TorchScript), ONNX Runtime and Candle (ONNX).
//!
//! ```no_run
//! use rivet::{LoadOptions, Tensor};
//! # fn main() -> rivet::Result<()> {
//! let model = rivet::load("models/mlp/mlp.onnx", &LoadOptions::default())?;
//! let x = Tensor::from_slice(&[1, 16], &[0.5f32; 16])?;
//! let outputs = model.run_named(&[("features", &x)])?;
//! println!("{:?}", outputs.by_name("logits").unwrap().as_slice::<f32>()?);
//! # Ok(())
//! # }
//! ```
//!
//! Each backend is a cargo feature (`tch`, `ort`, `candle`; all on by default).

#![warn(missing_docs)]

use std::path::Path;

pub use rivet_core::*;

#[cfg(feature = "candle")]
pub use rivet_candle as candle;
#[cfg(feature = "ort")]
pub use rivet_ort as ort;
#[cfg(feature = "tch")]
pub use rivet_tch as tch;

/// The backend implementation for `kind`, or an error when it is not compiled in.
pub fn backend(kind: Backend) -> Result<Box<dyn InferenceBackend>> {
    match kind {
        #[cfg(feature = "tch")]
        Backend::Tch => Ok(Box::new(rivet_tch::TchBackend::new())),
        #[cfg(feature = "ort")]
        Backend::Ort => Ok(Box::new(rivet_ort::OrtBackend::new())),
        #[cfg(feature = "candle")]
        Backend::Candle => Ok(Box::new(rivet_candle::CandleBackend::new())),
        Backend::Auto => Err(Error::unsupported("auto", "Backend::Auto is not one backend")),
        #[allow(unreachable_patterns)]
        other => Err(Error::unsupported(
            other.name(),
            format!("backend {other}: this build of Rivet was compiled without the \"{other}\" feature"),
        )),
    }
}

/// The backends compiled into this build.
pub fn compiled_backends() -> Vec<Backend> {
    Backend::CONCRETE.into_iter().filter(|b| backend(*b).is_ok()).collect()
}

/// The compiled-in backends that accept `format`, in the order `Backend::Auto` tries them.
pub fn backends_for(format: ModelFormat, options: &LoadOptions) -> Vec<Backend> {
    let order: Vec<Backend> = match format {
        ModelFormat::TorchScript => vec![Backend::Tch],
        ModelFormat::Onnx => options.onnx_order.clone(),
    };
    order.into_iter().filter(|b| backend(*b).is_ok_and(|imp| imp.formats().contains(&format))).collect()
}

/// Loads the model at `path` with the backend `options.backend` names, or, for
/// [`Backend::Auto`], the first backend that accepts the file's format and loads it.
///
/// Under `Auto`, when every candidate fails, the error lists each backend's reason.
pub fn load(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Box<dyn Model>> {
    let path = path.as_ref();
    if options.backend != Backend::Auto {
        return backend(options.backend)?.load(path, options);
    }
    let format = format::detect_format(path, "auto")?;
    let mut attempts = Vec::new();
    for kind in backends_for(format, options) {
        match backend(kind)?.load(path, options) {
            Ok(model) => return Ok(model),
            Err(err) => attempts.push((kind.name().to_owned(), err)),
        }
    }
    if attempts.is_empty() {
        return Err(Error::unsupported(
            "auto",
            format!("{format} model {}: no compiled-in backend accepts it", path.display()),
        ));
    }
    Err(Error::NoBackend { path: path.to_path_buf(), attempts })
}
