//! Matrix products: ONNX MatMul's rules over Candle and the gemm crate, small products in
//! registers, and the products of Gemm with its bias and Relu in the epilogue.

use super::{threads, with_values};
use candle_core::{bail, DType as CDType, Device, Result as CResult, Tensor as CTensor};

/// A constant `[k, n]` B whose `n` is not a multiple of 8, as a view of the first `n` columns of
/// `[k, n]` padded with zeros to the next multiple of 8: the small product's last block of 8
/// columns then reads B in place instead of copying its tail on every run.
pub(crate) fn pad_columns(b: CTensor) -> CResult<CTensor> {
    let (k, n) = b.dims2()?;
    if n % 8 == 0 || k == 0 {
        return Ok(b);
    }
    let padded = b.pad_with_zeros(1, 0, 8 - n % 8)?;
    padded.narrow(1, 0, n)
}

/// `a @ b` with ONNX MatMul's rules (numpy matmul: 1-D promotion, batch broadcasting).
pub(crate) fn matmul(a: &CTensor, b: &CTensor) -> CResult<CTensor> {
    let (a1, b1) = (a.rank() == 1, b.rank() == 1);
    if a.rank() == 0 || b.rank() == 0 {
        bail!("MatMul of a scalar");
    }
    let a2 = if a1 { a.unsqueeze(0)? } else { a.clone() };
    let b2 = if b1 { b.unsqueeze(1)? } else { b.clone() };
    let (ka, kb) = (a2.dims()[a2.rank() - 1], b2.dims()[b2.rank() - 2]);
    if ka != kb {
        bail!("MatMul of {:?} and {:?}: inner dims differ", a.dims(), b.dims());
    }
    let mut y = match serial_matmul(&a2, &b2)? {
        Some(y) => y,
        None => {
            let (a2, b2) = (mm_ready(&a2)?, mm_ready(&b2)?);
            let batches: usize =
                a2.dims()[..a2.rank() - 2].iter().chain(&b2.dims()[..b2.rank() - 2]).product();
            let (m, n) = (a2.dims()[a2.rank() - 2], b2.dims()[b2.rank() - 1]);
            threads::candle_product(batches.max(1) * m * n * ka, || {
                if a2.rank() == 2 && b2.rank() == 2 {
                    a2.matmul(&b2)
                } else {
                    a2.broadcast_matmul(&b2)
                }
            })?
        }
    };
    if a1 {
        y = y.squeeze(y.rank() - 2)?;
    }
    if b1 {
        y = y.squeeze(y.rank() - 1)?;
    }
    Ok(y)
}

/// Up to this many multiply-adds a matrix product or a convolution runs on the calling thread
/// unless its model's runs measure that splitting pays (from
/// [`MID_MACS`](super::tune::MID_MACS) up, see [`super::tune`]): on most machines, handing
/// the product to other threads and splitting it costs more than the split gains (measured with `rivet bench --threads 1,2` on the bundled
/// CNN, whose convolutions are under a million multiply-adds, and ResNet-18, whose are tens of
/// millions; the product of its classifier at batch 8, 4.1 million, took 398 µs on one thread
/// and 262 µs split over two in the gemm crate's column blocks).
pub(crate) const SERIAL_GEMM_MACS: usize = 1 << 21;

/// `a @ b + bias` for float32 `a` and `b` of at least two dims that [`serial_matmul`] takes
/// and a `bias` of one value per output column: each output element is the product's sum plus
/// its column's bias, one addition, the bits an Add of the product and the bias gives. `None`
/// where those do not hold.
pub(crate) fn matmul_bias_f32(a: &CTensor, b: &CTensor, bias: &CTensor) -> CResult<Option<CTensor>> {
    let f32s = [a.dtype(), b.dtype(), bias.dtype()].iter().all(|&d| d == CDType::F32);
    if !f32s || a.rank() < 2 || b.rank() < 2 || bias.dims() != [b.dims()[b.rank() - 1]] {
        return Ok(None);
    }
    with_values(bias, |bias: &[f32]| serial_matmul_with(a, b, Some(bias)))?
}

