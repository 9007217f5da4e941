//! The channel kernel's register tiles on AVX-512 ([`super::direct_channels`]): 16 output
//! channels in one 512-bit vector × 28 output positions, 28 accumulators, and each step's input
//! value broadcast from memory by the multiply-add itself (one weight load per 28 multiply-adds,
//! where the AVX2 tile of 16 channels × 6 positions loads two weight vectors and broadcasts six
//! inputs per 12).
//!
//! A tile's positions are consecutive outputs in four runs of 7, each run in one row: each
//! run's inputs are read from its first position's corner plus a constant per position (the
//! stride), so a tile needs four address registers, not 28. That takes rows whose width is a
//! multiple of 7, as a ResNet's are at 112 or 224 pixels (112, 56, 28, 14 and 7 wide). What is
//! left of a band after its tiles of 28 goes in tiles of 14 (one row, or two runs of 7) and 7.
//! A tile's sums are added in the same order as the AVX2 tile's, so the results are the same
//! bit for bit whichever tile runs.

use super::direct_channels::{Carry, Out, Prefetch};
use std::arch::x86_64::*;

/// Positions per tile of four runs of 7, the most a tile takes.
const NP4: usize = super::direct_channels::ROW_TILE;

/// Positions per tile of one row, or of two runs of 7.
const NP: usize = 14;

/// Output channels per tile: one vector.
const MR: usize = 16;

/// Whether this CPU runs the tiles (AVX-512F, and AVX2 with FMA for the kernel around them).
pub(crate) fn available() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| super::direct::available() && std::is_x86_feature_detected!("avx512f"))
}

/// Whether the tiles take output rows `ow` wide at column stride `stride`.
pub(super) fn takes(ow: usize, stride: usize) -> bool {
    available() && ow > 0 && ow.is_multiple_of(7) && (stride == 1 || stride == 2)
}

/// How a tile's positions lie in the output's rows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Runs {
    /// 14 positions of one row.
    One,
    /// 7 positions at the end of one row and 7 at the start of the next.
    Two,
    /// 7 positions of one row.
    Seven,
    /// 28 positions as four runs of 7, each in one row.
    Four,
}

impl Runs {
    /// The runs of the tile of `len` positions (28, 14 or 7) whose first is `column` of a row
    /// `ow` wide.
    pub(super) fn of(column: usize, len: usize, ow: usize) -> Runs {
        match len {
            7 => Runs::Seven,
            NP4 => Runs::Four,
            _ if column + NP <= ow => Runs::One,
            _ => Runs::Two,
        }
    }
}

/// One register tile: `to.channels` (at most 16) output channels × the positions `runs` lays
/// out from the corners `corners` (each run's first position's, as many as `runs` has),
/// each next position `stride` (1 or 2) values on from the one before in its run; finished as
/// [`Out`] says into `out[r * to.p + q]` for channel `r` and the tile's `q`th position, or with
/// `carry.save` its sums kept there. With `run` 3 or 7, `offsets` comes in runs
/// `o, o + 1, ..., o + run - 1` (a window row that wide).
///
/// # Safety
/// The CPU has AVX-512F. For every position's corner `k` and offset `o` of `offsets` (not
/// empty), `xp[k + o]` is readable; `weights` holds `offsets.len() * 16` values from a 64-byte
/// boundary; `to.bias` holds 16 values; a carry holds the tile's positions' 16 sums each; for
/// each channel `r < to.channels` and position `q`, `out[r * to.p + q]` is writable.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn tile(
    xp: *const f32,
    offsets: &[usize],
    weights: *const f32,
    (corners, runs, stride): ([usize; 4], Runs, usize),
    out: *mut f32,
    to: Out<'_>,
    run: usize,
    carry: Carry,
    pf: Prefetch,
) {
    let at = (corners, runs, stride);
    // SAFETY: the caller's; each length is its runs'.
    unsafe {
        match runs {
            Runs::Four => tile_of::<NP4>(xp, offsets, weights, at, out, to, run, carry, pf),
            Runs::One | Runs::Two => tile_of::<NP>(xp, offsets, weights, at, out, to, run, carry, pf),
            Runs::Seven => tile_of::<7>(xp, offsets, weights, at, out, to, run, carry, pf),
        }
    }
}

