//! Convolutions: im2col into a per-thread scratch matrix and one product per group, images
//! side by side for small planes, bias and Relu in one pass; transposed convolution.
//!
//! With several threads, a convolution splits once (over the model's team, see
//! [`super::team`], or the rayon pool) and each task runs serial products: over images when
//! there are as many as threads, else over blocks of output channels (the im2col matrix split
//! by input channel first). That keeps each product's register tiles as full as on one thread,
//! where splitting inside the gemm crate leaves them half empty and hands off work once per
//! product. Every output element is the same sum in the same order
//! either way (the gemm crate's depth blocking depends on the depth alone), so the results are
//! bit for bit those of one thread.

use super::gemm::*;
use super::threads::{self, Chunks, Split};
use super::window::*;
use super::with_values;
use candle_core::{bail, DType as CDType, Device, Result as CResult, Tensor as CTensor};

/// Rows of output channels per task when `rows` of them are split over `threads`: whole
/// multiples of 8 (the gemm crate's tile across channels is 6 or 8 wide), at least 8.
fn rows_per_task(rows: usize, threads: usize) -> usize {
    rows.div_ceil(threads).next_multiple_of(8).min(rows).max(1)
}

/// Columns of output positions per task when `cols` of them are split over `threads`: whole
/// multiples of 16 (the gemm crate's widest register tile), at least 16.
fn cols_per_task(cols: usize, threads: usize) -> usize {
    cols.div_ceil(threads).next_multiple_of(16).min(cols).max(1)
}

/// A pointer to one output matrix that a split's tasks share, each writing its own columns.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut<T>(*mut T);

// SAFETY: the tasks that share it write disjoint elements (see its uses), as they would through
// `chunks_mut`; `T` values may move between threads.
unsafe impl<T: Send> Send for SharedOut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedOut<T> {}

impl<T> SharedOut<T> {
    /// The start of `out`, which its tasks then share.
    pub(crate) fn new(out: &mut [std::mem::MaybeUninit<T>]) -> Self {
        SharedOut(out.as_mut_ptr().cast::<T>())
    }

    /// The pointer (a method, so that a closure captures the whole `SharedOut`).
    pub(crate) fn at(&self, offset: usize) -> *mut T {
        self.0.wrapping_add(offset)
    }
}

/// `dst = lhs · rhs` for row-major `lhs` (m×k), `rhs` (k×n) and `dst` (m×n), every element of
/// `dst` written and none read (so it may start uninitialized; a convolution's k, channels
/// times window size, is never 0).
fn row_major_product<T: candle_core::WithDType>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [std::mem::MaybeUninit<T>],
    lhs: &[T],
    rhs: &[T],
    par: gemm::Parallelism,
) {
    assert!(lhs.len() >= m * k && rhs.len() >= k * n && dst.len() >= m * n, "product extents");
    // SAFETY: `lhs` holds m×k, `rhs` k×n and `dst` m×n elements, each row-major (column stride
    // 1, row strides k, n and n), exactly the extents gemm reads and writes; `dst` is borrowed
    // mutably, so it overlaps neither input. With `read_dst` false, gemm writes every element
    // of `dst` and reads none.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().cast::<T>(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            T::zero(),
            T::from_f64(1.0),
            false,
            false,
            false,
            par,
        );
    }
}

/// Element types a convolution runs in, each with a per-thread scratch buffer for its im2col
/// matrices: kept between runs, so that a convolution neither maps nor faults in fresh pages
/// each time. A buffer larger than [`SCRATCH_KEEP`] elements is not kept.
pub(crate) trait ConvElem: candle_core::WithDType + Send + Sync {
    fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
}

/// The largest im2col buffer (in elements) a thread keeps between runs: 16 Mi elements.
pub(crate) const SCRATCH_KEEP: usize = 1 << 24;

macro_rules! conv_elem {
    ($t:ty, $name:ident) => {
        thread_local! {
            static $name: std::cell::RefCell<Vec<$t>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        impl ConvElem for $t {
            fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [$t]) -> R) -> R {
                if len > SCRATCH_KEEP {
                    return f(&mut vec![0.0; len]);
                }
                $name.with(|b| match b.try_borrow_mut() {
                    Ok(mut b) => {
                        if b.len() < len {
                            b.resize(len, 0.0);
                        }
                        f(&mut b[..len])
                    }
                    // Not expected (a convolution does not run another inside it), but safe.
                    Err(_) => f(&mut vec![0.0; len]),
                })
            }
        }
    };
}
conv_elem!(f32, SCRATCH_F32);
conv_elem!(f64, SCRATCH_F64);

/// Where a padded image's values go: which kernel's padding it is (its first value), then what
/// says which of a padded buffer's elements that padding writes (the input's extents, the
/// padded extents, where the input starts), so that two paddings of the same layout write the
/// same elements and leave the same ones zero.
pub(crate) type PadLayout = [usize; 9];

/// The most padded buffers a thread keeps between runs, and the most elements in all of them.
const PADDED_KEEP: usize = 8;
const PADDED_KEEP_VALUES: usize = 1 << 22;