/// `a @ b` (f32 or f64, `b` a matrix or a batch matching `a`'s) by one `gemm` call per batch
/// on the calling thread, when small; `None` otherwise (Candle's product runs it, on its pool).
pub(crate) fn serial_matmul(a: &CTensor, b: &CTensor) -> CResult<Option<CTensor>> {
    serial_matmul_with::<f32>(a, b, None)
}

/// [`serial_matmul`], plus `bias` (of `T`, one value per column) added to every row.
fn serial_matmul_with<B: candle_core::WithDType>(
    a: &CTensor,
    b: &CTensor,
    bias: Option<&[B]>,
) -> CResult<Option<CTensor>> {
    let (ra, rb) = (a.rank(), b.rank());
    if ra < 2 || rb < 2 || a.dtype() != b.dtype() {
        return Ok(None);
    }
    let (m, k, n) = (a.dims()[ra - 2], a.dims()[ra - 1], b.dims()[rb - 1]);
    let (batch_a, batch_b) = (&a.dims()[..ra - 2], &b.dims()[..rb - 2]);
    if !(batch_b.is_empty() || batch_b == batch_a) || b.dims()[rb - 2] != k {
        return Ok(None);
    }
    let batches: usize = batch_a.iter().product();
    if batches.saturating_mul(m).saturating_mul(n).saturating_mul(k) > SERIAL_GEMM_MACS || m * n * k == 0 {
        return Ok(None);
    }
    let mut dims = batch_a.to_vec();
    dims.extend([m, n]);
    let shared_b = batch_b.is_empty();
    match (a.dtype(), bias) {
        (_, Some(bias)) if bias.len() == n && B::DTYPE == a.dtype() => {
            Ok(Some(serial_gemm::<B>(a, b, batches, m, k, n, shared_b, &dims, Some(bias))?))
        }
        (_, Some(_)) => Ok(None),
        (CDType::F32, None) => Ok(Some(serial_gemm::<f32>(a, b, batches, m, k, n, shared_b, &dims, None)?)),
        (CDType::F64, None) => Ok(Some(serial_gemm::<f64>(a, b, batches, m, k, n, shared_b, &dims, None)?)),
        _ => Ok(None),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn serial_gemm<T: candle_core::WithDType>(
    a: &CTensor,
    b: &CTensor,
    batches: usize,
    m: usize,
    k: usize,
    n: usize,
    shared_b: bool,
    dims: &[usize],
    bias: Option<&[T]>,
) -> CResult<CTensor> {
    let len = batches * m * n;
    let mut c: Vec<T> = Vec::with_capacity(len);
    with_strided(a, |av: Strided<'_, T>| {
        with_strided(b, |bv: Strided<'_, T>| {
            gemm_batches(av, bv, &mut c.spare_capacity_mut()[..len], batches, m, k, n, shared_b)
        })
    })???;
    // SAFETY: `gemm_batches` returned Ok, so it wrote every element of the `len` it was given.
    unsafe { c.set_len(len) };
    if let Some(bias) = bias.filter(|b| b.len() == n && n > 0) {
        for row in c.chunks_exact_mut(n) {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    }
    CTensor::from_vec(c, dims, &Device::Cpu)
}

/// A tensor as its storage and layout: element `[i, j, ...]` is at
/// `data[start + i * strides[0] + j * strides[1] + ...]`.
#[derive(Clone, Copy)]
pub(crate) struct Strided<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) start: usize,
    pub(crate) dims: &'a [usize],
    pub(crate) strides: &'a [usize],
}

/// Runs `f` on `t` as it lies in its storage (a transposed or sliced view read in place), after
/// checking that every element of the view lies inside the storage.
pub(crate) fn with_strided<T: candle_core::WithDType, R>(
    t: &CTensor,
    f: impl FnOnce(Strided<'_, T>) -> R,
) -> CResult<R> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else { bail!("not a CPU tensor") };
    let data = cpu.as_slice::<T>()?;
    let (dims, strides) = (layout.dims(), layout.stride());
    let last = dims.iter().zip(strides).try_fold(layout.start_offset(), |acc, (&d, &s)| {
        if d == 0 {
            None
        } else {
            acc.checked_add((d - 1).checked_mul(s)?)
        }
    });
    if last.is_some_and(|l| l >= data.len()) {
        bail!("a view reaches past its storage");
    }
    Ok(f(Strided { data, start: layout.start_offset(), dims, strides }))
}

