//! C++ scorers as Rivet models, and C++ scorer backends as Rivet backends.

use std::path::Path;
use std::sync::{Arc, Mutex};

use cxx::UniquePtr;
use rivet::{
    Backend, DType, Dim, Error, InferenceBackend, LoadOptions, Model, ModelFormat, OptionInfo, Result,
    Signature, Tensor, TensorSpec, TensorView,
};

use crate::convert::{from_dtype, to_dtype};
use crate::ffi;

/// A C++ object Rivet owns and calls from whichever thread runs a model.
struct Owned<T: cxx::memory::UniquePtrTarget>(UniquePtr<T>);

// SAFETY: the scorer contract (scorer.h) lets Rivet call a scorer and its backend from any
// thread; calls that are not declared thread-safe are serialized by a mutex below.
unsafe impl<T: cxx::memory::UniquePtrTarget> Send for Owned<T> {}
// SAFETY: as above: shared access is either serialized or declared thread-safe by the scorer.
unsafe impl<T: cxx::memory::UniquePtrTarget> Sync for Owned<T> {}

impl<T: cxx::memory::UniquePtrTarget> Owned<T> {
    fn get(&self) -> &T {
        // Never null: checked when wrapped.
        self.0.as_ref().expect("checked non-null when wrapped")
    }
}

/// How runs reach the scorer.
enum Access {
    /// The scorer is not thread-safe: one run at a time.
    Serialized(Mutex<Owned<ffi::Scorer>>),
    /// The scorer says it is thread-safe: runs call it concurrently.
    Concurrent(Owned<ffi::Scorer>),
}

/// A C++ `rivet::Scorer` as a Rivet model: its inputs are checked against its declared
/// signature by [`Signature::bind`] like any model's, and its outputs against the declared
/// outputs before anyone sees them.
pub struct ScorerModel {
    backend: Backend,
    signature: Signature,
    access: Access,
}

/// `auto` chooses among backends; no backend is called that.
fn auto_is_not_a_name() -> Error {
    Error::InvalidOption {
        backend: None,
        key: "backend".into(),
        message: "\"auto\" is not a name a backend can take".into(),
    }
}

/// A message for a C++ exception thrown by a scorer or its backend.
fn cxx_error(backend: &Backend, during: &str, err: &cxx::Exception) -> Error {
    Error::backend(backend.name(), format!("the C++ scorer threw while {during}: {}", err.what()))
}

/// Rivet's spec of one C++ `TensorSpec`.
fn from_spec(backend: &Backend, spec: &ffi::TensorSpec) -> Result<TensorSpec> {
    let dtype = to_dtype(spec.dtype).ok_or_else(|| {
        Error::backend(backend.name(), format!("the scorer declares \"{}\" with an unknown dtype", spec.name))
    })?;
    let shape = spec
        .shape
        .iter()
        .map(|&d| match d {
            -1 => Ok(Dim::Dynamic(None)),
            d => usize::try_from(d).map(Dim::Fixed).map_err(|_| {
                Error::backend(
                    backend.name(),
                    format!("the scorer declares \"{}\" with dimension {d} (use -1 for any size)", spec.name),
                )
            }),
        })
        .collect::<Result<Vec<Dim>>>()?;
    Ok(TensorSpec::new(spec.name.clone(), dtype, shape))
}

impl ScorerModel {
    /// Wraps `scorer` as a model of the backend `backend`, reading its signature once.
    pub fn new(backend: Backend, scorer: UniquePtr<ffi::Scorer>) -> Result<ScorerModel> {
        if backend.is_auto() {
            return Err(auto_is_not_a_name());
        }
        let Some(object) = scorer.as_ref() else {
            return Err(Error::backend(backend.name(), "no scorer (a null std::unique_ptr)"));
        };
        let specs = |list: std::result::Result<Vec<ffi::TensorSpec>, cxx::Exception>, which: &str| {
            let list = list.map_err(|e| cxx_error(&backend, &format!("listing its {which}"), &e))?;
            list.iter().map(|s| from_spec(&backend, s)).collect::<Result<Vec<_>>>()
        };
        let signature = Signature {
            inputs: specs(ffi::scorer_inputs(object), "inputs")?,
            outputs: specs(ffi::scorer_outputs(object), "outputs")?,
        };
        if signature.outputs.is_empty() {
            return Err(Error::backend(backend.name(), "the scorer declares no outputs"));
        }
        let thread_safe = ffi::scorer_thread_safe(object)
            .map_err(|e| cxx_error(&backend, "answering thread_safe()", &e))?;
        let owned = Owned(scorer);
        let access =
            if thread_safe { Access::Concurrent(owned) } else { Access::Serialized(Mutex::new(owned)) };
        Ok(ScorerModel { backend, signature, access })
    }

