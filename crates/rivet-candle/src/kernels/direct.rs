//! Direct convolution of float32 images for stride-1, undilated 2-D windows on AVX2 with FMA:
//! no im2col matrix and no matrix product. Each image is copied once into a zero-bordered plane
//! per channel; an output vector of 8 positions along a row then reads, for every (channel,
//! kernel row, kernel column), 8 consecutive values of that padded plane at a fixed offset.
//! The weights are packed in blocks of 4 output channels (`[block][c·kh·kw][4]`), so one
//! register tile is 4 channels × 3 vectors (24 positions): 12 accumulators, 3 loads and 4
//! broadcasts per multiply-add step, whatever the channel count (a multiple of 4 in most
//! networks, where gemm's 6-wide tiles leave 16 and 32 channels with part-empty edge tiles).
//!
//! A row's last vector starts at `ow - 8` when the row is not a multiple of 8 wide, so it
//! recomputes a few of the previous vector's positions, with the same sums. Every output is the
//! sum over (channel, kernel row, kernel column) in that order, one fused multiply-add each,
//! plus the bias, whatever the thread count or the way positions group into tiles: the
//! results are the same bit for bit at every thread setting.

use super::conv::{with_padded, Finish, PadLayout, SharedOut};
use super::pool::max_pool_2x2_planes;
use super::threads::Split;
use super::window::Geometry;

/// Output channels per register tile.
const MR: usize = 4;
/// Positions per vector.
const LANES: usize = 8;
/// Vectors per register tile.
const NV: usize = 3;

/// Whether this CPU runs the direct kernel (x86-64 with AVX2 and FMA).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the direct kernel takes a convolution of `c` input channels of spatial size
/// `input` with a `kh`×`kw` window and geometry `geo` (stride 1, dilation 1 and one group are
/// the caller's to check): a 2-D window larger than 1×1 (a 1×1 one reads the image as it is,
/// for gemm), output rows of at least 8 positions, an output that spans the padded input, at
/// most [`MAX_DEPTH`] multiply-adds per output and a padded image of at most [`MAX_PADDED`]
/// values.
pub(crate) fn fits(c: usize, input: &[usize], kh: usize, kw: usize, geo: &Geometry) -> bool {
    available()
        && input.len() == 2
        && geo.out.len() == 2
        && geo.begin.len() == 2
        && geo.end.len() == 2
        && kh * kw > 1
        && geo.out[1] >= LANES
        && geo.out[0] + kh - 1 == input[0] + geo.begin[0] + geo.end[0]
        && geo.out[1] + kw - 1 == input[1] + geo.begin[1] + geo.end[1]
        && c * kh * kw <= MAX_DEPTH
        && c * (geo.out[0] + kh - 1) * (geo.out[1] + kw - 1) <= MAX_PADDED
}

/// The most multiply-adds per output (channels × window) the direct kernel takes: ResNet-18's
/// 128-channel 3×3 layers (1,152) ran 1–3% faster on it than as im2col and gemm on one thread
/// (`RIVET_CANDLE_PROFILE`, batch 1 and 8). Deeper layers stay with gemm, whose blocking of the
/// depth keeps its operands in cache.
pub(crate) const MAX_DEPTH: usize = 1152;

/// The largest padded image the direct kernel takes, in values: 64 Ki (256 KiB), which stays
/// in a core's L2 cache while every block of channels reads it. A ResNet's first layers (64
/// channels of 58×58 padded) are larger and run faster as im2col and gemm.
pub(crate) const MAX_PADDED: usize = 1 << 16;

/// A convolution's shape, as the direct kernel reads it.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) m: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
}

/// Weights `ws` (`[m, c·kh·kw]`) in blocks of 4 output channels, `[block][c·kh·kw][4]`, a
/// block's missing channels zero: what [`conv`] reads.
pub(crate) fn pack(ws: &[f32], m: usize) -> Vec<f32> {
    let ck = ws.len() / m.max(1);
    let mut packed = vec![0f32; m.div_ceil(MR) * ck * MR];
    pack_blocks(ws, m, MR, &mut packed);
    packed
}

/// Weights `ws` (`[m, c·kh·kw]`) into `dst` (zeros, `[block][c·kh·kw][mr]`) in blocks of `mr`
/// output channels: the direct kernels' packing, `mr` their register tile's channels.
pub(super) fn pack_blocks(ws: &[f32], m: usize, mr: usize, dst: &mut [f32]) {
    let ck = ws.len() / m.max(1);
    for (ch, row) in ws.chunks_exact(ck.max(1)).enumerate() {
        let (b, r) = (ch / mr, ch % mr);
        for (t, &v) in row.iter().enumerate() {
            dst[(b * ck + t) * mr + r] = v;
        }
    }
}

/// `dst` = `src` (of equal lengths), written for the short rows of small images: copies of
/// 8, 4, 2 and 1 values, each of a constant size and so a few moves, where `copy_from_slice`
/// calls `memcpy` per row. Padding 32 channels of 8×8 that way took about 1.8 µs per image,
/// a tenth of the bundled CNN's last convolution.
#[inline]
pub(super) fn copy_row(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "copy_row lengths");
    let (mut d, mut s) = (dst.chunks_exact_mut(8), src.chunks_exact(8));
    for (d, s) in (&mut d).zip(&mut s) {
        d.copy_from_slice(s);
    }
    let (mut d, mut s) = (d.into_remainder(), s.remainder());
    for size in [4, 2, 1] {
        if s.len() >= size {
            d[..size].copy_from_slice(&s[..size]);
            (d, s) = (&mut d[size..], &s[size..]);
        }
    }
}

/// Rows of `w` values into a zero-bordered image: `planes`, each plane's rows to copy, into
/// `dst`, planes `plane` values apart and rows `wp` apart from `at`; compiled for the CPU's
/// widest vectors (rows of 8 or 16 values then go in one or two moves each). Both direct
/// kernels' paddings, of whole images and of bands of rows.
pub(super) struct PadRows<'a, I> {
    pub(super) planes: I,
    pub(super) dst: &'a mut [f32],
    pub(super) w: usize,
    pub(super) plane: usize,
    pub(super) wp: usize,
    pub(super) at: usize,
}

impl<'a, I: Iterator<Item = &'a [f32]>> super::WideKernel for PadRows<'_, I> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let PadRows { planes, dst, w, plane, wp, at } = self;
        // Rows of a width known when compiled copy in a few moves each, with no loop over a
        // row's values: the bundled CNN's and ResNet-18's widths. Eight images of the CNN's
        // last layer (32 channels of 8×8) padded in 4.2 µs that way against 5.9 µs through
        // `copy_row`, its second layer's (16 of 16×16) in 5.0 against 6.7 (one thread, the
        // kernel's work apart from its tiles).
        match w {
            7 => fixed_rows::<7, _>(planes, dst, plane, wp, at),
            8 => fixed_rows::<8, _>(planes, dst, plane, wp, at),
            14 => fixed_rows::<14, _>(planes, dst, plane, wp, at),
            16 => fixed_rows::<16, _>(planes, dst, plane, wp, at),
            28 => fixed_rows::<28, _>(planes, dst, plane, wp, at),
            32 => fixed_rows::<32, _>(planes, dst, plane, wp, at),
            _ => {
                for (ch, rows) in planes.enumerate() {
                    for (r, row) in rows.chunks_exact(w).enumerate() {
                        copy_row(&mut dst[ch * plane + at + r * wp..][..w], row);
                    }
                }
            }
        }
    }
}

/// [`PadRows`]'s copy for rows `W` values wide: each plane's rows into `dst`, planes `plane`
/// values apart and rows `wp` apart from `at`.
#[inline(always)]
fn fixed_rows<'a, const W: usize, I: Iterator<Item = &'a [f32]>>(
    planes: I,
    dst: &mut [f32],
    plane: usize,
    wp: usize,
    at: usize,
) {
    assert!(wp >= W, "padded rows hold the input's");
    for (ch, rows) in planes.enumerate() {
        let (rows, _) = rows.as_chunks::<W>();
        let Some(span) = rows.len().checked_sub(1).map(|n| n * wp + W) else {
            continue;
        };
        let dst = &mut dst[ch * plane + at..][..span];
        // Row r at r·wp: within `span` since wp ≥ W. Indexing each row through the slice, not
        // `chunks_mut(wp)`, whose count divides by `wp` per plane (a quarter of this copy's
        // time on the bundled CNN's 8-wide planes).
        for (r, row) in rows.iter().enumerate() {
            let d: &mut [f32; W] = (&mut dst[r * wp..r * wp + W]).try_into().expect("a row of W values");
            *d = *row;
        }
    }
}