/// `c[i] = a[i] @ b[i]` (or `@ b` when `shared_b`) for each of `batches` matrices, read in
/// place through their strides; `c` is row-major, and every element of it is written (none is
/// read first) when this returns Ok.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_batches<T: candle_core::WithDType>(
    a: Strided<'_, T>,
    b: Strided<'_, T>,
    c: &mut [std::mem::MaybeUninit<T>],
    batches: usize,
    m: usize,
    k: usize,
    n: usize,
    shared_b: bool,
) -> CResult<()> {
    let (ra, rb) = (a.dims.len(), b.dims.len());
    if a.dims[ra - 2..] != [m, k] || b.dims[rb - 2..] != [k, n] || c.len() != batches * m * n {
        bail!("matrix product operands do not have their expected shapes");
    }
    if m * n * k == 0 {
        // Products over nothing are zero.
        c.iter_mut().for_each(|v| {
            v.write(T::zero());
        });
        return Ok(());
    }
    // `small_gemm` adds to its output, so its batches start from zero; the gemm crate's
    // (`read_dst` false) write every element without reading it.
    let small = small_takes(m, k, n, b.strides[rb - 1]);
    // The offset of batch `i` (row-major over the batch dims) in a view.
    let offset = |v: &Strided<'_, T>, mut i: usize| {
        let r = v.dims.len();
        let mut off = v.start;
        for j in (0..r - 2).rev() {
            off += (i % v.dims[j]) * v.strides[j];
            i /= v.dims[j];
        }
        off
    };
    for i in 0..batches {
        let (ao, bo) = (offset(&a, i), if shared_b { b.start } else { offset(&b, i) });
        let dst = &mut c[i * m * n..(i + 1) * m * n];
        if small {
            dst.iter_mut().for_each(|v| {
                v.write(T::zero());
            });
            // SAFETY: every element was just written.
            let dst = unsafe { &mut *(dst as *mut [std::mem::MaybeUninit<T>] as *mut [T]) };
            if small_gemm(a, b, ao, bo, dst, (m, k, n), T::one(), Epilogue::PLAIN) {
                continue;
            }
        }
        // SAFETY: `with_strided` checked that every element of both views lies inside its
        // storage; gemm reads a's m×k elements at `ao + r * a_rs + col * a_cs` and b's k×n at
        // `bo + r * b_rs + col * b_cs`, which are elements of batch `i` of those views, and
        // writes (with `read_dst` false, without reading) the m×n row-major `dst`, which
        // overlaps neither.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr().cast::<T>(),
                1,
                n as isize,
                false,
                a.data.as_ptr().add(ao),
                a.strides[ra - 1] as isize,
                a.strides[ra - 2] as isize,
                b.data.as_ptr().add(bo),
                b.strides[rb - 1] as isize,
                b.strides[rb - 2] as isize,
                T::zero(),
                T::from_f64(1.0),
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }
    Ok(())
}

/// Products of at most 8 rows and this many multiply-adds whose `b` has contiguous rows go
/// through [`small_gemm`]: there the gemm crate's dispatch and packing cost more than the
/// arithmetic (the bundled MLP's layers are 1,024, 2,048 and 96 at batch 1, 8× that at batch
/// 8; the gemm crate took 300 ns for the last one at batch 8, whose output has 3 columns).
pub(crate) const SMALL_GEMM_MACS: usize = 1 << 15;

