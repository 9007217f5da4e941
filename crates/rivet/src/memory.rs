//! Keeping freed memory in the process between runs.
//!
//! A run allocates its intermediate tensors and frees them when it ends. glibc's allocator, the
//! default on Linux, hands large blocks (128 KiB and up) back to the system as soon as they are
//! freed, and trims freed memory from the top of its heaps, so the next run maps the same pages
//! again and takes a page fault on each first touch. On a small transformer encoder that is a
//! fifth of a Candle run's time (see `docs/candle.md`). ONNX Runtime and libtorch keep arenas
//! of their own; Candle allocates through Rust's global allocator, which is the C library's.
//!
//! [`keep_freed_memory`] raises glibc's two thresholds so that freed memory stays in the process
//! for the next run. The `rivet` binaries call it when they start; a program that embeds Rivet
//! decides for itself (the same settings are `MALLOC_MMAP_THRESHOLD_` and
//! `MALLOC_TRIM_THRESHOLD_` in the environment, or `mallopt(3)`).

/// Blocks up to this size come from the heap, where freed memory can be reused, instead of
/// their own mapping: 32 MiB, the largest glibc allows.
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// Freed memory at the top of a heap is returned to the system only beyond this much: 256 MiB.
pub const TRIM_THRESHOLD: usize = 256 << 20;

/// Asks the C library's allocator to keep freed memory for reuse ([`MMAP_THRESHOLD`],
/// [`TRIM_THRESHOLD`]), for the whole process. Returns whether it did: only with glibc, and not
/// when the environment already sets glibc's malloc tunables (`MALLOC_MMAP_THRESHOLD_`,
/// `MALLOC_TRIM_THRESHOLD_`, `MALLOC_TOP_PAD_` or `glibc.malloc.*` in `GLIBC_TUNABLES`), which
/// then stand. The resident size then stays at a run's peak between runs instead of dropping.
/// Call it early, before other threads allocate.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set = |name: &str| std::env::var_os(name).is_some();
        let tunables = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."));
        if set("MALLOC_MMAP_THRESHOLD_")
            || set("MALLOC_TRIM_THRESHOLD_")
            || set("MALLOC_TOP_PAD_")
            || tunables
        {
            return false;
        }
        // SAFETY: mallopt only sets the allocator's parameters; both values are in range.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