thread_local! {
    static PADDED: std::cell::RefCell<Vec<(PadLayout, Vec<f32>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with a buffer of `len` values for a padded image of `layout`, in which every
/// element a padding of that layout does not write is zero: the one this thread last used for
/// that layout, kept between runs with its borders still zero (a padding writes only the
/// input's values into it, never zeroing the whole buffer), else a new zeroed one. Up to
/// [`PADDED_KEEP`] buffers of [`PADDED_KEEP_VALUES`] values in all are kept, the least
/// recently used dropped first. `f` must write only the elements its layout pads.
pub(crate) fn with_padded<R>(layout: PadLayout, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    if len > PADDED_KEEP_VALUES {
        return f(&mut vec![0.0; len]);
    }
    PADDED.with(|kept| {
        let Ok(mut kept) = kept.try_borrow_mut() else {
            // Not expected (a padding does not run another inside it), but safe.
            return f(&mut vec![0.0; len]);
        };
        let buf = match kept.iter().position(|(l, b)| *l == layout && b.len() == len) {
            Some(i) => kept.remove(i).1,
            None => {
                while kept.len() >= PADDED_KEEP
                    || kept.iter().map(|(_, b)| b.len()).sum::<usize>() + len > PADDED_KEEP_VALUES
                {
                    kept.remove(0);
                }
                vec![0.0; len]
            }
        };
        kept.push((layout, buf));
        let last = kept.len() - 1;
        f(&mut kept[last].1)
    })
}

/// General N-D convolution, image by image: im2col into a per-thread scratch matrix (skipped
/// for a 1×1 convolution that reads every input position), then one matrix product per group
/// written straight into the output, which starts as the bias; a float32 2-D convolution that
/// a direct kernel takes runs there instead. With a `residual`, only a direct kernel runs it
/// (adding the residual to each output before the Relu), and `None` says none took it; with
/// `pool`, only the direct row kernel runs it, followed by a 2×2 max pool of stride 2 in the
/// same pass (the output is the pool's), and `None` says it did not take it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_general(
    x: &CTensor,
    wt: &CTensor,
    bias: Option<&CTensor>,
    w: &Window,
    group: usize,
    cache: &GeometryCache,
    relu: bool,
    residual: Option<&CTensor>,
    pool: bool,
) -> CResult<Option<CTensor>> {
    let (n, c) = (x.dims()[0], x.dims()[1]);
    let m = wt.dims()[0];
    let spatial = &x.dims()[2..];
    if !c.is_multiple_of(group) || !m.is_multiple_of(group) || wt.dims()[1] * group != c {
        bail!("channels {c} and weights {:?} disagree with group {group}", wt.dims());
    }
    if let Some(b) = bias {
        if b.elem_count() != m {
            bail!("a bias of {} values for {m} output channels", b.elem_count());
        }
    }
    let geo = cache.get(w, spatial)?;
    let mut dims = vec![n, m];
    dims.extend_from_slice(&geo.out);
    super::check_size(&dims, x.dtype().size_in_bytes())?;
    let (kh, kw) = match wt.dims() {
        [_, _, kh, kw] => (*kh, *kw),
        _ => (0, 0),
    };
    let two_d = spatial.len() == 2 && wt.rank() == 4 && w.strides.len() == 2 && w.dilations.len() == 2;
    if x.dtype() == CDType::F32 && wt.dtype() == CDType::F32 && group == 1 && two_d {
        let shape = super::direct_channels::Shape {
            c,
            h: spatial[0],
            w: spatial[1],
            m,
            kh,
            kw,
            stride: [w.strides[0], w.strides[1]],
            dilation: [w.dilations[0], w.dilations[1]],
        };
        let fits = |r: &CTensor| r.dtype() == CDType::F32 && r.dims() == dims;
        let kernel = direct_kernel(&shape, &geo, n)
            .filter(|k| residual.is_none_or(fits) && !(pool && (*k != Direct::Rows || residual.is_some())));
        if let Some(kernel) = kernel {
            return conv_direct(x, wt, bias, &geo, cache, dims, relu, residual, shape, (kernel, pool))
                .map(Some);
        }
    }
    if residual.is_some() || pool {
        return Ok(None);
    }
    match x.dtype() {
        CDType::F32 => conv_images::<f32>(x, wt, bias, &geo, group, dims, relu).map(Some),
        CDType::F64 => conv_images::<f64>(x, wt, bias, &geo, group, dims, relu).map(Some),
        other => bail!("Conv on {other:?}"),
    }
}

/// What a direct kernel does to each output after adding its channel's bias: with `residual`
/// (a tensor of the output's shape), adds the value at the same place, as the Add that a
/// residual block puts after its convolution does (addition commutes, so the Add's operand
/// order does not matter); then, with `relu`, clamps at zero.
#[derive(Clone, Copy, Default)]
pub(crate) struct Finish<'a> {
    pub(crate) residual: Option<&'a [f32]>,
    pub(crate) relu: bool,
}

/// The direct kernels.
#[derive(Debug, PartialEq)]
pub(crate) enum Direct {
    /// [`super::direct`]'s: positions in the vectors (stride 1, no dilation).
    Rows,
    /// [`super::direct_channels`]'s: output channels in the vectors.
    Channels,
}

/// Below this many multiply-adds per output (16 channels of a 3×3 window), the channel kernel's
/// transposing store is a large part of its work: on 4 channels of 3×3 it ran at 3.0 fused
/// multiply-adds per ns, against 5.3–6.0 from 288 up (one thread, a probe of
/// `direct_channels::conv` alone).
const CHANNELS_MIN_DEPTH: usize = 144;

/// Which direct kernel takes a float32 2-D convolution of one group, if one does: the row
/// kernel where its rows are a multiple of 8 wide (it then computes no position twice) or the
/// window is too shallow for the channel kernel; else the channel kernel, which also takes
/// strided and dilated windows, and a strided 1×1 window whatever its depth; else none (im2col
/// and gemm).
///
/// ResNet-18 (`RIVET_CANDLE_PROFILE`, one thread, batch 1 and 8): the channel kernel took its
/// 28- and 14-wide layers in 8–19% less time than the row kernel, its stride-2 3×3 layers in
/// 10–15% and its 7×7 stride-2 stem in 6–16% less than im2col and gemm. The row kernel stays
/// faster on the bundled CNN (rows 32, 16 and 8 wide): 13.3 against 27.2 µs on its first layer.
pub(crate) fn direct_kernel(s: &super::direct_channels::Shape, geo: &Geometry, n: usize) -> Option<Direct> {
    let depth = s.c * s.kh * s.kw;
    let unit = s.stride == [1, 1] && s.dilation == [1, 1];
    let rows = unit && super::direct::fits(s.c, &[s.h, s.w], s.kh, s.kw, geo);
    if rows && (geo.out[1].is_multiple_of(8) || depth < CHANNELS_MIN_DEPTH) {
        Some(Direct::Rows)
    } else if (depth >= CHANNELS_MIN_DEPTH || strided_point(s)) && super::direct_channels::fits(s, geo, n) {
        Some(Direct::Channels)
    } else if rows {
        Some(Direct::Rows)
    } else {
        None
    }
}