/// `out[i] = out[i] + residual[i]`, then with `relu` clamped at zero (`0` where `0 > y`, so
/// NaN and −0 stay, as the vector Relu of the kernels' stores), for each of `residual`'s
/// values: a direct kernel's finish for a residual it adds after its transposing store.
///
/// # Safety
/// `out` points at `residual.len()` initialized values that nothing else reads or writes
/// meanwhile.
pub(super) unsafe fn add_residual(out: *mut f32, residual: &[f32], relu: bool) {
    // SAFETY: the caller's.
    let out = unsafe { std::slice::from_raw_parts_mut(out, residual.len()) };
    for (y, &v) in out.iter_mut().zip(residual) {
        let s = *y + v;
        *y = if relu && 0.0 > s { 0.0 } else { s };
    }
}

/// `bias` (or zeros) for `channels` output channels, zero past its end: a whole number of
/// channel blocks' biases.
pub(super) fn block_bias(bias: Option<&[f32]>, channels: usize) -> Vec<f32> {
    (0..channels).map(|ch| bias.map_or(0.0, |b| b.get(ch).copied().unwrap_or(0.0))).collect()
}

/// `n` images in turn, each padded by `pad` on the calling thread into a buffer of `len`
/// values for `layout` ([`with_padded`]'s), then its `blocks` channel blocks split over
/// `split`'s threads, `run` computing image `i`'s blocks in a range from the padded image: the
/// direct kernels' split of a batch smaller than the thread count.
pub(super) fn channel_blocks_in_turn(
    n: usize,
    blocks: usize,
    (layout, len): (PadLayout, usize),
    split: &Split<'_>,
    pad: impl Fn(usize, &mut [f32]),
    run: impl Fn(&[f32], usize, std::ops::Range<usize>) + Sync + Send,
) {
    let per_task = blocks.div_ceil(split.threads());
    with_padded(layout, len, |xp| {
        for i in 0..n {
            pad(i, xp);
            let xp: &[f32] = xp;
            split.run(blocks.div_ceil(per_task), |t| {
                run(xp, i, t * per_task..((t + 1) * per_task).min(blocks));
            });
        }
    });
}

/// The convolution of `n` images `xs` (`[n, c, h, w]`) with weights `packed` ([`pack`]'s form of
/// `[m, c, kh, kw]`) into `out` (`[n, m, oh, ow]`, every element written), plus `bias`, then
/// `finish`'s residual and Relu. [`fits`] must hold.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv(
    xs: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
    s: Shape,
    geo: &Geometry,
    out: &mut [std::mem::MaybeUninit<f32>],
    split: &Split<'_>,
    finish: Finish<'_>,
) {
    conv_then(xs, packed, bias, s, geo, out, split, finish, false);
}

/// [`conv`] followed by a 2×2 max pool of stride 2 (an odd last row or column dropped), with
/// `out` (`[n, m, oh / 2, ow / 2]`) the pool's: each thread pools the rows it computed while
/// they are in its cache, from a scratch buffer it keeps, and no full-size output is written.
/// Each pooled value is [`super::pool::MaxPool2x2`]'s of the same four sums, so the result is the same bit
/// for bit as the two steps apart. `finish` takes no residual.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_max_pool_2x2(
    xs: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
    s: Shape,
    geo: &Geometry,
    out: &mut [std::mem::MaybeUninit<f32>],
    split: &Split<'_>,
    finish: Finish<'_>,
) {
    assert!(finish.residual.is_none(), "a pooled direct conv adds no residual");
    conv_then(xs, packed, bias, s, geo, out, split, finish, true);
}

/// [`conv`], then with `pool` [`conv_max_pool_2x2`]'s pooling.
#[allow(clippy::too_many_arguments)]
fn conv_then(
    xs: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
    s: Shape,
    geo: &Geometry,
    out: &mut [std::mem::MaybeUninit<f32>],
    split: &Split<'_>,
    finish: Finish<'_>,
    pool: bool,
) {
    assert!(available(), "the direct kernel needs AVX2 and FMA");
    let Shape { c, h, w, m, kh, kw } = s;
    let (oh, ow) = (geo.out[0], geo.out[1]);
    let (hp, wp) = (oh + kh - 1, ow + kw - 1);
    let (top, left) = (geo.begin[0], geo.begin[1]);
    let (plane, p) = (h * w, oh * ow);
    // The pooled plane's rows and columns, and the output's values per channel.
    let (ph, pw) = (oh / 2, ow / 2);
    let q = if pool { ph * pw } else { p };
    let ck = c * kh * kw;
    let n = xs.len() / (c * plane);
    assert!(
        xs.len() == n * c * plane && packed.len() == m.div_ceil(MR) * ck * MR && out.len() == n * m * q,
        "direct conv extents"
    );
    assert!(ow >= LANES && hp >= top + h && wp >= left + w, "direct conv geometry");
    assert!(finish.residual.is_none_or(|r| r.len() == out.len()), "direct conv residual");
    let blocks = m.div_ceil(MR);
    let bias = block_bias(bias, blocks * MR);
    let kernel =
        Kernel { offsets: &[], packed, bias: &bias, vectors: &[], reach: 0, ck, m, p, finish, k3: kw == 3 };
    // Image i's padded input rows that `rows` reads, into a buffer of `with_padded`'s for its
    // layout (whose other elements are zero already), then `run` with them.
    let padded_band = |i: usize, rows: &RowBand, run: &mut dyn FnMut(&[f32])| {
        let layout = [0, c, h, w, rows.first, rows.plane / wp, wp, top, left];
        with_padded(layout, c * rows.plane, |xp| {
            pad_band(
                &xs[i * c * plane..][..c * plane],
                [c, h, w],
                [top, left],
                wp,
                rows.first,
                rows.plane,
                xp,
            );
            run(xp);
        });
    };
    let outs = SharedOut::new(out);
    // Pooled in the register tiles where they take the rows: no full-size output at all.
    let pooled_tiles = pool && ck > 0 && pooled::takes(ow);
    // Image i's outputs at `rows` in the channel blocks `blocks`, from its padded rows `xp`:
    // into the output, or with `pool` into this thread's scratch and from there pooled into
    // the output.
    //
    // SAFETY (the caller's): nothing else writes or reads the outputs of those rows and
    // blocks of image i meanwhile.
    let emit = |xp: &[f32], i: usize, rows: &RowBand, blocks: std::ops::Range<usize>| {
        let k = kernel.over(rows);
        if !pool {
            // SAFETY: the caller's, above; `xp` holds the rows `rows` reads.
            unsafe { k.run(xp, outs.at(i * m * p), i * m * p, blocks) };
            return;
        }
        let channels = blocks.start * MR..(blocks.end * MR).min(m);
        let band = rows.rows.start / 2..rows.rows.end / 2;
        if pooled_tiles {
            // SAFETY: the caller's, above; `xp` holds the rows `rows` reads, and the pooled
            // rows `band` of the blocks' channels in image i are this task's alone.
            unsafe { k.run_pooled(xp, rows, outs.at(i * m * q), [q, pw], blocks) };
            return;
        }
        <f32 as super::conv::ConvElem>::with_scratch(m * p, |scratch| {
            // SAFETY: the scratch holds `m * p` values, the image's whole output, of which the
            // kernel writes the rows and channels asked for.
            unsafe { k.run(xp, scratch.as_mut_ptr(), 0, blocks) };
            let from = channels.start * p + 2 * band.start * ow;
            let at = i * m * q + channels.start * q + band.start * pw;
            // SAFETY: the pooled rows `band` of the channels in image i are (by the caller's
            // word) this task's alone; the scratch holds each channel's rows at stride p.
            unsafe {
                max_pool_2x2_planes(&scratch[from..], p, outs.at(at), q, [channels.len(), band.len(), ow]);
            }
        });
    };
    if pool && ph * pw == 0 {
        // No pooled output.
        return;
    }
    let threads = split.threads();
    // The rows a task computes: with `pool`, whole pairs of rows, as many pairs per thread.
    let share = |t: usize| {
        if pool {
            2 * (t * ph / threads)..2 * ((t + 1) * ph / threads)
        } else {
            t * oh / threads..(t + 1) * oh / threads
        }
    };
    // All the rows a task computes for a whole image.
    let all = if pool { 0..2 * ph } else { 0..oh };
    if !pool && (threads == 1 || n >= threads) && narrow::takes(s, geo) {
        // Rows 8 wide in AVX-512 tiles of two rows per vector, images in turn or over the
        // threads, each whole on its thread.
        let offsets = narrow::offsets(s, geo);
        let len = narrow::padded_len(s, geo);
        split.run_ranges(n, |i| {
            let layout = [1, c, h, w, 0, hp, ow, top, left];
            with_padded(layout, len, |xp| {
                narrow::pad(&xs[i * c * plane..][..c * plane], [c, h], hp, top, xp);
                // SAFETY: task i alone writes image i's outputs; the padding holds every read of
                // `offsets`.
                unsafe { narrow::run(&kernel, xp, &offsets, outs.at(i * m * p), i * m * p, oh) };
            });
        });
        return;
    }
    if threads == 1 || n >= threads {
        // Images in turn, or over the threads, each image whole on its thread.
        let whole = RowBand::kept(s, geo, all);
        split.run_ranges(n, |i| {
            // Task `i` alone writes image i's outputs.
            padded_band(i, &whole, &mut |xp| emit(xp, i, &whole, 0..blocks));
        });
        return;
    }
    if oh >= BAND_ROWS * threads {
        // Images in turn, each in bands of output rows over the threads, each thread padding
        // the input rows its band reads.
        for i in 0..n {
            split.run(threads, |t| {
                let rows = RowBand::kept(s, geo, share(t));
                // Task t alone writes its band's rows of image i, in every channel.
                padded_band(i, &rows, &mut |xp| emit(xp, i, &rows, 0..blocks));
            });
        }
        return;
    }
    // Images in turn, each padded on the caller and its channel blocks over the threads.
    let whole = RowBand::kept(s, geo, all);
    let layout = [0, c, h, w, whole.first, whole.plane / wp, wp, top, left];
    let pad_image = |i: usize, xp: &mut [f32]| {
        pad_band(&xs[i * c * plane..][..c * plane], [c, h, w], [top, left], wp, 0, whole.plane, xp);
    };
    channel_blocks_in_turn(n, blocks, (layout, c * whole.plane), split, pad_image, |xp, i, range| {
        // Each task alone writes the channels of its blocks in image i.
        emit(xp, i, &whole, range);
    });
}

