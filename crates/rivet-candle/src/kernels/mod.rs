//! The executor's compute loops, apart from ONNX's attributes and types (which `ops` reads):
//! matrix products, convolutions and their window geometry, pooling, softmax, normalization,
//! and running a loop compiled for the CPU's widest vectors.

/// A direct convolution kernel's register-tile loop, as assembly: `$count` (at least 1) times,
/// read an offset at `{offs}` into `{o}`, run the `$body` steps (assembly text using `{o}`,
/// `{w}` and the named input pointers `$s`) and its advances, the accumulators `$a` held in the
/// vector registers `$r`, and ymm12–ymm15 free for the steps. In the `moving` form, the
/// registers `$io` start at their values and the steps may change them (a prefetch pointer
/// that moves on). The full form also names the assembler constants `$k` the steps use and
/// the vector registers `$x` free for them (in place of ymm12–ymm15). The caller's `unsafe`
/// contract must cover every read the steps make.
#[cfg(target_arch = "x86_64")]
macro_rules! tile_loop_asm {
    ($offsets:expr, $count:expr, $weights:expr, [$($s:ident = $src:expr),*],
     [$($r:tt $a:expr),*]; $($body:tt)*) => {
        tile_loop_asm!($offsets, $count, $weights, [$($s = $src),*], moving []; [$($r $a),*]; $($body)*)
    };
    ($offsets:expr, $count:expr, $weights:expr, [$($s:ident = $src:expr),*], moving [$($io:ident = $iov:expr),*];
     [$($r:tt $a:expr),*]; $($body:tt)*) => {
        tile_loop_asm!($offsets, $count, $weights, [$($s = $src),*], moving [$($io = $iov),*],
            consts [], free ["ymm12", "ymm13", "ymm14", "ymm15"]; [$($r $a),*]; $($body)*)
    };
    ($offsets:expr, $count:expr, $weights:expr, [$($s:ident = $src:expr),*], moving [$($io:ident = $iov:expr),*],
     consts [$($k:ident = $kv:expr),*], free [$($x:tt),*]; [$($r:tt $a:expr),*]; $($body:tt)*) => {
        // SAFETY: the caller's contract covers every read; the loop runs `$count` (at least
        // 1) times, reading one offset and the weights of its steps each time.
        unsafe {
            std::arch::asm!(
                "2:",
                "mov {o}, qword ptr [{offs}]",
                $($body)*
                "dec {n}",
                "jnz 2b",
                offs = inout(reg) $offsets.as_ptr() => _,
                n = inout(reg) $count => _,
                w = inout(reg) $weights => _,
                o = out(reg) _,
                $($s = in(reg) $src,)*
                $($io = inout(reg) $iov => _,)*
                $($k = const $kv,)*
                $(inout($r) $a,)*
                $(out($x) _,)*
                options(nostack, readonly),
            );
        }
    };
}

pub(crate) mod binary;
pub(crate) mod conv;
pub(crate) mod direct;
pub(crate) mod direct_channels;
#[cfg(target_arch = "x86_64")]
pub(crate) mod direct_wide;
pub(crate) mod gemm;
pub(crate) mod norm;
pub(crate) mod pool;
pub(crate) mod softmax;
pub(crate) mod team;
pub(crate) mod threads;
pub(crate) mod tune;
pub(crate) mod window;

#[cfg(test)]
mod tests;

use candle_core::{bail, Device, Result as CResult, Tensor as CTensor, WithDType};

/// All values of a tensor, in row-major order.
pub fn values<T: WithDType>(t: &CTensor) -> CResult<Vec<T>> {
    t.flatten_all()?.to_vec1::<T>()
}

/// Runs `f` on `t`'s elements in row-major order, borrowed from its storage when it is
/// contiguous, else copied.
pub fn with_values<T: WithDType, R>(t: &CTensor, f: impl FnOnce(&[T]) -> R) -> CResult<R> {
    {
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets())
        {
            return Ok(f(&cpu.as_slice::<T>()?[start..end]));
        }
    }
    let v: Vec<T> = values(t)?;
    Ok(f(&v))
}