/// Whether `s` is a 1×1 window of stride above 1, which the channel kernel takes however
/// shallow: gemm reads it through a gathered copy of the positions it reads, where the channel
/// kernel reads the image in place. In its row tiles (AVX-512), ResNet-18's stride-2 shortcuts
/// (64 and 128 channels) took 40–42 µs against 53–70 as a gather and gemm (batch 1, one thread,
/// `RIVET_CANDLE_PROFILE`; ONNX Runtime 38–42). In tiles of six, on an AMD EPYC with AVX2 (one
/// thread, each case's fastest of at least 160 runs), stride-2 1×1 windows from float32
/// `[n, c, h, w]` to `m` channels took (ResNet-18's shortcuts are the 28 × 28 to 128 and
/// 14 × 14 to 256 ones):
///
/// | n, c, h × w, m | channel kernel | gather and gemm |
/// |---|---|---|
/// | 8, 64, 28 × 28, 128 | 326 µs | 370 µs |
/// | 1, 64, 28 × 28, 128 | 38.8 | 48.6 |
/// | 8, 64, 14 × 14, 128 | 85.7 | 107.4 |
/// | 1, 64, 14 × 14, 128 | 17.3 | 21.9 |
/// | 8, 128, 28 × 28, 128 | 744 | 755 |
/// | 1, 128, 28 × 28, 128 | 100.4 | 121.7 |
/// | 8, 128, 14 × 14, 256 | 341 | 342 |
/// | 1, 128, 14 × 14, 256 | 63.2 | 59.7 |
fn strided_point(s: &super::direct_channels::Shape) -> bool {
    s.kh * s.kw == 1 && s.stride != [1, 1]
}

/// A direct kernel's convolution of float32 `x` (one group): `kernel`, which
/// [`direct_kernel`] chose for `shape`, with its packing of `wt` from `cache`; with `pool`
/// (the row kernel's only), followed by a 2×2 max pool of stride 2 in the same pass.
#[allow(clippy::too_many_arguments)]
fn conv_direct(
    x: &CTensor,
    wt: &CTensor,
    bias: Option<&CTensor>,
    geo: &Geometry,
    cache: &GeometryCache,
    mut dims: Vec<usize>,
    relu: bool,
    residual: Option<&CTensor>,
    shape: super::direct_channels::Shape,
    (kernel, pool): (Direct, bool),
) -> CResult<CTensor> {
    let super::direct_channels::Shape { c, h, w, m, kh, kw, .. } = shape;
    let n = x.dims()[0];
    let bias: Option<Vec<f32>> = bias.map(|b| super::values(&b.to_dtype(CDType::F32)?)).transpose()?;
    if pool {
        // The 2×2 max pool's output, odd last rows and columns dropped.
        dims[2] /= 2;
        dims[3] /= 2;
    }
    let len = dims.iter().product();
    let mut out: Vec<f32> = Vec::with_capacity(len);
    threads::split_batch(n, n * m * geo.p * c * kh * kw, |split| {
        // The residual's values, if any, borrowed for the kernel's finish.
        let with_residual = |f: &mut dyn FnMut(Finish<'_>) -> CResult<()>| match residual {
            Some(r) => with_values(r, |rs: &[f32]| f(Finish { residual: Some(rs), relu }))?,
            None => f(Finish { residual: None, relu }),
        };
        with_residual(&mut |finish| {
            with_values(x, |xs: &[f32]| {
                with_values(wt, |ws: &[f32]| -> CResult<()> {
                    if xs.len() != n * c * h * w || ws.len() != m * c * kh * kw {
                        bail!("Conv operands do not hold their shapes' elements");
                    }
                    let dst = &mut out.spare_capacity_mut()[..len];
                    let bias = bias.as_deref();
                    match kernel {
                        Direct::Rows => {
                            let packed = cache.packed(wt.id(), "rows", || super::direct::pack(ws, m));
                            let rows = super::direct::Shape { c, h, w, m, kh, kw };
                            if pool {
                                super::direct::conv_max_pool_2x2(
                                    xs, &packed, bias, rows, geo, dst, &split, finish,
                                );
                            } else {
                                super::direct::conv(xs, &packed, bias, rows, geo, dst, &split, finish);
                            }
                        }
                        Direct::Channels => {
                            let packed =
                                cache.packed(wt.id(), "channels", || super::direct_channels::pack(ws, m));
                            super::direct_channels::conv(xs, &packed, bias, shape, geo, dst, &split, finish);
                        }
                    }
                    Ok(())
                })
            })??
        })
    })?;
    // SAFETY: the kernel wrote every one of the `len` elements; an error returned before this
    // line drops `out` at length 0.
    unsafe { out.set_len(len) };
    CTensor::from_vec(out, dims, &Device::Cpu)
}