/// `c += alpha * a @ b` for a small product, where `a` (`[m, k]` from offset `ao`) and `b`
/// (`[k, n]` from `bo`, rows contiguous) are the last two dims of their views and `c` is
/// row-major `[m, n]`: each row of `c` gains `alpha * a[i, p]` times row `p` of `b`, a loop the
/// CPU's widest vectors run. With `epilogue`, each row starts from its row of `n` values
/// instead of from `c` (a bias), and its `relu` clamps the sums at zero as they are stored (NaN
/// stays NaN). Returns false, touching nothing, when the product is too large or `b`'s rows are
/// not contiguous; the caller then uses the gemm crate.
#[allow(clippy::too_many_arguments)]
pub(crate) fn small_gemm<T: candle_core::WithDType>(
    a: Strided<'_, T>,
    b: Strided<'_, T>,
    ao: usize,
    bo: usize,
    c: &mut [T],
    (m, k, n): (usize, usize, usize),
    alpha: T,
    epilogue: Epilogue<'_, T>,
) -> bool {
    let (ra, rb) = (a.dims.len(), b.dims.len());
    if !small_takes(m, k, n, b.strides[rb - 1])
        || c.len() != m * n
        || epilogue.start.is_some_and(|r| r.len() != n)
    {
        return false;
    }
    let kernel = SmallGemm {
        a: a.data,
        a_rs: a.strides[ra - 2],
        a_cs: a.strides[ra - 1],
        b: b.data,
        b_rs: b.strides[rb - 2],
        ao,
        bo,
        c,
        k,
        n,
        alpha,
        epilogue,
    };
    crate::kernels::wide(kernel);
    true
}

/// Whether [`small_gemm`] takes an `[m, k] @ [k, n]` product whose `b` steps `b_col_step`
/// elements between columns: small enough, and `b`'s rows contiguous.
fn small_takes(m: usize, k: usize, n: usize, b_col_step: usize) -> bool {
    small_enough(m, k, n) && (n <= 1 || b_col_step == 1)
}

/// Whether an `[m, k] @ [k, n]` product is small enough for [`small_gemm`] (which also needs
/// `b`'s rows contiguous).
pub(crate) fn small_enough(m: usize, k: usize, n: usize) -> bool {
    m <= 8 && m * k * n <= SMALL_GEMM_MACS
}

/// Where [`small_gemm`]'s sums start and what happens as they are stored.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a, T> {
    /// The row every output row starts from, instead of the output's own values.
    pub(crate) start: Option<&'a [T]>,
    /// Whether the sums are clamped at zero (a fused Relu).
    pub(crate) relu: bool,
}

impl<T> Epilogue<'_, T> {
    /// Sums that start from the output and are stored as they are.
    pub(crate) const PLAIN: Self = Epilogue { start: None, relu: false };
}

/// [`small_gemm`]'s loop, to run through [`crate::kernels::wide`].
pub(crate) struct SmallGemm<'a, T> {
    pub(crate) a: &'a [T],
    pub(crate) a_rs: usize,
    pub(crate) a_cs: usize,
    pub(crate) b: &'a [T],
    pub(crate) b_rs: usize,
    pub(crate) ao: usize,
    pub(crate) bo: usize,
    pub(crate) c: &'a mut [T],
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) alpha: T,
    pub(crate) epilogue: Epilogue<'a, T>,
}

impl<T: candle_core::WithDType> crate::kernels::WideKernel for SmallGemm<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        // Without the multiplication by `alpha` where it is 1 (nearly always): one instruction
        // less per element of `a` in the inner loop.
        if self.alpha == T::one() {
            self.rows(|x| x)
        } else {
            let alpha = self.alpha;
            self.rows(move |x| alpha * x)
        }
    }
}

