//! Pooling: max, average and Lp over N-D windows, and the 2×2 stride-2 max pool read directly.

use super::window::*;
use super::{nan_max, with_values};
use candle_core::{bail, DType as CDType, Device, Result as CResult, Tensor as CTensor};

/// What a pooling window computes.
#[derive(Clone, Copy)]
pub(crate) enum PoolKind {
    Max,
    Avg { include_pad: bool },
    Lp(f64),
}

pub(crate) fn pool(x: &CTensor, w: &Window, kind: PoolKind, cache: &GeometryCache) -> CResult<CTensor> {
    if x.rank() < 3 {
        bail!("pooling needs N, C and spatial dims, got {:?}", x.dims());
    }
    let (n, c) = (x.dims()[0], x.dims()[1]);
    let spatial = &x.dims()[2..];
    let geo = cache.get(w, spatial)?;
    let plane: usize = spatial.iter().product();
    let mut dims = vec![n, c];
    dims.extend_from_slice(&geo.out);
    let dt = x.dtype();
    let plain_2d = spatial.len() == 2 && w.dilations.iter().all(|&d| d == 1);
    if matches!(kind, PoolKind::Max) && plain_2d && matches!(dt, CDType::F32 | CDType::F64) {
        let (_, begin, _) = w.resolve(spatial)?;
        let shape = Pool2d {
            input: [spatial[0], spatial[1]],
            out: [geo.out[0], geo.out[1]],
            kernel: [w.kernel[0], w.kernel[1]],
            strides: [w.strides[0], w.strides[1]],
            begin: [begin[0], begin[1]],
        };
        return match dt {
            CDType::F32 => CTensor::from_vec(
                with_values(x, |v: &[f32]| max_pool_2d_f32(v, &shape, n, c))??,
                dims,
                &Device::Cpu,
            ),
            _ => CTensor::from_vec(
                with_values(x, |v: &[f64]| max_pool_2d(v, &shape, n * c))??,
                dims,
                &Device::Cpu,
            ),
        };
    }
    if dt == CDType::F32 {
        let y = with_values(x, |v: &[f32]| pool_loop::<f32>(v, &geo, n * c, plane, kind))?;
        CTensor::from_vec(y, dims, &Device::Cpu)
    } else {
        let v: Vec<f64> = super::values(&x.to_dtype(CDType::F64)?)?;
        let y = pool_loop::<f64>(&v, &geo, n * c, plane, kind);
        CTensor::from_vec(y, dims, &Device::Cpu)?.to_dtype(dt)
    }
}

/// A 2-D pooling window without dilation, resolved against its input.
pub(crate) struct Pool2d {
    pub(crate) input: [usize; 2],
    pub(crate) out: [usize; 2],
    pub(crate) kernel: [usize; 2],
    pub(crate) strides: [usize; 2],
    pub(crate) begin: [usize; 2],
}

impl Pool2d {
    /// The output positions along `axis` whose window offset `q` falls inside the input.
    pub(crate) fn valid(&self, axis: usize, q: usize) -> std::ops::Range<usize> {
        let (s, pad, len) = (self.strides[axis], self.begin[axis], self.input[axis]);
        // o * s + q - pad must lie in [0, len).
        let lo = if pad > q { (pad - q).div_ceil(s) } else { 0 };
        let hi = if len + pad > q { ((len + pad - q - 1) / s + 1).min(self.out[axis]) } else { 0 };
        lo..hi.max(lo)
    }
}