    /// Whether runs call the scorer concurrently (it declared itself thread-safe).
    pub fn is_concurrent(&self) -> bool {
        matches!(self.access, Access::Concurrent(_))
    }

    fn call(&self, refs: &[ffi::TensorRef<'_>]) -> Result<UniquePtr<ffi::ScorerOutputs>> {
        let result = match &self.access {
            Access::Concurrent(scorer) => ffi::run_scorer(scorer.get(), refs),
            Access::Serialized(scorer) => {
                // A scorer that threw keeps serving: poisoning only means a panic, caught above.
                let guard = scorer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                ffi::run_scorer(guard.get(), refs)
            }
        };
        let outputs = result.map_err(|e| cxx_error(&self.backend, "running", &e))?;
        if outputs.is_null() {
            return Err(Error::backend(self.backend.name(), "the scorer's run returned no outputs"));
        }
        Ok(outputs)
    }

    /// Output `index` of a run as a tensor over the scorer's own memory, checked against the
    /// declared output.
    fn output(&self, outputs: &Arc<Owned<ffi::ScorerOutputs>>, index: usize) -> Result<Tensor> {
        let spec = &self.signature.outputs[index];
        let what = |message: String| {
            Error::backend(self.backend.name(), format!("output \"{}\": {message}", spec.name))
        };
        let raw = outputs.get();
        let dtype = ffi::output_dtype(raw, index);
        let dtype: DType =
            to_dtype(dtype).ok_or_else(|| what(format!("unknown dtype value {}", dtype.repr)))?;
        if Some(dtype) != spec.dtype {
            return Err(what(format!(
                "the scorer returned {dtype}, declared {}",
                spec.dtype.map_or("unknown".into(), |d| d.to_string())
            )));
        }
        let shape = ffi::output_shape(raw, index)
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<Vec<usize>, _>>()
            .map_err(|_| what("the scorer returned a negative dimension".into()))?;
        let dims = spec.shape.as_deref().unwrap_or_default();
        let fits = shape.len() == dims.len()
            && dims.iter().zip(&shape).all(|(d, &n)| d.fixed().is_none_or(|f| f == n));
        if !fits {
            let declared: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
            return Err(what(format!(
                "the scorer returned shape {shape:?}, declared [{}]",
                declared.join(", ")
            )));
        }
        let data = ffi::output_data(raw, index);
        let keep = Arc::clone(outputs);
        // SAFETY: the bytes belong to the ScorerOutputs that `keep` holds; they stay valid and
        // unchanged until the release drops it (nobody mutates a ScorerOutput once returned).
        unsafe {
            Tensor::from_foreign(dtype, &shape, data.as_ptr(), data.len(), Box::new(move || drop(keep)))
        }
        .map_err(|e| what(e.to_string()))
    }
}

impl Model for ScorerModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn backend(&self) -> Backend {
        self.backend.clone()
    }

    fn execute(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        // Inputs arrive bound to the signature: one per declared input, in order.
        let shapes: Vec<Vec<i64>> =
            inputs.iter().map(|v| v.shape().iter().map(|&d| d as i64).collect()).collect();
        let refs: Vec<ffi::TensorRef<'_>> = inputs
            .iter()
            .zip(&shapes)
            .zip(&self.signature.inputs)
            .map(|((view, shape), spec)| ffi::TensorRef {
                name: &spec.name,
                dtype: from_dtype(view.dtype()),
                shape,
                data: view.as_bytes(),
            })
            .collect();
        let outputs = Arc::new(Owned(self.call(&refs)?));
        let count = ffi::output_count(outputs.get());
        if count != self.signature.outputs.len() {
            return Err(Error::backend(
                self.backend.name(),
                format!("the scorer returned {count} output(s), declared {}", self.signature.outputs.len()),
            ));
        }
        (0..count).map(|i| self.output(&outputs, i)).collect()
    }
}

/// A C++ `rivet::ScorerBackend` as a Rivet backend: `load(path)` asks it for a scorer and wraps
/// that as a [`ScorerModel`]. Loads are serialized (the C++ factory need not be thread-safe).
pub struct ScorerBackendAdapter {
    name: Backend,
    backend: Mutex<Owned<ffi::ScorerBackend>>,
    options: Vec<OptionInfo>,
}