impl<T: candle_core::WithDType> SmallGemm<'_, T> {
    /// The product, each element of `a` taken through `scaled`.
    #[inline(always)]
    pub(crate) fn rows(self, scaled: impl Fn(T) -> T + Copy) {
        let SmallGemm { a, a_rs, a_cs, b, b_rs, ao, bo, c, k, n, epilogue, .. } = self;
        let Epilogue { start, relu } = epilogue;
        if n == 0 {
            return;
        }
        let s = |i: usize| move |p: usize| scaled(a[ao + i * a_rs + p * a_cs]);
        // The last n % 8 columns of `b`, padded with zeros to 8, so that they too run as a
        // block of 8 whose sums stay in registers.
        let j_tail = n - n % 8;
        // Where `b`'s storage holds 8 values from the tail of every row (a constant B padded
        // at load), the tail reads them in place: the columns past `n` only feed sums that are
        // not stored.
        let in_place = j_tail < n && k.saturating_sub(1) * b_rs + bo + j_tail + 8 <= b.len();
        let mut tail: smallvec::SmallVec<[T; 512]> = smallvec::SmallVec::new();
        if j_tail < n && !in_place {
            tail.resize(k * 8, T::zero());
            for (p, dst) in tail.chunks_exact_mut(8).enumerate() {
                dst[..n - j_tail].copy_from_slice(&b[bo + j_tail + p * b_rs..][..n - j_tail]);
            }
        }
        // Rows two at a time and columns in blocks, so that the sums stay in vector registers
        // over all of `k` as several independent chains: summing in memory would make each
        // step wait for the previous one's store.
        let mut rows = c.chunks_exact_mut(n).enumerate();
        while let Some((i, r0)) = rows.next() {
            let mut r1 = rows.next().map(|(_, r)| r);
            let mut j = 0;
            while j + 32 <= n {
                let (o0, o1) = (&mut r0[j..j + 32], r1.as_mut().map(|r| &mut r[j..j + 32]));
                let ep = Epilogue { start: start.map(|r| &r[j..j + 32]), relu };
                column_block::<32, T>(o0, o1, s(i), s(i + 1), b, bo + j, b_rs, k, ep);
                j += 32;
            }
            while j + 8 <= n {
                let (o0, o1) = (&mut r0[j..j + 8], r1.as_mut().map(|r| &mut r[j..j + 8]));
                let ep = Epilogue { start: start.map(|r| &r[j..j + 8]), relu };
                column_block::<8, T>(o0, o1, s(i), s(i + 1), b, bo + j, b_rs, k, ep);
                j += 8;
            }
            if j < n {
                let w = n - j;
                let (mut t0, mut t1) = ([T::zero(); 8], [T::zero(); 8]);
                t0[..w].copy_from_slice(start.map_or(&r0[j..], |r| &r[j..]));
                if let Some(r1) = &r1 {
                    t1[..w].copy_from_slice(start.map_or(&r1[j..], |r| &r[j..]));
                }
                let o1 = r1.is_some().then_some(&mut t1[..]);
                let ep = Epilogue { start: None, relu };
                if in_place {
                    column_block::<8, T>(&mut t0, o1, s(i), s(i + 1), b, bo + j, b_rs, k, ep);
                } else {
                    column_block::<8, T>(&mut t0, o1, s(i), s(i + 1), &tail, 0, 8, k, ep);
                }
                r0[j..].copy_from_slice(&t0[..w]);
                if let Some(r1) = r1 {
                    r1[j..].copy_from_slice(&t1[..w]);
                }
            }
        }
    }
}

/// `out0[j] += Σ_p s0(p) * b[b0 + p * b_rs + j]` for `W` columns, and the same for `out1` with
/// `s1` when there is a second row, the sums held in local arrays the compiler keeps in
/// vector registers; `epilogue` (its start row `W` long) as [`small_gemm`] says.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn column_block<const W: usize, T: candle_core::WithDType>(
    out0: &mut [T],
    out1: Option<&mut [T]>,
    s0: impl Fn(usize) -> T,
    s1: impl Fn(usize) -> T,
    b: &[T],
    b0: usize,
    b_rs: usize,
    k: usize,
    epilogue: Epilogue<'_, T>,
) {
    let zero = T::zero();
    let clamp = |acc: &mut [T; W]| {
        if epilogue.relu {
            for x in acc.iter_mut() {
                *x = if *x < zero { zero } else { *x };
            }
        }
    };
    let mut acc0 = [zero; W];
    acc0.copy_from_slice(&epilogue.start.unwrap_or(out0)[..W]);
    match out1 {
        Some(out1) => {
            let mut acc1 = [zero; W];
            acc1.copy_from_slice(&epilogue.start.unwrap_or(out1)[..W]);
            for p in 0..k {
                let (sp0, sp1) = (s0(p), s1(p));
                let brow: &[T; W] = b[b0 + p * b_rs..][..W].try_into().expect("W elements");
                for j in 0..W {
                    acc0[j] += sp0 * brow[j];
                }
                for j in 0..W {
                    acc1[j] += sp1 * brow[j];
                }
            }
            clamp(&mut acc1);
            out1[..W].copy_from_slice(&acc1);
        }
        None => {
            for p in 0..k {
                let sp0 = s0(p);
                let brow: &[T; W] = b[b0 + p * b_rs..][..W].try_into().expect("W elements");
                for j in 0..W {
                    acc0[j] += sp0 * brow[j];
                }
            }
        }
    }
    clamp(&mut acc0);
    out0[..W].copy_from_slice(&acc0);
}