/// Max pooling of every plane of `src` over plain 2-D windows, by direct index arithmetic: per
/// output row, the maximum down the window's input rows (contiguous, vectorized), then across
/// each window's columns.
pub(crate) fn max_pool_2d<T: candle_core::WithDType>(
    src: &[T],
    w: &Pool2d,
    planes: usize,
) -> CResult<Vec<T>> {
    let ([h, wd], [oh, ow]) = (w.input, w.out);
    if src.len() != planes * h * wd {
        bail!("MaxPool input does not hold its shape's elements");
    }
    if planes * oh * ow == 0 {
        return Ok(Vec::new());
    }
    if h * wd == 0 {
        bail!("MaxPool windows over an empty {h}x{wd} plane");
    }
    if w.kernel == [2, 2] && w.strides == [2, 2] && w.begin == [0, 0] && [oh, ow] == [h / 2, wd / 2] {
        return Ok(max_pool_2x2(src, planes, h, wd));
    }
    let lowest = T::from_f64(f64::NEG_INFINITY);
    let mut out = vec![lowest; planes * oh * ow];
    let cols: Vec<(usize, std::ops::Range<usize>)> =
        (0..w.kernel[1]).map(|kx| (kx, w.valid(1, kx))).collect();
    let (sy, sx, by, bx) = (w.strides[0], w.strides[1], w.begin[0], w.begin[1]);
    let mut down = vec![lowest; wd];
    for (plane_src, plane_out) in src.chunks_exact(h * wd).zip(out.chunks_exact_mut(oh * ow)) {
        for (oy, acc) in plane_out.chunks_exact_mut(ow).enumerate() {
            // Window rows oy * sy + ky - by inside [0, h).
            let top = oy * sy;
            let (ky_lo, ky_hi) = (by.saturating_sub(top), w.kernel[0].min((h + by).saturating_sub(top)));
            down.fill(lowest);
            for ky in ky_lo..ky_hi {
                let row = &plane_src[(top + ky - by) * wd..(top + ky - by + 1) * wd];
                down.iter_mut().zip(row).for_each(|(d, &v)| nan_max(d, v));
            }
            for (kx, range) in &cols {
                if range.is_empty() {
                    continue;
                }
                // Iterators, not indexing: no bounds check per element in this, the hot loop.
                let from = range.start * sx + kx - bx;
                if sx == 2 && from + 2 * range.len() <= wd {
                    let column = super::evens(&down[from..from + 2 * range.len()]);
                    acc[range.clone()].iter_mut().zip(column).for_each(|(a, &v)| nan_max(a, v));
                    continue;
                }
                let column = down[from..].iter().step_by(sx);
                acc[range.clone()].iter_mut().zip(column).for_each(|(a, &v)| nan_max(a, v));
            }
        }
    }
    Ok(out)
}

/// The mean of each of the `images × channels` planes of `plane` values in `src` (float32),
/// summed in f64 in order and times `1 / plane`, as Candle's mean of float64 values computes
/// it, then rounded to f32. Split by images ([`super::threads::split_batch`]), each thread
/// reading the images the layer before left in its cache.
pub(crate) fn global_average_f32(src: &[f32], images: usize, channels: usize, plane: usize) -> Vec<f32> {
    let planes = images * channels;
    let mut out: Vec<f32> = Vec::with_capacity(planes);
    if planes == 0 || src.len() != planes * plane {
        return out;
    }
    let scale = 1.0 / plane as f64;
    let outs = super::threads::Chunks::new(&mut out.spare_capacity_mut()[..planes], channels);
    super::threads::split_batch(images, 0, |split| {
        split.run_ranges(images, |i| {
            // SAFETY: image i is one item of the split, which takes chunk i once.
            let out = unsafe { outs.take(i) };
            let src = &src[i * channels * plane..(i + 1) * channels * plane];
            for (o, values) in out.iter_mut().zip(src.chunks_exact(plane)) {
                let sum = values.iter().fold(0f64, |s, &v| s + f64::from(v));
                o.write((sum * scale) as f32);
            }
        })
    });
    // SAFETY: the split ran every image's task, each of which wrote its chunk; a panic in one
    // resumes on this thread before here, and `out` is dropped at length 0.
    unsafe { out.set_len(planes) };
    out
}

/// The fewest input values (all channels) for which [`max_pool_2d_f32`] splits a single image
/// into bands of output rows, one per thread: the layer before, a convolution that large, split
/// its image into bands of rows too, so each thread reads mostly the rows its core wrote.
/// ResNet-18's pool at batch 1 and two threads (64 channels of 56×56) took 148 µs on the
/// calling thread, reading the other core's half, against 50 µs on one thread; the bundled
/// CNN's pools (16 channels of 32×32 and under) follow convolutions that run on the calling
/// thread.
const BAND_MIN_VALUES: usize = 1 << 16;

