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

/// The entry symbol's name, for messages.
fn entry_symbol() -> String {
    String::from_utf8_lossy(&PLUGIN_ENTRY_SYMBOL[..PLUGIN_ENTRY_SYMBOL.len() - 1]).into_owned()
}

/// What was found at one place a backend library was looked for.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// No file there.
    #[error("not found")]
    Missing,
    /// The dynamic loader refused the file (not a shared library, or a library it links is
    /// missing, as libtorch may be).
    #[error("found, but it does not load: {0}")]
    DoesNotLoad(String),
    /// A shared library without Rivet's entry point.
    #[error("found, but it exports no {}: not a Rivet backend library", entry_symbol())]
    NoEntry,
    /// The entry point returned NULL.
    #[error("found, but {} returned NULL", entry_symbol())]
    NullEntry,
    /// The entry has another layout version.
    #[error("found, but it has plugin ABI version {0} and this Rivet needs {PLUGIN_ABI_VERSION}")]
    AbiVersion(u32),
    /// Built by another compiler, for another target or from another Rivet.
    #[error("found, but it was built for \"{0}\" and this Rivet is \"{PLUGIN_ABI_KEY}\"; rebuild it")]
    Key(String),
    /// The types that cross differ in size or alignment.
    #[error("found, but its types are laid out differently from this Rivet's; rebuild it")]
    Layout,
    /// Making its backend panicked (the panic's message went to stderr).
    #[error("found, but making its backend panicked")]
    Panicked,
}

/// Why no backend library could be used.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// No place held a library that loads; each place looked, with what was found there.
    #[error(
        "cannot find a usable backend library {file}; looked in: {}. Put it in one of those folders, \
         add its folder to RIVET_BACKEND_PATH or set {override_var} to its path (Rivet's own backend \
         libraries are built by `cargo build` and installed by `make install`)",
        looked.iter().map(|(path, why)| format!("{} ({why})", path.display())).collect::<Vec<_>>().join("; ")
    )]
    NotFound {
        /// The library's file name.
        file: String,
        /// The variable that names its exact path.
        override_var: String,
        /// Each place looked, in order, and what was found there.
        looked: Vec<(PathBuf, Unusable)>,
    },
    /// The library loaded, but registers another backend than the name it was found by.
    #[error("{file} holds the backend \"{found}\", not \"{wanted}\"")]
    WrongBackend {
        /// The library's file name.
        file: String,
        /// The backend it holds.
        found: Backend,
        /// The backend asked for.
        wanted: Backend,
    },
}

/// Opens the backend library at `path` and checks its entry point; the error says what was
/// found there.
fn open(path: &Path) -> std::result::Result<Arc<dyn InferenceBackend>, Unusable> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: loading runs the library's initialisers; Rivet's backend libraries and the
    // libraries they link (libtorch) are trusted code, like any linked dependency.
    let library = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
        .map_err(|e| Unusable::DoesNotLoad(rivet_core::one_line(e)))?;
    // SAFETY: the symbol, when present, has the signature of `export_backend_plugin!`.
    let entry_fn = unsafe { library.get::<extern "C" fn() -> *const PluginEntry>(PLUGIN_ENTRY_SYMBOL) }
        .map_err(|_| Unusable::NoEntry)?;
    let entry = entry_fn();
    // SAFETY: the entry is a static of the library, and the library is never unloaded below.
    let entry = unsafe { entry.as_ref() }.ok_or(Unusable::NullEntry)?;
    if entry.abi_version != PLUGIN_ABI_VERSION {
        return Err(Unusable::AbiVersion(entry.abi_version));
    }
    // SAFETY: the version matched, so the key fields are laid out as this Rivet expects.
    let key = unsafe { entry.key() };
    if key != PLUGIN_ABI_KEY {
        return Err(Unusable::Key(key));
    }
    if entry.layout != layout_fingerprint() {
        return Err(Unusable::Layout);
    }
    let mut slot = std::mem::MaybeUninit::<Arc<dyn InferenceBackend>>::uninit();
    // SAFETY: key and layout match, so `create` is `export_backend_plugin!`'s, compiled by the
    // same compiler from the same rivet-core: it writes an `Arc<dyn InferenceBackend>`,
    // allocated by the same (system) allocator, into the slot and returns true, or returns
    // false when making the backend panicked.
    if !unsafe { (entry.create)(slot.as_mut_ptr().cast()) } {
        // Not unloaded: the panic may have left the library's state half made.
        std::mem::forget(library);
        return Err(Unusable::Panicked);
    }
    // SAFETY: `create` returned true: it wrote the slot.
    let backend = unsafe { slot.assume_init() };
    // Models and their code live in the library: it stays loaded for the life of the process.
    std::mem::forget(library);
    Ok(backend)
}

/// Finds and opens the backend library `file`, or an error listing every place looked.
pub fn load_backend_library(
    file: &str,
    override_var: &str,
) -> std::result::Result<Arc<dyn InferenceBackend>, LibraryError> {
    let mut looked = Vec::new();
    for path in search_paths(file, override_var) {
        let found = if path.is_file() { open(&path) } else { Err(Unusable::Missing) };
        match found {
            Ok(backend) => return Ok(backend),
            Err(why) => looked.push((path, why)),
        }
    }
    Err(LibraryError::NotFound { file: file.to_owned(), override_var: override_var.to_owned(), looked })
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
pub fn load_named(name: &Backend) -> std::result::Result<Arc<dyn InferenceBackend>, LibraryError> {
    let backend = load_backend_library(&library_file(name), &override_variable(name))?;
    if backend.name() != *name {
        return Err(LibraryError::WrongBackend {
            file: library_file(name),
            found: backend.name(),
            wanted: name.clone(),
        });
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
