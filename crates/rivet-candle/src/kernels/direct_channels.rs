//! Direct convolution of float32 images with output channels in the vectors, on AVX2 with FMA:
//! any stride and dilation of a 2-D window, no im2col matrix and no matrix product.
//!
//! Each image is copied once into a zero-bordered plane per channel. A register tile is 16
//! output channels (two vectors) × 6 output positions: every multiply-add step (one input
//! channel, kernel row and kernel column) loads the 16 channels' weights as two aligned
//! vectors and broadcasts one input value per position, read at the position's own place in
//! the padded plane plus the step's offset. Positions therefore need not be neighbours: a tile
//! takes the next 6 positions in output order, across rows, and a strided window costs what an
//! unstrided one does. No position is computed twice and no load splits a cache line, which
//! is what [`super::direct`]'s kernel (positions in the vectors) pays on rows that are not a
//! multiple of 8 wide. Where the positions do not come out in sixes, the last tiles take 5
//! ([`tiles`]); while a block of 16 channels runs, its tiles fetch the next block's weights
//! toward the core's second-level cache. Images with few outputs go side by side, each block's
//! weights read once for all of them ([`groups`]).
//!
//! On a CPU with AVX-512, rows a multiple of 7 wide (a ResNet's at 112 or 224 pixels) go in
//! tiles of 28 positions instead (four runs of 7), 16 channels in one 512-bit vector
//! ([`Tiling::Rows`], [`super::direct_wide`]): one weight load per 28 multiply-adds, and fewer
//! tiles to start, finish and store.
//!
//! Every output is the sum over (channel, kernel row, kernel column) in that order, one fused
//! multiply-add each, plus the bias, whatever the thread count or the tile a position falls
//! in: the same arithmetic as [`super::direct`]'s kernel, so the results are the same bit for
//! bit whichever kernel runs and at every thread setting.

use super::conv::{with_padded, Finish, SharedOut};
use super::threads::Split;
use super::window::Geometry;

/// Output channels per register tile.
const MR: usize = 16;
/// Positions per register tile.
const NP: usize = 6;
/// The packed weights' alignment, in values: one cache line.
const ALIGN: usize = 16;

/// Whether this CPU runs the kernel (x86-64 with AVX2 and FMA).
pub(crate) fn available() -> bool {
    super::direct::available()
}

/// A convolution as the kernel reads it: `c` input channels of `h`×`w`, `m` output channels,
/// a `kh`×`kw` window with strides `stride` and dilations `dilation`.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) m: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) stride: [usize; 2],
    pub(crate) dilation: [usize; 2],
}

impl Shape {
    /// The padded plane's rows and columns under `geo`'s padding.
    fn padded(&self, geo: &Geometry) -> (usize, usize) {
        (self.h + geo.begin[0] + geo.end[0], self.w + geo.begin[1] + geo.end[1])
    }
}

/// The most multiply-adds per output (channels × window) the kernel takes: ResNet-18's
/// 256-channel 3×3 layers (2,304) ran 5–9% faster on it than as im2col and gemm on one thread
/// (`RIVET_CANDLE_PROFILE`, batch 1 and 8); its 512-channel ones (4,608, on 4×4 images) ran
/// 20–45% slower one image at a time, and take it only side by side (see [`groups`]).
pub(crate) const MAX_DEPTH: usize = 2304;

/// The most multiply-adds per output the kernel takes for images side by side ([`groups`]):
/// ResNet-18's 512-channel 3×3 layers, the deepest measured.
pub(crate) const GROUPED_MAX_DEPTH: usize = 4608;

/// The fewest output positions per image the kernel takes one image at a time, and per batch
/// side by side: each 16 channels' weights are read once per tile of 6 positions, and on
/// ResNet-18's 4×4 outputs (16 positions) that cost more than the product saved (a 2,304-deep
/// stride-2 layer: 559 against 842 µs at batch 1), while its 7×7 ones (49) gained.
pub(crate) const MIN_POSITIONS: usize = 49;

/// Whether the kernel takes `s` under `geo` for a batch of `n` images (one group is the
/// caller's to check): a 2-D window larger than 1×1, or a strided 1×1 one, whose every read
/// lies in the padded image, at least [`MIN_POSITIONS`] outputs per image (or per batch, for
/// images side by side), at most [`MAX_DEPTH`] multiply-adds per output ([`GROUPED_MAX_DEPTH`]
/// side by side) and a padded image of at most [`super::direct::MAX_PADDED`] values.
pub(crate) fn fits(s: &Shape, geo: &Geometry, n: usize) -> bool {
    if !available() || geo.out.len() != 2 || geo.begin.len() != 2 || geo.end.len() != 2 {
        return false;
    }
    let grouped = groups(s, geo, n);
    let max_depth = if grouped { GROUPED_MAX_DEPTH } else { MAX_DEPTH };
    let (hp, wp) = s.padded(geo);
    // Rows (or columns) the window's reads span, for outputs already checked not empty.
    let reach = |out: usize, stride: usize, k: usize, dilation: usize| {
        (out - 1).saturating_mul(stride).saturating_add((k - 1).saturating_mul(dilation)).saturating_add(1)
    };
    (s.kh * s.kw > 1 || s.stride != [1, 1])
        && (geo.p >= MIN_POSITIONS || (grouped && geo.p.saturating_mul(n) >= MIN_POSITIONS))
        && s.stride.iter().chain(&s.dilation).all(|&v| v > 0)
        && reach(geo.out[0], s.stride[0], s.kh, s.dilation[0]) <= hp
        && reach(geo.out[1], s.stride[1], s.kw, s.dilation[1]) <= wp
        && s.c.saturating_mul(s.kh * s.kw) <= max_depth
        && s.c.saturating_mul(hp).saturating_mul(wp) <= super::direct::MAX_PADDED
}

/// Whether [`conv`] computes `n` images of `s` side by side, each thread's images in one pass
/// over each block's weights ([`Kernel::run_images`]): images of fewer than [`MIN_POSITIONS`]
/// outputs under a window larger than 1×1, in [`Tiling::Sixes`]. One image's few tiles would
/// read each block's weights from memory for a handful of positions; side by side, the images'
/// tiles share each read. ResNet-18's 512-channel 4×4 layers at batch 8 (one thread,
/// `RIVET_CANDLE_PROFILE`, each layer's fastest of 10 runs, two runs each way) took
/// 3,209–3,221 µs (its stride-2 one, 2,304 deep) and 6,347–6,484 (4,608 deep) side by side,
/// against 3,608–3,656 and 7,021–7,136 as im2col and gemm. At batch 4 (64 outputs side by
/// side) the four took 11.2–11.3 ms in all against 12.5 on one thread, and on two threads (two
/// images each) 6.0–7.1 ms in six runs of seven (11.3 in the seventh) against 6.3–8.8 in all
/// seven, on a noisy machine (medians of 16 runs). Its 7×7 layers (49 outputs) ran
/// the same either way, and its 1×1 shortcuts, read in place, 26–49% slower side by side:
/// each block's pass then reads every image whole.
fn groups(s: &Shape, geo: &Geometry, n: usize) -> bool {
    n > 1 && s.kh * s.kw > 1 && geo.p < MIN_POSITIONS && tiling(s, geo) == Tiling::Sixes
}