/// ONNX Gemm on 2-D `a` `[m, k]` and `b` `[k, n]` (views read in place): `alpha * a @ b +
/// beta * c`, `c` broadcast to `[m, n]`. The output starts as `beta * c` and the product is
/// accumulated into it by one `gemm` call.
pub(crate) fn gemm_op<T: candle_core::WithDType>(
    a: &CTensor,
    b: &CTensor,
    c: Option<&CTensor>,
    alpha: f64,
    beta: f64,
    relu: bool,
    panels: Option<&Panels>,
) -> CResult<CTensor> {
    let (m, k, n) = (a.dims()[0], a.dims()[1], b.dims()[1]);
    super::check_size(&[m, n], T::DTYPE.size_in_bytes())?;
    // A bias row (C of `n` values, beta 1) and a fused Relu go into a small product's
    // epilogue: no pass over the output for either.
    if let Some(c) = c.filter(|c| {
        beta == 1.0
            && m * k * n > 0
            && small_enough(m, k, n)
            && matches!(c.dims(), [cn] | [1, cn] if *cn == n)
    }) {
        let mut out = vec![T::zero(); m * n];
        let done = with_values(c, |bias: &[T]| {
            with_strided(a, |av: Strided<'_, T>| {
                with_strided(b, |bv: Strided<'_, T>| {
                    let epilogue = Epilogue { start: Some(bias), relu };
                    small_gemm(av, bv, av.start, bv.start, &mut out, (m, k, n), T::from_f64(alpha), epilogue)
                })
            })
        })???;
        if done {
            return CTensor::from_vec(out, (m, n), &Device::Cpu);
        }
    }
    // The output starts as `beta * C`, written once (not zeroed first), or as zeros.
    let (mut out, read_dst) = match c {
        Some(c) => {
            // C as [cm, cn], each 1 or the full size (unidirectional broadcasting).
            let (cm, cn) = match c.dims() {
                [] => (1, 1),
                [cn] => (1, *cn),
                [cm, cn] => (*cm, *cn),
                _ => bail!("C must have at most 2 dims, got {:?}", c.dims()),
            };
            if !(cm == 1 || cm == m) || !(cn == 1 || cn == n) {
                bail!("C of shape {:?} does not broadcast to {:?}", c.dims(), [m, n]);
            }
            let mut out = Vec::with_capacity(m * n);
            with_values(c, |cv: &[T]| {
                for i in 0..m {
                    let ci = if cm == 1 { 0 } else { i };
                    if beta == 1.0 && cn == n {
                        // The common case, a bias vector: one copy per row.
                        out.extend_from_slice(&cv[ci * cn..][..n]);
                        continue;
                    }
                    for j in 0..n {
                        let v = cv[ci * cn + if cn == 1 { 0 } else { j }];
                        out.push(if beta == 1.0 { v } else { T::from_f64(v.to_f64() * beta) });
                    }
                }
            })?;
            (out, true)
        }
        None => (vec![T::zero(); m * n], false),
    };
    if m * n * k > 0 {
        with_strided(a, |av: Strided<'_, T>| {
            with_strided(b, |bv: Strided<'_, T>| {
                if small_gemm(
                    av,
                    bv,
                    av.start,
                    bv.start,
                    &mut out,
                    (m, k, n),
                    T::from_f64(alpha),
                    Epilogue::PLAIN,
                ) {
                    return;
                }
                let dst = super::conv::SharedOut::new(as_uninit(&mut out));
                if let Some(panels) = panels.filter(|_| m <= FEW_ROWS).and_then(|p| p.of(b)) {
                    let done = with_strided(panels, |pv: Strided<'_, T>| {
                        threads::split(m * n * k, |split| {
                            few_rows_gemm(av, pv, dst, (m, k, n), T::from_f64(alpha), &split)
                        })
                    });
                    if done.is_ok() {
                        return;
                    }
                }
                let blocks = column_blocks(m, k, n);
                let width = n.div_ceil(blocks);
                threads::split(m * n * k, |split| {
                    split.run_ranges(blocks, |block| {
                        let j0 = block * width;
                        let w = width.min(n - j0);
                        // SAFETY: `with_strided` checked that every element of both 2-D views
                        // lies inside its storage; gemm reads a's m×k elements and the k×w of
                        // b's columns `j0..j0 + w` through their strides and writes those
                        // columns of the m×n row-major `out`, which overlaps neither, and
                        // which no other block writes.
                        unsafe {
                            gemm::gemm(
                                m,
                                w,
                                k,
                                dst.at(j0),
                                1,
                                n as isize,
                                read_dst,
                                av.data.as_ptr().add(av.start),
                                av.strides[1] as isize,
                                av.strides[0] as isize,
                                bv.data.as_ptr().add(bv.start + j0 * bv.strides[1]),
                                bv.strides[1] as isize,
                                bv.strides[0] as isize,
                                T::from_f64(1.0),
                                T::from_f64(alpha),
                                false,
                                false,
                                false,
                                gemm::Parallelism::None,
                            );
                        }
                    })
                });
            })
        })??;
    }
    if relu {
        relu_in_place(&mut out);
    }
    CTensor::from_vec(out, (m, n), &Device::Cpu)
}