/// How many register tiles of three vectors, then of two, the row kernel runs over `vectors`
/// vectors; one vector is left alone only where `vectors` is 1. Where three would leave
/// one, the last four go as two and two: a tile of one vector has 4 accumulators, half what
/// two multiply-add units need in flight, and waits on each multiply-add. One image of the
/// bundled CNN in bands of 4 rows over two threads left one such vector in each band of its
/// 8-wide last layer (4 vectors, as 3 + 1): that layer took 13.3–13.5 µs as 2 + 2 against
/// 14.1–15.0 (batch 1, `RIVET_CANDLE_PROFILE`, the split forced).
pub(crate) fn tile_counts(vectors: usize) -> (usize, usize) {
    match vectors % NV {
        1 if vectors >= 4 => ((vectors - 4) / NV, 2),
        2 => (vectors / NV, 1),
        _ => (vectors / NV, 0),
    }
}

/// The fewest output rows per thread for which an image of fewer images than threads splits
/// into bands of rows rather than blocks of channels. In bands, each thread pads and reads
/// about its share of the image, and a 2×2 max pool after it (which splits its rows the same
/// way) reads what the same thread wrote: from one layer to the next only the rows at a band's
/// edge move between cores, where splitting the channels moves the whole image twice.
const BAND_ROWS: usize = 4;

/// A band of whole output rows of one image, as the row kernel reads it: from its own padded
/// rows, `plane` values per channel from padded row `first` on.
struct RowBand {
    /// The output rows.
    rows: std::ops::Range<usize>,
    first: usize,
    plane: usize,
    /// Where each multiply-add step reads in the band's padded rows, in the weights' order.
    offsets: Vec<usize>,
    /// The band's vectors: (read offset in the band's padded rows, write offset in the plane).
    vectors: Vec<(usize, usize)>,
    /// One past the last padded value the band's vectors read.
    reach: usize,
    /// The padded rows' width.
    wp: usize,
    /// The units of [`pooled`]'s tiles, where the band is whole pairs of rows 16 positions wide
    /// or a multiple (else empty): for each pair of its rows and each 16 positions of them,
    /// where the top row's 16 start in the band's padded rows and where their 8 pooled values
    /// go in the pooled plane.
    pool_units: Vec<(usize, usize)>,
}

/// The most row bands a thread keeps between runs ([`RowBand::kept`]).
const BANDS_KEPT: usize = 8;

