//! Backends by name: a backend defined here, registered at run time, is used like a built-in:
//! by name, in `Backend::AUTO`'s order, with its own options checked by it, and through the
//! same input validation.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use rivet::{
    Backend, Error, ErrorKind, InferenceBackend, LoadOptions, Model, ModelFormat, OptionInfo, Result,
    Signature, Tensor, TensorView,
};

/// ONNX Runtime with every output scaled by the `factor` option (default 2): a stand-in for a
/// user's own engine that reads ONNX.
struct Scaled;

const OPTIONS: &[OptionInfo] = &[OptionInfo { key: "factor", help: "what outputs are multiplied by" }];

impl InferenceBackend for Scaled {
    fn name(&self) -> Backend {
        Backend::new("scaled-ort").unwrap()
    }

    fn formats(&self) -> &[ModelFormat] {
        &[ModelFormat::Onnx]
    }

    fn options(&self) -> &[OptionInfo] {
        OPTIONS
    }

    fn load(&self, path: &Path, options: &LoadOptions) -> Result<Arc<dyn Model>> {
        let own = options.options_for("scaled-ort");
        own.check_known(OPTIONS)?;
        let factor = own.parse::<f32>("factor", "a number")?.unwrap_or(2.0);
        let inner = rivet::load(path, &LoadOptions::with_backend(Backend::ORT))?;
        Ok(Arc::new(ScaledModel { inner, factor }))
    }
}

struct ScaledModel {
    inner: Arc<dyn Model>,
    factor: f32,
}

impl Model for ScaledModel {
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn backend(&self) -> Backend {
        Backend::new("scaled-ort").unwrap()
    }

    fn execute(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        self.inner
            .execute(inputs)?
            .into_iter()
            .map(|t| {
                let scaled: Vec<f32> = t.as_slice::<f32>()?.iter().map(|v| v * self.factor).collect();
                Tensor::from_slice(t.shape(), &scaled)
            })
            .collect()
    }
}

fn register() {
    // Tests share the process: the first registers, the others find it registered.
    let _ = rivet::register_backend(Arc::new(Scaled));
}

#[test]
fn a_registered_backend_loads_by_name_and_runs_with_its_options() {
    register();
    let name = Backend::new("scaled-ort").unwrap();
    assert!(rivet::backends().contains(&name));
    let (_, onnx) = model_files("mlp");
    let case = &cases("mlp")[0];
    let expected = case.outputs[0].1.as_slice::<f32>().unwrap().to_vec();
    let tripled = LoadOptions::with_backend(name.clone()).option(&name, "factor", "3");
    let model = rivet::load(&onnx, &tripled).unwrap();
    assert_eq!(model.backend(), name);
    let out = run_case(&*model, case);
    for (got, want) in out.by_name("logits").unwrap().as_slice::<f32>().unwrap().iter().zip(&expected) {
        assert!((got - 3.0 * want).abs() <= 1e-4 + 1e-4 * want.abs(), "{got} vs 3 x {want}");
    }
    // Rivet validates inputs before the backend sees them.
    let wrong = Tensor::from_slice(&[1, 15], &[0f32; 15]).unwrap();
    let err = model.run_named(&[("features", &wrong)]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("input \"features\": expected dimension 1 to be 16"), "{err}");
}

#[test]
fn its_options_are_checked_by_it() {
    register();
    let name = Backend::new("scaled-ort").unwrap();
    let (_, onnx) = model_files("mlp");
    let typo = LoadOptions::with_backend(name.clone()).option(&name, "factr", "3");
    let err = rivet::load(&onnx, &typo).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidOption);
    assert_eq!(
        err.to_string(),
        "invalid option factr: scaled-ort: unknown option \"factr\"; known options: factor"
    );
    let bad = LoadOptions::with_backend(name.clone()).option(&name, "factor", "many");
    let err = rivet::load(&onnx, &bad).err().unwrap();
    assert_eq!(
        err.to_string(),
        "invalid option factor: scaled-ort: option factor = \"many\": expected a number"
    );
    // The built-ins check theirs the same way.
    let err = rivet::load(
        &onnx,
        &LoadOptions::with_backend(Backend::ORT).option(&Backend::ORT, "optimization", "max"),
    )
    .err()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "invalid option optimization: ort: option optimization = \"max\": expected disable, basic, extended or all"
    );
    let err = rivet::load(
        &onnx,
        &LoadOptions::with_backend(Backend::CANDLE).option(&Backend::CANDLE, "threads", "2"),
    )
    .err()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "invalid option threads: candle: unknown option \"threads\"; it takes no options"
    );
    // CLI/C form: BACKEND.KEY=VALUE, or KEY=VALUE for the chosen backend.
    let mut options = LoadOptions::default();
    options.set_option_str("scaled-ort.factor=4", &Backend::AUTO).unwrap();
    assert_eq!(options.options_for("scaled-ort").get("factor"), Some("4"));
    let err = options.set_option_str("factor=4", &Backend::AUTO).unwrap_err();
    assert!(err.to_string().contains("names no backend: write BACKEND.factor=4"), "{err}");
    assert!(options.set_option_str("factor", &name).unwrap_err().to_string().contains("is not KEY=VALUE"));
}

#[test]
fn auto_tries_it_in_the_order_given() {
    register();
    let name = Backend::new("scaled-ort").unwrap();
    let (pt, onnx) = model_files("mlp");
    // By default it comes after the built-ins, so ONNX still goes to ort.
    assert_eq!(rivet::load(&onnx, &LoadOptions::default()).unwrap().backend(), Backend::ORT);
    let order = vec![Backend::ORT, Backend::CANDLE, name.clone()];
    assert_eq!(rivet::backends_for(ModelFormat::Onnx, &LoadOptions::default()), order);
    let first = LoadOptions { auto_order: vec![name.clone(), Backend::ORT], ..LoadOptions::default() };
    assert_eq!(rivet::load(&onnx, &first).unwrap().backend(), name);
    // It does not read TorchScript, so Auto never offers it a .pt.
    assert_eq!(
        rivet::load(&pt, &first).err().unwrap().to_string(),
        format!("auto: unsupported TorchScript model {}: no registered backend reads it", pt.display())
    );
}

#[test]
fn names_are_checked_and_never_taken_twice() {
    register();
    let err = rivet::register_backend(Arc::new(Scaled)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidOption);
    assert!(err.to_string().contains("a backend named \"scaled-ort\" is already registered"), "{err}");
    assert!(matches!("Bad Name".parse::<Backend>(), Err(Error::InvalidOption { .. })));
    let err = rivet::backend(&Backend::AUTO).err().unwrap();
    assert!(err.to_string().contains("\"auto\" chooses among backends; it is not one"), "{err}");
    // Serialized by name.
    assert_eq!(serde_json::to_string(&Backend::TCH).unwrap(), "\"tch\"");
    assert_eq!(serde_json::from_str::<Backend>("\"libtorch\"").unwrap(), Backend::TCH);
}