/// The most rows of A for which [`gemm_op`] computes a product too large for [`small_gemm`]
/// with [`few_rows_gemm`] (where B is a constant) rather than the gemm crate.
const FEW_ROWS: usize = 8;

/// Columns of the output that [`few_rows_gemm`] computes at a time: the width of a panel.
const PANEL: usize = 32;

/// A constant Gemm B (`[k, n]`) laid out as [`few_rows_gemm`] reads it, `[n / 32, k, 32]`
/// (the last panel padded with zeros): each panel's `k × 32` values one after another. Made on
/// the first run of at most [`FEW_ROWS`] rows, so a model whose runs are all larger keeps no
/// second copy.
#[derive(Default)]
pub(crate) struct Panels(std::sync::OnceLock<Option<CTensor>>);

impl Panels {
    /// The panels of `b`, made on first use; `None` where they cannot be made.
    fn of(&self, b: &CTensor) -> Option<&CTensor> {
        self.0
            .get_or_init(|| {
                let (k, n) = b.dims2().ok()?;
                let wide = b.pad_with_zeros(1, 0, n.next_multiple_of(PANEL) - n).ok()?;
                wide.reshape((k, n.div_ceil(PANEL), PANEL)).ok()?.transpose(0, 1).ok()?.contiguous().ok()
            })
            .as_ref()
    }

    /// Whether the panels were made.
    #[cfg(test)]
    pub(crate) fn made(&self) -> bool {
        self.0.get().is_some_and(Option::is_some)
    }
}