thread_local! {
    /// The row bands this thread built last, by what they depend on: the channels, the window,
    /// the output's width and the rows.
    static BANDS: std::cell::RefCell<Vec<([usize; 6], std::sync::Arc<RowBand>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl RowBand {
    /// [`RowBand::new`]'s band, the one this thread built last for the same shape and rows if
    /// it is among the [`BANDS_KEPT`] it keeps: a model's convolutions ask for the same bands on
    /// every run. Kept, the bundled CNN ran in 46.5 µs against 47.3 building them each time
    /// (batch 1, one thread, `rivet bench-worker`'s median over 30,000 runs).
    fn kept(s: Shape, geo: &Geometry, rows: std::ops::Range<usize>) -> std::sync::Arc<RowBand> {
        let key = [s.c, s.kh, s.kw, geo.out[1], rows.start, rows.end];
        BANDS.with(|kept| {
            let mut kept = kept.borrow_mut();
            if let Some((_, band)) = kept.iter().find(|(k, _)| *k == key) {
                return band.clone();
            }
            let band = std::sync::Arc::new(RowBand::new(s, geo, rows));
            if kept.len() >= BANDS_KEPT {
                kept.remove(0);
            }
            kept.push((key, band.clone()));
            band
        })
    }

    /// Output rows `rows` (not empty) of a convolution [`fits`] takes.
    fn new(s: Shape, geo: &Geometry, rows: std::ops::Range<usize>) -> RowBand {
        let ow = geo.out[1];
        let wp = ow + s.kw - 1;
        let plane = (rows.len() + s.kh - 1) * wp;
        // One channel's offsets, then each channel's as those plus its plane's start.
        let window: Vec<usize> = (0..s.kh).flat_map(|i| (0..s.kw).map(move |j| i * wp + j)).collect();
        let mut offsets = vec![0; s.c * window.len()];
        for (ch, offsets) in offsets.chunks_exact_mut(window.len()).enumerate() {
            for (o, &at) in offsets.iter_mut().zip(&window) {
                *o = ch * plane + at;
            }
        }
        let per_row = ow.div_ceil(LANES);
        let mut vectors = Vec::with_capacity(rows.len() * per_row);
        for y in rows.clone() {
            for v in 0..per_row {
                let x = (v * LANES).min(ow - LANES);
                vectors.push(((y - rows.start) * wp + x, y * ow + x));
            }
        }
        let last = offsets.iter().copied().max().unwrap_or(0);
        let reach = vectors.iter().map(|v| v.0).max().unwrap_or(0) + last + LANES;
        let mut pool_units = Vec::new();
        if ow.is_multiple_of(pooled::LANES) && rows.start.is_multiple_of(2) && rows.len().is_multiple_of(2) {
            let pw = ow / 2;
            for y in rows.start / 2..rows.end / 2 {
                let top = (2 * y - rows.start) * wp;
                for x in (0..ow).step_by(pooled::LANES) {
                    pool_units.push((top + x, y * pw + x / 2));
                }
            }
        }
        RowBand { first: rows.start, plane, offsets, vectors, reach, wp, pool_units, rows }
    }
}

/// Rows of the zero-bordered image of `img` (`c` planes of `h`×`w`, placed at row `top` and
/// column `left` of planes `wp` wide): the padded rows from `first` on that fit in `plane`
/// values per channel, into `dst` (planes `plane` apart). Elements no input value lands on are not
/// written: in a buffer of [`with_padded`]'s for the same layout they are zero already. Both
/// direct kernels' paddings, of whole images and of bands of rows.
#[allow(clippy::too_many_arguments)]
pub(super) fn pad_band(
    img: &[f32],
    [c, h, w]: [usize; 3],
    [top, left]: [usize; 2],
    wp: usize,
    first: usize,
    plane: usize,
    dst: &mut [f32],
) {
    // Padded row first + r holds input row first + r - top, where there is one.
    let from = first.saturating_sub(top).min(h);
    let to = (first + plane / wp).saturating_sub(top).min(h);
    if from >= to {
        return;
    }
    // Input row `from` goes to padded row `from + top - first`.
    let at = (from + top - first) * wp + left;
    let planes = img.chunks_exact(h * w).take(c).map(|p| &p[from * w..to * w]);
    super::wide(PadRows { planes, dst, w, plane, wp, at });
}

/// What every register tile of one convolution reads.
#[derive(Clone, Copy)]
struct Kernel<'a> {
    offsets: &'a [usize],
    packed: &'a [f32],
    bias: &'a [f32],
    vectors: &'a [(usize, usize)],
    /// One past the last padded value the vectors read.
    reach: usize,
    ck: usize,
    m: usize,
    p: usize,
    finish: Finish<'a>,
    /// Whether the window is 3 wide: the offsets come in threes `o, o + 1, o + 2`.
    k3: bool,
}

impl<'a> Kernel<'a> {
    /// The kernel over the rows of `rows`.
    fn over<'b>(&self, rows: &'b RowBand) -> Kernel<'b>
    where
        'a: 'b,
    {
        Kernel { offsets: &rows.offsets, vectors: &rows.vectors, reach: rows.reach, ..*self }
    }

    /// One image's outputs for the channel blocks `blocks`, from its padded planes `xp`, into
    /// the image's output at `out`, which starts at element `at` of the whole output (and of
    /// the residual, if any).
    ///
    /// # Safety
    /// `out` points at the image's `m * p` outputs, and nothing else reads or writes the
    /// channels of `blocks` there meanwhile; `xp` holds the padded image the offsets and
    /// vectors were made for.
    unsafe fn run(&self, xp: &[f32], out: *mut f32, at: usize, blocks: std::ops::Range<usize>) {
        assert!(self.reach <= xp.len(), "the padded image holds every read");
        let residual = self.finish.residual.map(|r| &r[at..at + self.m * self.p]);
        for b in blocks {
            let rows = MR.min(self.m - b * MR);
            let weights = &self.packed[b * self.ck * MR..(b + 1) * self.ck * MR];
            let to = x86::To {
                // SAFETY: channels b·4 .. b·4 + rows of this image are the caller's alone.
                out: unsafe { out.add(b * MR * self.p) },
                residual: residual.map(|r| r[b * MR * self.p..].as_ptr()),
                p: self.p,
                channels: rows,
                bias: &self.bias[b * MR..(b + 1) * MR],
                relu: self.finish.relu,
            };
            // Tiles of three vectors, and at the end of two: a lone vector's 4 accumulators
            // wait on each multiply-add, so four vectors left go as two and two.
            let (threes, twos) = tile_counts(self.vectors.len());
            let (full, rest) = self.vectors.split_at(threes * NV);
            // SAFETY: every read is within `xp` (asserted above), the weights hold ck·4 values,
            // and each write lands in one of `rows` rows of this block's output (row stride p),
            // at a vector that lies within the row; the residual has the output's shape.
            for tile in full.chunks_exact(NV) {
                unsafe { x86::tile::<NV>(xp.as_ptr(), self.offsets, weights.as_ptr(), tile, &to, self.k3) };
            }
            let (pairs, lone) = rest.split_at(twos * 2);
            for tile in pairs.chunks_exact(2) {
                // SAFETY: as above.
                unsafe { x86::tile::<2>(xp.as_ptr(), self.offsets, weights.as_ptr(), tile, &to, self.k3) };
            }
            if !lone.is_empty() {
                // SAFETY: as above.
                unsafe { x86::tile::<1>(xp.as_ptr(), self.offsets, weights.as_ptr(), lone, &to, self.k3) };
            }
        }
    }
}