pub(crate) fn conv_images<T: ConvElem>(
    x: &CTensor,
    wt: &CTensor,
    bias: Option<&CTensor>,
    geo: &Geometry,
    group: usize,
    dims: Vec<usize>,
    relu: bool,
) -> CResult<CTensor> {
    let (n, c, m) = (dims[0], x.dims()[1], dims[1]);
    let plane: usize = x.dims()[2..].iter().product();
    let (p, k) = (geo.p, geo.k);
    let (cg, mg) = (c / group, m / group);
    let ck = cg * k;
    let len = n * m * p;
    let bias: Option<Vec<T>> = bias.map(|b| super::values(&b.to_dtype(T::DTYPE)?)).transpose()?;
    if len == 0 || ck == 0 {
        // No products to run (or products over nothing): each channel is its bias, or zero.
        let mut out: Vec<T> = (0..n * m)
            .flat_map(|i| std::iter::repeat_n(bias.as_ref().map_or(T::zero(), |b| b[i % m]), p))
            .collect();
        if relu {
            relu_in_place(&mut out);
        }
        return CTensor::from_vec(out, dims, &Device::Cpu);
    }
    // Each image's products write its part of the output once, unread and not zeroed first;
    // the bias and a fused Relu then go over it in one pass while it is in cache.
    let mut out: Vec<T> = Vec::with_capacity(len);
    // A 1×1 window over every position in order reads the image itself.
    let direct = k == 1 && p == plane && geo.runs[0].as_slice() == [(0, 0, p, 1)];
    threads::split_batch(n, n * mg * group * p * ck, |split| {
        with_values(x, |xs: &[T]| {
            with_values(wt, |ws: &[T]| -> CResult<()> {
                if xs.len() != n * c * plane || ws.len() != m * ck {
                    bail!("Conv operands do not hold their shapes' elements");
                }
                let dst_all = &mut out.spare_capacity_mut()[..len];
                // One group's product for one image, serial: with several threads, the split is
                // over images or channel blocks (below), never inside a product.
                let product = |col: &[T], out_img: &mut [std::mem::MaybeUninit<T>], g: usize| {
                    let (lhs, rhs) =
                        (&ws[g * mg * ck..(g + 1) * mg * ck], &col[g * ck * p..(g + 1) * ck * p]);
                    let dst = &mut out_img[g * mg * p..(g + 1) * mg * p];
                    row_major_product(mg, p, ck, dst, lhs, rhs, gemm::Parallelism::None);
                };
                // Once every group's product has written `out_img`: bias and Relu.
                let finish = |out_img: &mut [std::mem::MaybeUninit<T>]| {
                    // SAFETY: the products of all groups wrote every element of `out_img` (the
                    // groups' `dst` slices tile it), so it holds initialized values.
                    let done = unsafe { &mut *(out_img as *mut [std::mem::MaybeUninit<T>] as *mut [T]) };
                    bias_relu(done, bias.as_deref(), p, relu);
                };
                let side_by_side =
                    if p < BATCH_PLANE && !direct { (BATCH_COLUMNS / p).clamp(1, n) } else { 1 };
                if side_by_side > 1 {
                    let dims = (c, m, group, plane);
                    conv_side_by_side(
                        xs,
                        ws,
                        dst_all,
                        bias.as_deref(),
                        geo,
                        dims,
                        side_by_side,
                        &split,
                        relu,
                    );
                    return Ok(());
                }
                let threads = split.threads();
                // Blocks of output positions over threads (one group): each task's columns of
                // the output, from the same columns of `col` and all of the weights.
                let by_positions = |col: &[T], out_img: &mut [std::mem::MaybeUninit<T>]| {
                    let cols = cols_per_task(p, threads);
                    let out = SharedOut::new(out_img);
                    split.run(p.div_ceil(cols), |i| {
                        let (j, width) = (i * cols, cols.min(p - i * cols));
                        // SAFETY: `ws` holds m×ck weights (checked above), `col` ck×p values and
                        // `out_img` m×p elements, all row-major; this task reads columns
                        // j..j + width of `col` and writes the same columns of every row of
                        // `out_img` (row stride p), which no other task touches. With
                        // `read_dst` false, gemm writes every element of its block and reads none.
                        unsafe {
                            gemm::gemm(
                                m,
                                width,
                                ck,
                                out.at(j),
                                1,
                                p as isize,
                                false,
                                ws.as_ptr(),
                                1,
                                ck as isize,
                                col.as_ptr().add(j),
                                1,
                                p as isize,
                                T::zero(),
                                T::from_f64(1.0),
                                false,
                                false,
                                false,
                                gemm::Parallelism::None,
                            );
                        }
                        for r in 0..m {
                            // SAFETY: the product above wrote these `width` elements of row r,
                            // this task's alone.
                            let row = unsafe { std::slice::from_raw_parts_mut(out.at(r * p + j), width) };
                            bias_relu(row, bias.as_deref().map(|b| &b[r..r + 1]), width, relu);
                        }
                    });
                };
                if threads > 1 && n >= threads {
                    // Images over threads, each image's products serial on its thread.
                    let outs = Chunks::new(dst_all, m * p);
                    split.run_ranges(n, |i| {
                        let img = &xs[i * c * plane..][..c * plane];
                        // SAFETY: task `i` alone takes chunk `i`.
                        let out_img = unsafe { outs.take(i) };
                        if direct {
                            (0..group).for_each(|g| product(img, out_img, g));
                        } else {
                            T::with_scratch(c * k * p, |col| {
                                im2col(img, geo, c, plane, col, p);
                                (0..group).for_each(|g| product(col, out_img, g));
                            });
                        }
                        finish(out_img);
                    });
                    return Ok(());
                }
                let images = xs.chunks_exact(c * plane).zip(dst_all.chunks_exact_mut(m * p));
                if threads > 1 {
                    // Fewer images than threads: blocks of output channels over threads.
                    let by_channels = |col: &[T], out_img: &mut [std::mem::MaybeUninit<T>]| {
                        if group == 1 && p > mg {
                            // More positions than channels (an early layer's large planes):
                            // blocks of positions, so that each thread reads only its part of
                            // the im2col matrix, the larger operand, and the weights whole.
                            by_positions(col, out_img);
                            return;
                        }
                        let rows = if group == 1 { rows_per_task(mg, threads) } else { mg };
                        let blocks = Chunks::new(out_img, rows * p);
                        split.run(blocks.count(), |i| {
                            // SAFETY: task `i` alone takes chunk `i`.
                            let dst = unsafe { blocks.take(i) };
                            let (row, count) = (i * rows, dst.len() / p);
                            let g = row / mg;
                            let (lhs, rhs) =
                                (&ws[row * ck..(row + count) * ck], &col[g * ck * p..(g + 1) * ck * p]);
                            row_major_product(count, p, ck, dst, lhs, rhs, gemm::Parallelism::None);
                            // SAFETY: the product wrote every element of `dst`.
                            let done = unsafe { &mut *(dst as *mut [std::mem::MaybeUninit<T>] as *mut [T]) };
                            bias_relu(done, bias.as_deref().map(|b| &b[row..row + count]), p, relu);
                        });
                    };
                    if direct {
                        images.for_each(|(img, out_img)| by_channels(img, out_img));
                    } else {
                        T::with_scratch(c * k * p, |col| {
                            for (img, out_img) in images {
                                im2col_parallel(img, geo, c, plane, col, p, &split);
                                by_channels(col, out_img);
                            }
                        });
                    }
                    return Ok(());
                }
                if direct {
                    for (img, out_img) in images {
                        (0..group).for_each(|g| product(img, out_img, g));
                        finish(out_img);
                    }
                    return Ok(());
                }
                T::with_scratch(c * k * p, |col| {
                    for (img, out_img) in images {
                        im2col(img, geo, c, plane, col, p);
                        (0..group).for_each(|g| product(col, out_img, g));
                        finish(out_img);
                    }
                });
                Ok(())
            })
        })??
    })?;
    // SAFETY: every path above wrote all `len` elements (each image's `finish` ran on output the
    // products wrote in full; `conv_side_by_side` writes each element once); an error returned
    // before this line drops `out` at length 0.
    unsafe { out.set_len(len) };
    CTensor::from_vec(out, dims, &Device::Cpu)
}