/// [`max_pool_2d`] of `images` images of `channels` planes on float32, with the same results
/// bit for bit, split by images ([`super::threads::split_batch`]). With AVX2 and a column
/// stride of 1 or 2, eight outputs at a time: per output row, the maximum down the window's
/// rows goes into a row bordered with −∞ (so every window reads its full width), then each
/// window column's values, every other one for stride 2, are compared eight at a time. A
/// plane runs in one function compiled for AVX2, with the 3-row maximum and the 3-wide
/// stride-2 columns (ResNet's pool) written out, and each output is written once, by the
/// thread that computes it, without zeroing first: ResNet-18's pool at batch 8 on one thread
/// took 0.71 ms with a call per row and step and 0.38 ms this way (ONNX Runtime: 0.36).
pub(crate) fn max_pool_2d_f32(src: &[f32], w: &Pool2d, images: usize, channels: usize) -> CResult<Vec<f32>> {
    let planes = images * channels;
    let ([h, wd], [oh, ow]) = (w.input, w.out);
    let (kw, sx, bx) = (w.kernel[1], w.strides[1], w.begin[1]);
    if src.len() != planes * h * wd || planes * oh * ow == 0 || h * wd == 0 || kw == 0 {
        return max_pool_2d(src, w, planes);
    }
    let two_by_two =
        w.kernel == [2, 2] && w.strides == [2, 2] && w.begin == [0, 0] && [oh, ow] == [h / 2, wd / 2];
    if !two_by_two && !(x86::available() && (sx == 1 || sx == 2)) {
        return max_pool_2d(src, w, planes);
    }
    // The bordered row: input column x at bx + x, −∞ elsewhere, and room for the last block of
    // eight outputs to read its full width (sixteen values past its first for stride 2).
    let len = (bx + wd).max(ow.div_ceil(8) * 8 * sx + kw + 16);
    let len_out = planes * oh * ow;
    let mut out: Vec<f32> = Vec::with_capacity(len_out);
    if !two_by_two && images == 1 && channels * h * wd >= BAND_MIN_VALUES {
        // One image, in bands of output rows over the team, each band's rows of every plane.
        let rows = super::threads::Chunks::new(&mut out.spare_capacity_mut()[..len_out], ow);
        super::threads::split(usize::MAX, |split| {
            let bands = split.threads().min(oh);
            split.run(bands, |t| {
                let band = t * oh / bands..(t + 1) * oh / bands;
                let mut down = vec![f32::NEG_INFINITY; len];
                for (c, plane_src) in src.chunks_exact(h * wd).enumerate() {
                    // SAFETY: band t of plane c is this task's alone.
                    let out = unsafe { rows.take_range(c * oh + band.start..c * oh + band.end) };
                    x86::plane(plane_src, w, &mut down, out, band.clone());
                }
            })
        });
        // SAFETY: the bands cover every output row of every plane, each written whole.
        unsafe { out.set_len(len_out) };
        return Ok(out);
    }
    if two_by_two && images == 1 {
        // One image: where the run splits its mid-sized kernels, in bands of output rows over
        // the threads, each band's rows of every plane, as the direct convolution before it
        // split its rows (the same share of rows per thread, so each band reads the rows the
        // same thread computed); else on the calling thread.
        let rows = super::threads::Chunks::new(&mut out.spare_capacity_mut()[..len_out], ow);
        super::threads::split_as_run(|split| {
            let bands = split.threads().min(oh);
            split.run(bands, |t| {
                let band = t * oh / bands..(t + 1) * oh / bands;
                for (c, plane_src) in src.chunks_exact(h * wd).enumerate() {
                    // SAFETY: band t of plane c is this task's alone.
                    let out = unsafe { rows.take_range(c * oh + band.start..c * oh + band.end) };
                    out.fill(std::mem::MaybeUninit::new(0.0));
                    // SAFETY: every element was just initialized.
                    let out = unsafe { &mut *(out as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
                    let src = &plane_src[2 * band.start * wd..2 * band.end * wd];
                    crate::kernels::wide(MaxPool2x2 { src, out, h: 2 * band.len(), wd });
                }
            })
        });
        // SAFETY: the bands cover every output row of every plane, each written whole.
        unsafe { out.set_len(len_out) };
        return Ok(out);
    }
    let outs = super::threads::Chunks::new(&mut out.spare_capacity_mut()[..len_out], channels * oh * ow);
    super::threads::split_batch(images, 0, |split| {
        split.run_ranges(images, |i| {
            let src = &src[i * channels * h * wd..(i + 1) * channels * h * wd];
            // SAFETY: image i is one item of the split, which takes chunk i once.
            let out = unsafe { outs.take(i) };
            if two_by_two {
                // Initialized by the thread that writes it: zeroed on the caller, the other
                // threads' images would first move from its cache to theirs.
                out.fill(std::mem::MaybeUninit::new(0.0));
                // SAFETY: every element was just initialized.
                let out = unsafe { &mut *(out as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
                crate::kernels::wide(MaxPool2x2 { src, out, h, wd });
                return;
            }
            let mut down = vec![f32::NEG_INFINITY; len];
            for (plane_src, plane_out) in src.chunks_exact(h * wd).zip(out.chunks_exact_mut(oh * ow)) {
                x86::plane(plane_src, w, &mut down, plane_out, 0..oh);
            }
        })
    });
    // SAFETY: the split ran every image's task, each of which wrote every element of its
    // chunk; a panic in one resumes on this thread before here, and `out` is dropped at
    // length 0.
    unsafe { out.set_len(len_out) };
    Ok(out)
}

/// AVX2 loops of [`max_pool_2d_f32`].
mod x86 {
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// Whether this CPU has AVX2.
    pub(super) fn available() -> bool {
        super::super::direct::available()
    }

    /// Output rows `rows` of one plane of [`super::max_pool_2d_f32`]: `src` (`w.input`) into
    /// `out` (those rows of `w.out`), row by row: the maximum down the window's rows into `down`, the bordered row (−∞ outside
    /// the input's columns, at least the output's columns rounded up to 8, times the column
    /// stride, plus the window's width and 16 long), then across the window's columns.
    /// [`available`] must hold, and the column stride be 1 or 2.
    pub(super) fn plane(
        src: &[f32],
        w: &super::Pool2d,
        down: &mut [f32],
        out: &mut [MaybeUninit<f32>],
        rows: std::ops::Range<usize>,
    ) {
        let ([h, wd], [oh, ow]) = (w.input, w.out);
        assert!(
            available()
                && (w.strides[1] == 1 || w.strides[1] == 2)
                && src.len() == h * wd
                && rows.start <= rows.end
                && rows.end <= oh
                && out.len() == rows.len() * ow
                && down.len() >= (w.begin[1] + wd).max(ow.div_ceil(8) * 8 * w.strides[1] + w.kernel[1] + 16),
            "max pool plane"
        );
        // SAFETY: the CPU has AVX2, and the extents are as the loops need (asserted).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            plane_avx2(src, w, down, out, rows.start)
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn plane_avx2(
        src: &[f32],
        w: &super::Pool2d,
        down: &mut [f32],
        out: &mut [MaybeUninit<f32>],
        first: usize,
    ) {
        let ([h, wd], [_, ow]) = (w.input, w.out);
        let ([kh, kw], [sy, sx], [by, bx]) = (w.kernel, w.strides, w.begin);
        for (oy, acc) in out.chunks_exact_mut(ow).enumerate() {
            // Window rows oy * sy + ky - by inside [0, h), for output row oy of the plane.
            let top = (first + oy) * sy;
            let (ky_lo, ky_hi) = (by.saturating_sub(top), kh.min((h + by).saturating_sub(top)));
            let dst = &mut down[bx..bx + wd];
            if ky_lo < ky_hi {
                rows_max(dst, &src[(top + ky_lo - by) * wd..(top + ky_hi - by) * wd]);
            } else {
                dst.fill(f32::NEG_INFINITY);
            }
            if kw == 3 && sx == 2 && ow >= 8 {
                columns_3_by_2(down, acc);
            } else {
                columns(down, kw, sx, acc);
            }
        }
    }

    /// `dst[i]` = the nan_max, in row order, of `rows[r * dst.len() + i]` over the whole rows
    /// of `rows` (at least one).
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2")]
    fn rows_max(dst: &mut [f32], rows: &[f32]) {
        let (wd, count) = (dst.len(), rows.len() / dst.len());
        assert!(count >= 1 && rows.len() == count * wd, "max pool rows");
        let n = wd / 8 * 8;
        let r = rows.as_ptr();
        for i in (0..n).step_by(8) {
            // SAFETY: i + 8 <= n <= wd, and row k's values lie at k * wd .. (k + 1) * wd for k
            // below count (asserted).
            unsafe {
                let mut m = _mm256_loadu_ps(r.add(i));
                if count == 3 {
                    // The commonest window, its two steps unrolled.
                    m = larger(m, _mm256_loadu_ps(r.add(wd + i)));
                    m = larger(m, _mm256_loadu_ps(r.add(2 * wd + i)));
                } else {
                    for k in 1..count {
                        m = larger(m, _mm256_loadu_ps(r.add(k * wd + i)));
                    }
                }
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), m);
            }
        }
        for (i, d) in dst.iter_mut().enumerate().skip(n) {
            *d = rows[i];
            for k in 1..count {
                super::nan_max(d, rows[k * wd + i]);
            }
        }
    }

    /// The evens of the 16 values from `at` (with `ODD`, the odds): per 128-bit lane
    /// `[a0 a2 b0 b2 | a4 a6 b4 b6]`, then the 64-bit pairs reordered to
    /// `[a0 a2 a4 a6 b0 b2 b4 b6]`.
    ///
    /// # Safety
    /// `at[0..16]` is readable.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn every_other<const ODD: bool>(at: *const f32) -> __m256 {
        // SAFETY: the caller's.
        let (a, b) = unsafe { (_mm256_loadu_ps(at), _mm256_loadu_ps(at.add(8))) };
        let pairs = if ODD {
            _mm256_shuffle_ps::<0b11_01_11_01>(a, b)
        } else {
            _mm256_shuffle_ps::<0b10_00_10_00>(a, b)
        };
        _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(pairs)))
    }

    /// [`columns`] for a window 3 wide at stride 2 and at least 8 outputs: per 8 outputs from
    /// `o`, the evens and odds of `down[2o..]` and the evens of `down[2o + 2..]`. The last
    /// block starts at `acc.len() - 8`, recomputing a few outputs with the same values, where
    /// [`columns`] finishes one value at a time.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2")]
    fn columns_3_by_2(down: &[f32], acc: &mut [MaybeUninit<f32>]) {
        let ow = acc.len();
        assert!(ow >= 8 && down.len() >= 2 * ow + 2, "max pool columns");
        let d = down.as_ptr();
        for o in (0..ow.div_ceil(8)).map(|b| (b * 8).min(ow - 8)) {
            // SAFETY: 2o + 2 + 16 <= 2 * ow + 2 <= down.len(), and o + 8 <= ow.
            unsafe {
                // larger(−∞, v) is v, so the window's first column starts the maximum.
                let m = larger(every_other::<false>(d.add(2 * o)), every_other::<true>(d.add(2 * o)));
                let m = larger(m, every_other::<false>(d.add(2 * o + 2)));
                _mm256_storeu_ps(acc.as_mut_ptr().add(o).cast(), m);
            }
        }
    }

    /// `acc[o]` = the nan_max, in window order from −∞, of `down[o * sx + kx]` for kx in
    /// 0..kw, `sx` 1 or 2, `down` holding `acc.len().div_ceil(8) * 8 * sx + kw + 16` values.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2")]
    fn columns(down: &[f32], kw: usize, sx: usize, acc: &mut [MaybeUninit<f32>]) {
        assert!(down.len() >= acc.len().div_ceil(8) * 8 * sx + kw + 16, "max pool columns");
        let n = acc.len() / 8 * 8;
        let d = down.as_ptr();
        for o in (0..n).step_by(8) {
            let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
            for kx in 0..kw {
                let at = o * sx + kx;
                // SAFETY: at + 16 <= n * sx + kw + 16 <= down.len() (asserted).
                let v = unsafe {
                    if sx == 2 {
                        every_other::<false>(d.add(at))
                    } else {
                        _mm256_loadu_ps(d.add(at))
                    }
                };
                m = larger(m, v);
            }
            // SAFETY: o + 8 <= n <= acc.len().
            unsafe { _mm256_storeu_ps(acc.as_mut_ptr().add(o).cast(), m) };
        }
        for (o, a) in acc.iter_mut().enumerate().skip(n) {
            let mut m = f32::NEG_INFINITY;
            for kx in 0..kw {
                super::nan_max(&mut m, down[o * sx + kx]);
            }
            a.write(m);
        }
    }

    /// One output row of a 2×2 max pool of stride 2: `top.len() / 2` values to `out`, each the
    /// larger of its row pairs' larger values (NaN wins, a tie keeps the first), as
    /// [`super::MaxPool2x2`] compares them, eight at a time: the even and odd columns of 16
    /// inputs apart, compared, and put back in order.
    ///
    /// # Safety
    /// AVX2 is available; `out` points at `top.len() / 2` values to write; `bottom` is as long
    /// as `top`.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn pairs(top: &[f32], bottom: &[f32], out: *mut f32) {
        let ow = top.len() / 2;
        assert!(bottom.len() == top.len(), "2x2 pool rows");
        let mut x = 0;
        while x + 8 <= ow {
            // Outputs x + [0 1 4 5 | 2 3 6 7], then in order.
            // SAFETY: 16 values from 2x on lie in each row (x + 8 <= ow).
            let v = unsafe { larger(half(top, x), half(bottom, x)) };
            let v = _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(v)));
            // SAFETY: outputs x .. x + 8 are the caller's to write.
            unsafe { _mm256_storeu_ps(out.add(x), v) };
            x += 8;
        }
        let one = |mut a: f32, v: f32| {
            crate::kernels::nan_max(&mut a, v);
            a
        };
        for x in x..ow {
            let v = one(one(top[2 * x], top[2 * x + 1]), one(bottom[2 * x], bottom[2 * x + 1]));
            // SAFETY: as above.
            unsafe { out.add(x).write(v) };
        }
    }

    /// [`super::max_pool_2x2_planes`] on AVX2: every pooled row of every plane in one call, so
    /// that one row's loads and comparisons overlap the last row's (a row of 8 outputs is one
    /// chain of them). The bundled CNN, which pools its first two convolutions' outputs
    /// this way, ran in 45.6 µs against 46.1 with a call per row (batch 1, one thread, the
    /// fastest of 30,000 runs in `rivet bench-worker`, three alternating pairs).
    ///
    /// # Safety
    /// AVX2 is available; `src` holds `planes` planes `src_plane` apart, each of `2 * rows`
    /// rows of `wd` values; `out` points at `planes` planes `out_plane` apart of `rows` rows of
    /// `wd / 2` values, which this call alone writes.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn planes(
        src: &[f32],
        src_plane: usize,
        out: *mut f32,
        out_plane: usize,
        [planes, rows, wd]: [usize; 3],
    ) {
        let ow = wd / 2;
        for c in 0..planes {
            for r in 0..rows {
                let top = &src[c * src_plane + 2 * r * wd..][..wd];
                let bottom = &src[c * src_plane + (2 * r + 1) * wd..][..wd];
                // SAFETY: AVX2 is available; row r of plane c's output is the caller's to write.
                unsafe { pairs(top, bottom, out.add(c * out_plane + r * ow)) };
            }
        }
    }

    /// The larger of columns 2k and 2k + 1 of the 16 values of `row` from `2 * x` on, for k in
    /// 0..8, in the order `[0 1 4 5 | 2 3 6 7]`.
    ///
    /// # Safety
    /// AVX2 is available; `row` holds `2 * x + 16` values.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn half(row: &[f32], x: usize) -> __m256 {
        // SAFETY: the caller's.
        let (a, b) = unsafe {
            (_mm256_loadu_ps(row.as_ptr().add(2 * x)), _mm256_loadu_ps(row.as_ptr().add(2 * x + 8)))
        };
        // [a0 a2 b0 b2 | a4 a6 b4 b6] against the odd columns.
        larger(_mm256_shuffle_ps::<0x88>(a, b), _mm256_shuffle_ps::<0xDD>(a, b))
    }

    /// [`super::nan_max`] on eight lanes: `v` where `v > a` or `v` is NaN, else `a`.
    ///
    /// `max(v, a)` is `v` where `v > a` and `a` otherwise (ties and a NaN `a` included); only a
    /// NaN `v` needs the blend. Written as a blend of `a` and `v` alone, LLVM stores the result
    /// of `max_into` as a masked store, which AMD's cores run many times slower.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2")]
    fn larger(a: __m256, v: __m256) -> __m256 {
        _mm256_blendv_ps(_mm256_max_ps(v, a), v, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v))
    }
}