impl Kernel<'_> {
    /// [`Kernel::run`] followed by [`conv_max_pool_2x2`]'s pool, in [`pooled`]'s tiles: each
    /// tile's sums are pooled in registers and only the pooled values are written, into the
    /// image's pooled output at `out` (`[m, q]`, `q` values per channel, rows `pw` wide), for
    /// the rows of `rows` (whole pairs) and the channel blocks `blocks`.
    ///
    /// # Safety
    /// [`pooled::takes`] holds for this kernel; `out` points at the image's `m * q` pooled
    /// outputs, and nothing else reads or writes the pooled rows of `rows` in the channels of
    /// `blocks` meanwhile; `xp` holds the padded rows `rows` was made for.
    unsafe fn run_pooled(
        &self,
        xp: &[f32],
        rows: &RowBand,
        out: *mut f32,
        [q, pw]: [usize; 2],
        blocks: std::ops::Range<usize>,
    ) {
        assert!(self.reach <= xp.len(), "the padded image holds every read");
        assert!(!rows.pool_units.is_empty() && pw > 0, "pooled tiles take the band");
        let units = &rows.pool_units;
        for b in blocks {
            let weights = &self.packed[b * self.ck * MR..(b + 1) * self.ck * MR];
            let to = pooled::To {
                // SAFETY: channels b·4 .. b·4 + channels of this image are the caller's alone.
                out: unsafe { out.add(b * MR * q) },
                q,
                channels: MR.min(self.m - b * MR),
                bias: &self.bias[b * MR..(b + 1) * MR],
                relu: self.finish.relu,
                wp: rows.wp,
            };
            let mut pairs = units.chunks_exact(2);
            for two in &mut pairs {
                // SAFETY: every read is within `xp` (asserted above; the units lie in the
                // band's rows), the weights hold ck·4 values, and each write lands in one of the
                // block's channels at a pooled position of the band's rows.
                unsafe { pooled::tile::<2>(xp.as_ptr(), self.offsets, weights.as_ptr(), two, &to, self.k3) };
            }
            if let [one] = pairs.remainder() {
                // SAFETY: as above.
                unsafe {
                    pooled::tile::<1>(
                        xp.as_ptr(),
                        self.offsets,
                        weights.as_ptr(),
                        std::slice::from_ref(one),
                        &to,
                        self.k3,
                    )
                };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::MR;
    use std::arch::x86_64::*;

    /// Where a tile's sums go: `channels` rows `p` apart from `out`, each plus its `bias`, then
    /// with `residual` the value at the same place there, then clamped at zero with `relu`.
    pub(super) struct To<'a> {
        pub(super) out: *mut f32,
        pub(super) residual: Option<*const f32>,
        pub(super) p: usize,
        pub(super) channels: usize,
        pub(super) bias: &'a [f32],
        pub(super) relu: bool,
    }

    /// One register tile: `to.channels` (at most 4) output channels × `V` vectors of 8
    /// positions, finished as [`To`] says.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA. For every vector `(src, dst)` of `tile` and offset `o` of
    /// `offsets`, `xp[src + o .. src + o + 8]` is readable; `weights` holds `offsets.len() * 4`
    /// values; for each channel `r < to.channels`, `to.out[r * to.p + dst ..][..8]` is
    /// writable and, with a residual, `residual[r * to.p + dst ..][..8]` readable.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile<const V: usize>(
        xp: *const f32,
        offsets: &[usize],
        weights: *const f32,
        tile: &[(usize, usize)],
        to: &To<'_>,
        k3: bool,
    ) {
        // SAFETY (all blocks below): the reads and writes are the ones the contract covers.
        let src: [*const f32; V] = std::array::from_fn(|v| unsafe { xp.add(tile[v].0) });
        let mut acc = [[_mm256_setzero_ps(); V]; MR];
        if (V == 2 || V == 3) && !offsets.is_empty() && (!k3 || offsets.len().is_multiple_of(3)) {
            if V == 3 {
                acc3(src, offsets, weights, &mut acc, k3);
            } else {
                acc2(src, offsets, weights, &mut acc, k3);
            }
            store(&acc, tile, to);
            return;
        }
        for (t, &o) in offsets.iter().enumerate() {
            let x: [__m256; V] = std::array::from_fn(|v| unsafe { _mm256_loadu_ps(src[v].add(o)) });
            let w = unsafe { weights.add(t * MR) };
            for (r, acc) in acc.iter_mut().enumerate() {
                let wr = unsafe { _mm256_broadcast_ss(&*w.add(r)) };
                for (a, x) in acc.iter_mut().zip(&x) {
                    *a = _mm256_fmadd_ps(wr, *x, *a);
                }
            }
        }
        store(&acc, tile, to);
    }

    /// One multiply-add step of the 4 × 3 tile, as assembly text: the 3 input vectors `$x`
    /// bytes past `{s0}`–`{s2}` plus the step's offset `{o}`, times each of the 4 weights `$w`
    /// bytes past `{w}`, added to accumulators ymm0–ymm11 (channel by channel).
    macro_rules! step3 {
        ($w:literal, $x:literal) => {
            concat!(
                "vmovups ymm12, ymmword ptr [{s0} + 4*{o} + ",
                $x,
                "]\n",
                "vmovups ymm13, ymmword ptr [{s1} + 4*{o} + ",
                $x,
                "]\n",
                "vmovups ymm14, ymmword ptr [{s2} + 4*{o} + ",
                $x,
                "]\n",
                "vbroadcastss ymm15, dword ptr [{w} + ",
                $w,
                "]\n",
                "vfmadd231ps ymm0, ymm15, ymm12\n",
                "vfmadd231ps ymm1, ymm15, ymm13\n",
                "vfmadd231ps ymm2, ymm15, ymm14\n",
                "vbroadcastss ymm15, dword ptr [{w} + ",
                $w,
                " + 4]\n",
                "vfmadd231ps ymm3, ymm15, ymm12\n",
                "vfmadd231ps ymm4, ymm15, ymm13\n",
                "vfmadd231ps ymm5, ymm15, ymm14\n",
                "vbroadcastss ymm15, dword ptr [{w} + ",
                $w,
                " + 8]\n",
                "vfmadd231ps ymm6, ymm15, ymm12\n",
                "vfmadd231ps ymm7, ymm15, ymm13\n",
                "vfmadd231ps ymm8, ymm15, ymm14\n",
                "vbroadcastss ymm15, dword ptr [{w} + ",
                $w,
                " + 12]\n",
                "vfmadd231ps ymm9, ymm15, ymm12\n",
                "vfmadd231ps ymm10, ymm15, ymm13\n",
                "vfmadd231ps ymm11, ymm15, ymm14\n",
            )
        };
    }

    /// [`step3`] for the 4 × 2 tile: 2 input vectors at `{s0}` and `{s1}`, accumulators
    /// ymm0–ymm7.
    macro_rules! step2 {
        ($w:literal, $x:literal) => {
            concat!(
                "vmovups ymm12, ymmword ptr [{s0} + 4*{o} + ",
                $x,
                "]\n",
                "vmovups ymm13, ymmword ptr [{s1} + 4*{o} + ",
                $x,
                "]\n",
                "vbroadcastss ymm14, dword ptr [{w} + ",
                $w,
                "]\n",
                "vfmadd231ps ymm0, ymm14, ymm12\n",
                "vfmadd231ps ymm1, ymm14, ymm13\n",
                "vbroadcastss ymm15, dword ptr [{w} + ",
                $w,
                " + 4]\n",
                "vfmadd231ps ymm2, ymm15, ymm12\n",
                "vfmadd231ps ymm3, ymm15, ymm13\n",
                "vbroadcastss ymm14, dword ptr [{w} + ",
                $w,
                " + 8]\n",
                "vfmadd231ps ymm4, ymm14, ymm12\n",
                "vfmadd231ps ymm5, ymm14, ymm13\n",
                "vbroadcastss ymm15, dword ptr [{w} + ",
                $w,
                " + 12]\n",
                "vfmadd231ps ymm6, ymm15, ymm12\n",
                "vfmadd231ps ymm7, ymm15, ymm13\n",
            )
        };
    }

    /// The 4 × 3 tile's sums, its 12 accumulators, 3 input vectors and one broadcast weight in
    /// the 16 vector registers (compiled, the loop keeps a second weight live and shuffles
    /// the accumulators between registers on every step). With `k3`, `offsets` comes in
    /// threes `o, o + 1, o + 2` (a window row 3 wide), and one offset is read per three steps.
    ///
    /// # Safety
    /// As [`tile`]'s, with `V` = 3, `offsets` not empty and, with `k3`, a multiple of 3 long.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn acc3<const V: usize>(
        src: [*const f32; V],
        offsets: &[usize],
        weights: *const f32,
        acc: &mut [[__m256; V]; MR],
        k3: bool,
    ) {
        let z = _mm256_setzero_ps();
        let (mut a0, mut a1, mut a2, mut a3, mut a4, mut a5) = (z, z, z, z, z, z);
        let (mut a6, mut a7, mut a8, mut a9, mut a10, mut a11) = (z, z, z, z, z, z);
        let (s0, s1, s2) = (src[0], src[1], src[2]);
        if k3 {
            tile_loop_asm!(offsets, offsets.len() / 3, weights, [s0 = s0, s1 = s1, s2 = s2],
                ["ymm0" a0, "ymm1" a1, "ymm2" a2, "ymm3" a3, "ymm4" a4, "ymm5" a5,
                 "ymm6" a6, "ymm7" a7, "ymm8" a8, "ymm9" a9, "ymm10" a10, "ymm11" a11];
                step3!(0, 0), step3!(16, 4), step3!(32, 8), "add {offs}, 24", "add {w}, 48",);
        } else {
            tile_loop_asm!(offsets, offsets.len(), weights, [s0 = s0, s1 = s1, s2 = s2],
                ["ymm0" a0, "ymm1" a1, "ymm2" a2, "ymm3" a3, "ymm4" a4, "ymm5" a5,
                 "ymm6" a6, "ymm7" a7, "ymm8" a8, "ymm9" a9, "ymm10" a10, "ymm11" a11];
                step3!(0, 0), "add {offs}, 8", "add {w}, 16",);
        }
        let all = [[a0, a1, a2], [a3, a4, a5], [a6, a7, a8], [a9, a10, a11]];
        for (acc, row) in acc.iter_mut().zip(all) {
            acc.copy_from_slice(&row[..V]);
        }
    }

    /// [`acc3`] for the 4 × 2 tile (a plane's last two vectors): 8 accumulators.
    ///
    /// # Safety
    /// As [`acc3`]'s, with `V` = 2.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn acc2<const V: usize>(
        src: [*const f32; V],
        offsets: &[usize],
        weights: *const f32,
        acc: &mut [[__m256; V]; MR],
        k3: bool,
    ) {
        let z = _mm256_setzero_ps();
        let (mut a0, mut a1, mut a2, mut a3, mut a4, mut a5, mut a6, mut a7) = (z, z, z, z, z, z, z, z);
        let (s0, s1) = (src[0], src[1]);
        if k3 {
            tile_loop_asm!(offsets, offsets.len() / 3, weights, [s0 = s0, s1 = s1],
                ["ymm0" a0, "ymm1" a1, "ymm2" a2, "ymm3" a3, "ymm4" a4, "ymm5" a5, "ymm6" a6, "ymm7" a7];
                step2!(0, 0), step2!(16, 4), step2!(32, 8), "add {offs}, 24", "add {w}, 48",);
        } else {
            tile_loop_asm!(offsets, offsets.len(), weights, [s0 = s0, s1 = s1],
                ["ymm0" a0, "ymm1" a1, "ymm2" a2, "ymm3" a3, "ymm4" a4, "ymm5" a5, "ymm6" a6, "ymm7" a7];
                step2!(0, 0), "add {offs}, 8", "add {w}, 16",);
        }
        let all = [[a0, a1], [a2, a3], [a4, a5], [a6, a7]];
        for (acc, row) in acc.iter_mut().zip(all) {
            acc.copy_from_slice(&row[..V]);
        }
    }

    /// A tile's outputs, finished as `to` says.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn store<const V: usize>(acc: &[[__m256; V]; MR], tile: &[(usize, usize)], to: &To<'_>) {
        let zero = _mm256_setzero_ps();
        for (r, acc) in acc.iter().enumerate().take(to.channels) {
            let b = _mm256_set1_ps(to.bias[r]);
            for (a, &(_, at)) in acc.iter().zip(tile) {
                let mut y = _mm256_add_ps(*a, b);
                if let Some(res) = to.residual {
                    let v = unsafe { _mm256_loadu_ps(res.add(r * to.p + at)) };
                    y = _mm256_add_ps(y, v);
                }
                if to.relu {
                    // max(0, y) returns y when y is NaN (the second operand wins when
                    // unordered), as the scalar `if y < 0 { 0 } else { y }` does.
                    y = _mm256_max_ps(zero, y);
                }
                unsafe { _mm256_storeu_ps(to.out.add(r * to.p + at), y) };
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    /// Where a tile's sums go (see the x86-64 module's).
    #[allow(dead_code)]
    pub(super) struct To<'a> {
        pub(super) out: *mut f32,
        pub(super) residual: Option<*const f32>,
        pub(super) p: usize,
        pub(super) channels: usize,
        pub(super) bias: &'a [f32],
        pub(super) relu: bool,
    }

    /// Not reached: [`super::available`] is false off x86-64.
    pub(super) unsafe fn tile<const V: usize>(
        _: *const f32,
        _: &[usize],
        _: *const f32,
        _: &[(usize, usize)],
        _: &To<'_>,
        _: bool,
    ) {
        unreachable!("the direct kernel runs on x86-64 only")
    }
}