/// The most images [`conv`] computes side by side in one pass ([`groups`]): a thread's images
/// beyond it go in further passes, so that the padded images a pass reads stay few (eight of
/// ResNet-18's 512-channel 4×4 images take 576 KiB, about a core's second-level cache) and a
/// large batch does not pad all its images into one buffer.
const GROUP_IMAGES: usize = 8;

/// Where the packed weights start in `packed`: the first value aligned to a cache line.
fn start(packed: &[f32]) -> usize {
    packed.as_ptr().align_offset(ALIGN * 4).min(ALIGN)
}

/// Weights `ws` (`[m, c·kh·kw]`) in blocks of 16 output channels, `[block][c·kh·kw][16]`, a
/// block's missing channels zero, from the first cache line boundary of the returned vector
/// on: what [`conv`] reads.
pub(crate) fn pack(ws: &[f32], m: usize) -> Vec<f32> {
    let ck = ws.len() / m.max(1);
    let mut packed = vec![0f32; m.div_ceil(MR) * ck * MR + ALIGN];
    let at = start(&packed);
    super::direct::pack_blocks(ws, m, MR, &mut packed[at..]);
    packed
}

/// The convolution of `n` images `xs` (`[n, c, h, w]`) with weights `packed` ([`pack`]'s form
/// of `[m, c, kh, kw]`) into `out` (`[n, m, oh, ow]`, every element written), plus `bias`,
/// then `finish`'s residual and Relu. [`fits`] must hold.
///
/// With several threads, images go to threads whole when there are as many as threads. Else,
/// where an image has at least [`BAND_TILES`] tiles per thread, its output positions are cut
/// into one band per thread, and each thread pads only the input rows its band reads, into its
/// own scratch: a thread then reads about its share of the image, not all of it from the core
/// that padded it, as splitting the channels costs. Smaller images split their channels.
/// Images that [`groups`] puts side by side go to threads in ranges of whole images, each
/// range in one pass.
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
    conv_tiled(xs, packed, bias, s, geo, out, split, finish, tiling(&s, geo));
}

/// How the channel kernel groups output positions into register tiles.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Tiling {
    /// 6 (or 5) positions in output order, across rows, 16 channels in two AVX2 vectors.
    Sixes,
    /// 28 positions in four runs of 7 (and 14 or 7 for what is left of a band), 16 channels in
    /// one AVX-512 vector ([`super::direct_wide`]): rows a multiple of 7 wide, column stride 1
    /// or 2.
    Rows,
}

/// The tiling [`conv`] runs `s` with under `geo`: [`Tiling::Rows`] where the CPU and the rows
/// take it. ResNet-18 at 112×112 (`RIVET_CANDLE_PROFILE`, one thread, batch 8, two runs each):
/// its 28-wide layers took 4.2–4.4 ms against 4.5–4.7 in sixes, its 14- and 7-wide ones
/// 4.1–4.3 against 4.2–4.4, its stem 4.6–4.7 against 5.0, and the whole model 74.2–75.9 ms
/// against 77.9–78.6.
pub(crate) fn tiling(s: &Shape, geo: &Geometry) -> Tiling {
    #[cfg(target_arch = "x86_64")]
    if geo.out.len() == 2 && super::direct_wide::takes(geo.out[1], s.stride[1]) {
        return Tiling::Rows;
    }
    let _ = (s, geo);
    Tiling::Sixes
}

