//! The registry of backends by name, and loading a model through it.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rivet_core::{format, Backend, Error, InferenceBackend, LoadOptions, Model, ModelFormat, Result};

/// The built-in backends of this build, in the order `Backend::AUTO` tries them.
#[allow(clippy::vec_init_then_push)]
fn builtins() -> Vec<Arc<dyn InferenceBackend>> {
    // Pushed one by one: each line is there only with its cargo feature.
    #[allow(unused_mut)]
    let mut list: Vec<Arc<dyn InferenceBackend>> = Vec::new();
    #[cfg(feature = "tch")]
    list.push(Arc::new(crate::plugin::TchPlugin::new()));
    #[cfg(feature = "ort")]
    list.push(Arc::new(rivet_ort::OrtBackend::new()));
    #[cfg(feature = "candle")]
    list.push(Arc::new(rivet_candle::CandleBackend::new()));
    list
}

fn registry() -> &'static RwLock<Vec<Arc<dyn InferenceBackend>>> {
    static REGISTRY: std::sync::OnceLock<RwLock<Vec<Arc<dyn InferenceBackend>>>> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(builtins()))
}

fn read() -> std::sync::RwLockReadGuard<'static, Vec<Arc<dyn InferenceBackend>>> {
    registry().read().unwrap_or_else(|p| p.into_inner())
}

/// Registers `backend` under its name, after the backends already registered (so
/// `Backend::AUTO` tries it after them unless [`LoadOptions::auto_order`] says otherwise).
/// From then on it is used like a built-in: [`load`], `Backend::AUTO`, `rivet compare`/`bench`
/// (in-process), the C ABI. Fails when the name is `auto` or already taken.
pub fn register_backend(backend: Arc<dyn InferenceBackend>) -> Result<()> {
    let name = backend.name();
    let mut list = registry().write().unwrap_or_else(|p| p.into_inner());
    name_is_free(&name, &list)?;
    list.push(backend);
    Ok(())
}

/// Whether [`register_backend`] would take a backend called `name`: an error when the name is
/// `auto` or already registered, with the message `register_backend` gives. For callers that
/// build a backend only once they know its name is free.
pub fn check_backend_name(name: &Backend) -> Result<()> {
    name_is_free(name, &read())
}

fn name_is_free(name: &Backend, list: &[Arc<dyn InferenceBackend>]) -> Result<()> {
    let taken = |message: String| Error::InvalidOption {
        backend: Some(name.to_string()),
        key: "backend".into(),
        message,
    };
    if name.is_auto() {
        return Err(taken("\"auto\" is reserved; register the backend under its own name".into()));
    }
    if list.iter().any(|b| b.name() == *name) {
        return Err(taken(format!("a backend named \"{name}\" is already registered")));
    }
    Ok(())
}

/// The backend registered as `name`. A name not registered yet is looked up as a backend
/// library, `librivet_NAME.so` (see [`crate::plugin`]), and registered when found; otherwise
/// the error lists the registered backends and where the library was looked for.
pub fn backend(name: &Backend) -> Result<Arc<dyn InferenceBackend>> {
    if let Some(found) = read().iter().find(|b| b.name() == *name) {
        return Ok(Arc::clone(found));
    }
    let builtin = ["tch", "ort", "candle"].contains(&name.name());
    let message = if name.is_auto() {
        "\"auto\" chooses among backends; it is not one".to_owned()
    } else if builtin {
        format!(
            "this build of Rivet was compiled without the \"{name}\" feature (registered: {})",
            names(&backends())
        )
    } else {
        match crate::plugin::load_named(name) {
            Ok(loaded) => {
                // Another thread may have registered it meanwhile: either copy serves.
                let _ = register_backend(Arc::clone(&loaded));
                return Ok(read().iter().find(|b| b.name() == *name).cloned().unwrap_or(loaded));
            }
            Err(why) => format!(
                "no backend is registered as \"{name}\" (registered: {}), and {why}",
                names(&backends())
            ),
        }
    };
    Err(Error::InvalidOption { backend: Some(name.to_string()), key: "backend".into(), message })
}

fn names(list: &[Backend]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    list.iter().map(Backend::name).collect::<Vec<_>>().join(", ")
}

/// The names of the registered backends, in registration order (built-ins first).
pub fn backends() -> Vec<Backend> {
    read().iter().map(|b| b.name()).collect()
}

/// The registered backends that read `format`, in the order `Backend::AUTO` tries them:
/// [`LoadOptions::auto_order`] when it is set, else registration order.
pub fn backends_for(format: ModelFormat, options: &LoadOptions) -> Vec<Backend> {
    let list = read();
    let reads = |name: &Backend| list.iter().any(|b| b.name() == *name && b.formats().contains(&format));
    let order: Vec<Backend> = if options.auto_order.is_empty() {
        list.iter().map(|b| b.name()).collect()
    } else {
        options.auto_order.clone()
    };
    order.into_iter().filter(reads).collect()
}

/// Fails when options are given for a backend that is not registered and has no library (a
/// typo would otherwise be ignored silently).
fn check_option_backends(options: &LoadOptions) -> Result<()> {
    for name in options.backend_options.keys() {
        if backend(name).is_err() {
            let registered = backends();
            let keys: Vec<&str> = options.backend_options[name].keys().map(String::as_str).collect();
            return Err(Error::InvalidOption {
                backend: Some(name.to_string()),
                key: format!("{name}.{}", keys.join(",")),
                message: format!(
                    "options given for backend \"{name}\", which is not registered (registered: {})",
                    names(&registered)
                ),
            });
        }
    }
    Ok(())
}

/// Loads the model at `path` with the backend `options.backend` names, or, for
/// [`Backend::AUTO`], the first registered backend that reads the file's format and loads it.
///
/// Under `AUTO`, when every candidate fails, the error lists each backend's reason.
pub fn load(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Arc<dyn Model>> {
    load_explained(path, options).map(|loaded| loaded.model)
}

/// A model [`load_explained`] loaded, with the backends `Backend::AUTO` tried before it.
pub struct Loaded {
    /// The model.
    pub model: Arc<dyn Model>,
    /// Each backend tried first that could not load the file, with why, in the order tried
    /// (empty when the first candidate, or the named backend, loaded it).
    pub skipped: Vec<(Backend, Error)>,
}

/// Like [`load`], also saying which backends `Backend::AUTO` skipped before the one that loaded
/// the model, and why (so a caller can report a fallback rather than hide it).
pub fn load_explained(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Loaded> {
    let path = path.as_ref();
    check_option_backends(options)?;
    if !options.backend.is_auto() {
        let model = backend(&options.backend)?.load(path, options)?;
        return Ok(Loaded { model, skipped: Vec::new() });
    }
    let format = format::detect_format(path, "auto")?;
    let mut attempts: Vec<(Backend, Error)> = Vec::new();
    for name in backends_for(format, options) {
        match backend(&name)?.load(path, options) {
            Ok(model) => return Ok(Loaded { model, skipped: attempts }),
            Err(err) => attempts.push((name, err)),
        }
    }
    if attempts.is_empty() {
        return Err(Error::unsupported(
            "auto",
            format!("{format} model {}: no registered backend reads it", path.display()),
        ));
    }
    let attempts = attempts.into_iter().map(|(name, err)| (name.to_string(), err)).collect();
    Err(Error::NoBackend { path: path.to_path_buf(), attempts })
}
