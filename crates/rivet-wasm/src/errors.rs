//! Rivet's errors as JavaScript `Error`s carrying the C ABI's code.

use js_sys::Reflect;
use rivet_core::{Error, ErrorKind};
use wasm_bindgen::JsValue;

/// The code of an argument of the wrong kind (the C ABI's `RIVET_ERROR_INVALID_ARGUMENT`).
const INVALID_ARGUMENT: u32 = 1;

/// A JavaScript `Error` named `RivetError` with `message`, `code` and `kind`.
fn js_error(message: &str, code: u32, kind: &str) -> JsValue {
    let error = js_sys::Error::new(message);
    error.set_name("RivetError");
    let _ = Reflect::set(&error, &"code".into(), &JsValue::from(code));
    let _ = Reflect::set(&error, &"kind".into(), &JsValue::from_str(kind));
    error.into()
}

/// `error` as a JavaScript `Error`, with the message native Rivet gives (causes included).
pub(crate) fn rivet_error(error: &Error) -> JsValue {
    let kind = error.kind();
    js_error(&error.message_with_causes(), kind.code(), kind_name(kind))
}

/// The code of a panic (the C ABI's `RIVET_ERROR_PANIC`).
const PANIC: u32 = 8;

/// A panic's error.
pub(crate) fn panic_error(message: &str) -> JsValue {
    js_error(message, PANIC, "panic")
}

/// An argument of the wrong kind (not an object, not a typed array).
pub(crate) fn invalid_argument(message: &str) -> JsValue {
    js_error(message, INVALID_ARGUMENT, "invalid_argument")
}

/// The snake-case name JSON reports give `kind`.
fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidInput => "invalid_input",
        ErrorKind::InvalidTensor => "invalid_tensor",
        ErrorKind::ModelLoad => "model_load",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::Backend => "backend",
        ErrorKind::Io => "io",
        ErrorKind::InvalidOption => "invalid_option",
        _ => "backend",
    }
}
