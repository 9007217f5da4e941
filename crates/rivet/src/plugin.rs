//! Backends in their own shared library, loaded when the first model needs one (as Triton loads
//! a backend's library). The tch backend is one: `librivet_tch.so` links libtorch, and nothing
//! else in Rivet does, so libtorch enters a process only when it loads a TorchScript model. A
//! user's backend is another: built as a `cdylib` with `rivet_core::export_backend_plugin!` and
//! named `librivet_NAME.so`, it is found the first time `NAME` is asked for (`--backend NAME`,
//! `rivet_load_options_set_backend(options, "NAME")`).
//!
//! Where `librivet_NAME.so` is looked for, in order:
//! 1. `RIVET_<NAME>_LIBRARY` (upper case, `-` as `_`): the library file itself, and then no
//!    other place;
//! 2. each folder of `RIVET_BACKEND_PATH` (`:`-separated);
//! 3. the folder of the program or library that holds Rivet (the `rivet` binary, `librivet.so`,
//!    a test executable), then its `rivet/` subfolder, then, when that folder is cargo's `deps/`
//!    or `examples/`, its parent (so `cargo test` finds `target/debug/librivet_tch.so`).
//!
//! A missing library, one that fails to load (libtorch not found), or one built by another
//! compiler or Rivet version is a load error that lists every place looked and what was found.