/// [`conv`] with the positions in `tiling`'s tiles ([`Tiling::Rows`] only where [`tiling`]
/// gives it).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_tiled(
    xs: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
    s: Shape,
    geo: &Geometry,
    out: &mut [std::mem::MaybeUninit<f32>],
    split: &Split<'_>,
    finish: Finish<'_>,
    tiling: Tiling,
) {
    let n = xs.len() / (s.c * s.h * s.w).max(1);
    assert!(fits(&s, geo, n), "the channel-vector direct kernel does not take this convolution");
    assert!(tiling == Tiling::Sixes || self::tiling(&s, geo) == Tiling::Rows, "row tiles for these rows");
    let Shape { c, h, w, m, kh, kw, dilation, .. } = s;
    let p = geo.p;
    let plane = h * w;
    let ck = c * kh * kw;
    let blocks = m.div_ceil(MR);
    let at = start(packed);
    assert!(
        xs.len() == n * c * plane && packed.len() == blocks * ck * MR + ALIGN && out.len() == n * m * p,
        "direct conv extents"
    );
    let packed = &packed[at..at + blocks * ck * MR];
    let bias = super::direct::block_bias(bias, blocks * MR);
    let run = if dilation[1] == 1 && (kw == 3 || kw == 7) { kw } else { 1 };
    assert!(finish.residual.is_none_or(|r| r.len() == out.len()), "direct conv residual");
    let (hp, wp) = s.padded(geo);
    let grouped = groups(&s, geo, n) && tiling == Tiling::Sixes;
    let chunked = tiling == Tiling::Sixes && c * hp * wp > CHUNK_MIN_PADDED;
    let chunk = if chunked { ck.min(CHUNK_STEPS.div_ceil(kh * kw) * kh * kw) } else { ck };
    let ow = geo.out[1];
    let rows = (tiling == Tiling::Rows).then_some((ow, s.stride[1]));
    let kernel = Kernel { packed, bias: &bias, ck, run, m, p, finish, chunk, rows };
    let threads = split.threads();
    let outs = SharedOut::new(out);
    // An image without padding is read where it lies: a 1×1 window of stride 2 reads a quarter
    // of it, which a padded copy would move whole. ResNet-18's 64-channel shortcut (28×28 to
    // 14×14) took 0.30 ms against 0.36 copied (batch 8, one thread, `RIVET_CANDLE_PROFILE`).
    let in_place = geo.begin.iter().chain(&geo.end).all(|&v| v == 0);
    // Image `i`'s outputs at `positions` in the channel blocks `blocks`, padded and computed
    // on the calling thread.
    let band = |i: usize, blocks: std::ops::Range<usize>, positions: std::ops::Range<usize>| {
        let band = Band::new(&s, geo, positions.clone(), in_place);
        let at = i * m * p + positions.start;
        if in_place {
            // SAFETY: as below; the band reads the image as it lies.
            unsafe { kernel.run(&xs[i * c * plane..][..c * plane], &band, outs.at(at), at, blocks) };
            return;
        }
        with_padded(band.layout(&s, geo), c * band.plane, |xp| {
            band.pad(&s, geo, &xs[i * c * plane..][..c * plane], xp);
            // SAFETY: the caller gives each (image, positions) to one task, which alone writes
            // those positions of every channel.
            unsafe {
                kernel.run(
                    xp,
                    &band,
                    outs.at(i * m * p + positions.start),
                    i * m * p + positions.start,
                    blocks,
                )
            };
        });
    };
    if grouped && (threads == 1 || n >= threads) {
        // The thread's images side by side, one pass over each chunk of weights for them all.
        let whole = Band::new(&s, geo, 0..p, in_place);
        let tasks = threads.min(n);
        // Images `first..first + count` side by side.
        let group = |first: usize, count: usize| {
            let at = first * m * p;
            let images = |stride: usize| Images { count, stride };
            if in_place {
                let stride = c * plane;
                // SAFETY: the task alone writes its images' outputs; they read as they lie.
                unsafe {
                    kernel.run_images(
                        &xs[first * stride..][..count * stride],
                        &whole,
                        outs.at(at),
                        at,
                        0..blocks,
                        images(stride),
                    )
                };
                return;
            }
            let stride = c * whole.plane;
            with_padded(whole.layout(&s, geo), count * stride, |xp| {
                for (k, xp) in xp.chunks_mut(stride).enumerate() {
                    whole.pad(&s, geo, &xs[(first + k) * c * plane..][..c * plane], xp);
                }
                // SAFETY: the task alone writes its images' outputs; `xp` holds their padded
                // rows, `stride` values apart.
                unsafe { kernel.run_images(xp, &whole, outs.at(at), at, 0..blocks, images(stride)) };
            });
        };
        split.run(tasks, |t| {
            // The task's images, in as few groups of at most `GROUP_IMAGES` as hold them, of
            // sizes as even as they go.
            let (first, count) = (t * n / tasks, (t + 1) * n / tasks - t * n / tasks);
            let passes = count.div_ceil(GROUP_IMAGES);
            for g in 0..passes {
                group(first + g * count / passes, (g + 1) * count / passes - g * count / passes);
            }
        });
        return;
    }
    if threads == 1 || n >= threads {
        // Images in turn, or over the threads, each whole on its thread.
        split.run_ranges(n, |i| band(i, 0..blocks, 0..p));
        return;
    }
    if p.div_ceil(NP) >= BAND_TILES * threads {
        // Images in turn, each in bands of whole tiles (or with the row tiles, whole rows) over
        // the threads.
        let per_task = match tiling {
            Tiling::Sixes => p.div_ceil(NP).div_ceil(threads) * NP,
            Tiling::Rows => geo.out[0].div_ceil(threads) * ow,
        };
        for i in 0..n {
            split
                .run(p.div_ceil(per_task), |t| band(i, 0..blocks, t * per_task..((t + 1) * per_task).min(p)));
        }
        return;
    }
    // Images in turn, each padded on the caller and its channel blocks over the threads.
    let whole = Band::new(&s, geo, 0..p, in_place);
    if in_place {
        let per_task = blocks.div_ceil(threads);
        for i in 0..n {
            let img = &xs[i * c * plane..][..c * plane];
            split.run(blocks.div_ceil(per_task), |t| {
                let range = t * per_task..((t + 1) * per_task).min(blocks);
                // SAFETY: each task alone writes the channels of its blocks in image i.
                unsafe { kernel.run(img, &whole, outs.at(i * m * p), i * m * p, range) };
            });
        }
        return;
    }
    let pad = |i: usize, xp: &mut [f32]| whole.pad(&s, geo, &xs[i * c * plane..][..c * plane], xp);
    super::direct::channel_blocks_in_turn(
        n,
        blocks,
        (whole.layout(&s, geo), c * whole.plane),
        split,
        pad,
        |xp, i, range| {
            // SAFETY: each task alone writes the channels of its blocks in image i.
            unsafe { kernel.run(xp, &whole, outs.at(i * m * p), i * m * p, range) };
        },
    );
}

/// The fewest tiles of output positions per thread for which an image splits into bands of
/// positions rather than blocks of channels. On two threads, ResNet-18's 28- and 14-wide
/// layers (131 and 33 tiles) ran 1.55–1.69 times as fast as on one in bands against 1.37–1.56
/// by channels; its 7-wide ones (9 tiles) 1.27–1.35 against 1.73–1.76 (batch 1,
/// `RIVET_CANDLE_PROFILE`).
const BAND_TILES: usize = 16;

/// The input rows a band of output positions reads, and where it reads them.
struct Band {
    /// The band's first output position.
    start: usize,
    /// The band's first padded input row.
    first: usize,
    /// Values per channel of the band's padded rows.
    plane: usize,
    /// Where each multiply-add step reads, from a position's corner, in the weights' order.
    offsets: Vec<usize>,
    /// Output positions in the band.
    len: usize,
    /// The output's width, the window's strides and the padded width, from which
    /// [`Band::corner`] finds each position's corner.
    ow: usize,
    stride: [usize; 2],
    wp: usize,
}

impl Band {
    /// The band of output positions `positions` (not empty) of a convolution [`fits`] takes.
    /// With `in_place`, the band reads the whole image as it lies (which takes an image
    /// without padding): from row 0, planes `h · w` apart.
    fn new(s: &Shape, geo: &Geometry, positions: std::ops::Range<usize>, in_place: bool) -> Band {
        let ((hp, wp), ow) = (s.padded(geo), geo.out[1]);
        let (first_row, last_row) = (positions.start / ow, (positions.end - 1) / ow);
        let (first, rows) = if in_place {
            (0, hp)
        } else {
            let first = first_row * s.stride[0];
            (first, last_row * s.stride[0] + (s.kh - 1) * s.dilation[0] + 1 - first)
        };
        let plane = rows * wp;
        let mut offsets = Vec::with_capacity(s.c * s.kh * s.kw);
        for ch in 0..s.c {
            for i in 0..s.kh {
                for j in 0..s.kw {
                    offsets.push(ch * plane + i * s.dilation[0] * wp + j * s.dilation[1]);
                }
            }
        }
        let (start, len) = (positions.start, positions.len());
        Band { start, first, plane, offsets, len, ow, stride: s.stride, wp }
    }

    /// Where the band's `i`th position (from its first) reads its window from, in the band's
    /// padded rows: its corner. Corners grow with `i`, since a padded row holds every read of
    /// an output row.
    fn corner(&self, i: usize) -> usize {
        self.corners::<1>(i, 0, 1)[0]
    }

