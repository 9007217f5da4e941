//! Backends built as their own shared library, loaded when a model first needs them.
//!
//! A backend library exports one C symbol, [`PLUGIN_ENTRY_SYMBOL`], returning a
//! [`PluginEntry`]: an ABI version, an ABI key and a constructor. The loader (`rivet`'s
//! `plugin` module) calls the constructor only when the version, the key and the layout
//! fingerprint all equal its own, so a library built by another compiler, another Rivet version
//! or for another target is refused with an error that says what it found.
//!
//! The backend crosses as a Rust trait object, which is sound because both sides are compiled
//! from the same `rivet-core` by the same compiler (that is what the key checks). Both sides must
//! use the system allocator (Rust's default), since each frees what the other allocated. A panic
//! must not unwind from one side into the other (their standard libraries differ), so
//! [`export_backend_plugin!`](crate::export_backend_plugin!) wraps the backend in [`fence`], which turns every panic into an
//! error on the plugin's side, and a panic while the backend is made is caught there too: the
//! loader then refuses the library, saying so.

use std::ffi::c_void;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::ModelFormat;
use crate::model::{Backend, InferenceBackend, LoadOptions, Model, OptionInfo};
use crate::signature::Signature;
use crate::tensor::{Tensor, TensorView};

/// The symbol every backend library exports (NUL-terminated, for `dlsym`).
pub const PLUGIN_ENTRY_SYMBOL: &[u8] = b"rivet_backend_plugin_v1\0";

/// The version of [`PluginEntry`]'s layout. Raised when the struct changes.
pub const PLUGIN_ABI_VERSION: u32 = 2;

/// What must be equal on both sides: Rivet's version, the compiler and the target.
pub const PLUGIN_ABI_KEY: &str = concat!(
    "rivet-core ",
    env!("CARGO_PKG_VERSION"),
    "; ",
    env!("RIVET_RUSTC_VERSION"),
    "; ",
    env!("RIVET_TARGET")
);

/// Sizes and alignments of the types that cross the boundary; equal on both sides or the
/// library is refused (a second check beside the key).
pub fn layout_fingerprint() -> [usize; 8] {
    use std::mem::{align_of, size_of};
    [
        size_of::<Tensor>(),
        size_of::<TensorView<'static>>(),
        size_of::<Error>(),
        size_of::<LoadOptions>(),
        size_of::<Signature>(),
        size_of::<Result<Arc<dyn Model>>>(),
        align_of::<Tensor>(),
        align_of::<Error>(),
    ]
}

/// What [`PLUGIN_ENTRY_SYMBOL`] returns. `#[repr(C)]`: only its first field may be read before
/// `abi_version` is checked.
#[repr(C)]
pub struct PluginEntry {
    /// [`PLUGIN_ABI_VERSION`] of the library.
    pub abi_version: u32,
    /// [`PLUGIN_ABI_KEY`] of the library, UTF-8, not NUL-terminated.
    pub abi_key: *const u8,
    /// Its length in bytes.
    pub abi_key_len: usize,
    /// [`layout_fingerprint`] of the library.
    pub layout: [usize; 8],
    /// Creates the backend and writes it, an `Arc<dyn InferenceBackend>`, into the
    /// uninitialised slot its argument points to (which the caller owns from then on); returns
    /// false, leaving the slot as it was, when making the backend panicked.
    pub create: unsafe extern "C" fn(slot: *mut c_void) -> bool,
}

// SAFETY: the entry is immutable once made: a pointer to static bytes and a function pointer.
unsafe impl Sync for PluginEntry {}
// SAFETY: as above.
unsafe impl Send for PluginEntry {}

impl PluginEntry {
    /// The library's key as text (lossy for non-UTF-8).
    ///
    /// # Safety
    /// `abi_key` must point to `abi_key_len` readable bytes (true of an entry whose
    /// `abi_version` is [`PLUGIN_ABI_VERSION`]).
    pub unsafe fn key(&self) -> String {
        // SAFETY: the caller's contract.
        let bytes = unsafe { std::slice::from_raw_parts(self.abi_key, self.abi_key_len) };
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// Exports `$backend` (an expression giving an `impl InferenceBackend`) from a `cdylib` as a
/// Rivet backend library, fenced against panics.
#[macro_export]
macro_rules! export_backend_plugin {
    ($backend:expr) => {
        /// Rivet's backend-library entry point.
        #[no_mangle]
        pub extern "C" fn rivet_backend_plugin_v1() -> *const $crate::plugin::PluginEntry {
            unsafe extern "C" fn create(slot: *mut ::std::ffi::c_void) -> bool {
                // A panic must not unwind into the loader: it becomes `false`.
                let made = ::std::panic::catch_unwind(|| {
                    let backend: ::std::sync::Arc<dyn $crate::InferenceBackend> =
                        $crate::plugin::fence(::std::sync::Arc::new($backend));
                    backend
                });
                let Ok(backend) = made else { return false };
                // SAFETY: the loader passes a slot for one `Arc<dyn InferenceBackend>`, sized
                // and aligned by the same compiler (the ABI key and layout were checked).
                unsafe { slot.cast::<::std::sync::Arc<dyn $crate::InferenceBackend>>().write(backend) };
                true
            }
            static ENTRY: ::std::sync::OnceLock<$crate::plugin::PluginEntry> = ::std::sync::OnceLock::new();
            ENTRY.get_or_init(|| $crate::plugin::PluginEntry {
                abi_version: $crate::plugin::PLUGIN_ABI_VERSION,
                abi_key: $crate::plugin::PLUGIN_ABI_KEY.as_ptr(),
                abi_key_len: $crate::plugin::PLUGIN_ABI_KEY.len(),
                layout: $crate::plugin::layout_fingerprint(),
                create,
            })
        }
    };
}

/// Wraps a backend so that a panic in it (or in its models) becomes an error instead of
/// unwinding into the caller.
pub fn fence(backend: Arc<dyn InferenceBackend>) -> Arc<dyn InferenceBackend> {
    Arc::new(Fenced(backend))
}

fn panic_error(backend: &str, during: &str, payload: &(dyn std::any::Any + Send)) -> Error {
    let what = crate::panics::panic_text(payload);
    Error::backend(backend, format!("panicked while {during}: {what}"))
}

struct Fenced(Arc<dyn InferenceBackend>);

impl InferenceBackend for Fenced {
    fn name(&self) -> Backend {
        self.0.name()
    }

    fn formats(&self) -> &[ModelFormat] {
        self.0.formats()
    }

    fn options(&self) -> &[OptionInfo] {
        self.0.options()
    }

    fn load(&self, path: &Path, options: &LoadOptions) -> Result<Arc<dyn Model>> {
        let model = crate::panics::catch_quietly(|| self.0.load(path, options))
            .map_err(|p| panic_error(self.0.name().name(), "loading", &*p))??;
        Ok(Arc::new(FencedModel(model)))
    }
}

struct FencedModel(Arc<dyn Model>);

impl Model for FencedModel {
    fn signature(&self) -> &Signature {
        self.0.signature()
    }

    fn backend(&self) -> Backend {
        self.0.backend()
    }

    fn output_names(&self, count: usize) -> Arc<[String]> {
        self.0.output_names(count)
    }

    fn execute(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        crate::panics::catch_quietly(|| self.0.execute(inputs))
            .map_err(|p| panic_error(self.0.backend().name(), "running", &*p))?
    }
}