/// Adds channel `i % bias.len()`'s bias to each `p`-long plane `i` of `out` and, with `relu`,
/// clamps the sums at zero (NaN stays NaN): one pass, on wide vectors.
pub(crate) fn bias_relu<T: candle_core::WithDType>(out: &mut [T], bias: Option<&[T]>, p: usize, relu: bool) {
    if bias.is_some() || relu {
        crate::kernels::wide(BiasRelu { out, bias, p, relu })
    }
}

/// `max(x, 0)` of float32 or float64 `x` on the calling thread, a NaN staying NaN (as ONNX's
/// `Relu`, PyTorch's and the fused Relu of a convolution give it); `None` for other types.
///
/// Candle's own `relu` maps NaN to 0 and, on 64 Ki values or more, runs on Candle's process-wide
/// pool of workers, whatever the model's thread count.
pub(crate) fn relu(x: &CTensor) -> CResult<Option<CTensor>> {
    fn typed<T: candle_core::WithDType>(x: &CTensor) -> CResult<CTensor> {
        let images = x.dims().first().copied().unwrap_or(1);
        let out: Vec<T> = with_values(x, |v: &[T]| {
            let mut out: Vec<T> = Vec::with_capacity(v.len());
            let dst = SharedOut::new(&mut out.spare_capacity_mut()[..v.len()]);
            threads::elementwise_by_images(images, v.len(), |r| {
                // SAFETY: each range of values is one task's alone, within the output.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(
                        dst.at(r.start).cast::<std::mem::MaybeUninit<T>>(),
                        r.len(),
                    )
                };
                crate::kernels::wide(ReluInto { src: &v[r], dst });
            });
            // SAFETY: `ReluInto` wrote all `v.len()` elements, range by range.
            unsafe { out.set_len(v.len()) };
            out
        })?;
        CTensor::from_vec(out, x.dims(), &Device::Cpu)
    }
    match x.dtype() {
        CDType::F32 => typed::<f32>(x).map(Some),
        CDType::F64 => typed::<f64>(x).map(Some),
        _ => Ok(None),
    }
}

/// [`relu`]'s loop, to run through [`crate::kernels::wide`]: `dst[i] = max(src[i], 0)`, every
/// element of `dst` written.
struct ReluInto<'a, T> {
    src: &'a [T],
    dst: &'a mut [std::mem::MaybeUninit<T>],
}

impl<T: candle_core::WithDType> crate::kernels::WideKernel for ReluInto<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let zero = T::zero();
        for (d, &v) in self.dst.iter_mut().zip(self.src) {
            d.write(if v < zero { zero } else { v });
        }
    }
}

/// [`bias_relu`]'s loop, to run through [`crate::kernels::wide`].
pub(crate) struct BiasRelu<'a, T> {
    pub(crate) out: &'a mut [T],
    pub(crate) bias: Option<&'a [T]>,
    pub(crate) p: usize,
    pub(crate) relu: bool,
}

impl<T: candle_core::WithDType> crate::kernels::WideKernel for BiasRelu<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let BiasRelu { out, bias, p, relu } = self;
        let zero = T::zero();
        for (i, plane) in out.chunks_exact_mut(p).enumerate() {
            match (bias, relu) {
                (Some(b), true) => {
                    let b = b[i % b.len()];
                    for x in plane {
                        let v = *x + b;
                        *x = if v < zero { zero } else { v };
                    }
                }
                (Some(b), false) => {
                    let b = b[i % b.len()];
                    for x in plane {
                        *x += b;
                    }
                }
                (None, _) => {
                    for x in plane {
                        *x = if *x < zero { zero } else { *x };
                    }
                }
            }
        }
    }
}

/// Output planes smaller than this many positions are computed several images at a time (see
/// [`conv_side_by_side`]).
pub(crate) const BATCH_PLANE: usize = 128;
/// How many output positions [`conv_side_by_side`] puts side by side in one product: ResNet-18's
/// 7×7 layers at batch 8 ran 3% faster as one product of 392 columns than as 245 and 147.
pub(crate) const BATCH_COLUMNS: usize = 512;