    /// The corners of the band's positions `i`, `i + step`, … (`count` of them, at most `N`;
    /// the rest of the array holds the first's), found with one division.
    fn corners<const N: usize>(&self, i: usize, step: usize, count: usize) -> [usize; N] {
        let q = self.start + i;
        let (mut row, mut col) = (q / self.ow, q % self.ow);
        let at =
            |row: usize, col: usize| (row * self.stride[0] - self.first) * self.wp + col * self.stride[1];
        let mut corners = [at(row, col); N];
        for corner in corners.iter_mut().take(count).skip(1) {
            col += step;
            while col >= self.ow {
                col -= self.ow;
                row += 1;
            }
            *corner = at(row, col);
        }
        corners
    }

    /// Which elements [`Band::pad`] writes: the input's extents, the band's first padded row
    /// and rows, the padded width and where the input starts in it.
    fn layout(&self, s: &Shape, geo: &Geometry) -> super::conv::PadLayout {
        let wp = s.padded(geo).1;
        [1, s.c, s.h, s.w, self.first, self.plane / wp, wp, geo.begin[0], geo.begin[1]]
    }

    /// The band's rows of the zero-bordered image `img` (`[c, h, w]`) into `dst`, a buffer of
    /// [`with_padded`]'s for [`Band::layout`], whose other elements are zero already.
    fn pad(&self, s: &Shape, geo: &Geometry, img: &[f32], dst: &mut [f32]) {
        let at = [geo.begin[0], geo.begin[1]];
        super::direct::pad_band(img, [s.c, s.h, s.w], at, s.padded(geo).1, self.first, self.plane, dst);
    }
}

/// What every register tile of one convolution reads.
struct Kernel<'a> {
    packed: &'a [f32],
    bias: &'a [f32],
    ck: usize,
    /// How many consecutive columns each window row reads as one run of steps (one offset
    /// read per run): 3 or 7 for windows that wide and undilated, else 1.
    run: usize,
    m: usize,
    p: usize,
    finish: Finish<'a>,
    /// The most steps a tile takes in one pass over the image (see [`CHUNK_STEPS`]).
    chunk: usize,
    /// With [`Tiling::Rows`], the output's width and column stride; else `None`.
    rows: Option<(usize, usize)>,
}

/// Images whose whole outputs one pass of [`Kernel::run_images`] computes side by side.
#[derive(Clone, Copy)]
struct Images {
    /// How many.
    count: usize,
    /// Values from one image's padded rows to the next's.
    stride: usize,
}

impl Kernel<'_> {
    /// One image's outputs at `band`'s positions for the channel blocks `blocks`, from the
    /// band's padded rows `xp`, into the image's output from the band's first position on at
    /// `out`.
    ///
    /// # Safety
    /// `out` points at the band's first position of channel 0 in the image's `m * p` outputs,
    /// and nothing else reads or writes the band's positions of the blocks' channels
    /// meanwhile; `xp` holds the band's padded rows.
    unsafe fn run(&self, xp: &[f32], band: &Band, out: *mut f32, at: usize, blocks: std::ops::Range<usize>) {
        // SAFETY: the caller's, for one image.
        unsafe { self.run_images(xp, band, out, at, blocks, Images { count: 1, stride: xp.len() }) }
    }

    /// [`Kernel::run`] for `images.count` images side by side, each `band` whole (all its
    /// positions): image `i`'s padded rows from `xp[i * images.stride]` on, its outputs and
    /// residual `m · p` values after image `i - 1`'s. Each chunk of steps runs over every
    /// image's tiles in turn, so that the chunk's weights serve them all while in cache.
    ///
    /// # Safety
    /// As [`Kernel::run`]'s for each image.
    unsafe fn run_images(
        &self,
        xp: &[f32],
        band: &Band,
        out: *mut f32,
        at: usize,
        blocks: std::ops::Range<usize>,
        images: Images,
    ) {
        let last = band.offsets.iter().copied().max().unwrap_or(0);
        let reach = band.corner(band.len - 1) + last + 1;
        assert!(images.count > 0 && reach <= images.stride, "the padded rows hold every read");
        assert!((images.count - 1) * images.stride + reach <= xp.len(), "the padded images hold every read");
        assert!(images.count == 1 || (band.len == self.p && self.rows.is_none()), "whole images in sixes");
        assert!(!band.offsets.is_empty(), "a window reads at least one value");
        // The residual from the band's first position of channel 0 on, as far as its last
        // channel's last position.
        let span = (images.count - 1) * self.m * self.p + band.len + (self.m - 1) * self.p;
        let residual = self.finish.residual.map(|r| &r[at..at + span]);
        let tiles = match self.rows {
            Some((ow, _)) => {
                assert!(
                    band.start.is_multiple_of(ow) && band.len.is_multiple_of(ow),
                    "row tiles take whole rows"
                );
                row_tiles(band.len)
            }
            None => tiles(band.len),
        };
        // The tiles' sums between chunks of steps, by position (16 channels each).
        let mut partial =
            if self.chunk < self.ck { vec![0f32; images.count * band.len * MR] } else { Vec::new() };
        // Each tile's corners, for every block and chunk (tiles of sixes).
        let corners: Vec<[usize; NP]> = match self.rows {
            Some(_) => Vec::new(),
            None => tiles.iter().map(|&(first, len)| band.corners::<NP>(first, 1, len)).collect(),
        };
        for b in blocks {
            let rows = MR.min(self.m - b * MR);
            let weights = &self.packed[b * self.ck * MR..(b + 1) * self.ck * MR];
            let bias = &self.bias[b * MR..(b + 1) * MR];
            // SAFETY: the band's positions of channels b·16 .. b·16 + rows are the caller's.
            let dst = unsafe { out.add(b * MR * self.p) };
            let to = || Out { p: self.p, channels: rows, bias, relu: self.finish.relu && residual.is_none() };
            // The steps in chunks of whole input channels, each chunk over every tile in turn;
            // a tile's sums carry from one chunk to the next through `partial`, as they are
            // (the same additions in the same order).
            let chunk = self.chunk;
            // The next block's weights, a slice per tile toward the second-level cache while
            // this block's tiles run, so the first tile of the next block does not wait on
            // memory: a model's weights outgrow the caches, and each block's are read from
            // memory once per image. ResNet-18's 256-channel 7×7 layers ran in 602–629 µs
            // against 705–717 with weights not in cache (one thread, batch 1), and its steps
            // took 11.4 ms against 12.2 in all (`RIVET_CANDLE_PROFILE`).
            let next = (b + 1) * self.ck * MR;
            let next = (next < self.packed.len()).then(|| &self.packed[next..next + self.ck * MR]);
            // The `j`th (tile, chunk) of the block prefetches the `j`th slice of the next
            // block's weights, one line per loop iteration of `iters`.
            let pf = |j: usize, iters: usize| match next {
                Some(next) if (j + 1) * iters <= self.ck => {
                    Prefetch { at: next[j * iters * MR..].as_ptr(), step: 64 }
                }
                Some(next) => Prefetch { at: next.as_ptr(), step: 0 },
                None => Prefetch { at: weights.as_ptr(), step: 0 },
            };
            let (held, partial) = (partial.len(), partial.as_mut_ptr());
            // The carry of the tile from position `first` in the chunk of steps `k0..k1`.
            let carry = |first: usize, k0: usize, k1: usize| {
                // SAFETY: within `partial` (or at its start, where it is empty and no carry
                // reads or writes it).
                let at = unsafe { partial.add((first * MR).min(held)) };
                Carry { start: (k0 > 0).then_some(at.cast_const()), save: (k1 < self.ck).then_some(at) }
            };
            for k0 in (0..self.ck).step_by(chunk) {
                let k1 = (k0 + chunk).min(self.ck);
                let iters = (k1 - k0) / self.run.max(1);
                let first_j = (k0 / chunk) * tiles.len();
                // SAFETY (both kernels): every read is within `xp` (asserted above), the
                // weights hold ck·16 values from a cache line boundary (and a chunk starts at
                // a multiple of 16 of them), each write lands in one of `rows` rows of this
                // block's output (row stride p) at the tile's positions, and a carry holds
                // the tile's positions' 16 sums each.
                #[cfg(target_arch = "x86_64")]
                if let Some((ow, stride)) = self.rows {
                    for (i, &(first, len)) in tiles.iter().enumerate() {
                        let runs = super::direct_wide::Runs::of(first % ow, len, ow);
                        // Each run of 7's first position (the first's where a run is not
                        // there).
                        let corners = band.corners::<4>(first, 7, len.div_ceil(7));
                        // SAFETY: as above; row tiles run only where `tiling` found AVX-512F,
                        // and a tile's positions are `stride` apart within each run of a row.
                        unsafe {
                            super::direct_wide::tile(
                                xp.as_ptr(),
                                &band.offsets[k0..k1],
                                weights[k0 * MR..].as_ptr(),
                                (corners, runs, stride),
                                dst.add(first),
                                to(),
                                self.run,
                                carry(first, k0, k1),
                                pf(first_j + i, iters),
                            )
                        };
                    }
                    continue;
                }
                for img in 0..images.count {
                    // Image `img`'s tiles: its padded rows, its outputs, its tiles' carries
                    // (after the earlier images') and its slices of the next block's weights.
                    let (first_j, moved) = (first_j * images.count + img * tiles.len(), img * band.len);
                    // SAFETY: as above; `corners` holds each tile's corners, image `img`'s
                    // padded rows start `img · stride` values into `xp` and its outputs
                    // `img · m · p` values after the first image's.
                    unsafe {
                        x86::tiles(
                            xp.as_ptr().add(img * images.stride),
                            &band.offsets[k0..k1],
                            weights[k0 * MR..].as_ptr(),
                            (&tiles, &corners),
                            dst.add(img * self.m * self.p),
                            to(),
                            self.run,
                            |i, first| (carry(moved + first, k0, k1), pf(first_j + i, iters)),
                        )
                    };
                }
            }
            if let Some(residual) = residual {
                // The residual and the Relu over the block's rows of the band, vector by
                // vector, while they are in cache: the transposing store above writes 6
                // positions per channel, too few for vectors.
                for r in 0..rows {
                    for img in 0..images.count {
                        let at = img * self.m * self.p + (b * MR + r) * self.p;
                        // SAFETY: the band's positions of this channel are the caller's alone,
                        // and the residual holds them.
                        unsafe {
                            super::direct::add_residual(
                                out.add(at),
                                &residual[at..at + band.len],
                                self.finish.relu,
                            )
                        };
                    }
                }
            }
        }
    }
}