/// [`max_pool_2d`] for the commonest window (PyTorch's `MaxPool2d(2)`): 2×2, stride 2, no
/// padding, odd last rows and columns dropped. Each output reads its two row pairs directly,
/// which is four times faster than the general loop, compiled for the CPU's widest vectors.
pub(crate) fn max_pool_2x2<T: candle_core::WithDType>(
    src: &[T],
    planes: usize,
    h: usize,
    wd: usize,
) -> Vec<T> {
    let mut out = vec![T::zero(); planes * (h / 2) * (wd / 2)];
    crate::kernels::wide(MaxPool2x2 { src, out: &mut out, h, wd });
    out
}

/// [`max_pool_2x2`]'s loop, to run through [`crate::kernels::wide`].
pub(crate) struct MaxPool2x2<'a, T> {
    pub(crate) src: &'a [T],
    pub(crate) out: &'a mut [T],
    pub(crate) h: usize,
    pub(crate) wd: usize,
}

impl<T: candle_core::WithDType> crate::kernels::WideKernel for MaxPool2x2<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let MaxPool2x2 { src, out, h, wd } = self;
        let (oh, ow) = (h / 2, wd / 2);
        if oh * ow == 0 {
            return;
        }
        let larger = |mut a: T, b: T| {
            nan_max(&mut a, b);
            a
        };
        for (plane_src, plane_out) in src.chunks_exact(h * wd).zip(out.chunks_exact_mut(oh * ow)) {
            for (rows, acc) in plane_src.chunks_exact(2 * wd).zip(plane_out.chunks_exact_mut(ow)) {
                let (top, bottom) = rows.split_at(wd);
                for ((a, t), b) in acc.iter_mut().zip(top.chunks_exact(2)).zip(bottom.chunks_exact(2)) {
                    *a = larger(larger(t[0], t[1]), larger(b[0], b[1]));
                }
            }
        }
    }
}

