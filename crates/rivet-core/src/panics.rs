//! Catching panics that Rivet turns into errors, without printing them.
//!
//! Rust's default panic hook prints every panic to stderr, even one that is caught: a library's
//! internal `unwrap` (tch's thread setters, Candle's kernels) that Rivet catches and
//! reports as an error would still land in the host's log, with a backtrace under
//! `RUST_BACKTRACE=1`. [`catch_quietly`] catches like `catch_unwind` and keeps such panics off
//! stderr: the first call installs a hook that stays silent while the panicking thread is
//! inside a `catch_quietly`, and otherwise hands the panic to the hook that was installed
//! before it (so panics elsewhere in a Rust host print as they always did). Where panics abort
//! (`panic = "abort"`, as on WebAssembly) nothing can be caught, and every panic goes to the
//! hook installed before.

use std::any::Any;
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// How many `catch_quietly` calls this thread is inside.
    static QUIET: Cell<u32> = const { Cell::new(0) };
}

static INSTALL: Once = Once::new();

fn install_hook() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Where panics abort (WebAssembly), nothing catches them: the host hears of each.
            if QUIET.with(Cell::get) == 0 || cfg!(panic = "abort") {
                previous(info);
            }
        }));
    });
}

/// Runs `body`, returning its panic's payload as `Err` instead of unwinding, and printing
/// nothing for it (the caller reports it as an error).
pub fn catch_quietly<R>(body: impl FnOnce() -> R) -> Result<R, Box<dyn Any + Send + 'static>> {
    install_hook();
    QUIET.with(|q| q.set(q.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(body));
    QUIET.with(|q| q.set(q.get().saturating_sub(1)));
    result
}

/// The text of a panic payload (`&str` or `String`), or "unknown panic".
pub fn panic_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_panic_becomes_its_payload_and_nesting_is_counted() {
        let err = catch_quietly(|| -> u32 { panic!("inner {}", 7) }).unwrap_err();
        assert_eq!(panic_text(&*err), "inner 7");
        let outer = catch_quietly(|| {
            let inner = catch_quietly(|| panic!("nested"));
            assert!(inner.is_err());
            QUIET.with(Cell::get)
        });
        assert_eq!(outer.unwrap(), 1, "still quiet in the outer call after the inner one returned");
        assert_eq!(QUIET.with(Cell::get), 0);
        assert_eq!(catch_quietly(|| 5).unwrap(), 5);
    }
}