/// A convolution's images `per` at a time: their im2col matrices side by side as one
/// `[c * k, per * p]` matrix, one product per group into a scratch `[mg, per * p]`, whose
/// columns are then copied to each image's output with the bias (and a fused Relu) added. For
/// a deep layer's small planes (a ResNet's 7×7 and 4×4), one image's product is too narrow for
/// the gemm crate's register tiles; several side by side fill them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_side_by_side<T: ConvElem>(
    xs: &[T],
    ws: &[T],
    out: &mut [std::mem::MaybeUninit<T>],
    bias: Option<&[T]>,
    geo: &Geometry,
    (c, m, group, plane): (usize, usize, usize, usize),
    per: usize,
    split: &Split<'_>,
    relu: bool,
) {
    let (p, k) = (geo.p, geo.k);
    let (cg, mg) = (c / group, m / group);
    let ck = cg * k;
    let threads = split.threads();
    // With several threads, im2col splits by input channels and each product by blocks of
    // output channels, which its task then copies out (with the bias and Relu): nothing but
    // the splits' hand-offs stays serial.
    let (chans, rows) =
        if threads > 1 { (c.div_ceil(threads * 4), rows_per_task(mg, threads)) } else { (c, mg) };
    T::with_scratch(c * k * per * p, |col| {
        // The products' scratch, each block written in full by its product before it is read.
        let mut t: Vec<T> = Vec::with_capacity(mg * per * p);
        for (imgs, outs) in xs.chunks(per * c * plane).zip(out.chunks_mut(per * m * p)) {
            let images = imgs.len() / (c * plane);
            let cols = images * p;
            let parts = Chunks::new(&mut col[..c * k * cols], chans * k * cols);
            split.run(parts.count(), |i| {
                // SAFETY: task `i` alone takes chunk `i`: the rows of channels i·chans onward.
                let part = unsafe { parts.take(i) };
                let count = part.len() / (k * cols);
                for b in 0..images {
                    let src = &imgs[b * c * plane + i * chans * plane..][..count * plane];
                    im2col(src, geo, count, plane, &mut part[b * p..], cols);
                }
            });
            let col: &[T] = col;
            let outs = SharedOut::new(outs);
            for g in 0..group {
                let (lhs, rhs) =
                    (&ws[g * mg * ck..(g + 1) * mg * ck], &col[g * ck * cols..(g + 1) * ck * cols]);
                // `t` has room for mg×cols elements; the products write the first mg×cols.
                let dst = &mut t.spare_capacity_mut()[..mg * cols];
                let blocks = Chunks::new(dst, rows * cols);
                split.run(blocks.count(), |i| {
                    // SAFETY: task `i` alone takes chunk `i`.
                    let dst = unsafe { blocks.take(i) };
                    let count = dst.len() / cols;
                    let lhs = &lhs[i * rows * ck..(i * rows + count) * ck];
                    row_major_product(count, cols, ck, dst, lhs, rhs, gemm::Parallelism::None);
                    // SAFETY: the product wrote every element of `dst`.
                    let done: &[T] = unsafe { &*(dst as *const [std::mem::MaybeUninit<T>] as *const [T]) };
                    for r in 0..count {
                        let ch = g * mg + i * rows + r;
                        let bias = bias.map(|b| b[ch]);
                        for b in 0..images {
                            // SAFETY: image b's plane of channel `ch` lies within `outs`, and
                            // only this task writes this block's channels.
                            let plane = unsafe {
                                std::slice::from_raw_parts_mut(
                                    outs.at((b * m + ch) * p).cast::<std::mem::MaybeUninit<T>>(),
                                    p,
                                )
                            };
                            copy_bias_relu(&done[r * cols + b * p..][..p], plane, bias, relu);
                        }
                    }
                });
            }
        }
    });
}

/// `dst = src + bias`, clamped at zero with `relu`: the arithmetic of [`bias_relu`] (no
/// addition without a bias, NaN kept), applied while copying a product's row out.
fn copy_bias_relu<T: candle_core::WithDType>(
    src: &[T],
    dst: &mut [std::mem::MaybeUninit<T>],
    bias: Option<T>,
    relu: bool,
) {
    let zero = T::zero();
    for (d, &v) in dst.iter_mut().zip(src) {
        let y = match bias {
            Some(b) => v + b,
            None => v,
        };
        d.write(if relu && y < zero { zero } else { y });
    }
}

/// [`im2col`] with its input channels split over `split`'s threads (each channel's `k` rows
/// are its own).
fn im2col_parallel<T: candle_core::WithDType>(
    src: &[T],
    geo: &Geometry,
    c: usize,
    plane: usize,
    col: &mut [T],
    p: usize,
    split: &Split<'_>,
) {
    let k = geo.k;
    let per = c.div_ceil(split.threads() * 4).max(1);
    let cols = Chunks::new(&mut col[..c * k * p], per * k * p);
    split.run(cols.count(), |i| {
        // SAFETY: task `i` alone takes chunk `i`.
        let col = unsafe { cols.take(i) };
        let src = &src[i * per * plane..][..col.len() / (k * p) * plane];
        im2col(src, geo, src.len() / plane, plane, col, p);
    });
}

/// Rows of the im2col matrix up to this long are gathered element by element, not copied in
/// runs between zeroed ends: a copy and two fills cost more than the row's values for ResNet-18's
/// 4×4 layers (16 positions), whose 512-channel convolutions took 0–2% less time this way and
/// its stride-2 one 2.5–3.3% less (batch 8, one thread, `RIVET_CANDLE_PROFILE`, three runs each
/// way in turn).
const GATHER_ROWS: usize = 16;

