//! Rivet for WebAssembly: the Candle executor (pure Rust) behind a wasm-bindgen API, for
//! browsers, Node and any other host of `wasm32-unknown-unknown` modules.
//!
//! A model is bytes (a `Uint8Array` of an `.onnx` file): there are no files, no threads and no
//! clock. Loading plans the graph exactly as the native Candle backend does, so a model that
//! native Rivet refuses is refused here with the same message; a run checks its inputs through
//! the same [`Signature`](rivet_core::Signature) and computes the same values (the vector loops
//! are compiled for `simd128` when the build enables it, and for scalar code otherwise).
//!
//! From JavaScript:
//!
//! ```js
//! import { Model } from "rivet";
//! const model = Model.load(new Uint8Array(bytes));
//! const out = model.run({ x: { data: new Float32Array(784), shape: [1, 784] } });
//! console.log(out.logits.data, out.logits.shape);
//! ```
//!
//! Errors are JavaScript `Error`s with `name` `"RivetError"`, a numeric `code` (the C ABI's
//! `RIVET_ERROR_*`) and `kind` (Rivet's [`ErrorKind`](rivet_core::ErrorKind) in snake case).

#![warn(missing_docs)]

mod errors;
mod tensors;

use std::path::PathBuf;

use js_sys::{Array, Object, Reflect};
use rivet_candle::CandleModel;
use rivet_core::{Error, Inputs, Model as _, TensorSpec, TensorView};
use wasm_bindgen::prelude::*;

use crate::errors::{invalid_argument, rivet_error};
use crate::tensors::{output_object, HostTensor};

/// The name a model goes by in messages when the load options give none.
const DEFAULT_NAME: &str = "model.onnx";

/// An ONNX model planned for the Candle executor.
#[wasm_bindgen]
pub struct Model {
    inner: CandleModel,
}

#[wasm_bindgen]
impl Model {
    /// Loads an ONNX model from its bytes. `options` may name it for error messages
    /// (`{ name: "mlp.onnx" }`); any other key is an error.
    pub fn load(bytes: &[u8], options: Option<Object>) -> Result<Model, JsValue> {
        let name = load_name(options.as_ref())?;
        let inner = CandleModel::from_bytes(bytes, &PathBuf::from(name)).map_err(|e| rivet_error(&e))?;
        Ok(Model { inner })
    }

    /// The inputs the model declares: `{ name, dtype, shape }` each, where a dynamic dimension
    /// is its symbolic name or `null`.
    pub fn inputs(&self) -> Array {
        specs(&self.inner.signature().inputs)
    }

    /// The outputs the model declares, as [`Model::inputs`] gives the inputs.
    pub fn outputs(&self) -> Array {
        specs(&self.inner.signature().outputs)
    }

    /// Runs the model. `inputs` maps each input name to `{ data, shape }` (`data` a typed array
    /// whose kind gives the dtype, `shape` an array of sizes; an optional `dtype` names it where
    /// the kind is ambiguous, `"bool"` or `"f16"`). Returns an object of the same form by output
    /// name, with `dtype` set; its arrays are copies the caller owns.
    pub fn run(&self, inputs: &JsValue) -> Result<Object, JsValue> {
        let Some(object) = inputs.dyn_ref::<Object>().filter(|_| !Array::is_array(inputs)) else {
            return Err(invalid_argument("inputs must be an object mapping input names to { data, shape }"));
        };
        let signature = self.inner.signature();
        let mut host = Vec::new();
        for entry in Object::entries(object).iter() {
            let pair = Array::from(&entry);
            let name = pair.get(0).as_string().unwrap_or_default();
            let declared = signature.inputs.iter().find(|s| s.name == name).and_then(|s| s.dtype);
            host.push((name.clone(), HostTensor::read(&name, &pair.get(1), declared)?));
        }
        let mut named = Vec::with_capacity(host.len());
        for (name, tensor) in &host {
            let view =
                TensorView::new(tensor.dtype, &tensor.shape, tensor.bytes()).map_err(|e| rivet_error(&e))?;
            named.push((name.as_str(), view));
        }
        let outputs = self.inner.run_inputs(Inputs::Named(named)).map_err(|e| rivet_error(&e))?;
        let result = Object::new();
        for (name, tensor) in outputs.iter() {
            set(&result, name, &output_object(tensor)?);
        }
        Ok(result)
    }

    /// Number of steps a run walks, after the load's constant folding.
    #[wasm_bindgen(getter)]
    pub fn steps(&self) -> usize {
        self.inner.steps()
    }
}

/// Installs the panic hook when the module starts: a panic (a bug in Rivet, never a bad input)
/// becomes a thrown `RivetError` with code 8 (`panic`) and the panic's message, not a bare
/// `RuntimeError: unreachable`. WebAssembly cannot unwind, so the module instance is left as the
/// panic found it: load it again before the next call.
#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| {
        let message = match info.payload().downcast_ref::<&str>() {
            Some(s) => (*s).to_string(),
            None => info.payload().downcast_ref::<String>().cloned().unwrap_or_else(|| "unknown".into()),
        };
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        wasm_bindgen::throw_val(errors::panic_error(&format!(
            "panic: {message}{at}; this module instance must be initialised again"
        )));
    }));
}

/// Rivet's version.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Whether this build's vector loops use WebAssembly's 128-bit SIMD (`simd128`).
#[wasm_bindgen]
pub fn simd() -> bool {
    cfg!(target_feature = "simd128")
}

/// The model's name from the load options, checking that no other key is given.
fn load_name(options: Option<&Object>) -> Result<String, JsValue> {
    let Some(options) = options else { return Ok(DEFAULT_NAME.to_string()) };
    let mut name = DEFAULT_NAME.to_string();
    for key in Object::keys(options).iter() {
        let key = key.as_string().unwrap_or_default();
        let value = Reflect::get(options, &JsValue::from_str(&key))?;
        match key.as_str() {
            "name" if value.is_undefined() => {}
            "name" => name = value.as_string().ok_or_else(|| invalid_option("name", "must be a string"))?,
            other => return Err(invalid_option(other, "unknown load option (known: name)")),
        }
    }
    Ok(name)
}

/// An invalid load option's error.
fn invalid_option(key: &str, message: &str) -> JsValue {
    rivet_error(&Error::InvalidOption { backend: None, key: key.into(), message: message.into() })
}

/// `{ name, dtype, shape }` for each spec.
fn specs(specs: &[TensorSpec]) -> Array {
    specs
        .iter()
        .map(|spec| {
            let object = Object::new();
            set(&object, "name", &JsValue::from_str(&spec.name));
            set(&object, "dtype", &spec.dtype.map_or(JsValue::NULL, |d| JsValue::from_str(d.name())));
            let shape = spec.shape.as_ref().map_or(JsValue::NULL, |dims| {
                dims.iter()
                    .map(|d| match d {
                        rivet_core::Dim::Fixed(n) => JsValue::from_f64(*n as f64),
                        rivet_core::Dim::Dynamic(Some(name)) => JsValue::from_str(name),
                        rivet_core::Dim::Dynamic(None) => JsValue::NULL,
                    })
                    .collect::<Array>()
                    .into()
            });
            set(&object, "shape", &shape);
            JsValue::from(object)
        })
        .collect()
}

/// Sets `object[key] = value` on a plain object (which cannot fail).
fn set(object: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(object, &JsValue::from_str(key), value);
}
