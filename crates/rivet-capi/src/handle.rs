//! Ownership across the C ABI, in one place: every handle Rivet gives C (a model, a tensor,
//! outputs, options, a pipeline, an error, a DLPack export's context) is a Rust value boxed by
//! [`Handle::into_raw`] and turned back into its box, once, by [`Handle::from_raw`] (its
//! `*_free`, or the call that consumes it). No export boxes or unboxes a handle by hand.

/// A Rust value handed to C behind a pointer that C owns until it gives it back.
pub(crate) trait Handle: Sized {
    /// Boxes `self` and gives C the pointer. C gives it back, once, to the type's `*_free` (or
    /// to a call documented to consume it).
    fn into_raw(self) -> *mut Self {
        Box::into_raw(Box::new(self))
    }

    /// Gives C a value that is already boxed.
    fn boxed_into_raw(boxed: Box<Self>) -> *mut Self {
        Box::into_raw(boxed)
    }

    /// Boxes `self` into the out-parameter `out`.
    ///
    /// # Safety
    /// `out` is non-NULL and writable (the caller checked it, and the C caller's contract
    /// says it is writable).
    unsafe fn write_to(self, out: *mut *mut Self) {
        // SAFETY: as the function's contract says.
        unsafe { *out = self.into_raw() };
    }

    /// Takes back a pointer C gives back; `None` for NULL.
    ///
    /// # Safety
    /// `raw` is NULL or came from [`Handle::into_raw`] (or [`Handle::boxed_into_raw`]) of this
    /// type and has not been given back before: this is the one place it is given back.
    unsafe fn from_raw(raw: *mut Self) -> Option<Box<Self>> {
        // SAFETY: as the function's contract says: the box is rebuilt exactly once.
        (!raw.is_null()).then(|| unsafe { Box::from_raw(raw) })
    }

    /// Frees a handle C gives back (NULL is allowed and ignored), catching any panic of its
    /// drop: the body of every `*_free`.
    ///
    /// # Safety
    /// As [`Handle::from_raw`].
    unsafe fn free(raw: *mut Self) {
        // SAFETY: the caller's contract is `from_raw`'s.
        crate::error::ffi_infallible((), || drop(unsafe { Self::from_raw(raw) }));
    }
}

impl Handle for crate::error::rivet_error_t {}
impl Handle for crate::model::rivet_model_t {}
impl Handle for crate::options::rivet_load_options_t {}
impl Handle for crate::prep::rivet_pipeline_t {}
impl Handle for crate::run::rivet_outputs_t {}
impl Handle for crate::tensor::rivet_tensor_t {}