/// [`MaxPool2x2`] over some rows of each of `planes` planes: `rows` pooled rows of each, from
/// `src` (pairs of input rows `wd` wide, planes `src_plane` values apart) to `out` (`wd / 2`
/// values per row, planes `out_plane` apart), each output written once and none read; the
/// same comparisons as [`MaxPool2x2`], so the same bits. Compiled for the CPU's widest
/// vectors.
///
/// # Safety
/// `out` points at `planes` runs of `rows * (wd / 2)` values, `out_plane` apart, that nothing
/// else reads or writes meanwhile (the values between them are not touched); `src` holds
/// `(planes - 1) * src_plane + 2 * rows * wd` values.
pub(crate) unsafe fn max_pool_2x2_planes(
    src: &[f32],
    src_plane: usize,
    out: *mut f32,
    out_plane: usize,
    [planes, rows, wd]: [usize; 3],
) {
    if planes * rows * (wd / 2) == 0 {
        return;
    }
    assert!(src.len() >= (planes - 1) * src_plane + 2 * rows * wd, "2x2 pool extents");
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: AVX2 is available; the source's extents are asserted above, the output's
        // are the caller's word.
        unsafe { x86::planes(src, src_plane, out, out_plane, [planes, rows, wd]) };
        return;
    }
    crate::kernels::wide(MaxPool2x2Planes { src, src_plane, out, out_plane, planes, rows, wd });
}