use std::ffi::{c_void, CStr, OsStr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use rivet_core::plugin::{
    layout_fingerprint, PluginEntry, PLUGIN_ABI_KEY, PLUGIN_ABI_VERSION, PLUGIN_ENTRY_SYMBOL,
};
use rivet_core::{Backend, Error, InferenceBackend, LoadOptions, Model, ModelFormat, Result};

/// The file name of the tch backend library.
pub const TCH_LIBRARY: &str = "librivet_tch.so";

/// The folder holding the object (executable or shared library) this function is compiled into.
fn own_object_dir() -> Option<PathBuf> {
    // SAFETY: dladdr only reads the address; `info` is plain data it fills.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let address = own_object_dir as *const c_void;
    // SAFETY: as above.
    if unsafe { libc::dladdr(address, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr returned a NUL-terminated path that lives as long as the object.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    let path = PathBuf::from(OsStr::new(std::str::from_utf8(name.to_bytes()).ok()?));
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    path.parent().map(Path::to_path_buf)
}

/// Every candidate path for `file`, in search order, without duplicates.
pub fn search_paths(file: &str, override_var: &str) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(exact) = std::env::var_os(override_var).filter(|v| !v.is_empty()) {
        // An explicit path is the only candidate: no silent fallback to another copy.
        return vec![PathBuf::from(exact)];
    }
    if let Some(dirs) = std::env::var_os("RIVET_BACKEND_PATH") {
        paths
            .extend(std::env::split_paths(&dirs).filter(|d| !d.as_os_str().is_empty()).map(|d| d.join(file)));
    }
    let mut dirs = Vec::new();
    dirs.extend(own_object_dir());
    dirs.extend(std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)));
    for dir in dirs {
        paths.push(dir.join(file));
        paths.push(dir.join("rivet").join(file));
        if matches!(dir.file_name().and_then(OsStr::to_str), Some("deps" | "examples")) {
            if let Some(parent) = dir.parent() {
                paths.push(parent.join(file));
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    paths.retain(|p| seen.insert(p.clone()));
    paths
}

/// Opens the backend library at `path` and checks its entry point; the error says what was
/// found there.
fn open(path: &Path) -> std::result::Result<Arc<dyn InferenceBackend>, String> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: loading runs the library's initialisers; Rivet's backend libraries and the
    // libraries they link (libtorch) are trusted code, like any linked dependency.
    let library = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
        .map_err(|e| format!("found, but it does not load: {}", rivet_core::one_line(e)))?;
    let symbol_name =
        String::from_utf8_lossy(&PLUGIN_ENTRY_SYMBOL[..PLUGIN_ENTRY_SYMBOL.len() - 1]).into_owned();
    // SAFETY: the symbol, when present, has the signature of `export_backend_plugin!`.
    let entry_fn = unsafe { library.get::<extern "C" fn() -> *const PluginEntry>(PLUGIN_ENTRY_SYMBOL) }
        .map_err(|_| format!("found, but it exports no {symbol_name}: not a Rivet backend library"))?;
    let entry = entry_fn();
    // SAFETY: the entry is a static of the library, and the library is never unloaded below.
    let entry = unsafe { entry.as_ref() }.ok_or_else(|| format!("found, but {symbol_name} returned NULL"))?;
    if entry.abi_version != PLUGIN_ABI_VERSION {
        return Err(format!(
            "found, but it has plugin ABI version {} and this Rivet needs {PLUGIN_ABI_VERSION}",
            entry.abi_version
        ));
    }
    // SAFETY: the version matched, so the key fields are laid out as this Rivet expects.
    let key = unsafe { entry.key() };
    if key != PLUGIN_ABI_KEY {
        return Err(format!(
            "found, but it was built for \"{key}\" and this Rivet is \"{PLUGIN_ABI_KEY}\"; rebuild it"
        ));
    }
    if entry.layout != layout_fingerprint() {
        return Err("found, but its types are laid out differently from this Rivet's; rebuild it".into());
    }
    // SAFETY: key and layout match: the pointer is a Box<Arc<dyn InferenceBackend>> made by the
    // same compiler from the same rivet-core, with the same (system) allocator.
    let backend = unsafe { *Box::from_raw((entry.create)().cast::<Arc<dyn InferenceBackend>>()) };
    // Models and their code live in the library: it stays loaded for the life of the process.
    std::mem::forget(library);
    Ok(backend)
}

/// Finds and opens the backend library `file`, or an error listing every place looked.
pub fn load_backend_library(
    file: &str,
    override_var: &str,
) -> std::result::Result<Arc<dyn InferenceBackend>, String> {
    let mut looked = Vec::new();
    for path in search_paths(file, override_var) {
        if !path.is_file() {
            looked.push(format!("{} (not found)", path.display()));
            continue;
        }
        match open(&path) {
            Ok(backend) => return Ok(backend),
            Err(why) => looked.push(format!("{} ({why})", path.display())),
        }
    }
    Err(format!(
        "cannot find a usable backend library {file}; looked in: {}. Put it in one of those folders, \
         add its folder to RIVET_BACKEND_PATH or set {override_var} to its path (Rivet's own backend \
         libraries are built by `cargo build` and installed by `make install`)",
        looked.join("; ")
    ))
}

/// The library file a backend called `name` is looked for as: `librivet_NAME.so` (`-` as `_`).
pub fn library_file(name: &Backend) -> String {
    format!("librivet_{}.so", name.name().replace('-', "_"))
}

/// The variable naming a backend library's exact path: `RIVET_NAME_LIBRARY`.
pub fn override_variable(name: &Backend) -> String {
    format!("RIVET_{}_LIBRARY", name.name().replace('-', "_").to_ascii_uppercase())
}

/// Finds and opens the library of the backend called `name`; it must register under that name.
pub fn load_named(name: &Backend) -> std::result::Result<Arc<dyn InferenceBackend>, String> {
    let backend = load_backend_library(&library_file(name), &override_variable(name))?;
    if backend.name() != *name {
        return Err(format!(
            "{} holds the backend \"{}\", not \"{name}\"",
            library_file(name),
            backend.name()
        ));
    }
    Ok(backend)
}

/// The tch backend, standing in for `librivet_tch.so` until the first TorchScript model is
/// loaded, then forwarding to it.
#[derive(Default)]
pub struct TchPlugin {
    loaded: Mutex<Option<Arc<dyn InferenceBackend>>>,
}

impl TchPlugin {
    /// The stand-in; nothing is loaded yet.
    pub fn new() -> TchPlugin {
        TchPlugin::default()
    }

    /// Whether the library has been loaded (by this stand-in).
    pub fn is_loaded(&self) -> bool {
        self.loaded.lock().map(|l| l.is_some()).unwrap_or(false)
    }

    fn get(&self, path: &Path) -> Result<Arc<dyn InferenceBackend>> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(backend) = &*loaded {
            return Ok(Arc::clone(backend));
        }
        let backend = load_named(&Backend::TCH).map_err(|why| Error::load("tch", path, why))?;
        *loaded = Some(Arc::clone(&backend));
        Ok(backend)
    }
}

impl InferenceBackend for TchPlugin {
    fn name(&self) -> Backend {
        Backend::TCH
    }

    fn formats(&self) -> &[ModelFormat] {
        &[ModelFormat::TorchScript]
    }

    fn load(&self, path: &Path, options: &LoadOptions) -> Result<Arc<dyn Model>> {
        // Refuse a file that is not TorchScript before loading libtorch for it.
        rivet_core::format::expect_format(path, "tch", ModelFormat::TorchScript)?;
        self.get(path)?.load(path, options)
    }
}