/// `c += alpha * a @ b` for a product of at most [`FEW_ROWS`] rows (`a` `[m, k]`; `panels`
/// B's [`Panels`], `[n / 32, k, 32]`; `c` the row-major `[m, n]` output behind `dst`), one
/// panel's 32 columns at a time, the panels split over `split`'s threads. Each panel runs
/// [`small_gemm`]'s loop: all rows over `k × 32` values read in order, B from memory once.
/// The gemm crate's register tile is 16 rows tall (8 wide in AVX-512 lanes): on fewer rows it
/// computes the rest for nothing, and its column blocks read B's rows in parts.
///
/// ResNet-18's classifier (`[m, 512] @ [512, 1000]`, `RIVET_CANDLE_PROFILE`, the fastest five
/// of 30 runs, two runs each way, AMD EPYC with AVX2):
///
/// | rows, threads | panels | the gemm crate |
/// |---|---|---|
/// | 8, one | 252–258 µs | 297–324 µs |
/// | 8, two | 142–150 | 190–201 |
/// | 1, one | 120–136 | 113–118 |
/// | 1, two | 73–77 | 121–130 |
///
/// One row on one thread reads B from memory a little slower than the gemm crate's row-major
/// pass; it takes the same path as on two, where the panels split and one product does not.
///
/// A column's sums run over `k` in order, whichever panel and thread computes it: the result
/// is the same at every thread count.
fn few_rows_gemm<T: candle_core::WithDType>(
    a: Strided<'_, T>,
    b: Strided<'_, T>,
    dst: super::conv::SharedOut<T>,
    (m, k, n): (usize, usize, usize),
    alpha: T,
    split: &threads::Split<'_>,
) {
    assert!(m <= FEW_ROWS, "at most {FEW_ROWS} rows");
    let blocks = n.div_ceil(PANEL);
    assert!(b.dims == [blocks, k, PANEL] && b.strides == [k * PANEL, PANEL, 1], "B's panels");
    let tasks = split.threads().min(blocks);
    split.run(tasks, |t| {
        let mut sums = [T::zero(); FEW_ROWS * PANEL];
        for block in t * blocks / tasks..(t + 1) * blocks / tasks {
            let j0 = block * PANEL;
            let w = PANEL.min(n - j0);
            let sums = &mut sums[..m * w];
            for (i, row) in sums.chunks_exact_mut(w).enumerate() {
                // SAFETY: the output holds m×n initialized elements; row i's columns
                // j0..j0 + w are this block's alone, and only this task computes the block.
                row.copy_from_slice(unsafe { std::slice::from_raw_parts(dst.at(i * n + j0), w) });
            }
            crate::kernels::wide(SmallGemm {
                a: a.data,
                a_rs: a.strides[0],
                a_cs: a.strides[1],
                b: b.data,
                b_rs: PANEL,
                ao: a.start,
                bo: b.start + block * k * PANEL,
                c: sums,
                k,
                n: w,
                alpha,
                epilogue: Epilogue::PLAIN,
            });
            for (i, row) in sums.chunks_exact(w).enumerate() {
                // SAFETY: as above.
                unsafe { std::slice::from_raw_parts_mut(dst.at(i * n + j0), w) }.copy_from_slice(row);
            }
        }
    });
}

/// How many blocks of columns [`gemm_op`] computes an `[m, k] @ [k, n]` product in: one up to
/// [`SERIAL_GEMM_MACS`], else the most of 2, 4 or 8 that leaves at least 128 columns per
/// block. The blocks split over the threads (from the calling thread's first), and since
/// their number does not depend on the thread count, each output is the same sum at every
/// setting. Blocks also helped on one thread: `[8, 512] @ [512, 1000]` (the shape of
/// ResNet-18's classifier at batch 8, which itself runs on [`Panels`]) took 436 µs as one
/// product and 398 µs as four.
fn column_blocks(m: usize, k: usize, n: usize) -> usize {
    if m * k * n <= SERIAL_GEMM_MACS {
        return 1;
    }
    let mut blocks = 1;
    while blocks < 8 && n / (blocks * 2) >= 128 {
        blocks *= 2;
    }
    blocks
}

/// `v` as uninitialized values (for [`super::conv::SharedOut`], which tasks write through).
fn as_uninit<T>(v: &mut [T]) -> &mut [std::mem::MaybeUninit<T>] {
    // SAFETY: `MaybeUninit<T>` has `T`'s layout, and every element is initialized; writers
    // through the result store initialized values only.
    unsafe { &mut *(v as *mut [T] as *mut [std::mem::MaybeUninit<T>]) }
}

/// Relu in place (NaN stays NaN), for a Relu fused into the kernel before it.
pub(crate) fn relu_in_place<T: candle_core::WithDType>(v: &mut [T]) {
    crate::kernels::wide(ReluInPlace(v))
}

/// [`relu_in_place`]'s loop, to run through [`crate::kernels::wide`].
pub(crate) struct ReluInPlace<'a, T>(&'a mut [T]);

impl<T: candle_core::WithDType> crate::kernels::WideKernel for ReluInPlace<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let zero = T::zero();
        for x in self.0.iter_mut() {
            *x = if *x < zero { zero } else { *x };
        }
    }
}

/// `t` laid out for Candle's matrix product: as it is when row-major or a transposed
/// row-major matrix (the product reads both without a copy), else copied row-major.
pub(crate) fn mm_ready(t: &CTensor) -> CResult<CTensor> {
    let r = t.rank();
    if t.is_contiguous() || r >= 2 && t.transpose(r - 2, r - 1)?.is_contiguous() {
        Ok(t.clone())
    } else {
        t.contiguous()
    }
}