/// [`max_pool_2x2_planes`]'s loop, to run through [`crate::kernels::wide`].
struct MaxPool2x2Planes<'a> {
    src: &'a [f32],
    src_plane: usize,
    out: *mut f32,
    out_plane: usize,
    planes: usize,
    rows: usize,
    wd: usize,
}

impl crate::kernels::WideKernel for MaxPool2x2Planes<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let MaxPool2x2Planes { src, src_plane, out, out_plane, planes, rows, wd } = self;
        let ow = wd / 2;
        let larger = |mut a: f32, b: f32| {
            nan_max(&mut a, b);
            a
        };
        for c in 0..planes {
            let plane_src = &src[c * src_plane..][..2 * rows * wd];
            for (r, pair) in plane_src.chunks_exact(2 * wd).enumerate() {
                let (top, bottom) = pair.split_at(wd);
                // SAFETY: row r of plane c's run, which `max_pool_2x2_planes`'s caller gives
                // this call alone; each value is written, never read.
                let acc = unsafe { out.add(c * out_plane + r * ow) };
                for (x, (t, b)) in top.chunks_exact(2).zip(bottom.chunks_exact(2)).take(ow).enumerate() {
                    // SAFETY: as above; x < ow.
                    unsafe { acc.add(x).write(larger(larger(t[0], t[1]), larger(b[0], b[1]))) };
                }
            }
        }
    }
}