/// The im2col matrix `[c * k, p]` of one image `src` (`c` planes) for the windows of `geo`:
/// runs of evenly spaced offsets are copied, scattered reads gathered, padding zeroed.
/// Row `r` of the matrix starts at `col[r * stride]` (`stride` is `p` for one image's matrix, a
/// multiple of it when several images' matrices sit side by side).
pub(crate) fn im2col<T: candle_core::WithDType>(
    src: &[T],
    geo: &Geometry,
    c: usize,
    plane: usize,
    col: &mut [T],
    stride: usize,
) {
    let (p, k) = (geo.p, geo.k);
    for ch in 0..c {
        let plane_src = &src[ch * plane..(ch + 1) * plane];
        for (kk, runs) in geo.runs.iter().enumerate() {
            let row = &mut col[(ch * k + kk) * stride..][..p];
            let gather = |row: &mut [T]| {
                for (d, &o) in row.iter_mut().zip(&geo.by_k[kk * p..(kk + 1) * p]) {
                    *d = if o == PAD { T::zero() } else { plane_src[o as usize] };
                }
            };
            if p <= GATHER_ROWS {
                gather(row);
                continue;
            }
            if let Some(b) = &geo.shifted[kk] {
                row[..b.from].fill(T::zero());
                let start = (b.from as isize + b.shift) as usize;
                row[b.from..b.to].copy_from_slice(&plane_src[start..start + (b.to - b.from)]);
                row[b.to..].fill(T::zero());
                for &h in &b.holes {
                    row[h as usize] = T::zero();
                }
                continue;
            }
            if runs.len() * 4 > p {
                // Short runs: gathered element by element.
                gather(row);
                continue;
            }
            let covered: usize = runs.iter().map(|r| r.2).sum();
            if covered != p {
                row.fill(T::zero());
            }
            for &(d, s, len, step) in runs {
                if step == 1 {
                    row[d..d + len].copy_from_slice(&plane_src[s..s + len]);
                } else if step == 2 && s + 2 * len <= plane_src.len() {
                    for (v, &x) in row[d..d + len].iter_mut().zip(super::evens(&plane_src[s..s + 2 * len])) {
                        *v = x;
                    }
                } else {
                    for (v, &x) in row[d..d + len].iter_mut().zip(plane_src[s..].iter().step_by(step)) {
                        *v = x;
                    }
                }
            }
        }
    }
}

/// A convolution's attributes (Conv's, shared by ConvInteger and QLinearConv), read at load,
/// with the window geometry cached per input shape.
pub(crate) struct ConvSpec {
    pub(crate) win: Window,
    pub(crate) group: usize,
    pub(crate) cache: GeometryCache,
    /// Apply a fused Relu to the result.
    pub(crate) relu: bool,
}

impl ConvSpec {
    /// The convolution of `x` (float or double) with weights `wt`, plus `bias` per channel:
    /// im2col plus matrix products, measured faster here than Candle's conv2d, and covering
    /// every rank, asymmetric padding, strides and dilations.
    pub(crate) fn run(&self, x: &CTensor, wt: &CTensor, bias: Option<&CTensor>) -> CResult<CTensor> {
        self.run_with(x, wt, bias, None, self.relu, false)?
            .ok_or_else(|| candle_core::Error::Msg("Conv gave no output".into()))
    }

    /// [`ConvSpec::run`] without its own Relu, then the Add of `residual` (a tensor of the
    /// output's shape) and, with `relu`, a Relu, in the same pass, where a direct kernel takes
    /// the convolution and the residual is float32 of the output's shape; else `None`, for the
    /// caller to run the steps one by one.
    pub(crate) fn run_residual(
        &self,
        x: &CTensor,
        wt: &CTensor,
        bias: Option<&CTensor>,
        residual: &CTensor,
        relu: bool,
    ) -> CResult<Option<CTensor>> {
        self.run_with(x, wt, bias, Some(residual), relu, false)
    }

    /// [`ConvSpec::run`] followed by a 2×2 max pool of stride 2 without padding (an odd last
    /// row or column dropped), in one pass, where the direct row kernel takes the convolution;
    /// else `None`, for the caller to run the two steps. The result is the same bit for bit.
    pub(crate) fn run_max_pool_2x2(
        &self,
        x: &CTensor,
        wt: &CTensor,
        bias: Option<&CTensor>,
    ) -> CResult<Option<CTensor>> {
        if x.rank() != 4 {
            return Ok(None);
        }
        self.run_with(x, wt, bias, None, self.relu, true)
    }

    fn run_with(
        &self,
        x: &CTensor,
        wt: &CTensor,
        bias: Option<&CTensor>,
        residual: Option<&CTensor>,
        relu: bool,
        pool: bool,
    ) -> CResult<Option<CTensor>> {
        if x.rank() < 3 || wt.rank() != x.rank() {
            bail!("Conv of {:?} with weights {:?}", x.dims(), wt.dims());
        }
        // Without a kernel shape at load (weights known only at run time), the window takes
        // the weights' shape.
        let w = if self.win.kernel.is_empty() {
            std::borrow::Cow::Owned(self.win.for_weights(wt.dims())?)
        } else {
            std::borrow::Cow::Borrowed(&self.win)
        };
        if w.kernel != wt.dims()[2..] {
            bail!("kernel_shape {:?} disagrees with weights {:?}", w.kernel, wt.dims());
        }
        conv_general(x, wt, bias, &w, self.group, &self.cache, relu, residual, pool)
    }
}

/// ConvTranspose's attributes, resolved against the input when it runs.
pub(crate) struct ConvTransposeAttrs {
    pub(crate) group: usize,
    pub(crate) auto_pad: String,
    pub(crate) dilations: Option<Vec<i64>>,
    pub(crate) kernel_shape: Option<Vec<i64>>,
    pub(crate) output_padding: Option<Vec<i64>>,
    pub(crate) output_shape: Option<Vec<i64>>,
    pub(crate) pads: Option<Vec<i64>>,
    pub(crate) strides: Option<Vec<i64>>,
}