/// Register tiles that pool as they store, for [`conv_max_pool_2x2`] on AVX-512: 4 output
/// channels × one or two units, a unit being 16 positions of a pair of rows (one 512-bit vector
/// per row), so that a tile holds every sum of the 8 pooled values of each unit. The tile adds
/// its bias, clamps with Relu, pools each unit's two rows of 16 into 8 values in registers and
/// writes only those: the full-size output never goes through memory. Each sum is the same
/// chain of multiply-adds as the row kernel's tiles' and each pooled value the same comparisons
/// as [`super::pool::MaxPool2x2`]'s, so the result is the same bit for bit.
#[cfg(target_arch = "x86_64")]
mod pooled {
    use super::MR;
    use std::arch::x86_64::*;

    /// Positions of a row per unit: one 512-bit vector.
    pub(super) const LANES: usize = 16;

    /// Whether the pooled tiles take output rows `ow` wide: a multiple of 16, on a CPU with
    /// AVX-512F.
    pub(super) fn takes(ow: usize) -> bool {
        super::super::direct_wide::available() && ow > 0 && ow.is_multiple_of(LANES)
    }

    /// Where a pooled tile's values go: `channels` planes `q` apart from `out`, each sum plus its
    /// `bias`, clamped at zero with `relu`, before pooling; the tile's rows `wp` apart in the
    /// padded image.
    pub(super) struct To<'a> {
        pub(super) out: *mut f32,
        pub(super) q: usize,
        pub(super) channels: usize,
        pub(super) bias: &'a [f32],
        pub(super) relu: bool,
        pub(super) wp: usize,
    }

    /// One pooled tile of `U` (1 or 2) units `units` (each: where its top row's 16 positions
    /// start in the padded rows `xp`, where its 8 pooled values go in each plane).
    ///
    /// # Safety
    /// The CPU has AVX-512F. For every unit `(src, _)`, offset `o` of `offsets` (not empty; with
    /// `k3` a multiple of 3 long, in threes `o, o + 1, o + 2`) and row `r` of 0 and `to.wp`,
    /// `xp[src + r + o ..][..16]` is readable; `weights` holds `offsets.len() * 4` values; for
    /// each channel `c < to.channels` and unit `(_, dst)`, `to.out[c * to.q + dst ..][..8]` is
    /// writable.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile<const U: usize>(
        xp: *const f32,
        offsets: &[usize],
        weights: *const f32,
        units: &[(usize, usize)],
        to: &To<'_>,
        k3: bool,
    ) {
        assert!(
            units.len() == U && (U == 1 || U == 2) && !offsets.is_empty(),
            "a pooled tile of one or two units"
        );
        // SAFETY (all blocks below): the reads and writes are the ones the contract covers.
        let top: [*const f32; U] = std::array::from_fn(|u| unsafe { xp.add(units[u].0) });
        let bottom: [*const f32; U] = std::array::from_fn(|u| unsafe { top[u].add(to.wp) });
        let z = _mm512_setzero_ps();
        let by = if k3 { 3 } else { 1 };
        // acc[c][2u] and acc[c][2u + 1]: channel c, unit u's top and bottom row.
        let acc: [[__m512; 4]; MR] = if U == 2 {
            let (mut a0, mut a1, mut a2, mut a3, mut a4, mut a5, mut a6, mut a7) = (z, z, z, z, z, z, z, z);
            let (mut a8, mut a9, mut a10, mut a11, mut a12, mut a13, mut a14, mut a15) =
                (z, z, z, z, z, z, z, z);
            let (s0, s1, s2, s3) = (top[0], bottom[0], top[U - 1], bottom[U - 1]);
            if by == 3 {
                tile_loop_asm!(offsets, offsets.len() / 3, weights, [s0 = s0, s1 = s1, s2 = s2, s3 = s3],
                    moving [], consts [], free ["zmm16", "zmm17", "zmm18", "zmm19", "zmm20", "zmm21"];
                    ["zmm0" a0, "zmm1" a1, "zmm2" a2, "zmm3" a3, "zmm4" a4, "zmm5" a5, "zmm6" a6, "zmm7" a7,
                     "zmm8" a8, "zmm9" a9, "zmm10" a10, "zmm11" a11, "zmm12" a12, "zmm13" a13, "zmm14" a14,
                     "zmm15" a15];
                    step_two!(0, 0), step_two!(16, 4), step_two!(32, 8), "add {offs}, 24", "add {w}, 48",);
            } else {
                tile_loop_asm!(offsets, offsets.len(), weights, [s0 = s0, s1 = s1, s2 = s2, s3 = s3],
                    moving [], consts [], free ["zmm16", "zmm17", "zmm18", "zmm19", "zmm20", "zmm21"];
                    ["zmm0" a0, "zmm1" a1, "zmm2" a2, "zmm3" a3, "zmm4" a4, "zmm5" a5, "zmm6" a6, "zmm7" a7,
                     "zmm8" a8, "zmm9" a9, "zmm10" a10, "zmm11" a11, "zmm12" a12, "zmm13" a13, "zmm14" a14,
                     "zmm15" a15];
                    step_two!(0, 0), "add {offs}, 8", "add {w}, 16",);
            }
            [[a0, a1, a2, a3], [a4, a5, a6, a7], [a8, a9, a10, a11], [a12, a13, a14, a15]]
        } else {
            let (mut a0, mut a1, mut a2, mut a3, mut a4, mut a5, mut a6, mut a7) = (z, z, z, z, z, z, z, z);
            let (s0, s1) = (top[0], bottom[0]);
            if by == 3 {
                tile_loop_asm!(offsets, offsets.len() / 3, weights, [s0 = s0, s1 = s1],
                    moving [], consts [], free ["zmm16", "zmm17", "zmm20", "zmm21"];
                    ["zmm0" a0, "zmm1" a1, "zmm2" a2, "zmm3" a3, "zmm4" a4, "zmm5" a5, "zmm6" a6, "zmm7" a7];
                    step_one!(0, 0), step_one!(16, 4), step_one!(32, 8), "add {offs}, 24", "add {w}, 48",);
            } else {
                tile_loop_asm!(offsets, offsets.len(), weights, [s0 = s0, s1 = s1],
                    moving [], consts [], free ["zmm16", "zmm17", "zmm20", "zmm21"];
                    ["zmm0" a0, "zmm1" a1, "zmm2" a2, "zmm3" a3, "zmm4" a4, "zmm5" a5, "zmm6" a6, "zmm7" a7];
                    step_one!(0, 0), "add {offs}, 8", "add {w}, 16",);
            }
            [[a0, a1, z, z], [a2, a3, z, z], [a4, a5, z, z], [a6, a7, z, z]]
        };
        // The even and the odd columns of a unit's two rows: [top | bottom] of each.
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        for (c, acc) in acc.iter().enumerate().take(to.channels) {
            let b = _mm512_set1_ps(to.bias[c]);
            let finish = |a: __m512| {
                let y = _mm512_add_ps(a, b);
                // max(0, y) returns y when y is NaN (the second operand wins when unordered),
                // as the row kernel's store does.
                if to.relu {
                    _mm512_max_ps(z, y)
                } else {
                    y
                }
            };
            for (u, &(_, dst)) in units.iter().enumerate() {
                let (t, bt) = (finish(acc[2 * u]), finish(acc[2 * u + 1]));
                // Each row's column pairs, then the rows: as the 2×2 pool compares them.
                let h = larger(_mm512_permutex2var_ps(t, even, bt), _mm512_permutex2var_ps(t, odd, bt));
                let lo = _mm512_castps512_ps256(h);
                let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(h)));
                let v = larger256(lo, hi);
                unsafe { _mm256_storeu_ps(to.out.add(c * to.q + dst), v) };
            }
        }
    }

    /// [`super::super::pool`]'s `larger` on sixteen lanes: `v` where `v > a` or `v` is NaN,
    /// else `a`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn larger(a: __m512, v: __m512) -> __m512 {
        _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v), _mm512_max_ps(v, a), v)
    }

    /// [`larger`] on eight lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn larger256(a: __m256, v: __m256) -> __m256 {
        _mm256_blendv_ps(_mm256_max_ps(v, a), v, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v))
    }

    /// One multiply-add step of a tile of 4 channels × 4 vectors (a two-unit pooled tile, and
    /// [`super::narrow`]'s), as assembly text: the four vectors' 16 inputs `$x` bytes past
    /// `{s0}`–`{s3}` plus the step's offset `{o}` (loaded under `$mask` where given, an
    /// operand suffix such as `{k1}{z}`), times each of the 4 weights `$w` bytes past `{w}`,
    /// added to zmm0–zmm15 (channel by channel, the vectors in turn).
    macro_rules! step_two {
        ($w:literal, $x:literal) => {
            step_two!("", $w, $x)
        };
        ($mask:literal, $w:literal, $x:literal) => {
            concat!(
                "vmovups zmm16",
                $mask,
                ", zmmword ptr [{s0} + 4*{o} + ",
                $x,
                "]\n",
                "vmovups zmm17",
                $mask,
                ", zmmword ptr [{s1} + 4*{o} + ",
                $x,
                "]\n",
                "vmovups zmm18",
                $mask,
                ", zmmword ptr [{s2} + 4*{o} + ",
                $x,
                "]\n",
                "vmovups zmm19",
                $mask,
                ", zmmword ptr [{s3} + 4*{o} + ",
                $x,
                "]\n",
                "vbroadcastss zmm20, dword ptr [{w} + ",
                $w,
                "]\n",
                "vfmadd231ps zmm0, zmm20, zmm16\n",
                "vfmadd231ps zmm1, zmm20, zmm17\n",
                "vfmadd231ps zmm2, zmm20, zmm18\n",
                "vfmadd231ps zmm3, zmm20, zmm19\n",
                "vbroadcastss zmm21, dword ptr [{w} + ",
                $w,
                " + 4]\n",
                "vfmadd231ps zmm4, zmm21, zmm16\n",
                "vfmadd231ps zmm5, zmm21, zmm17\n",
                "vfmadd231ps zmm6, zmm21, zmm18\n",
                "vfmadd231ps zmm7, zmm21, zmm19\n",
                "vbroadcastss zmm20, dword ptr [{w} + ",
                $w,
                " + 8]\n",
                "vfmadd231ps zmm8, zmm20, zmm16\n",
                "vfmadd231ps zmm9, zmm20, zmm17\n",
                "vfmadd231ps zmm10, zmm20, zmm18\n",
                "vfmadd231ps zmm11, zmm20, zmm19\n",
                "vbroadcastss zmm21, dword ptr [{w} + ",
                $w,
                " + 12]\n",
                "vfmadd231ps zmm12, zmm21, zmm16\n",
                "vfmadd231ps zmm13, zmm21, zmm17\n",
                "vfmadd231ps zmm14, zmm21, zmm18\n",
                "vfmadd231ps zmm15, zmm21, zmm19\n",
            )
        };
    }

    /// [`step_two`] for a one-unit tile: two rows from `{s0}` and `{s1}`, zmm0–zmm7.
    macro_rules! step_one {
        ($w:literal, $x:literal) => {
            concat!(
                "vmovups zmm16, zmmword ptr [{s0} + 4*{o} + ",
                $x,
                "]\n",
                "vmovups zmm17, zmmword ptr [{s1} + 4*{o} + ",
                $x,
                "]\n",
                "vbroadcastss zmm20, dword ptr [{w} + ",
                $w,
                "]\n",
                "vfmadd231ps zmm0, zmm20, zmm16\n",
                "vfmadd231ps zmm1, zmm20, zmm17\n",
                "vbroadcastss zmm21, dword ptr [{w} + ",
                $w,
                " + 4]\n",
                "vfmadd231ps zmm2, zmm21, zmm16\n",
                "vfmadd231ps zmm3, zmm21, zmm17\n",
                "vbroadcastss zmm20, dword ptr [{w} + ",
                $w,
                " + 8]\n",
                "vfmadd231ps zmm4, zmm20, zmm16\n",
                "vfmadd231ps zmm5, zmm20, zmm17\n",
                "vbroadcastss zmm21, dword ptr [{w} + ",
                $w,
                " + 12]\n",
                "vfmadd231ps zmm6, zmm21, zmm16\n",
                "vfmadd231ps zmm7, zmm21, zmm17\n",
            )
        };
    }
    use step_one;
    pub(super) use step_two;
}