/// Positions per tile of [`Tiling::Rows`], four runs of 7; what is left of a band goes in
/// tiles of 14 and 7. Against tiles of 14 and 7 alone, ResNet-18 at batch 1 on one thread
/// (`RIVET_CANDLE_PROFILE`, four runs each way in turn) took 2,111–2,138 µs in its four 28-wide
/// layers against 2,145–2,151, 1,585–1,594 in its three 14-wide ones against 1,599–1,614 and
/// 612–623 in its stem against 621–634 (its 7-wide ones: 1,725–1,763 against 1,732–1,761); at
/// batch 8 its 28-wide layers took 1.2% less time on average.
pub(super) const ROW_TILE: usize = 28;

/// [`Tiling::Rows`]'s tiles over `len` positions of whole rows (a multiple of 7 wide): 28 at a
/// time, then one of 14 and one of 7 where the rest has them. Each is (first position,
/// positions).
fn row_tiles(len: usize) -> Vec<(usize, usize)> {
    let full = len - len % ROW_TILE;
    let rest = (full..len).step_by(14).map(|at| (at, 14.min(len - at)));
    (0..full).step_by(ROW_TILE).map(|at| (at, ROW_TILE)).chain(rest).collect()
}

/// Where each register tile of `len` positions in a row starts, and how many it takes: tiles
/// of [`NP`] and, for a remainder, of 5 (which the kernel runs as fast per position), so that
/// no tile takes fewer than 5 where `len` allows; else one shorter tile at the end. A tile of
/// one or two positions waits on each multiply-add before the next: a 256-channel 3×3 layer
/// on a 7×7 image (49 positions, now 4 × 6 + 5 × 5 rather than 8 × 6 + 1) ran in 525–531 µs
/// against 543–547 (one thread, batch 1, weights in cache), where its one-position tile took
/// about three quarters of a 6-position tile's time.
pub(crate) fn tiles(len: usize) -> Vec<(usize, usize)> {
    let fives = (NP - len % NP) % NP;
    let fives = if fives * 5 <= len { fives } else { 0 };
    let sixes_end = len - fives * 5;
    let sixes = (0..sixes_end).step_by(NP).map(|at| (at, NP.min(sixes_end - at)));
    sixes.chain((sixes_end..len).step_by(5).map(|at| (at, 5))).collect()
}

/// A tile's sums between chunks of steps: with `start`, the sums of each of the tile's
/// positions (16 channels each, by position) to go on from, else zero; with `save`, where the
/// sums go as they are, instead of to the output.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) struct Carry {
    pub(super) start: Option<*const f32>,
    pub(super) save: Option<*mut f32>,
}