impl ScorerBackendAdapter {
    /// Wraps `backend` under `name`, reading its option keys once.
    pub fn new(name: &str, backend: UniquePtr<ffi::ScorerBackend>) -> Result<ScorerBackendAdapter> {
        let name = Backend::new(name)?;
        if name.is_auto() {
            return Err(auto_is_not_a_name());
        }
        let Some(object) = backend.as_ref() else {
            return Err(Error::backend(name.name(), "no backend (a null std::unique_ptr)"));
        };
        let keys =
            ffi::backend_option_keys(object).map_err(|e| cxx_error(&name, "listing its option keys", &e))?;
        // The registry keeps a backend for the life of the process, so its option keys can live
        // as long (a handful of short strings per registered backend).
        let options = keys
            .into_iter()
            .map(|key| OptionInfo {
                key: Box::leak(key.into_boxed_str()),
                help: "an option of the C++ backend",
            })
            .collect();
        Ok(ScorerBackendAdapter { name, backend: Mutex::new(Owned(backend)), options })
    }
}

impl InferenceBackend for ScorerBackendAdapter {
    fn name(&self) -> Backend {
        self.name.clone()
    }

    /// It reads its own files; it is chosen by name.
    fn formats(&self) -> &[ModelFormat] {
        &[]
    }

    fn options(&self) -> &[OptionInfo] {
        &self.options
    }

    fn load(&self, path: &Path, options: &LoadOptions) -> Result<Arc<dyn Model>> {
        let own = options.options_for(self.name.name());
        own.check_known(&self.options)?;
        let settings: Vec<ffi::BackendOption> =
            own.iter().map(|(k, v)| ffi::BackendOption { key: k.into(), value: v.into() }).collect();
        let text =
            path.to_str().ok_or_else(|| Error::load(self.name.name(), path, "the path is not UTF-8"))?;
        let scorer = {
            let backend = self.backend.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            ffi::load_scorer(backend.get(), text, &settings)
        }
        .map_err(|e| Error::load(self.name.name(), path, e.what()))?;
        Ok(Arc::new(ScorerModel::new(self.name.clone(), scorer)?))
    }
}

/// Exports a C++ `rivet::ScorerBackend` from a `cdylib` as the Rivet backend library
/// `librivet_NAME.so`, so the `rivet` CLI (`--backend NAME`) and any Rivet program find it by
/// name. `$make` is an `extern "C"` function of the C++ code returning a new
/// `rivet::ScorerBackend*` (Rivet takes ownership).
///
/// ```ignore
/// extern "C" {
///     fn legacy_mlp_backend() -> *mut rivet_cxx::ffi::ScorerBackend;
/// }
/// rivet_cxx::export_scorer_backend!("legacy_mlp", legacy_mlp_backend);
/// ```
#[macro_export]
macro_rules! export_scorer_backend {
    ($name:expr, $make:path) => {
        $crate::__rivet_core::export_backend_plugin!($crate::ScorerLibrary::new($name, || {
            // SAFETY: `$make` returns a heap object made with `new` (or null), ownership passing to us.
            unsafe { $crate::cxx::UniquePtr::from_raw($make()) }
        }));
    };
}

/// What [`export_scorer_backend!`] exports: the adapter, or, when the C++ backend could not be
/// made, a backend whose every load says why.
#[doc(hidden)]
pub struct ScorerLibrary {
    name: Backend,
    adapter: Result<ScorerBackendAdapter>,
}

impl ScorerLibrary {
    /// Makes the C++ backend with `make` and wraps it under `name`.
    pub fn new(name: &str, make: impl FnOnce() -> UniquePtr<ffi::ScorerBackend>) -> ScorerLibrary {
        let adapter = ScorerBackendAdapter::new(name, make());
        ScorerLibrary { name: Backend::new(name).unwrap_or_default(), adapter }
    }
}

impl InferenceBackend for ScorerLibrary {
    fn name(&self) -> Backend {
        self.name.clone()
    }

    fn formats(&self) -> &[ModelFormat] {
        &[]
    }

    fn options(&self) -> &[OptionInfo] {
        self.adapter.as_ref().map_or(&[], |a| a.options())
    }

    fn load(&self, path: &Path, options: &LoadOptions) -> Result<Arc<dyn Model>> {
        match &self.adapter {
            Ok(adapter) => adapter.load(path, options),
            Err(why) => Err(Error::load(self.name.name(), path, why)),
        }
    }
}