#[cfg(not(target_arch = "x86_64"))]
mod pooled {
    /// Positions of a row per unit (see the x86-64 module's).
    pub(super) const LANES: usize = 16;

    /// Never off x86-64.
    pub(super) fn takes(_: usize) -> bool {
        false
    }

    /// Where a pooled tile's values go (see the x86-64 module's).
    #[allow(dead_code)]
    pub(super) struct To<'a> {
        pub(super) out: *mut f32,
        pub(super) q: usize,
        pub(super) channels: usize,
        pub(super) bias: &'a [f32],
        pub(super) relu: bool,
        pub(super) wp: usize,
    }

    /// Not reached: [`takes`] is false off x86-64.
    pub(super) unsafe fn tile<const U: usize>(
        _: *const f32,
        _: &[usize],
        _: *const f32,
        _: &[(usize, usize)],
        _: &To<'_>,
        _: bool,
    ) {
        unreachable!("the pooled tiles run on x86-64 only")
    }
}

/// Direct convolution of rows 8 wide on AVX-512 (the bundled CNN's last layer): each 512-bit
/// vector holds two output rows, 16 positions, so a tile of 4 channels × 4 vectors takes an
/// 8×8 image whole. The padded image has no side columns: its planes are the input's rows, 8
/// wide and contiguous, between zero rows above and below, and the window's first and last
/// column read their row's neighbours under a mask that zeroes each row's first (or last)
/// lane, the value the zero border would give. Each sum is the same chain of multiply-adds, in
/// the same order, as in the row kernel's other tiles, so the result is the same bit for bit.
#[cfg(target_arch = "x86_64")]
mod narrow {
    use super::pooled::step_two;
    use super::{Kernel, Shape, MR};
    use crate::kernels::window::Geometry;
    use std::arch::x86_64::*;

    /// The width of the rows these tiles take: two of them fill a vector.
    const OW: usize = 8;
    /// Values before a padded image's first plane: the first step's read of the value left of
    /// position 0, masked, stays in the buffer.
    const SLACK: usize = 16;
    /// Positions per vector.
    const LANES: usize = 16;
    /// Vectors per tile.
    const NV: usize = 4;

    /// Whether these tiles take `s` under `geo`: AVX-512F, rows 8 wide, a 3-wide window with
    /// one column of padding on each side, and an even number of output rows.
    pub(super) fn takes(s: Shape, geo: &Geometry) -> bool {
        super::super::direct_wide::available()
            && s.c > 0
            && geo.out.len() == 2
            && geo.out[1] == OW
            && s.w == OW
            && s.kw == 3
            && geo.begin[1] == 1
            && geo.end[1] == 1
            && geo.out[0].is_multiple_of(2)
            && geo.out[0] > 0
    }

    /// The padded image's length: `c` planes of `hp` rows of 8 and the slack either side.
    pub(super) fn padded_len(s: Shape, geo: &Geometry) -> usize {
        2 * SLACK + s.c * (geo.out[0] + s.kh - 1) * OW
    }