/// [`tile`] for runs of `LEN` positions in all: the accumulators are that many, and the start
/// and the store unroll for that length, so that the accumulators stay in registers from the
/// loop through the store. With one function for every length they went through the stack
/// (669 instructions of the function addressed it, against 83): ResNet-18's stem ran at
/// 103.9–107.3 GFLOP/s against 91.7–98.8 that way, its 64-channel 28-wide layers at 110.4–112.8
/// against 106.8–109.1 (the channel kernel alone, batch 8, one thread, three runs each way in
/// turn).
///
/// # Safety
/// As [`tile`]'s, with `LEN` the positions `runs` lays out.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_of<const LEN: usize>(
    xp: *const f32,
    offsets: &[usize],
    weights: *const f32,
    (corners, runs, stride): ([usize; 4], Runs, usize),
    out: *mut f32,
    to: Out<'_>,
    run: usize,
    carry: Carry,
    pf: Prefetch,
) {
    let mut acc = [_mm512_setzero_ps(); LEN];
    if let Some(start) = carry.start {
        for (q, acc) in acc.iter_mut().enumerate() {
            // SAFETY: a carry holds the tile's positions' 16 sums each.
            *acc = unsafe { _mm512_loadu_ps(start.add(q * MR)) };
        }
    }
    // SAFETY: the reads are the ones the contract covers; a run's corner is read only by the
    // loops of tiles with that run.
    let src = corners.map(|k| unsafe { xp.add(k) });
    let by = if run == 3 && offsets.len().is_multiple_of(3) {
        3
    } else if run == 7 && offsets.len().is_multiple_of(7) {
        7
    } else {
        1
    };
    // SAFETY: as the contract says.
    unsafe {
        match stride {
            1 => sums::<1, LEN>(src, offsets, weights, &mut acc, pf, runs, by),
            _ => sums::<2, LEN>(src, offsets, weights, &mut acc, pf, runs, by),
        }
    }
    if let Some(save) = carry.save {
        for (q, acc) in acc.iter().enumerate() {
            // SAFETY: a carry holds the tile's positions' 16 sums each.
            unsafe { _mm512_storeu_ps(save.add(q * MR), *acc) };
        }
        return;
    }
    let zero = _mm512_setzero_ps();
    // SAFETY: the bias holds 16 values.
    let b = unsafe { _mm512_loadu_ps(to.bias.as_ptr()) };
    for acc in acc.iter_mut() {
        *acc = _mm512_add_ps(*acc, b);
        if to.relu {
            // max(0, y) returns y when y is NaN (the second operand wins when unordered), as
            // the scalar `if y < 0 { 0 } else { y }` does.
            *acc = _mm512_max_ps(zero, *acc);
        }
    }
    // By channel: each channel's outputs 16 at a time as one vector, stored under a mask.
    for q0 in (0..LEN).step_by(16) {
        let n = (LEN - q0).min(16);
        let rows: [__m512; 16] = std::array::from_fn(|q| if q < n { acc[q0 + q] } else { zero });
        let mask: __mmask16 = ((1u32 << n) - 1) as __mmask16;
        for (r, col) in transpose16(rows).into_iter().enumerate().take(to.channels) {
            // SAFETY: channel r of the tile is one of `to.channels`, whose `LEN` outputs from
            // `out` on are writable.
            unsafe { _mm512_mask_storeu_ps(out.add(r * to.p + q0), mask, col) };
        }
    }
}

