//! A user-defined Rivet backend, `affine`, packaged as its own library (`librivet_affine.so`)
//! that Rivet finds by name: `rivet run --backend affine`, `rivet_load_options_set_backend(o,
//! "affine")`. It is the template for plugging another engine (a legacy C++ scorer, say) into
//! Rivet, and what the registry's tests load.
//!
//! Its models are JSON files: `{"input": "x", "output": "y", "features": 4, "scale": 2.0,
//! "bias": 0.5}` computes `y = x * scale + bias` on `f32[batch, features]`. One option,
//! `clip = C`, clamps the outputs to `[-C, C]`.

#![warn(missing_docs)]

use std::path::Path;
use std::sync::Arc;

use rivet_core::{
    Backend, DType, Dim, Error, InferenceBackend, LoadOptions, Model, ModelFormat, OptionInfo, Result,
    Signature, Tensor, TensorSpec, TensorView,
};
use serde::Deserialize;

const NAME: &str = "affine";

/// The options it takes.
pub const OPTIONS: &[OptionInfo] = &[OptionInfo { key: "clip", help: "clamp outputs to [-C, C] (C > 0)" }];

/// The `affine` backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct AffineBackend;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    input: String,
    output: String,
    features: usize,
    scale: f32,
    bias: f32,
}

impl InferenceBackend for AffineBackend {
    fn name(&self) -> Backend {
        Backend::new(NAME).unwrap_or_default()
    }

    /// It reads its own JSON files, which no format detection claims: it is chosen by name.
    fn formats(&self) -> &[ModelFormat] {
        &[]
    }

    fn options(&self) -> &[OptionInfo] {
        OPTIONS
    }

    fn load(&self, path: &Path, options: &LoadOptions) -> Result<Arc<dyn Model>> {
        let own = options.options_for(NAME);
        own.check_known(OPTIONS)?;
        let clip = own.parse::<f32>("clip", "a number above 0")?;
        if clip.is_some_and(|c| c.is_nan() || c <= 0.0) {
            return Err(Error::InvalidOption {
                backend: Some(NAME.into()),
                key: "clip".into(),
                message: format!("{NAME}: option clip must be above 0"),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::load(NAME, path, &e).with_source(e))?;
        let spec: Spec =
            serde_json::from_str(&text).map_err(|e| Error::load(NAME, path, &e).with_source(e))?;
        let dims = || vec![Dim::Dynamic(Some("batch".into())), Dim::Fixed(spec.features)];
        let signature = Signature {
            inputs: vec![TensorSpec::new(spec.input.clone(), DType::F32, dims())],
            outputs: vec![TensorSpec::new(spec.output.clone(), DType::F32, dims())],
        };
        Ok(Arc::new(AffineModel { signature, scale: spec.scale, bias: spec.bias, clip }))
    }
}

/// A loaded affine model.
pub struct AffineModel {
    signature: Signature,
    scale: f32,
    bias: f32,
    clip: Option<f32>,
}

impl Model for AffineModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn backend(&self) -> Backend {
        Backend::new(NAME).unwrap_or_default()
    }

    fn execute(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        // Inputs arrive checked against the signature: one f32[batch, features].
        let x = inputs[0].as_slice::<f32>()?;
        let y: Vec<f32> = x
            .iter()
            .map(|v| v * self.scale + self.bias)
            .map(|v| self.clip.map_or(v, |c| v.clamp(-c, c)))
            .collect();
        Ok(vec![Tensor::from_slice(inputs[0].shape(), &y)?])
    }
}

rivet_core::export_backend_plugin!(AffineBackend);