/// The most multiply-add steps a tile of [`Tiling::Sixes`] takes in one pass over an image whose
/// padded planes hold more than [`CHUNK_MIN_PADDED`] values, in whole input channels: 32 channels
/// of a 3×3 window, 18 KiB of weights per block of 16 output channels, which then stay in the
/// core's first-level cache (32 KiB) while every tile of the image uses them. On an AMD EPYC
/// with AVX2, ResNet-18's four 64-channel 28×28 layers and its 64-channel stride-2 layer took
/// 22.8–23.1 ms in all in chunks of 288 steps, against 23.3–23.8 in chunks of 144, 23.0–23.3
/// in chunks of 432 and 23.5–23.8 in one pass (batch 8, one thread, `RIVET_CANDLE_PROFILE`,
/// each layer's fastest of 8 runs, the settings in turn); at batch 1 they took 2.83–2.84 ms
/// against 2.87–2.88 on one thread and 1.46 against 1.51 on two.
///
/// Tiles of [`Tiling::Rows`] read each weight vector for 14 positions or more, not 6, and run
/// every step in one pass: on the same 28×28 layers (one thread, batch 8, weights in cache) 14
/// positions ran at 111–112 GFLOP/s that way against 106 in chunks of 144.
const CHUNK_STEPS: usize = 288;

/// The padded image (values, all channels) above which a tile's steps run in chunks of
/// [`CHUNK_STEPS`]: ResNet-18's 64-channel 28×28 images (57,600 values) gained, as did its
/// 64-channel stride-2 layer (2.65 against 2.82 ms); its 128-channel 14×14 layers (32,768) ran
/// 1% slower in chunks and its 256-channel 7×7 ones 2% slower, and stay in one pass. On the AMD
/// EPYC with AVX2 in chunks of 288, its six 128- and 256-channel layers of stride 1 took
/// 29.0–30.2 ms in all in one pass against 30.5–30.8 in chunks (batch 8, one thread).
const CHUNK_MIN_PADDED: usize = 1 << 15;

/// Where a tile's loop prefetches: a line at `at`, then every `step` bytes on, one line per
/// loop iteration (`step` 0 fetches one line over and over).
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) struct Prefetch {
    pub(super) at: *const f32,
    pub(super) step: usize,
}