/// Transposed convolution by scattering each input element through the kernel, in f64.
pub(crate) fn conv_transpose(
    x: &CTensor,
    wt: &CTensor,
    bias: Option<&CTensor>,
    a: &ConvTransposeAttrs,
) -> CResult<CTensor> {
    if x.rank() < 3 || wt.rank() != x.rank() {
        bail!("ConvTranspose of {:?} with weights {:?}", x.dims(), wt.dims());
    }
    let n_sp = x.rank() - 2;
    let (n, c) = (x.dims()[0], x.dims()[1]);
    let g = a.group;
    if c != wt.dims()[0] || !c.is_multiple_of(g) {
        bail!("input channels {c} disagree with weights {:?} and group {g}", wt.dims());
    }
    let m = wt.dims()[1] * g;
    let kernel: Vec<usize> = wt.dims()[2..].to_vec();
    let list = |v: &Option<Vec<i64>>, d: i64, len: usize, what: &str| -> CResult<Vec<i64>> {
        let v = v.clone().unwrap_or(vec![d; len]);
        if v.len() != len || v.iter().any(|&x| x < 0) {
            bail!("{what} {v:?} does not fit {n_sp} spatial dims");
        }
        Ok(v)
    };
    if let Some(k) = &a.kernel_shape {
        if k.iter().map(|&v| v as usize).collect::<Vec<_>>() != kernel {
            bail!("kernel_shape {k:?} disagrees with weights {:?}", wt.dims());
        }
    }
    let strides = list(&a.strides, 1, n_sp, "strides")?;
    let dil = list(&a.dilations, 1, n_sp, "dilations")?;
    let out_pad = list(&a.output_padding, 0, n_sp, "output_padding")?;
    if strides.contains(&0) || dil.contains(&0) {
        bail!("strides and dilations must be positive");
    }
    let input: Vec<usize> = x.dims()[2..].to_vec();
    let mut begin = vec![0i64; n_sp];
    let mut out = vec![0usize; n_sp];
    let full =
        |i: usize| strides[i] * (input[i] as i64 - 1) + out_pad[i] + (kernel[i] as i64 - 1) * dil[i] + 1;
    // As ONNX's reference: output_shape decides the padding only under SAME_*; otherwise the
    // output is that shape, filled from the start with explicit (or zero) pads.
    let shape = match &a.output_shape {
        Some(sh) => {
            let sh = if sh.len() == n_sp + 2 { sh[2..].to_vec() } else { sh.clone() };
            if sh.len() != n_sp || sh.iter().any(|&v| v < 0) {
                bail!("output_shape {sh:?} does not fit {n_sp} spatial dims");
            }
            Some(sh)
        }
        None => None,
    };
    if a.auto_pad == "SAME_UPPER" || a.auto_pad == "SAME_LOWER" {
        for i in 0..n_sp {
            let target = shape.as_ref().map_or(input[i] as i64 * strides[i], |sh| sh[i]);
            let total = full(i) - target;
            let half = total.div_euclid(2);
            begin[i] = if a.auto_pad == "SAME_UPPER" { half } else { total - half };
            out[i] = target as usize;
        }
    } else {
        let pads =
            if a.auto_pad == "VALID" { vec![0; 2 * n_sp] } else { list(&a.pads, 0, 2 * n_sp, "pads")? };
        for i in 0..n_sp {
            begin[i] = pads[i];
            let o = match &shape {
                Some(sh) => sh[i],
                None => full(i) - pads[i] - pads[i + n_sp],
            };
            if o < 0 {
                bail!("pads {pads:?} leave a negative output");
            }
            out[i] = o as usize;
        }
    }
    let mut all = vec![n, m];
    all.extend_from_slice(&out);
    super::check_size(&all, 8)?;
    let xv: Vec<f64> = super::values(&x.to_dtype(CDType::F64)?)?;
    let wv: Vec<f64> = super::values(&wt.to_dtype(CDType::F64)?)?;
    let plane: usize = input.iter().product();
    let kp: usize = kernel.iter().product();
    let op: usize = out.iter().product();
    let (ist, kst, ost) = (super::strides(&input), super::strides(&kernel), super::strides(&out));
    let (cg, mg) = (c / g, m / g);
    let mut y = vec![0f64; n * m * op];
    for b in 0..n {
        for ic in 0..c {
            let grp = ic / cg;
            for p in 0..plane {
                let v = xv[(b * c + ic) * plane + p];
                if v == 0.0 {
                    continue;
                }
                for kk in 0..kp {
                    let mut off = 0usize;
                    let mut inside = true;
                    for i in 0..n_sp {
                        let ip = (p / ist[i] % input[i]) as i64;
                        let kc = (kk / kst[i] % kernel[i]) as i64;
                        let o = ip * strides[i] + kc * dil[i] - begin[i];
                        if o < 0 || o >= out[i] as i64 {
                            inside = false;
                            break;
                        }
                        off += o as usize * ost[i];
                    }
                    if !inside {
                        continue;
                    }
                    for oc in 0..mg {
                        let w = wv[(ic * mg + oc) * kp + kk];
                        y[(b * m + grp * mg + oc) * op + off] += v * w;
                    }
                }
            }
        }
    }
    if let Some(bias) = bias {
        let bv: Vec<f64> = super::values(&bias.to_dtype(CDType::F64)?)?;
        if bv.len() != m {
            bail!("bias of {} values for {m} output channels", bv.len());
        }
        for b in 0..n {
            for oc in 0..m {
                for v in &mut y[(b * m + oc) * op..(b * m + oc + 1) * op] {
                    *v += bv[oc];
                }
            }
        }
    }
    let mut dims = vec![n, m];
    dims.extend_from_slice(&out);
    super::make(y, &dims)?.to_dtype(x.dtype())
}