/// Adds the tile's products to `acc`: the loop for `runs`, reading one offset per `by` (1, 3
/// or 7) steps, positions `S` values apart within a run.
///
/// # Safety
/// As [`tile`]'s, with `LEN` the positions `runs` lays out.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn sums<const S: usize, const LEN: usize>(
    src: [*const f32; 4],
    offsets: &[usize],
    weights: *const f32,
    acc: &mut [__m512; LEN],
    pf: Prefetch,
    runs: Runs,
    by: usize,
) {
    /// The accumulators as a loop of `N` positions takes them (`N` is the tile's length).
    fn fit<const N: usize>(acc: &mut [__m512]) -> &mut [__m512; N] {
        acc.try_into().expect("a tile's accumulators match its runs")
    }
    let acc = &mut acc[..];
    // SAFETY: the caller's.
    unsafe {
        match (runs, by) {
            (Runs::One, 3) => one_k3::<S>(src, offsets, weights, fit(acc), pf),
            (Runs::One, 7) => one_k7::<S>(src, offsets, weights, fit(acc), pf),
            (Runs::One, _) => one_k1::<S>(src, offsets, weights, fit(acc), pf),
            (Runs::Two, 3) => two_k3::<S>(src, offsets, weights, fit(acc), pf),
            (Runs::Two, 7) => two_k7::<S>(src, offsets, weights, fit(acc), pf),
            (Runs::Two, _) => two_k1::<S>(src, offsets, weights, fit(acc), pf),
            (Runs::Seven, 3) => seven_k3::<S>(src, offsets, weights, fit(acc), pf),
            (Runs::Seven, 7) => seven_k7::<S>(src, offsets, weights, fit(acc), pf),
            (Runs::Seven, _) => seven_k1::<S>(src, offsets, weights, fit(acc), pf),
            (Runs::Four, 3) => four_k3::<S>(src, offsets, weights, fit(acc), pf),
            (Runs::Four, 7) => four_k7::<S>(src, offsets, weights, fit(acc), pf),
            (Runs::Four, _) => four_k1::<S>(src, offsets, weights, fit(acc), pf),
        }
    }
}

/// The 16 × 16 matrix whose rows are `rows`, transposed: element `c` of row `q` becomes element
/// `q` of row `c`.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose16(rows: [__m512; 16]) -> [__m512; 16] {
    // Within each 128-bit lane, pairs of rows interleaved, then quads: v[g][j] holds, in lane
    // L, element 4L + j of rows 4g .. 4g + 4.
    let v: [[__m512; 4]; 4] = std::array::from_fn(|g| {
        let r = &rows[4 * g..4 * g + 4];
        let (t0, t1) = (_mm512_unpacklo_ps(r[0], r[1]), _mm512_unpackhi_ps(r[0], r[1]));
        let (t2, t3) = (_mm512_unpacklo_ps(r[2], r[3]), _mm512_unpackhi_ps(r[2], r[3]));
        let pd = _mm512_castps_pd;
        let ps = _mm512_castpd_ps;
        [
            ps(_mm512_unpacklo_pd(pd(t0), pd(t2))),
            ps(_mm512_unpackhi_pd(pd(t0), pd(t2))),
            ps(_mm512_unpacklo_pd(pd(t1), pd(t3))),
            ps(_mm512_unpackhi_pd(pd(t1), pd(t3))),
        ]
    });
    let mut out = [_mm512_setzero_ps(); 16];
    for j in 0..4 {
        // Lanes 0 and 2 of groups 0 and 1, lanes 1 and 3 of them, and the same of groups 2, 3.
        let a_even = _mm512_shuffle_f32x4::<0x88>(v[0][j], v[1][j]);
        let a_odd = _mm512_shuffle_f32x4::<0xDD>(v[0][j], v[1][j]);
        let b_even = _mm512_shuffle_f32x4::<0x88>(v[2][j], v[3][j]);
        let b_odd = _mm512_shuffle_f32x4::<0xDD>(v[2][j], v[3][j]);
        // Column 4L + j: lane L of each group in turn.
        out[j] = _mm512_shuffle_f32x4::<0x88>(a_even, b_even);
        out[8 + j] = _mm512_shuffle_f32x4::<0xDD>(a_even, b_even);
        out[4 + j] = _mm512_shuffle_f32x4::<0x88>(a_odd, b_odd);
        out[12 + j] = _mm512_shuffle_f32x4::<0xDD>(a_odd, b_odd);
    }
    out
}

/// Fetches the line at `{pf}` toward the core's second-level cache and moves `{pf}` on by
/// `{pfs}` bytes.
macro_rules! prefetch {
    () => {
        "prefetcht1 byte ptr [{pf}]\nadd {pf}, {pfs}"
    };
}