/// A tensor of `shape` from row-major values.
pub fn make<T: WithDType>(v: Vec<T>, shape: &[usize]) -> CResult<CTensor> {
    CTensor::from_vec(v, shape, &Device::Cpu)
}

/// The most bytes one tensor may take when its size comes from values in the model or its
/// inputs (ConstantOfShape, Expand, Tile, Range, Pad, Resize, OneHot, ConvTranspose, Gather):
/// beyond it a run fails with an error instead of trying to allocate.
pub const MAX_TENSOR_BYTES: usize = 1 << 30;

/// Checks that a tensor of `dims` with `elem` bytes per element stays within
/// [`MAX_TENSOR_BYTES`].
pub fn check_size(dims: &[usize], elem: usize) -> CResult<()> {
    let bytes = dims.iter().try_fold(elem, |a, &d| a.checked_mul(d));
    match bytes {
        Some(b) if b <= MAX_TENSOR_BYTES => Ok(()),
        _ => bail!("a tensor of shape {dims:?} would exceed {} MiB", MAX_TENSOR_BYTES >> 20),
    }
}

/// Row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// `a` becomes the larger of `a` and `v`, NaN propagated: `v != v` is NaN, which wins (and
/// stays: NaN > x is false). A select, not a branch: on real data the comparison is
/// unpredictable, and the select vectorizes.
/// Every other element of `s` from its first, as pairs: a loop over it compiles to vector
/// loads and shuffles, where `iter().step_by(2)` stays one value at a time.
#[inline(always)]
pub(crate) fn evens<T>(s: &[T]) -> impl Iterator<Item = &T> {
    s.chunks_exact(2).map(|pair| &pair[0])
}

#[inline(always)]
pub(crate) fn nan_max<T: PartialOrd + Copy>(a: &mut T, v: T) {
    #[allow(clippy::eq_op)]
    let take = (v > *a) | (v != v);
    *a = if take { v } else { *a };
}

/// A loop worth compiling for wider vectors: `run` is `#[inline(always)]` and calls only
/// `#[inline(always)]` code, so that [`wide`] compiles all of it for the CPU's widest vectors.
pub(crate) trait WideKernel {
    /// What the loop returns.
    type Output;
    /// The loop.
    fn run(self) -> Self::Output;
}

/// Runs `kernel` compiled for the widest vector instructions this CPU has (AVX-512, else AVX2
/// with FMA, else the build's baseline, SSE2 on x86-64): the executor's own loops (softmax,
/// pooling) otherwise handle 4 floats at a time. The answer is the same bit for bit whichever
/// runs: Rust neither reorders nor fuses floating-point operations, whatever the width.
///
/// WebAssembly has no run-time choice: the build decides. Built with `+simd128` (`make wasm`'s
/// SIMD build) the loop compiles to 128-bit SIMD; without it, to scalar code.
#[inline(always)]
pub(crate) fn wide<K: WideKernel>(kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        use std::is_x86_feature_detected as has;
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi1,bmi2,popcnt,lzcnt")]
        fn avx512<K: WideKernel>(kernel: K) -> K::Output {
            kernel.run()
        }
        #[target_feature(enable = "avx2,fma,bmi1,bmi2,popcnt,lzcnt")]
        fn avx2<K: WideKernel>(kernel: K) -> K::Output {
            kernel.run()
        }
        let avx2_too =
            has!("avx2") && has!("fma") && has!("bmi1") && has!("bmi2") && has!("popcnt") && has!("lzcnt");
        if avx2_too && has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
            // SAFETY: the CPU has every feature the function is compiled for.
            return unsafe { avx512(kernel) };
        }
        if avx2_too {
            // SAFETY: as above.
            return unsafe { avx2(kernel) };
        }
    }
    kernel.run()
}