    /// Where each window row's first step reads, from an output position's place in the
    /// padded image, in the weights' order (channel, then window row; the row's three columns
    /// are this, and one and two values on): one left of the window's middle column.
    pub(super) fn offsets(s: Shape, geo: &Geometry) -> Vec<usize> {
        let hp = geo.out[0] + s.kh - 1;
        (0..s.c).flat_map(|ch| (0..s.kh).map(move |ky| SLACK - 1 + ch * hp * OW + ky * OW)).collect()
    }

    /// Image `img` (`c` planes of `h` rows of 8) into `dst`'s planes of `hp` rows from row
    /// `top` on; the other rows, and the slack, are left as they are (zero in a buffer of
    /// [`super::with_padded`]'s for this layout).
    pub(super) fn pad(img: &[f32], [c, h]: [usize; 2], hp: usize, top: usize, dst: &mut [f32]) {
        for (ch, plane) in img.chunks_exact(h * OW).take(c).enumerate() {
            dst[SLACK + (ch * hp + top) * OW..][..h * OW].copy_from_slice(plane);
        }
    }

    /// One image's outputs in every channel block, from its padded planes `xp` ([`pad`]'s),
    /// into the image's output at `out`, element `at` of the whole output (and residual).
    ///
    /// # Safety
    /// [`takes`] holds; `out` points at the image's `m * p` outputs, which nothing else reads
    /// or writes meanwhile; `xp` is [`padded_len`] long and `offsets` is [`offsets`]'s.
    pub(super) unsafe fn run(
        kernel: &Kernel<'_>,
        xp: &[f32],
        offsets: &[usize],
        out: *mut f32,
        at: usize,
        oh: usize,
    ) {
        let p = kernel.p;
        assert!(p == oh * OW && offsets.len() * 3 == kernel.ck, "narrow tile extents");
        assert!(offsets.iter().all(|&o| o + 2 + p <= xp.len()), "the padded image holds every read");
        let residual = kernel.finish.residual.map(|r| &r[at..at + kernel.m * p]);
        let vectors = p / LANES;
        for b in 0..kernel.m.div_ceil(MR) {
            let weights = &kernel.packed[b * kernel.ck * MR..(b + 1) * kernel.ck * MR];
            let channels = MR.min(kernel.m - b * MR);
            for v0 in (0..vectors).step_by(NV) {
                let count = NV.min(vectors - v0);
                let to = To {
                    // SAFETY: channels b·4 .. b·4 + channels of this image are the caller's.
                    out: unsafe { out.add(b * MR * p + v0 * LANES) },
                    residual: residual.map(|r| r[b * MR * p + v0 * LANES..].as_ptr()),
                    p,
                    channels,
                    count,
                    bias: &kernel.bias[b * MR..(b + 1) * MR],
                    relu: kernel.finish.relu,
                };
                // SAFETY: reads within `xp` (asserted: the tile's last vector reads up to
                // v0·16 + 16·count + offset + 1 ≤ p + offset + 1), the weights hold ck·4
                // values, writes within the block's channels.
                unsafe { tile(xp.as_ptr().add(v0 * LANES), offsets, weights.as_ptr(), &to) };
            }
        }
    }

    /// Where a tile's sums go: `count` vectors of 16 positions from `out`, in `channels` planes
    /// `p` apart, each plus its bias, then the residual's value there, then with `relu`
    /// clamped at zero.
    struct To<'a> {
        out: *mut f32,
        residual: Option<*const f32>,
        p: usize,
        channels: usize,
        count: usize,
        bias: &'a [f32],
        relu: bool,
    }

    /// One tile: 4 channels × 4 vectors from `src` (its first position's place in the padded
    /// image); vectors past `to.count` are computed from the ones before them's reads and not
    /// stored.
    ///
    /// # Safety
    /// The CPU has AVX-512F; for each offset `o`, `src[o .. o + 2 + 16 · to.count]` is
    /// readable (`src[o + 16 · NV ..]` need not be: those vectors re-read the last one's);
    /// `weights` holds `offsets.len() * 12` values; the outputs `to` names are writable.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile(src: *const f32, offsets: &[usize], weights: *const f32, to: &To<'_>) {
        assert!(!offsets.is_empty() && to.count > 0, "a narrow tile has steps and vectors");
        // SAFETY (all blocks below): the reads and writes are the ones the contract covers.
        let s: [*const f32; NV] = std::array::from_fn(|v| unsafe { src.add(v.min(to.count - 1) * LANES) });
        // Each row's first lane (columns 0 and 8 of the 16) zeroed for the window's left
        // column, its last (7 and 15) for the right.
        let (left, right): (__mmask16, __mmask16) = (!0x0101, !0x8080);
        let z = _mm512_setzero_ps();
        let (mut a0, mut a1, mut a2, mut a3, mut a4, mut a5, mut a6, mut a7) = (z, z, z, z, z, z, z, z);
        let (mut a8, mut a9, mut a10, mut a11, mut a12, mut a13, mut a14, mut a15) = (z, z, z, z, z, z, z, z);
        unsafe {
            std::arch::asm!(
                "2:",
                "mov {o}, qword ptr [{offs}]",
                step_two!("{{{kl}}}{{z}}", 0, 0),
                step_two!(16, 4),
                step_two!("{{{kr}}}{{z}}", 32, 8),
                "add {offs}, 8",
                "add {w}, 48",
                "dec {n}",
                "jnz 2b",
                offs = inout(reg) offsets.as_ptr() => _,
                n = inout(reg) offsets.len() => _,
                w = inout(reg) weights => _,
                o = out(reg) _,
                s0 = in(reg) s[0],
                s1 = in(reg) s[1],
                s2 = in(reg) s[2],
                s3 = in(reg) s[3],
                kl = in(kreg) left,
                kr = in(kreg) right,
                inout("zmm0") a0, inout("zmm1") a1, inout("zmm2") a2, inout("zmm3") a3,
                inout("zmm4") a4, inout("zmm5") a5, inout("zmm6") a6, inout("zmm7") a7,
                inout("zmm8") a8, inout("zmm9") a9, inout("zmm10") a10, inout("zmm11") a11,
                inout("zmm12") a12, inout("zmm13") a13, inout("zmm14") a14, inout("zmm15") a15,
                out("zmm16") _, out("zmm17") _, out("zmm18") _, out("zmm19") _,
                out("zmm20") _, out("zmm21") _,
                options(nostack, readonly),
            );
        }
        let acc = [[a0, a1, a2, a3], [a4, a5, a6, a7], [a8, a9, a10, a11], [a12, a13, a14, a15]];
        for (r, acc) in acc.iter().enumerate().take(to.channels) {
            let b = _mm512_set1_ps(to.bias[r]);
            for (v, a) in acc.iter().enumerate().take(to.count) {
                let at = r * to.p + v * LANES;
                let mut y = _mm512_add_ps(*a, b);
                if let Some(res) = to.residual {
                    y = _mm512_add_ps(y, unsafe { _mm512_loadu_ps(res.add(at)) });
                }
                if to.relu {
                    // max(0, y) returns y when y is NaN, as the other tiles' stores.
                    y = _mm512_max_ps(z, y);
                }
                unsafe { _mm512_storeu_ps(to.out.add(at), y) };
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod narrow {
    use super::{Kernel, Shape};
    use crate::kernels::window::Geometry;

    /// Never off x86-64.
    pub(super) fn takes(_: Shape, _: &Geometry) -> bool {
        false
    }

    /// Not reached: [`takes`] is false off x86-64.
    pub(super) fn padded_len(_: Shape, _: &Geometry) -> usize {
        0
    }

    /// Not reached: [`takes`] is false off x86-64.
    pub(super) fn offsets(_: Shape, _: &Geometry) -> Vec<usize> {
        Vec::new()
    }

    /// Not reached: [`takes`] is false off x86-64.
    pub(super) fn pad(_: &[f32], _: [usize; 2], _: usize, _: usize, _: &mut [f32]) {}

    /// Not reached: [`takes`] is false off x86-64.
    pub(super) unsafe fn run(_: &Kernel<'_>, _: &[f32], _: &[usize], _: *mut f32, _: usize, _: usize) {
        unreachable!("the narrow tiles run on x86-64 only")
    }
}