/// One multiply-add step, as assembly text: the 16 weights `$w` bytes past `{w}` (into zmm31)
/// times, for each position, the input `$x` bytes past its run's corner `$s` plus the step's
/// offset `{o}` plus `$q` times the position stride `{sb}` in bytes (broadcast by the
/// multiply-add), added to the position's accumulator `$a`.
macro_rules! zstep {
    ($w:literal, $x:literal; $($s:literal $q:literal $a:literal),*) => {
        concat!(
            "vmovaps zmm31, zmmword ptr [{w} + ", $w, "]\n",
            $(
                "vfmadd231ps ", $a, ", zmm31, dword ptr [{", $s, "} + 4*{o} + ", $x, " + {sb}*", $q,
                "]{{1to16}}\n",
            )*
        )
    };
}

/// [`zstep!`] for 14 positions of one row from `{s0}`.
macro_rules! step_one {
    ($w:literal, $x:literal) => {
        zstep!($w, $x; "s0" 0 "zmm0", "s0" 1 "zmm1", "s0" 2 "zmm2", "s0" 3 "zmm3", "s0" 4 "zmm4",
            "s0" 5 "zmm5", "s0" 6 "zmm6", "s0" 7 "zmm7", "s0" 8 "zmm8", "s0" 9 "zmm9", "s0" 10 "zmm10",
            "s0" 11 "zmm11", "s0" 12 "zmm12", "s0" 13 "zmm13")
    };
}

/// [`zstep!`] for 7 positions from `{s0}` and 7 from `{s1}`.
macro_rules! step_two {
    ($w:literal, $x:literal) => {
        zstep!($w, $x; "s0" 0 "zmm0", "s0" 1 "zmm1", "s0" 2 "zmm2", "s0" 3 "zmm3", "s0" 4 "zmm4",
            "s0" 5 "zmm5", "s0" 6 "zmm6", "s1" 0 "zmm7", "s1" 1 "zmm8", "s1" 2 "zmm9", "s1" 3 "zmm10",
            "s1" 4 "zmm11", "s1" 5 "zmm12", "s1" 6 "zmm13")
    };
}

/// [`zstep!`] for four runs of 7 positions, from `{s0}`, `{s1}`, `{s2}` and `{s3}`.
macro_rules! step_four {
    ($w:literal, $x:literal) => {
        zstep!($w, $x; "s0" 0 "zmm0", "s0" 1 "zmm1", "s0" 2 "zmm2", "s0" 3 "zmm3", "s0" 4 "zmm4",
            "s0" 5 "zmm5", "s0" 6 "zmm6", "s1" 0 "zmm7", "s1" 1 "zmm8", "s1" 2 "zmm9", "s1" 3 "zmm10",
            "s1" 4 "zmm11", "s1" 5 "zmm12", "s1" 6 "zmm13", "s2" 0 "zmm14", "s2" 1 "zmm15",
            "s2" 2 "zmm16", "s2" 3 "zmm17", "s2" 4 "zmm18", "s2" 5 "zmm19", "s2" 6 "zmm20",
            "s3" 0 "zmm21", "s3" 1 "zmm22", "s3" 2 "zmm23", "s3" 3 "zmm24", "s3" 4 "zmm25",
            "s3" 5 "zmm26", "s3" 6 "zmm27")
    };
}

/// [`zstep!`] for 7 positions from `{s0}`.
macro_rules! step_seven {
    ($w:literal, $x:literal) => {
        zstep!($w, $x; "s0" 0 "zmm0", "s0" 1 "zmm1", "s0" 2 "zmm2", "s0" 3 "zmm3", "s0" 4 "zmm4",
            "s0" 5 "zmm5", "s0" 6 "zmm6")
    };
}

/// [`tile_loop_asm!`] for a 512-bit tile: the accumulators `$a` in `$r`, zmm31 free for the
/// weights, prefetching as `$pf` says, positions `{sb}` bytes apart.
macro_rules! tile_loop {
    ($offsets:expr, $count:expr, $weights:expr, $pf:expr, [$($s:ident = $src:expr),*],
     [$($r:tt $a:expr),*]; $($body:tt)*) => {
        tile_loop_asm!($offsets, $count, $weights, [$($s = $src,)* pfs = $pf.step], moving [pf = $pf.at],
            consts [sb = 4 * S], free ["zmm31"]; [$($r $a),*]; $($body)*)
    };
}