/// Where a tile's sums go: `channels` rows `p` apart, each plus its `bias` and clamped at zero
/// with `relu`.
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) struct Out<'a> {
    pub(super) p: usize,
    pub(super) channels: usize,
    pub(super) bias: &'a [f32],
    pub(super) relu: bool,
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Carry, Out, Prefetch, MR, NP};
    use std::arch::x86_64::*;

    /// One chunk of steps of a band's tiles of sixes in turn: [`tile`] for each of `tiles`
    /// (first position, positions) with its `corners`, its outputs from `out.add(first)` on,
    /// and the carry and prefetch `each(i, first)` gives the `i`th. One call per chunk rather
    /// than per tile, so that each tile's arguments stay in registers: on an AMD EPYC with
    /// AVX2 (ResNet-18, batch 8, one thread, `RIVET_CANDLE_PROFILE`, each layer's fastest of 8
    /// runs, four runs each way in turn), its stem took 5.14–5.24 ms against 5.30–5.40 with a
    /// call per tile and its 64-channel layers 1–3% less; at batch 1 its layers on this kernel
    /// took 7.99–8.01 ms in all against 8.07–8.08.
    ///
    /// # Safety
    /// As [`tile`]'s for every tile.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tiles(
        xp: *const f32,
        offsets: &[usize],
        weights: *const f32,
        (tiles, corners): (&[(usize, usize)], &[[usize; NP]]),
        out: *mut f32,
        to: Out<'_>,
        run: usize,
        each: impl Fn(usize, usize) -> (Carry, Prefetch),
    ) {
        for (i, (&(first, len), corners)) in tiles.iter().zip(corners).enumerate() {
            let (carry, pf) = each(i, first);
            // SAFETY: the caller's.
            unsafe { tile(xp, offsets, weights, &corners[..len], out.add(first), to, run, carry, pf) };
        }
    }

    /// One register tile: `to.channels` (at most 16) output channels × the positions whose
    /// corners are `tile` (at most 6), finished as [`Out`] says, written to `out[r * to.p + q]`
    /// for channel `r` and the tile's `q`th position.
    /// With `run` 3 or 7, `offsets` comes in runs `o, o + 1, ..., o + run - 1` (a window
    /// row that wide).
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA. For every corner `k` of `tile` and offset `o` of `offsets`
    /// (not empty), `xp[k + o]` is readable; `weights` holds `offsets.len() * 16` values from
    /// a 32-byte boundary; `to.bias` holds 16 values; for each channel `r < to.channels` and
    /// `q < tile.len()`, `out[r * to.p + q]` is writable.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        xp: *const f32,
        offsets: &[usize],
        weights: *const f32,
        tile: &[usize],
        out: *mut f32,
        to: Out<'_>,
        run: usize,
        carry: Carry,
        pf: Prefetch,
    ) {
        let args = (xp, offsets, weights, tile, out, to, run, carry, pf);
        // SAFETY: the caller's; each length is the tile's.
        unsafe {
            match tile.len() {
                NP => tile_of::<NP>(args),
                5 => tile_of::<5>(args),
                4 => tile_of::<4>(args),
                3 => tile_of::<3>(args),
                2 => tile_of::<2>(args),
                _ => tile_of::<1>(args),
            }
        }
    }

    /// [`tile`]'s arguments.
    type TileArgs<'a> =
        (*const f32, &'a [usize], *const f32, &'a [usize], *mut f32, Out<'a>, usize, Carry, Prefetch);

    /// [`tile`] for `LEN` positions: the accumulators are that many, and the start and the
    /// store unroll for that length, so that the accumulators stay in registers from the loop
    /// through the store (as in [`super::super::direct_wide`]'s tiles): 55 instructions of
    /// the function address the stack, against 272 with one function for every length.
    /// ResNet-18's stem in tiles of six ran at 104.0–106.4 GFLOP/s against 94.0–100.2 that
    /// way, its 64-channel 28-wide layers at 107.6–108.7 against 103.0–104.0 (the kernel
    /// alone, batch 8, one thread, three runs each way in turn).
    ///
    /// # Safety
    /// As [`tile`]'s, with `LEN` positions in the tile.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_of<const LEN: usize>((xp, offsets, weights, tile, out, to, run, carry, pf): TileArgs<'_>) {
        /// The accumulators as a loop of `N` positions takes them (`N` is the tile's length).
        fn fit<const N: usize>(acc: &mut [[__m256; 2]]) -> &mut [[__m256; 2]; N] {
            acc.try_into().expect("a tile's accumulators match its positions")
        }
        let tile: &[usize; LEN] = tile.try_into().expect("a tile of LEN positions");
        let mut acc = [[_mm256_setzero_ps(); 2]; LEN];
        if let Some(start) = carry.start {
            for (q, acc) in acc.iter_mut().enumerate() {
                // SAFETY: a carry holds the tile's positions' 16 sums each.
                unsafe {
                    *acc = [_mm256_loadu_ps(start.add(q * MR)), _mm256_loadu_ps(start.add(q * MR + 8))]
                };
            }
        }
        // SAFETY (all blocks below): the reads and writes are the ones the contract covers.
        if LEN == NP {
            let src: [*const f32; NP] = std::array::from_fn(|q| unsafe { xp.add(tile[q]) });
            let six = fit::<NP>(&mut acc[..]);
            if run == 3 && offsets.len().is_multiple_of(3) {
                unsafe { acc6_k3(src, offsets, weights, six, pf) };
            } else if run == 7 && offsets.len().is_multiple_of(7) {
                unsafe { acc6_k7(src, offsets, weights, six, pf) };
            } else {
                unsafe { acc6(src, offsets, weights, six, pf) };
            }
        } else if LEN == 5 {
            let src: [*const f32; 5] = std::array::from_fn(|q| unsafe { xp.add(tile[q]) });
            let five = fit::<5>(&mut acc[..]);
            if run == 3 && offsets.len().is_multiple_of(3) {
                unsafe { acc5_k3(src, offsets, weights, five, pf) };
            } else if run == 7 && offsets.len().is_multiple_of(7) {
                unsafe { acc5_k7(src, offsets, weights, five, pf) };
            } else {
                unsafe { acc5(src, offsets, weights, five, pf) };
            }
        } else {
            for (t, &o) in offsets.iter().enumerate() {
                let w0 = unsafe { _mm256_load_ps(weights.add(t * MR)) };
                let w1 = unsafe { _mm256_load_ps(weights.add(t * MR + 8)) };
                for (acc, &k) in acc.iter_mut().zip(tile) {
                    let x = unsafe { _mm256_broadcast_ss(&*xp.add(k + o)) };
                    acc[0] = _mm256_fmadd_ps(w0, x, acc[0]);
                    acc[1] = _mm256_fmadd_ps(w1, x, acc[1]);
                }
            }
        }
        if let Some(save) = carry.save {
            for (q, acc) in acc.iter().enumerate() {
                // SAFETY: a carry holds the tile's positions' 16 sums each.
                unsafe {
                    _mm256_storeu_ps(save.add(q * MR), acc[0]);
                    _mm256_storeu_ps(save.add(q * MR + 8), acc[1]);
                }
            }
            return;
        }
        let zero = _mm256_setzero_ps();
        let b = unsafe { [_mm256_loadu_ps(to.bias.as_ptr()), _mm256_loadu_ps(to.bias.as_ptr().add(8))] };
        for acc in acc.iter_mut() {
            for (a, b) in acc.iter_mut().zip(b) {
                *a = _mm256_add_ps(*a, b);
                if to.relu {
                    // max(0, y) returns y when y is NaN (the second operand wins when
                    // unordered), as the scalar `if y < 0 { 0 } else { y }` does.
                    *a = _mm256_max_ps(zero, *a);
                }
            }
        }
        if LEN >= 5 {
            // By channel, 8 at a time: each channel's 6 (or 5) outputs as one vector
            // (positions 6 and 7 empty), stored as 4 values and 2 (or 1).
            let len = LEN;
            for half in [0, 1] {
                let rows: [__m256; 8] = std::array::from_fn(|q| if q < len { acc[q][half] } else { zero });
                for (c, col) in
                    transpose8(rows).into_iter().enumerate().take(to.channels.saturating_sub(half * 8))
                {
                    // SAFETY: channel half·8 + c of the tile is one of `to.channels`, whose
                    // `len` outputs from `out` on are writable.
                    unsafe {
                        let row = out.add((half * 8 + c) * to.p);
                        _mm_storeu_ps(row, _mm256_castps256_ps128(col));
                        let high = _mm256_extractf128_ps::<1>(col);
                        if len == NP {
                            _mm_storel_epi64(row.add(4).cast(), _mm_castps_si128(high));
                        } else {
                            _mm_store_ss(row.add(4), high);
                        }
                    }
                }
            }
            return;
        }
        // The tile's sums by position, then written out by channel.
        let mut sums = [[0f32; MR]; LEN];
        for (acc, sums) in acc.iter().zip(&mut sums) {
            for (v, y) in acc.iter().enumerate() {
                unsafe { _mm256_storeu_ps(sums.as_mut_ptr().add(v * 8), *y) };
            }
        }
        for r in 0..to.channels {
            let row = unsafe { out.add(r * to.p) };
            for (q, sums) in sums.iter().enumerate() {
                unsafe { row.add(q).write(sums[r]) };
            }
        }
    }

    /// The 8 × 8 matrix whose rows are `rows`, transposed: element `c` of row `q` becomes
    /// element `q` of row `c`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn transpose8(rows: [__m256; 8]) -> [__m256; 8] {
        let [r0, r1, r2, r3, r4, r5, r6, r7] = rows;
        // Pairs of rows interleaved: [a0 b0 a1 b1 | a4 b4 a5 b5] and [a2 b2 a3 b3 | a6 b6 a7 b7].
        let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
        let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
        let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
        let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
        // Four rows' element j in each half: [a j, b j, c j, d j | the same for j + 4].
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        // The first four rows' half and the last four's.
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }

    /// Fetches the line at `{pf}` toward the core's second-level cache and moves `{pf}` on by
    /// `{pfs}` bytes.
    macro_rules! prefetch {
        () => {
            "prefetcht1 byte ptr [{pf}]\nadd {pf}, {pfs}"
        };
    }

    /// One multiply-add step of a 16-channel tile, as assembly text: the 16 weights `$w` bytes
    /// past `{w}` (into ymm12 and ymm13) times, for each corner register `$s`, the input `$x`
    /// bytes past the corner's offset `{o}` (broadcast into `$b`), added to the accumulator
    /// pair `$a0`, `$a1`.
    macro_rules! step {
        ($w:literal, $x:literal; $($s:literal $b:literal $a0:literal $a1:literal),*) => {
            concat!(
                "vmovaps ymm12, ymmword ptr [{w} + ", $w, "]\n",
                "vmovaps ymm13, ymmword ptr [{w} + ", $w, " + 32]\n",
                $(
                    "vbroadcastss ", $b, ", dword ptr [{", $s, "} + 4*{o} + ", $x, "]\n",
                    "vfmadd231ps ", $a0, ", ymm12, ", $b, "\n",
                    "vfmadd231ps ", $a1, ", ymm13, ", $b, "\n",
                )*
            )
        };
    }

    /// [`step!`] for the 16 × 6 tile: corners `{s0}`–`{s5}`, accumulators ymm0–ymm11.
    macro_rules! step6 {
        ($w:literal, $x:literal) => {
            step!($w, $x; "s0" "ymm14" "ymm0" "ymm1", "s1" "ymm15" "ymm2" "ymm3",
                "s2" "ymm14" "ymm4" "ymm5", "s3" "ymm15" "ymm6" "ymm7",
                "s4" "ymm14" "ymm8" "ymm9", "s5" "ymm15" "ymm10" "ymm11")
        };
    }

    /// [`step!`] for the 16 × 5 tile: corners `{s0}`–`{s4}`, accumulators ymm0–ymm9.
    macro_rules! step5 {
        ($w:literal, $x:literal) => {
            step!($w, $x; "s0" "ymm14" "ymm0" "ymm1", "s1" "ymm15" "ymm2" "ymm3",
                "s2" "ymm14" "ymm4" "ymm5", "s3" "ymm15" "ymm6" "ymm7",
                "s4" "ymm14" "ymm8" "ymm9")
        };
    }

    /// The 16 × 6 tile's loop: `$count` times, read an offset at `{offs}`, run the `$body`
    /// steps and advances, adding to `$acc`'s 12 accumulators (held in ymm0–ymm11; the step's
    /// two weight vectors and two broadcast inputs take ymm12–ymm15), prefetching as `$pf`
    /// says.
    macro_rules! tile_loop6 {
        ($src:ident, $offsets:ident, $count:expr, $weights:ident, $acc:ident, $pf:ident; $($body:tt)*) => {{
            let [[mut a0, mut a1], [mut a2, mut a3], [mut a4, mut a5], [mut a6, mut a7], [mut a8, mut a9], [mut a10, mut a11]] =
                *$acc;
            let [s0, s1, s2, s3, s4, s5] = $src;
            tile_loop_asm!($offsets, $count, $weights, [s0 = s0, s1 = s1, s2 = s2, s3 = s3, s4 = s4, s5 = s5, pfs = $pf.step],
                moving [pf = $pf.at];
                ["ymm0" a0, "ymm1" a1, "ymm2" a2, "ymm3" a3, "ymm4" a4, "ymm5" a5,
                 "ymm6" a6, "ymm7" a7, "ymm8" a8, "ymm9" a9, "ymm10" a10, "ymm11" a11];
                $($body)*);
            *$acc = [[a0, a1], [a2, a3], [a4, a5], [a6, a7], [a8, a9], [a10, a11]];
        }};
    }

    /// [`tile_loop6!`] for the 16 × 5 tile: 10 accumulators in ymm0–ymm9.
    macro_rules! tile_loop5 {
        ($src:ident, $offsets:ident, $count:expr, $weights:ident, $acc:ident, $pf:ident; $($body:tt)*) => {{
            let [[mut a0, mut a1], [mut a2, mut a3], [mut a4, mut a5], [mut a6, mut a7], [mut a8, mut a9]] = *$acc;
            let [s0, s1, s2, s3, s4] = $src;
            tile_loop_asm!($offsets, $count, $weights, [s0 = s0, s1 = s1, s2 = s2, s3 = s3, s4 = s4, pfs = $pf.step],
                moving [pf = $pf.at];
                ["ymm0" a0, "ymm1" a1, "ymm2" a2, "ymm3" a3, "ymm4" a4, "ymm5" a5,
                 "ymm6" a6, "ymm7" a7, "ymm8" a8, "ymm9" a9];
                $($body)*);
            *$acc = [[a0, a1], [a2, a3], [a4, a5], [a6, a7], [a8, a9]];
        }};
    }

    /// The multiply-add loops of a tile of `$np` positions, as `$one` (one step per offset),
    /// `$three` (a window row 3 wide at consecutive columns: one offset read per three steps,
    /// the other two at the next two values) and `$seven` (a row 7 wide, as a ResNet's stem:
    /// one offset read per seven).
    macro_rules! tile_loops {
        ($np:literal, $step:ident, $loop:ident, $one:ident, $three:ident, $seven:ident) => {
            /// Adds the tile's products to `acc`: one step per offset.
            ///
            /// # Safety
            /// As [`tile`]'s, with this many corners.
            #[inline]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn $one(
                src: [*const f32; $np],
                offsets: &[usize],
                weights: *const f32,
                acc: &mut [[__m256; 2]; $np],
                pf: Prefetch,
            ) {
                $loop!(src, offsets, offsets.len(), weights, acc, pf;
                    $step!(0, 0), prefetch!(), "add {offs}, 8", "add {w}, 64",);
            }

            /// As the one-step loop, for `offsets` in threes `o, o + 1, o + 2`.
            ///
            /// # Safety
            /// As [`tile`]'s, with this many corners and `offsets` in threes.
            #[inline]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn $three(
                src: [*const f32; $np],
                offsets: &[usize],
                weights: *const f32,
                acc: &mut [[__m256; 2]; $np],
                pf: Prefetch,
            ) {
                $loop!(src, offsets, offsets.len() / 3, weights, acc, pf;
                    $step!(0, 0), $step!(64, 4), prefetch!(), $step!(128, 8), "add {offs}, 24", "add {w}, 192",);
            }

            /// As the one-step loop, for `offsets` in sevens `o, ..., o + 6`.
            ///
            /// # Safety
            /// As [`tile`]'s, with this many corners and `offsets` in sevens.
            #[inline]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn $seven(
                src: [*const f32; $np],
                offsets: &[usize],
                weights: *const f32,
                acc: &mut [[__m256; 2]; $np],
                pf: Prefetch,
            ) {
                $loop!(src, offsets, offsets.len() / 7, weights, acc, pf;
                    $step!(0, 0), prefetch!(), $step!(64, 4), $step!(128, 8), $step!(192, 12), $step!(256, 16),
                    $step!(320, 20), $step!(384, 24), "add {offs}, 56", "add {w}, 448",);
            }
        };
    }

    tile_loops!(6, step6, tile_loop6, acc6, acc6_k3, acc6_k7);
    tile_loops!(5, step5, tile_loop5, acc5, acc5_k3, acc5_k7);
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    use super::NP;

    /// Not reached: [`super::available`] is false off x86-64.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tiles(
        _: *const f32,
        _: &[usize],
        _: *const f32,
        _: (&[(usize, usize)], &[[usize; NP]]),
        _: *mut f32,
        _: super::Out<'_>,
        _: usize,
        _: impl Fn(usize, usize) -> (super::Carry, super::Prefetch),
    ) {
        unreachable!("the direct kernel runs on x86-64 only")
    }
}