/// Max, average or Lp pooling of every plane over the windows of `geo` (max in the input's
/// type, NaN propagated; average and Lp accumulated in f64).
pub(crate) fn pool_loop<T: candle_core::WithDType>(
    src: &[T],
    geo: &Geometry,
    planes: usize,
    plane: usize,
    kind: PoolKind,
) -> Vec<T> {
    let (p, k) = (geo.p, geo.k);
    let mut out: Vec<T> = Vec::with_capacity(planes * p);
    if let PoolKind::Max = kind {
        let lowest = T::from_f64(f64::NEG_INFINITY);
        let mut acc = vec![lowest; p];
        for nc in 0..planes {
            let plane_src = &src[nc * plane..(nc + 1) * plane];
            acc.iter_mut().for_each(|a| *a = lowest);
            for kk in 0..k {
                for (a, &o) in acc.iter_mut().zip(&geo.by_k[kk * p..(kk + 1) * p]) {
                    if o != PAD {
                        let v = plane_src[o as usize];
                        // `v != v` is NaN, which wins (and stays: NaN > x is false).
                        #[allow(clippy::eq_op)]
                        if v > *a || v != v {
                            *a = v;
                        }
                    }
                }
            }
            out.extend_from_slice(&acc);
        }
        return out;
    }
    let mut acc = vec![0f64; p];
    for nc in 0..planes {
        let plane_src = &src[nc * plane..(nc + 1) * plane];
        acc.iter_mut().for_each(|a| *a = 0.0);
        for kk in 0..k {
            for (a, &o) in acc.iter_mut().zip(&geo.by_k[kk * p..(kk + 1) * p]) {
                if o == PAD {
                    continue;
                }
                let v = plane_src[o as usize].to_f64();
                *a += match kind {
                    PoolKind::Lp(pw) => v.abs().powf(pw),
                    _ => v,
                };
            }
        }
        for (pp, a) in acc.iter().enumerate() {
            out.push(T::from_f64(match kind {
                PoolKind::Avg { include_pad } => {
                    *a / if include_pad { geo.padded[pp] } else { geo.inside[pp] } as f64
                }
                PoolKind::Lp(pw) => a.powf(1.0 / pw),
                PoolKind::Max => *a,
            }));
        }
    }
    out
}