/// The three loops of one tile layout: one step per offset, a window row 3 wide (one offset
/// read per three steps, the others at the next two values) and 7 wide (a ResNet's stem).
macro_rules! loops {
    ($step:ident, $k1:ident, $k3:ident, $k7:ident, $len:expr, [$($s:ident $n:tt),*], [$($r:tt $i:tt),*]) => {
        /// Adds the tile's products to `acc`, one step per offset.
        ///
        /// # Safety
        /// As [`tile`]'s.
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn $k1<const S: usize>(
            src: [*const f32; 4],
            offsets: &[usize],
            weights: *const f32,
            acc: &mut [__m512; $len],
            pf: Prefetch,
        ) {
            tile_loop!(offsets, offsets.len(), weights, pf, [$($s = src[$n]),*], [$($r acc[$i]),*];
                $step!(0, 0), prefetch!(), "add {offs}, 8", "add {w}, 64",);
        }

        /// As the one-step loop, for `offsets` in threes `o, o + 1, o + 2`.
        ///
        /// # Safety
        /// As [`tile`]'s, with `offsets` in threes.
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn $k3<const S: usize>(
            src: [*const f32; 4],
            offsets: &[usize],
            weights: *const f32,
            acc: &mut [__m512; $len],
            pf: Prefetch,
        ) {
            tile_loop!(offsets, offsets.len() / 3, weights, pf, [$($s = src[$n]),*], [$($r acc[$i]),*];
                $step!(0, 0), $step!(64, 4), prefetch!(), $step!(128, 8), "add {offs}, 24", "add {w}, 192",);
        }

        /// As the one-step loop, for `offsets` in sevens `o, ..., o + 6`.
        ///
        /// # Safety
        /// As [`tile`]'s, with `offsets` in sevens.
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn $k7<const S: usize>(
            src: [*const f32; 4],
            offsets: &[usize],
            weights: *const f32,
            acc: &mut [__m512; $len],
            pf: Prefetch,
        ) {
            tile_loop!(offsets, offsets.len() / 7, weights, pf, [$($s = src[$n]),*], [$($r acc[$i]),*];
                $step!(0, 0), prefetch!(), $step!(64, 4), $step!(128, 8), $step!(192, 12), $step!(256, 16),
                $step!(320, 20), $step!(384, 24), "add {offs}, 56", "add {w}, 448",);
        }
    };
}

loops!(step_one, one_k1, one_k3, one_k7, NP, [s0 0],
    ["zmm0" 0, "zmm1" 1, "zmm2" 2, "zmm3" 3, "zmm4" 4, "zmm5" 5, "zmm6" 6, "zmm7" 7, "zmm8" 8,
     "zmm9" 9, "zmm10" 10, "zmm11" 11, "zmm12" 12, "zmm13" 13]);
loops!(step_two, two_k1, two_k3, two_k7, NP, [s0 0, s1 1],
    ["zmm0" 0, "zmm1" 1, "zmm2" 2, "zmm3" 3, "zmm4" 4, "zmm5" 5, "zmm6" 6, "zmm7" 7, "zmm8" 8,
     "zmm9" 9, "zmm10" 10, "zmm11" 11, "zmm12" 12, "zmm13" 13]);
loops!(step_seven, seven_k1, seven_k3, seven_k7, 7, [s0 0],
    ["zmm0" 0, "zmm1" 1, "zmm2" 2, "zmm3" 3, "zmm4" 4, "zmm5" 5, "zmm6" 6]);
loops!(step_four, four_k1, four_k3, four_k7, NP4, [s0 0, s1 1, s2 2, s3 3],
    ["zmm0" 0, "zmm1" 1, "zmm2" 2, "zmm3" 3, "zmm4" 4, "zmm5" 5, "zmm6" 6, "zmm7" 7, "zmm8" 8,
     "zmm9" 9, "zmm10" 10, "zmm11" 11, "zmm12" 12, "zmm13" 13, "zmm14" 14, "zmm15" 15,
     "zmm16" 16, "zmm17" 17, "zmm18" 18, "zmm19" 19, "zmm20" 20, "zmm21" 21, "zmm22" 22,
     "zmm23" 23, "zmm24" 24, "zmm25" 25, "zmm26" 26, "zmm27" 27]);
