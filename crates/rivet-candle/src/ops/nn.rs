//! Neural-network operators: matrix products, convolution, pooling, normalization, softmax.

use candle_core::{bail, DType as CDType, Device, Result as CResult, Tensor as CTensor};

use super::shape::strides;
use super::{axis, req, via_f32, with_values, Built, Kernel, NodeCtx, Refusal};
use crate::ty::Ty;

fn floats(t: Ty) -> bool {
    t.is_float()
}

/// The types of matrix products and convolutions (MatMul, Gemm, Conv, ConvTranspose): float and
/// double, and float16 and bfloat16 computed in float through [`via_f32`] (Candle's own
/// half-width kernels round differently from ONNX's references, so they are not used).
fn product_floats(t: Ty) -> bool {
    matches!(t, Ty::F16 | Ty::BF16 | Ty::F32 | Ty::F64)
}

/// What [`product_floats`] accepts, for refusals.
const PRODUCT_FLOATS: &str = "float16, bfloat16, float and double";

/// A constant `[k, n]` B whose `n` is not a multiple of 8, as a view of the first `n` columns of
/// `[k, n]` padded with zeros to the next multiple of 8: the small product's last block of 8
/// columns then reads B in place instead of copying its tail on every run.
fn pad_columns(b: CTensor) -> CResult<CTensor> {
    let (k, n) = b.dims2()?;
    if n % 8 == 0 || k == 0 {
        return Ok(b);
    }
    let padded = b.pad_with_zeros(1, 0, 8 - n % 8)?;
    padded.narrow(1, 0, n)
}

/// A float16 or bfloat16 Gemm after its product (`product`, already rounded to the type):
/// `alpha` times it, plus `beta` times C (input 2), then a fused Relu, each step rounded to the
/// type as numpy rounds each operation on half-width arrays in ONNX's reference.
fn gemm_half_steps(product: Kernel, alpha: f64, beta: f64, relu: bool) -> Kernel {
    Box::new(move |x| {
        let Some(mut y) = product(x)?.into_iter().next() else { bail!("Gemm's product gave no value") };
        if alpha != 1.0 {
            y = y.affine(alpha, 0.0)?;
        }
        if let Some(c) = x.get(2).copied().flatten().filter(|_| beta != 0.0) {
            if c.rank() > 2 {
                bail!("C must have at most 2 dims, got {:?}", c.dims());
            }
            let c = if beta != 1.0 { c.affine(beta, 0.0)? } else { c.clone() };
            y = y.broadcast_add(&c)?;
        }
        Ok(vec![if relu { y.relu()? } else { y }])
    })
}

/// A float16 or bfloat16 convolution after its sums (`product`, already rounded to the type):
/// the bias (input 2) added per channel, then a fused Relu, each rounded to the type as in
/// ONNX's reference.
fn conv_half_steps(product: Kernel, relu: bool) -> Kernel {
    Box::new(move |x| {
        let Some(mut y) = product(x)?.into_iter().next() else { bail!("Conv's product gave no value") };
        if let Some(b) = x.get(2).copied().flatten() {
            let mut shape = vec![1; y.rank()];
            shape[1] = y.dims()[1];
            if b.elem_count() != shape[1] {
                bail!("a bias of {} values for {} output channels", b.elem_count(), shape[1]);
            }
            y = y.broadcast_add(&b.reshape(shape)?)?;
        }
        Ok(vec![if relu { y.relu()? } else { y }])
    })
}

/// `a @ b` with ONNX MatMul's rules (numpy matmul: 1-D promotion, batch broadcasting).
pub fn matmul(a: &CTensor, b: &CTensor) -> CResult<CTensor> {
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
            if a2.rank() == 2 && b2.rank() == 2 {
                a2.matmul(&b2)?
            } else {
                a2.broadcast_matmul(&b2)?
            }
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

/// Below this many multiply-adds a matrix product runs on the calling thread: waking a thread
/// pool for it costs more than the product (tens of microseconds on a small model).
const SERIAL_GEMM_MACS: usize = 1 << 18;

/// `a @ b` (f32 or f64, `b` a matrix or a batch matching `a`'s) by one `gemm` call per batch
/// on the calling thread, when small; `None` otherwise (Candle's product runs it, on its pool).
fn serial_matmul(a: &CTensor, b: &CTensor) -> CResult<Option<CTensor>> {
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
    match a.dtype() {
        CDType::F32 => Ok(Some(serial_gemm::<f32>(a, b, batches, m, k, n, batch_b.is_empty(), &dims)?)),
        CDType::F64 => Ok(Some(serial_gemm::<f64>(a, b, batches, m, k, n, batch_b.is_empty(), &dims)?)),
        _ => Ok(None),
    }
}

#[allow(clippy::too_many_arguments)]
fn serial_gemm<T: candle_core::WithDType>(
    a: &CTensor,
    b: &CTensor,
    batches: usize,
    m: usize,
    k: usize,
    n: usize,
    shared_b: bool,
    dims: &[usize],
) -> CResult<CTensor> {
    let mut c = vec![T::zero(); batches * m * n];
    with_strided(a, |av: Strided<'_, T>| {
        with_strided(b, |bv: Strided<'_, T>| gemm_batches(av, bv, &mut c, batches, m, k, n, shared_b))
    })???;
    CTensor::from_vec(c, dims, &Device::Cpu)
}

/// A tensor as its storage and layout: element `[i, j, ...]` is at
/// `data[start + i * strides[0] + j * strides[1] + ...]`.
#[derive(Clone, Copy)]
struct Strided<'a, T> {
    data: &'a [T],
    start: usize,
    dims: &'a [usize],
    strides: &'a [usize],
}

/// Runs `f` on `t` as it lies in its storage (a transposed or sliced view read in place), after
/// checking that every element of the view lies inside the storage.
fn with_strided<T: candle_core::WithDType, R>(
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
/// place through their strides; `c` is row-major.
#[allow(clippy::too_many_arguments)]
fn gemm_batches<T: candle_core::WithDType>(
    a: Strided<'_, T>,
    b: Strided<'_, T>,
    c: &mut [T],
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
        return Ok(());
    }
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
        if small_gemm(a, b, ao, bo, dst, (m, k, n), T::one(), Epilogue::PLAIN) {
            continue;
        }
        // SAFETY: `with_strided` checked that every element of both views lies inside its
        // storage; gemm reads a's m×k elements at `ao + r * a_rs + col * a_cs` and b's k×n at
        // `bo + r * b_rs + col * b_cs`, which are elements of batch `i` of those views, and
        // writes the m×n row-major `dst`, which overlaps neither.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
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
const SMALL_GEMM_MACS: usize = 1 << 15;

/// `c += alpha * a @ b` for a small product, where `a` (`[m, k]` from offset `ao`) and `b`
/// (`[k, n]` from `bo`, rows contiguous) are the last two dims of their views and `c` is
/// row-major `[m, n]`: each row of `c` gains `alpha * a[i, p]` times row `p` of `b`, a loop the
/// CPU's widest vectors run. With `epilogue`, each row starts from its row of `n` values
/// instead of from `c` (a bias), and its `relu` clamps the sums at zero as they are stored (NaN
/// stays NaN). Returns false, touching nothing, when the product is too large or `b`'s rows are
/// not contiguous; the caller then uses the gemm crate.
#[allow(clippy::too_many_arguments)]
fn small_gemm<T: candle_core::WithDType>(
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
    if !small_enough(m, k, n)
        || (n > 1 && b.strides[rb - 1] != 1)
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
    super::wide(kernel);
    true
}

/// Whether an `[m, k] @ [k, n]` product is small enough for [`small_gemm`] (which also needs
/// `b`'s rows contiguous).
fn small_enough(m: usize, k: usize, n: usize) -> bool {
    m <= 8 && m * k * n <= SMALL_GEMM_MACS
}

/// Where [`small_gemm`]'s sums start and what happens as they are stored.
#[derive(Clone, Copy)]
struct Epilogue<'a, T> {
    /// The row every output row starts from, instead of the output's own values.
    start: Option<&'a [T]>,
    /// Whether the sums are clamped at zero (a fused Relu).
    relu: bool,
}

impl<T> Epilogue<'_, T> {
    /// Sums that start from the output and are stored as they are.
    const PLAIN: Self = Epilogue { start: None, relu: false };
}

/// [`small_gemm`]'s loop, to run through [`super::wide`].
struct SmallGemm<'a, T> {
    a: &'a [T],
    a_rs: usize,
    a_cs: usize,
    b: &'a [T],
    b_rs: usize,
    ao: usize,
    bo: usize,
    c: &'a mut [T],
    k: usize,
    n: usize,
    alpha: T,
    epilogue: Epilogue<'a, T>,
}

impl<T: candle_core::WithDType> super::WideKernel for SmallGemm<'_, T> {
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
    fn rows(self, scaled: impl Fn(T) -> T + Copy) {
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
fn column_block<const W: usize, T: candle_core::WithDType>(
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
fn gemm_op<T: candle_core::WithDType>(
    a: &CTensor,
    b: &CTensor,
    c: Option<&CTensor>,
    alpha: f64,
    beta: f64,
    relu: bool,
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
                let par = parallelism(m * n * k);
                // SAFETY: `with_strided` checked that every element of both 2-D views lies
                // inside its storage; gemm reads a's m×k and b's k×n elements through their
                // strides and writes the m×n row-major `out`, which overlaps neither.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        out.as_mut_ptr(),
                        1,
                        n as isize,
                        read_dst,
                        av.data.as_ptr().add(av.start),
                        av.strides[1] as isize,
                        av.strides[0] as isize,
                        bv.data.as_ptr().add(bv.start),
                        bv.strides[1] as isize,
                        bv.strides[0] as isize,
                        T::from_f64(1.0),
                        T::from_f64(alpha),
                        false,
                        false,
                        false,
                        par,
                    );
                }
            })
        })??;
    }
    if relu {
        relu_in_place(&mut out);
    }
    CTensor::from_vec(out, (m, n), &Device::Cpu)
}

/// Relu in place (NaN stays NaN), for a Relu fused into the kernel before it.
fn relu_in_place<T: candle_core::WithDType>(v: &mut [T]) {
    super::wide(ReluInPlace(v))
}

/// [`relu_in_place`]'s loop, to run through [`super::wide`].
struct ReluInPlace<'a, T>(&'a mut [T]);

impl<T: candle_core::WithDType> super::WideKernel for ReluInPlace<'_, T> {
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
fn mm_ready(t: &CTensor) -> CResult<CTensor> {
    let r = t.rank();
    if t.is_contiguous() || r >= 2 && t.transpose(r - 2, r - 1)?.is_contiguous() {
        Ok(t.clone())
    } else {
        t.contiguous()
    }
}

/// Per-spatial-dim padding, resolved from `auto_pad` or `pads`.
#[derive(Clone)]
struct Window {
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    pads: Option<Vec<usize>>,
    auto_pad: String,
    ceil: bool,
}

impl Window {
    fn read(ctx: &NodeCtx<'_>, kernel: Option<Vec<i64>>, ceil: bool) -> Result<Window, Refusal> {
        let pos = |v: Vec<i64>, what: &str| -> Result<Vec<usize>, Refusal> {
            v.into_iter()
                .map(|x| usize::try_from(x).map_err(|_| format!("{what} must not be negative")))
                .collect()
        };
        // Without a kernel shape (Conv with weights known only at run time), the lengths are
        // filled and checked when the weights arrive.
        let deferred = kernel.is_none();
        let kernel = pos(kernel.unwrap_or_default(), "kernel_shape")?;
        let n = kernel.len();
        let strides = pos(ctx.ints("strides")?.unwrap_or(vec![1; n]), "strides")?;
        let dilations = pos(ctx.ints("dilations")?.unwrap_or(vec![1; n]), "dilations")?;
        if deferred {
            let pads = ctx.ints("pads")?.map(|p| pos(p, "pads")).transpose()?;
            let auto_pad = ctx.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
            return Ok(Window { kernel, strides, dilations, pads, auto_pad, ceil });
        }
        let pads = ctx.ints("pads")?.map(|p| pos(p, "pads")).transpose()?;
        let auto_pad = ctx.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
        if !["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"].contains(&auto_pad.as_str()) {
            return Err(format!("auto_pad \"{auto_pad}\" is not supported"));
        }
        if strides.len() != n || dilations.len() != n || pads.as_ref().is_some_and(|p| p.len() != 2 * n) {
            return Err("kernel_shape, strides, dilations and pads disagree in length".into());
        }
        if strides.contains(&0) || dilations.contains(&0) || kernel.contains(&0) {
            return Err("kernel_shape, strides and dilations must be positive".into());
        }
        Ok(Window { kernel, strides, dilations, pads, auto_pad, ceil })
    }

    /// This window with its kernel shape taken from weights of shape `wdims` (and unit strides
    /// and dilations where none were given), checked.
    fn for_weights(&self, wdims: &[usize]) -> CResult<Window> {
        let mut w = self.clone();
        w.kernel = wdims[2..].to_vec();
        let n = w.kernel.len();
        if w.strides.is_empty() {
            w.strides = vec![1; n];
        }
        if w.dilations.is_empty() {
            w.dilations = vec![1; n];
        }
        if w.strides.len() != n || w.dilations.len() != n || w.pads.as_ref().is_some_and(|p| p.len() != 2 * n)
        {
            bail!("strides, dilations or pads disagree with weights {wdims:?}");
        }
        if w.strides.contains(&0) || w.dilations.contains(&0) || w.kernel.contains(&0) {
            bail!("strides, dilations and kernel dims must be positive");
        }
        Ok(w)
    }

    /// Output sizes and begin/end pads for spatial input sizes `input`.
    fn resolve(&self, input: &[usize]) -> CResult<(Vec<usize>, Vec<usize>, Vec<usize>)> {
        let n = self.kernel.len();
        if input.len() != n {
            bail!("input has {} spatial dims, kernel {}", input.len(), n);
        }
        let (mut out, mut begin, mut end) = (vec![0; n], vec![0; n], vec![0; n]);
        for i in 0..n {
            let eff = (self.kernel[i] - 1) * self.dilations[i] + 1;
            let s = self.strides[i];
            match self.auto_pad.as_str() {
                "SAME_UPPER" | "SAME_LOWER" => {
                    out[i] = input[i].div_ceil(s);
                    let total = ((out[i].max(1) - 1) * s + eff).saturating_sub(input[i]);
                    let small = total / 2;
                    (begin[i], end[i]) = if self.auto_pad == "SAME_UPPER" {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                }
                _ => {
                    if self.auto_pad == "NOTSET" {
                        if let Some(p) = &self.pads {
                            (begin[i], end[i]) = (p[i], p[i + n]);
                        }
                    }
                    let span = input[i] + begin[i] + end[i];
                    if span < eff {
                        bail!("window of {eff} is larger than the padded input {span}");
                    }
                    out[i] = if self.ceil { (span - eff).div_ceil(s) + 1 } else { (span - eff) / s + 1 };
                    if self.ceil && (out[i] - 1) * s >= input[i] + begin[i] {
                        out[i] -= 1;
                    }
                }
            }
        }
        Ok((out, begin, end))
    }
}

/// Marks a window position in the padding in [`Geometry`]'s tables.
const PAD: u32 = u32::MAX;

/// One kernel position's reads when output position `pp` reads input offset `pp + shift`
/// wherever it reads at all, as in a stride-1 convolution whose output has its input's size
/// ("same" padding): one block copy of `[from, to)`, zeros outside it, and zeros at `holes`
/// (the positions inside the block whose window falls in the padding, such as a row's first
/// column for a window reaching left). This replaces a copy per output row with one per plane.
struct Shifted {
    from: usize,
    to: usize,
    shift: isize,
    holes: Vec<u32>,
}

impl Shifted {
    /// The block form of the reads `row` (offsets or [`PAD`]) of a plane of `plane`
    /// elements, when they have one and it leaves at most one position in 8 to patch.
    fn find(row: &[u32], plane: usize) -> Option<Shifted> {
        let p = row.len();
        let (first, &o) = row.iter().enumerate().find(|(_, &o)| o != PAD)?;
        let shift = o as isize - first as isize;
        let from = (-shift).max(0) as usize;
        let to = (plane as isize - shift).clamp(0, p as isize) as usize;
        let mut holes = Vec::new();
        for (pp, &o) in row.iter().enumerate() {
            if o == PAD {
                if (from..to).contains(&pp) {
                    holes.push(pp as u32);
                }
            } else if o as isize != pp as isize + shift {
                return None;
            }
        }
        (from < to && holes.len() * 8 <= p).then_some(Shifted { from, to, shift, holes })
    }
}

/// Where every window of a convolution or pooling reads, for one input shape: computed once
/// per shape and cached by the kernel.
struct Geometry {
    out: Vec<usize>,
    /// Output positions.
    p: usize,
    /// Kernel positions.
    k: usize,
    /// `[k][p]`: the input offset within a plane, or [`PAD`].
    by_k: Vec<u32>,
    /// Per kernel position, runs of consecutive output positions reading input offsets a
    /// constant step apart: `(first output position, first input offset, length, step)` (step
    /// 1 for a stride-1 window, the stride for a strided one, so that a strided window's
    /// output row is one run rather than a gather element by element).
    runs: Vec<Vec<(usize, usize, usize, usize)>>,
    /// Per kernel position, the same reads as one block copy where that is what they are.
    shifted: Vec<Option<Shifted>>,
    /// Per output position, the window positions inside the input.
    inside: Vec<usize>,
    /// Per output position, the window positions inside the input plus its explicit padding.
    padded: Vec<usize>,
}

fn geometry(w: &Window, input: &[usize]) -> CResult<Geometry> {
    let (out, begin, end) = w.resolve(input)?;
    let n = input.len();
    let plane: usize = input.iter().product();
    if plane >= PAD as usize {
        bail!("a plane of {plane} elements is too large");
    }
    let p: usize = out.iter().product();
    let k: usize = w.kernel.iter().product();
    let ist = strides(input);
    // Per axis, per kernel offset, per output coordinate: the input coordinate (or none), and
    // whether it lies within the explicit padding.
    let mut tabs: Vec<Vec<Vec<Option<usize>>>> = Vec::with_capacity(n);
    let mut pads: Vec<Vec<Vec<bool>>> = Vec::with_capacity(n);
    for a in 0..n {
        let mut t = Vec::with_capacity(w.kernel[a]);
        let mut q_in_pad = Vec::with_capacity(w.kernel[a]);
        for q in 0..w.kernel[a] {
            let mut row = Vec::with_capacity(out[a]);
            let mut prow = Vec::with_capacity(out[a]);
            for o in 0..out[a] {
                let c = (o * w.strides[a] + q * w.dilations[a]) as i64 - begin[a] as i64;
                row.push((c >= 0 && c < input[a] as i64).then(|| c as usize * ist[a]));
                prow.push(c >= -(begin[a] as i64) && c < (input[a] + end[a]) as i64);
            }
            t.push(row);
            q_in_pad.push(prow);
        }
        tabs.push(t);
        pads.push(q_in_pad);
    }
    let mut by_k = vec![PAD; k * p];
    let mut inside = vec![0usize; p];
    let mut padded = vec![0usize; p];
    let mut q = vec![0usize; n];
    for kk in 0..k {
        let mut o = vec![0usize; n];
        for pp in 0..p {
            let mut off = Some(0usize);
            let mut in_pad = true;
            for a in 0..n {
                off = match (off, tabs[a][q[a]][o[a]]) {
                    (Some(f), Some(c)) => Some(f + c),
                    _ => None,
                };
                in_pad &= pads[a][q[a]][o[a]];
            }
            if let Some(f) = off {
                by_k[kk * p + pp] = f as u32;
                inside[pp] += 1;
            }
            if in_pad {
                padded[pp] += 1;
            }
            for a in (0..n).rev() {
                o[a] += 1;
                if o[a] < out[a] {
                    break;
                }
                o[a] = 0;
            }
        }
        for a in (0..n).rev() {
            q[a] += 1;
            if q[a] < w.kernel[a] {
                break;
            }
            q[a] = 0;
        }
    }
    let runs = (0..k)
        .map(|kk| {
            let row = &by_k[kk * p..(kk + 1) * p];
            let mut runs: Vec<(usize, usize, usize, usize)> = Vec::new();
            for (pp, &o) in row.iter().enumerate() {
                if o == PAD {
                    continue;
                }
                let o = o as usize;
                match runs.last_mut() {
                    // A second position fixes the run's step; later ones must keep it.
                    Some((d, s, len, step)) if *d + *len == pp && *len == 1 && o > *s => {
                        *step = o - *s;
                        *len = 2;
                    }
                    Some((d, s, len, step)) if *d + *len == pp && *s + *len * *step == o => *len += 1,
                    _ => runs.push((pp, o, 1, 1)),
                }
            }
            runs
        })
        .collect();
    let shifted = (0..k).map(|kk| Shifted::find(&by_k[kk * p..(kk + 1) * p], plane)).collect();
    Ok(Geometry { out, p, k, by_k, runs, shifted, inside, padded })
}

/// The geometries a kernel has computed, by input shape (the last few kept).
#[derive(Default)]
struct GeometryCache(std::sync::Mutex<Vec<(Vec<usize>, std::sync::Arc<Geometry>)>>);

impl GeometryCache {
    fn get(&self, w: &Window, input: &[usize]) -> CResult<std::sync::Arc<Geometry>> {
        let mut key = input.to_vec();
        key.extend_from_slice(&w.kernel);
        if let Ok(cache) = self.0.lock() {
            if let Some((_, g)) = cache.iter().find(|(k, _)| *k == key) {
                return Ok(g.clone());
            }
        }
        let g = std::sync::Arc::new(geometry(w, input)?);
        if let Ok(mut cache) = self.0.lock() {
            if cache.len() >= 4 {
                cache.remove(0);
            }
            cache.push((key, g.clone()));
        }
        Ok(g)
    }
}

/// Element types a convolution runs in, each with a per-thread scratch buffer for its im2col
/// matrices: kept between runs, so that a convolution neither maps nor faults in fresh pages
/// each time. A buffer larger than [`SCRATCH_KEEP`] elements is not kept.
trait ConvElem: candle_core::WithDType {
    fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
}

/// The largest im2col buffer (in elements) a thread keeps between runs: 16 Mi elements.
const SCRATCH_KEEP: usize = 1 << 24;

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

/// How a product of `macs` multiply-adds runs: on the calling thread when small, else on the
/// current rayon pool.
fn parallelism(macs: usize) -> gemm::Parallelism {
    let threads = rayon::current_num_threads();
    if macs <= SERIAL_GEMM_MACS || threads < 2 {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    }
}

/// General N-D convolution, image by image: im2col into a per-thread scratch matrix (skipped
/// for a 1×1 convolution that reads every input position), then one matrix product per group
/// written straight into the output, which starts as the bias.
fn conv_general(
    x: &CTensor,
    wt: &CTensor,
    bias: Option<&CTensor>,
    w: &Window,
    group: usize,
    cache: &GeometryCache,
    relu: bool,
) -> CResult<CTensor> {
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
    match x.dtype() {
        CDType::F32 => conv_images::<f32>(x, wt, bias, &geo, group, dims, relu),
        CDType::F64 => conv_images::<f64>(x, wt, bias, &geo, group, dims, relu),
        other => bail!("Conv on {other:?}"),
    }
}

fn conv_images<T: ConvElem>(
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
    let par = parallelism(mg * p * ck);
    with_values(x, |xs: &[T]| {
        with_values(wt, |ws: &[T]| -> CResult<()> {
            if xs.len() != n * c * plane || ws.len() != m * ck {
                bail!("Conv operands do not hold their shapes' elements");
            }
            let dst_all = &mut out.spare_capacity_mut()[..len];
            let product = |col: &[T], out_img: &mut [std::mem::MaybeUninit<T>], g: usize| {
                let (lhs, rhs) = (&ws[g * mg * ck..(g + 1) * mg * ck], &col[g * ck * p..(g + 1) * ck * p]);
                let dst = &mut out_img[g * mg * p..(g + 1) * mg * p];
                // SAFETY: `lhs` holds mg×ck, `rhs` ck×p and `dst` mg×p elements, each
                // row-major (column stride 1, row stride ck, p and p), exactly the extents gemm
                // reads and writes; the slices do not overlap. With `read_dst` false, gemm
                // writes every element of `dst` (k = ck > 0) and reads none.
                unsafe {
                    gemm::gemm(
                        mg,
                        p,
                        ck,
                        dst.as_mut_ptr().cast::<T>(),
                        1,
                        p as isize,
                        false,
                        lhs.as_ptr(),
                        1,
                        ck as isize,
                        rhs.as_ptr(),
                        1,
                        p as isize,
                        T::zero(),
                        T::from_f64(1.0),
                        false,
                        false,
                        false,
                        par,
                    );
                }
            };
            // Once every group's product has written `out_img`: bias and Relu.
            let finish = |out_img: &mut [std::mem::MaybeUninit<T>]| {
                // SAFETY: the products of all groups wrote every element of `out_img` (the
                // groups' `dst` slices tile it), so it holds initialized values.
                let done = unsafe { &mut *(out_img as *mut [std::mem::MaybeUninit<T>] as *mut [T]) };
                bias_relu(done, bias.as_deref(), p, relu);
            };
            let side_by_side = if p < BATCH_PLANE && !direct { (BATCH_COLUMNS / p).clamp(1, n) } else { 1 };
            if side_by_side > 1 {
                let dims = (c, m, group, plane);
                conv_side_by_side(xs, ws, dst_all, bias.as_deref(), geo, dims, side_by_side, par, relu);
                return Ok(());
            }
            let images = xs.chunks_exact(c * plane).zip(dst_all.chunks_exact_mut(m * p));
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
    })???;
    // SAFETY: every path above wrote all `len` elements (each image's `finish` ran on output the
    // products wrote in full; `conv_side_by_side` writes each element once); an error returned
    // before this line drops `out` at length 0.
    unsafe { out.set_len(len) };
    CTensor::from_vec(out, dims, &Device::Cpu)
}

/// Adds channel `i % bias.len()`'s bias to each `p`-long plane `i` of `out` and, with `relu`,
/// clamps the sums at zero (NaN stays NaN): one pass, on wide vectors.
fn bias_relu<T: candle_core::WithDType>(out: &mut [T], bias: Option<&[T]>, p: usize, relu: bool) {
    if bias.is_some() || relu {
        super::wide(BiasRelu { out, bias, p, relu })
    }
}

/// [`bias_relu`]'s loop, to run through [`super::wide`].
struct BiasRelu<'a, T> {
    out: &'a mut [T],
    bias: Option<&'a [T]>,
    p: usize,
    relu: bool,
}

impl<T: candle_core::WithDType> super::WideKernel for BiasRelu<'_, T> {
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
const BATCH_PLANE: usize = 128;
/// How many output positions [`conv_side_by_side`] puts side by side in one product.
const BATCH_COLUMNS: usize = 256;

/// A convolution's images `per` at a time: their im2col matrices side by side as one
/// `[c * k, per * p]` matrix, one product per group into a scratch `[mg, per * p]`, whose
/// columns are then copied to each image's output, which the bias (and a fused Relu) then
/// go over in one pass. For a deep layer's small planes (a ResNet's 7×7 and 4×4),
/// one image's product is too narrow for the gemm crate's register tiles; several side by side
/// fill them.
#[allow(clippy::too_many_arguments)]
fn conv_side_by_side<T: ConvElem>(
    xs: &[T],
    ws: &[T],
    out: &mut [std::mem::MaybeUninit<T>],
    bias: Option<&[T]>,
    geo: &Geometry,
    (c, m, group, plane): (usize, usize, usize, usize),
    per: usize,
    par: gemm::Parallelism,
    relu: bool,
) {
    let (p, k) = (geo.p, geo.k);
    let (cg, mg) = (c / group, m / group);
    let ck = cg * k;
    T::with_scratch(c * k * per * p, |col| {
        let mut t = vec![T::zero(); mg * per * p];
        for (imgs, outs) in xs.chunks(per * c * plane).zip(out.chunks_mut(per * m * p)) {
            let cols = imgs.len() / (c * plane) * p;
            for (b, img) in imgs.chunks_exact(c * plane).enumerate() {
                im2col(img, geo, c, plane, &mut col[b * p..], cols);
            }
            for g in 0..group {
                let (lhs, rhs) =
                    (&ws[g * mg * ck..(g + 1) * mg * ck], &col[g * ck * cols..(g + 1) * ck * cols]);
                // SAFETY: `lhs` holds mg×ck, `rhs` ck×cols and `t` at least mg×cols elements,
                // each row-major (column stride 1, row stride ck, cols and cols), exactly the
                // extents gemm reads and writes; the three do not overlap.
                unsafe {
                    gemm::gemm(
                        mg,
                        cols,
                        ck,
                        t.as_mut_ptr(),
                        1,
                        cols as isize,
                        false,
                        lhs.as_ptr(),
                        1,
                        ck as isize,
                        rhs.as_ptr(),
                        1,
                        cols as isize,
                        T::zero(),
                        T::from_f64(1.0),
                        false,
                        false,
                        false,
                        par,
                    );
                }
                for (b, out_img) in outs.chunks_exact_mut(m * p).enumerate() {
                    for i in 0..mg {
                        let src = &t[i * cols + b * p..][..p];
                        for (d, &v) in out_img[(g * mg + i) * p..][..p].iter_mut().zip(src) {
                            d.write(v);
                        }
                    }
                }
            }
            // SAFETY: the groups' copies above wrote every element of `outs` (each image's
            // `m` planes of `p`), so it holds initialized values.
            let done = unsafe { &mut *(outs as *mut [std::mem::MaybeUninit<T>] as *mut [T]) };
            bias_relu(done, bias, p, relu);
        }
    });
}

/// The im2col matrix `[c * k, p]` of one image `src` (`c` planes) for the windows of `geo`:
/// runs of evenly spaced offsets are copied, scattered reads gathered, padding zeroed.
/// Row `r` of the matrix starts at `col[r * stride]` (`stride` is `p` for one image's matrix, a
/// multiple of it when several images' matrices sit side by side).
fn im2col<T: candle_core::WithDType>(
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
            let covered: usize = runs.iter().map(|r| r.2).sum();
            if runs.len() * 4 > p {
                // Short runs: gather element by element.
                for (d, &o) in row.iter_mut().zip(&geo.by_k[kk * p..(kk + 1) * p]) {
                    *d = if o == PAD { T::zero() } else { plane_src[o as usize] };
                }
                continue;
            }
            if covered != p {
                row.fill(T::zero());
            }
            for &(d, s, len, step) in runs {
                if step == 1 {
                    row[d..d + len].copy_from_slice(&plane_src[s..s + len]);
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
pub(super) struct ConvSpec {
    win: Window,
    group: usize,
    cache: GeometryCache,
    /// Apply a fused Relu to the result.
    relu: bool,
}

impl ConvSpec {
    /// Reads the node's convolution attributes; input `w` holds the weights.
    pub(super) fn read(ctx: &NodeCtx<'_>, w: usize) -> Result<ConvSpec, Refusal> {
        let group = ctx.int("group", 1)?;
        if group < 1 {
            return Err("group must be at least 1".into());
        }
        let kernel = ctx.ints("kernel_shape")?.or_else(|| {
            ctx.konst(w).filter(|w| w.rank() > 2).map(|w| w.dims()[2..].iter().map(|&d| d as i64).collect())
        });
        let win = Window::read(ctx, kernel, false)?;
        Ok(ConvSpec { win, group: group as usize, cache: GeometryCache::default(), relu: false })
    }

    /// The convolution of `x` (float or double) with weights `wt`, plus `bias` per channel:
    /// im2col plus matrix products, measured faster here than Candle's conv2d, and covering
    /// every rank, asymmetric padding, strides and dilations.
    pub(super) fn run(&self, x: &CTensor, wt: &CTensor, bias: Option<&CTensor>) -> CResult<CTensor> {
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
        conv_general(x, wt, bias, &w, self.group, &self.cache, self.relu)
    }
}

/// ConvTranspose's attributes, resolved against the input when it runs.
struct ConvTransposeAttrs {
    group: usize,
    auto_pad: String,
    dilations: Option<Vec<i64>>,
    kernel_shape: Option<Vec<i64>>,
    output_padding: Option<Vec<i64>>,
    output_shape: Option<Vec<i64>>,
    pads: Option<Vec<i64>>,
    strides: Option<Vec<i64>>,
}

/// Transposed convolution by scattering each input element through the kernel, in f64.
fn conv_transpose(
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
    let (ist, kst, ost) =
        (super::shape::strides(&input), super::shape::strides(&kernel), super::shape::strides(&out));
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

/// What a pooling window computes.
#[derive(Clone, Copy)]
enum PoolKind {
    Max,
    Avg { include_pad: bool },
    Lp(f64),
}

fn pool(x: &CTensor, w: &Window, kind: PoolKind, cache: &GeometryCache) -> CResult<CTensor> {
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
                with_values(x, |v: &[f32]| max_pool_2d(v, &shape, n * c))??,
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
struct Pool2d {
    input: [usize; 2],
    out: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    begin: [usize; 2],
}

impl Pool2d {
    /// The output positions along `axis` whose window offset `q` falls inside the input.
    fn valid(&self, axis: usize, q: usize) -> std::ops::Range<usize> {
        let (s, pad, len) = (self.strides[axis], self.begin[axis], self.input[axis]);
        // o * s + q - pad must lie in [0, len).
        let lo = if pad > q { (pad - q).div_ceil(s) } else { 0 };
        let hi = if len + pad > q { ((len + pad - q - 1) / s + 1).min(self.out[axis]) } else { 0 };
        lo..hi.max(lo)
    }
}

/// `a` becomes the larger of `a` and `v`, NaN propagated: `v != v` is NaN, which wins (and
/// stays: NaN > x is false). A select, not a branch: on real data the comparison is
/// unpredictable, and the select vectorizes.
#[inline(always)]
fn nan_max<T: PartialOrd + Copy>(a: &mut T, v: T) {
    #[allow(clippy::eq_op)]
    let take = (v > *a) | (v != v);
    *a = if take { v } else { *a };
}

/// Max pooling of every plane of `src` over plain 2-D windows, by direct index arithmetic: per
/// output row, the maximum down the window's input rows (contiguous, vectorized), then across
/// each window's columns.
fn max_pool_2d<T: candle_core::WithDType>(src: &[T], w: &Pool2d, planes: usize) -> CResult<Vec<T>> {
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
                let column = down[range.start * sx + kx - bx..].iter().step_by(sx);
                acc[range.clone()].iter_mut().zip(column).for_each(|(a, &v)| nan_max(a, v));
            }
        }
    }
    Ok(out)
}

/// [`max_pool_2d`] for the commonest window (PyTorch's `MaxPool2d(2)`): 2×2, stride 2, no
/// padding, odd last rows and columns dropped. Each output reads its two row pairs directly,
/// which is four times faster than the general loop, compiled for the CPU's widest vectors.
fn max_pool_2x2<T: candle_core::WithDType>(src: &[T], planes: usize, h: usize, wd: usize) -> Vec<T> {
    let mut out = vec![T::zero(); planes * (h / 2) * (wd / 2)];
    super::wide(MaxPool2x2 { src, out: &mut out, h, wd });
    out
}

/// [`max_pool_2x2`]'s loop, to run through [`super::wide`].
struct MaxPool2x2<'a, T> {
    src: &'a [T],
    out: &'a mut [T],
    h: usize,
    wd: usize,
}

impl<T: candle_core::WithDType> super::WideKernel for MaxPool2x2<'_, T> {
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

/// Max, average or Lp pooling of every plane over the windows of `geo` (max in the input's
/// type, NaN propagated; average and Lp accumulated in f64).
fn pool_loop<T: candle_core::WithDType>(
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

/// Softmax, log-softmax or hardmax of `x` along `dim`.
fn softmax(x: &CTensor, dim: usize, kind: &str) -> CResult<CTensor> {
    if kind == "Hardmax" {
        let v: Vec<f64> = super::values(&x.to_dtype(CDType::F64)?)?;
        let d = x.dims()[dim];
        let st = strides(x.dims())[dim];
        let mut o = vec![0f64; v.len()];
        for base in 0..v.len() {
            if !(base / st).is_multiple_of(d) {
                continue;
            }
            let mut best = 0;
            for i in 1..d {
                if v[base + i * st] > v[base + best * st] {
                    best = i;
                }
            }
            o[base + best * st] = 1.0;
        }
        return super::make(o, x.dims())?.to_dtype(x.dtype());
    }
    let log = kind == "LogSoftmax";
    if x.dtype() == CDType::F64 {
        let mut v: Vec<f64> = super::values(x)?;
        super::wide(SoftmaxRows { v: &mut v, dims: x.dims(), dim, log });
        return super::make(v, x.dims());
    }
    let mut v: Vec<f32> = super::values(&x.to_dtype(CDType::F32)?)?;
    match (x.dtype(), log) {
        (CDType::F16, false) => {
            // numpy sums a half row in float when it is contiguous, else one rounded addition
            // at a time.
            let strided = x.dims()[dim + 1..].iter().product::<usize>() != 1;
            softmax_half(&mut v, x.dims(), dim, |v| half::f16::from_f32(v).to_f32(), strided)
        }
        (CDType::BF16, false) => {
            softmax_half(&mut v, x.dims(), dim, |v| half::bf16::from_f32(v).to_f32(), true)
        }
        _ => super::wide(SoftmaxRows { v: &mut v, dims: x.dims(), dim, log }),
    }
    super::make(v, x.dims())?.to_dtype(x.dtype())
}

/// Softmax of float16 or bfloat16 values held as floats (`round` rounds a float to the type),
/// rounded where ONNX's reference rounds: `x - max`, each exponential, the row's sum and each
/// quotient. The sum is kept in float and rounded once, or with `sum_in_type` rounded after
/// each addition, in order: numpy sums a contiguous float16 row in float, and reduces other
/// float16 rows and ml_dtypes' bfloat16 one rounded addition at a time.
fn softmax_half(v: &mut [f32], dims: &[usize], dim: usize, round: fn(f32) -> f32, sum_in_type: bool) {
    let d = dims[dim];
    let inner: usize = dims[dim + 1..].iter().product();
    let outer: usize = dims[..dim].iter().product();
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| o * d * inner + i + j * inner;
            let max = (0..d).map(|j| v[at(j)]).fold(f32::NEG_INFINITY, |m, x| {
                if x.is_nan() || m.is_nan() {
                    f32::NAN
                } else {
                    m.max(x)
                }
            });
            let mut sum = 0.0f32;
            for j in 0..d {
                let e = round(round(v[at(j)] - max).exp());
                v[at(j)] = e;
                sum = if sum_in_type { round(sum + e) } else { sum + e };
            }
            let sum = round(sum);
            for j in 0..d {
                v[at(j)] = round(v[at(j)] / sum);
            }
        }
    }
}

/// Element types softmax runs in, with the exponential it uses.
trait SoftmaxElem:
    candle_core::WithDType + num_traits::Float + std::ops::MulAssign + std::ops::AddAssign
{
    /// `e^x` for softmax's arguments (`x <= 0` after the row maximum is subtracted).
    fn softmax_exp(x: Self) -> Self;
}

impl SoftmaxElem for f64 {
    #[inline(always)]
    fn softmax_exp(x: f64) -> f64 {
        x.exp()
    }
}

impl SoftmaxElem for f32 {
    #[inline(always)]
    fn softmax_exp(x: f32) -> f32 {
        exp_f32(x)
    }
}

/// `e^x` in f32 without branches, so that loops over it vectorize: Cody-Waite reduction by
/// ln 2 and Cephes' degree-6 polynomial (within one ulp of the exact value for normal results).
/// Results below e^-86.9 (about 1.8e-38, near the smallest normal f32) are flushed to 0;
/// x > 88.72 gives infinity; NaN stays NaN.
#[inline(always)]
pub(super) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const LOW: f32 = -86.9;
    const HIGH: f32 = 88.72;
    // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(LOW, HIGH);
    let shifted = xc * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // `shifted`'s low mantissa bits hold n, in [-125, 128]: 2^(n-1)'s exponent field, in
    // [1, 254], without a float-to-integer conversion (which would not vectorize); times 2.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let half_scale = f32::from_bits(n_bits.wrapping_add(126) << 23);
    let y = (e + e) * half_scale;
    let y = if x > HIGH { f32::INFINITY } else { y };
    if x < LOW {
        0.0
    } else {
        y
    }
}

/// Softmax (or log-softmax) of every line of `v` along `dim`, in place: contiguous lines (the
/// last axis) in place, others through a copy.
/// [`softmax_rows`]'s arguments, to run it through [`super::wide`].
struct SoftmaxRows<'a, T> {
    v: &'a mut [T],
    dims: &'a [usize],
    dim: usize,
    log: bool,
}

impl<T: SoftmaxElem> super::WideKernel for SoftmaxRows<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        softmax_rows(self.v, self.dims, self.dim, self.log)
    }
}

// Plain `for` loops in these two, not `for_each` or `fold`: the adaptors are not always
// inlined, and what is not inlined into `wide`'s copies runs 4 floats at a time.
#[inline(always)]
fn softmax_rows<T: SoftmaxElem>(v: &mut [T], dims: &[usize], dim: usize, log: bool) {
    let d = dims[dim];
    let inner: usize = dims[dim + 1..].iter().product();
    let outer: usize = dims[..dim].iter().product();
    if d == 0 {
        return;
    }
    if inner == 1 {
        for line in v.chunks_exact_mut(d) {
            softmax_line(line, log);
        }
        return;
    }
    let mut line = vec![T::zero(); d];
    for o in 0..outer {
        for i in 0..inner {
            let base = o * d * inner + i;
            for (j, l) in line.iter_mut().enumerate() {
                *l = v[base + j * inner];
            }
            softmax_line(&mut line, log);
            for (j, l) in line.iter().enumerate() {
                v[base + j * inner] = *l;
            }
        }
    }
}

/// Softmax (or log-softmax) of one line, in place.
#[inline(always)]
fn softmax_line<T: SoftmaxElem>(line: &mut [T], log: bool) {
    let m = line_max(line);
    if log {
        let mut sum = T::zero();
        for &l in line.iter() {
            sum += (l - m).exp();
        }
        let ls = sum.ln();
        for l in line.iter_mut() {
            *l = (*l - m) - ls;
        }
        return;
    }
    for l in line.iter_mut() {
        *l = T::softmax_exp(*l - m);
    }
    let inv = T::one() / line_sum(line);
    for l in line.iter_mut() {
        *l *= inv;
    }
}

/// Lanes of the reductions below: independent chains that hide the adder's latency and fill
/// an AVX2 register of f32, and few enough that folding them costs little on attention's short
/// rows (16 was slower than 8 on 24-token rows).
const LANES: usize = 8;

/// The largest value of `line` (NaN if any is NaN, -inf if empty), over [`LANES`] running
/// maxima: the same answer as one running maximum, without its chain of dependent compares.
#[inline(always)]
fn line_max<T: SoftmaxElem>(line: &[T]) -> T {
    let mut lanes = [T::neg_infinity(); LANES];
    let mut chunks = line.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            nan_max(lane, v);
        }
    }
    for (lane, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        nan_max(lane, v);
    }
    let mut m = lanes[0];
    for &lane in &lanes[1..] {
        nan_max(&mut m, lane);
    }
    m
}

/// The sum of `line` over [`LANES`] partial sums (as vectorized libraries add: the rounding
/// differs from a left-to-right sum by an ulp or so, never more than that sum's own error).
#[inline(always)]
fn line_sum<T: SoftmaxElem>(line: &[T]) -> T {
    let mut lanes = [T::zero(); LANES];
    let mut chunks = line.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    for (lane, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *lane += v;
    }
    let mut sum = T::zero();
    for &lane in &lanes {
        sum += lane;
    }
    sum
}

/// Mean and variance normalization over the trailing axes from `from`, in f32 (or f64).
fn normalize(x: &CTensor, from: usize, eps: f64) -> CResult<(CTensor, CTensor, CTensor)> {
    let outer: usize = x.dims()[..from].iter().product();
    let inner: usize = x.dims()[from..].iter().product();
    if x.dtype() == CDType::F64 {
        let (y, mean, inv) = normalize_rows::<f64>(super::values(x)?, outer, inner, eps);
        return Ok((
            super::make(y, x.dims())?,
            super::make(mean, &[outer, 1])?,
            super::make(inv, &[outer, 1])?,
        ));
    }
    let (y, mean, inv) = normalize_rows::<f32>(super::values(&x.to_dtype(CDType::F32)?)?, outer, inner, eps);
    Ok((super::make(y, x.dims())?, super::make(mean, &[outer, 1])?, super::make(inv, &[outer, 1])?))
}

/// Each row of `v` (`outer` rows of `inner`) minus its mean, times the inverse standard
/// deviation (population variance plus `eps`); statistics accumulated in f64. Returns the
/// result, the means and the inverse deviations.
fn normalize_rows<T: candle_core::WithDType>(
    mut v: Vec<T>,
    outer: usize,
    inner: usize,
    eps: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let mut means = Vec::with_capacity(outer);
    let mut invs = Vec::with_capacity(outer);
    for r in 0..outer {
        let row = &mut v[r * inner..(r + 1) * inner];
        let mean = row.iter().map(|x| x.to_f64()).sum::<f64>() / inner as f64;
        let var = row.iter().map(|x| (x.to_f64() - mean).powi(2)).sum::<f64>() / inner as f64;
        let inv = 1.0 / (var + eps).sqrt();
        for x in row.iter_mut() {
            *x = T::from_f64((x.to_f64() - mean) * inv);
        }
        means.push(T::from_f64(mean));
        invs.push(T::from_f64(inv));
    }
    (v, means, invs)
}

/// Builds a neural-network operator, or `Ok(None)` when `op` is not one.
pub fn build(op: &str, ctx: &NodeCtx<'_>) -> Result<Option<Built>, Refusal> {
    let built: Built = match op {
        "MatMul" => {
            ctx.known(&[])?;
            let t = ctx.ty_where(0, product_floats, PRODUCT_FLOATS)?;
            ctx.ty(1)?;
            ctx.same(&[0, 1], t)?;
            (via_f32(Box::new(|x| Ok(vec![matmul(req(x, 0)?, req(x, 1)?)?])), t), vec![t])
        }
        "Gemm" => {
            ctx.known(&["alpha", "beta", "transA", "transB"])?;
            let t = ctx.ty_where(0, product_floats, PRODUCT_FLOATS)?;
            ctx.ty(1)?;
            ctx.same(&[0, 1, 2], t)?;
            let alpha = ctx.float("alpha", 1.0)? as f64;
            let beta = ctx.float("beta", 1.0)? as f64;
            let ta = ctx.int("transA", 0)? != 0;
            let tb = ctx.int("transB", 0)? != 0;
            let relu = ctx.fuse_relu;
            // In float16 and bfloat16 the product is computed in float and rounded to the type,
            // and alpha, C and a fused Relu then follow in the type, one rounding per step as in
            // ONNX's reference (see `gemm_half_steps`).
            let half = matches!(t, Ty::F16 | Ty::BF16);
            let (p_alpha, p_relu) = if half { (1.0, false) } else { (alpha, relu) };
            // A constant B is transposed and laid out once, at load.
            let b_fixed = match ctx.konst(1) {
                Some(b) if b.rank() == 2 => {
                    // In float where the node computes in float (see `via_f32`).
                    let b = if b.dtype() == t.candle() && matches!(t, Ty::F16 | Ty::BF16) {
                        b.to_dtype(CDType::F32).map_err(|e| e.to_string())?
                    } else {
                        b.clone()
                    };
                    let b = if tb { b.t() } else { Ok(b) };
                    let b = b.and_then(|b| b.contiguous()).map_err(|e| e.to_string())?;
                    Some(pad_columns(b).map_err(|e| e.to_string())?)
                }
                _ => None,
            };
            let k: Kernel = Box::new(move |x| {
                let a = req(x, 0)?;
                if a.rank() != 2 {
                    bail!("Gemm's A must be 2-D, got {:?}", a.dims());
                }
                // Transposes are views: the product reads them in place. The others are
                // borrowed, not cloned (a clone is an atomic increment and decrement).
                let (a_t, b_t);
                let a = if ta {
                    a_t = a.t()?;
                    &a_t
                } else {
                    a
                };
                let b = match &b_fixed {
                    Some(b) => b,
                    None => {
                        let b = req(x, 1)?;
                        if b.rank() != 2 {
                            bail!("Gemm's B must be 2-D, got {:?}", b.dims());
                        }
                        if tb {
                            b_t = b.t()?;
                            &b_t
                        } else {
                            b
                        }
                    }
                };
                if a.dims()[1] != b.dims()[0] {
                    bail!("Gemm of {:?} and {:?}: inner dims differ", a.dims(), b.dims());
                }
                let c = if half { None } else { x.get(2).copied().flatten() };
                Ok(vec![match a.dtype() {
                    CDType::F32 => gemm_op::<f32>(a, b, c, p_alpha, beta, p_relu)?,
                    _ => gemm_op::<f64>(a, b, c, p_alpha, beta, p_relu)?,
                }])
            });
            let k = if half { gemm_half_steps(via_f32(k, t), alpha, beta, relu) } else { k };
            (k, vec![t])
        }
        "Conv" => {
            ctx.known(&["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"])?;
            let t = ctx.ty_where(0, product_floats, PRODUCT_FLOATS)?;
            ctx.ty(1)?;
            ctx.same(&[0, 1, 2], t)?;
            let mut spec = ConvSpec::read(ctx, 1)?;
            // In float16 and bfloat16 the bias and a fused Relu follow the rounded convolution
            // in the type, as in ONNX's reference (see `conv_half_steps`).
            let half = matches!(t, Ty::F16 | Ty::BF16);
            spec.relu = ctx.fuse_relu && !half;
            let k: Kernel = Box::new(move |x| {
                let bias = if half { None } else { x.get(2).copied().flatten() };
                Ok(vec![spec.run(req(x, 0)?, req(x, 1)?, bias)?])
            });
            let k = if half { conv_half_steps(via_f32(k, t), ctx.fuse_relu) } else { k };
            (k, vec![t])
        }
        "ConvTranspose" => {
            ctx.known(&[
                "auto_pad",
                "dilations",
                "group",
                "kernel_shape",
                "output_padding",
                "output_shape",
                "pads",
                "strides",
            ])?;
            let t = ctx.ty_where(0, product_floats, PRODUCT_FLOATS)?;
            ctx.same(&[0, 1, 2], t)?;
            let group = ctx.int("group", 1)?;
            if group < 1 {
                return Err("group must be at least 1".into());
            }
            let attrs = ConvTransposeAttrs {
                group: group as usize,
                auto_pad: ctx.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into()),
                dilations: ctx.ints("dilations")?,
                kernel_shape: ctx.ints("kernel_shape")?,
                output_padding: ctx.ints("output_padding")?,
                output_shape: ctx.ints("output_shape")?,
                pads: ctx.ints("pads")?,
                strides: ctx.ints("strides")?,
            };
            if !["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"].contains(&attrs.auto_pad.as_str()) {
                return Err(format!("auto_pad \"{}\" is not supported", attrs.auto_pad));
            }
            let k: Kernel = Box::new(move |x| {
                Ok(vec![conv_transpose(req(x, 0)?, req(x, 1)?, x.get(2).copied().flatten(), &attrs)?])
            });
            (via_f32(k, t), vec![t])
        }
        "MaxPool" | "AveragePool" | "LpPool" => {
            let max = op == "MaxPool";
            if max {
                ctx.known(&[
                    "auto_pad",
                    "ceil_mode",
                    "dilations",
                    "kernel_shape",
                    "pads",
                    "storage_order",
                    "strides",
                ])?;
                ctx.max_outputs(1)?;
            } else {
                ctx.known(&[
                    "auto_pad",
                    "ceil_mode",
                    "count_include_pad",
                    "dilations",
                    "kernel_shape",
                    "pads",
                    "strides",
                    "p",
                ])?;
            }
            let t = ctx.ty_where(0, floats, "floats")?;
            let kernel = ctx.ints("kernel_shape")?.ok_or("kernel_shape is required")?;
            let win = Window::read(ctx, Some(kernel), ctx.int("ceil_mode", 0)? != 0)?;
            let kind = match op {
                "MaxPool" => PoolKind::Max,
                "AveragePool" => {
                    if ctx.attr("p").is_some() {
                        return Err("attribute \"p\" is not supported".into());
                    }
                    PoolKind::Avg { include_pad: ctx.int("count_include_pad", 0)? != 0 }
                }
                _ => {
                    if ctx.attr("count_include_pad").is_some() {
                        return Err("attribute \"count_include_pad\" is not supported".into());
                    }
                    PoolKind::Lp(ctx.int("p", 2)? as f64)
                }
            };
            let cache = GeometryCache::default();
            let k: Kernel = Box::new(move |x| Ok(vec![pool(req(x, 0)?, &win, kind, &cache)?]));
            (k, vec![t])
        }
        "GlobalAveragePool" | "GlobalMaxPool" => {
            ctx.known(&[])?;
            let t = ctx.ty_where(0, floats, "floats")?;
            let max = op == "GlobalMaxPool";
            let k: Kernel = Box::new(move |x| {
                let a = req(x, 0)?;
                if a.rank() < 3 {
                    bail!("global pooling needs N, C and spatial dims, got {:?}", a.dims());
                }
                let mut dims = a.dims().to_vec();
                for d in dims.iter_mut().skip(2) {
                    *d = 1;
                }
                let flat = a.flatten_from(2)?;
                let y = if max {
                    flat.max_keepdim(2)?
                } else {
                    flat.to_dtype(CDType::F64)?.mean_keepdim(2)?.to_dtype(a.dtype())?
                };
                Ok(vec![y.reshape(dims)?])
            });
            (k, vec![t])
        }
        "BatchNormalization" => {
            ctx.known(&["epsilon", "momentum", "training_mode", "spatial"])?;
            if ctx.opset < 9 && ctx.int("spatial", 1)? != 1 {
                return Err("spatial=0 is not supported".into());
            }
            if ctx.opset < 7 {
                return Err("BatchNormalization before opset 7 is not supported".into());
            }
            if ctx.int("training_mode", 0)? != 0 {
                return Err("training_mode=1 is not supported".into());
            }
            ctx.max_outputs(1)?;
            let t = ctx.ty_where(0, floats, "floats")?;
            let eps = ctx.float("epsilon", 1e-5)? as f64;
            let k: Kernel = Box::new(move |x| {
                let a = req(x, 0)?;
                let c = if a.rank() > 1 { a.dims()[1] } else { 1 };
                let mut shape = vec![1; a.rank()];
                if a.rank() > 1 {
                    shape[1] = c;
                }
                let p = |i: usize| -> CResult<CTensor> {
                    req(x, i)?.to_dtype(CDType::F64)?.reshape(shape.as_slice())
                };
                let (scale, bias, mean, var) = (p(1)?, p(2)?, p(3)?, p(4)?);
                let mul = scale.broadcast_div(&(var + eps)?.sqrt()?)?;
                let add = bias.broadcast_sub(&mean.broadcast_mul(&mul)?)?;
                if matches!(a.dtype(), CDType::F16 | CDType::BF16) {
                    // In double, rounded once: in the half type, the rounded factors and each
                    // step's rounding would cost up to a step of the type more.
                    let y = a.to_dtype(CDType::F64)?.broadcast_mul(&mul)?.broadcast_add(&add)?;
                    return Ok(vec![y.to_dtype(a.dtype())?]);
                }
                let y =
                    a.broadcast_mul(&mul.to_dtype(a.dtype())?)?.broadcast_add(&add.to_dtype(a.dtype())?)?;
                Ok(vec![y])
            });
            (k, vec![t])
        }
        "InstanceNormalization" => {
            ctx.known(&["epsilon"])?;
            let t = ctx.ty_where(0, floats, "floats")?;
            let eps = ctx.float("epsilon", 1e-5)? as f64;
            let k: Kernel = Box::new(move |x| {
                let a = req(x, 0)?;
                if a.rank() < 3 {
                    bail!("InstanceNormalization needs N, C and spatial dims");
                }
                let (y, _, _) = normalize(a, 2, eps)?;
                let mut shape = vec![1; a.rank()];
                shape[1] = a.dims()[1];
                let s = req(x, 1)?.to_dtype(y.dtype())?.reshape(shape.as_slice())?;
                let b = req(x, 2)?.to_dtype(y.dtype())?.reshape(shape.as_slice())?;
                Ok(vec![y.broadcast_mul(&s)?.broadcast_add(&b)?.to_dtype(a.dtype())?])
            });
            (k, vec![t])
        }
        "LayerNormalization" => {
            ctx.known(&["axis", "epsilon", "stash_type"])?;
            let t = ctx.ty_where(0, floats, "floats")?;
            ctx.float_stash()?;
            let ax = ctx.int("axis", -1)?;
            let eps = ctx.float("epsilon", 1e-5)? as f64;
            let n_out = ctx.n_outputs().max(1);
            let k: Kernel = Box::new(move |x| {
                let a = req(x, 0)?;
                let from = axis(ax, a.rank())?;
                let (y, mean, inv) = normalize(a, from, eps)?;
                let mut y = y.broadcast_mul(&req(x, 1)?.to_dtype(y.dtype())?)?;
                if let Some(b) = x.get(2).copied().flatten() {
                    y = y.broadcast_add(&b.to_dtype(y.dtype())?)?;
                }
                let mut stat = a.dims()[..from].to_vec();
                stat.extend(std::iter::repeat_n(1, a.rank() - from));
                let mut out = vec![y.to_dtype(a.dtype())?];
                if n_out > 1 {
                    out.push(mean.reshape(stat.as_slice())?.to_dtype(CDType::F32)?);
                }
                if n_out > 2 {
                    out.push(inv.reshape(stat.as_slice())?.to_dtype(CDType::F32)?);
                }
                Ok(out)
            });
            let mut tys = vec![t];
            tys.extend(std::iter::repeat_n(Ty::F32, n_out - 1));
            (k, tys)
        }
        "GroupNormalization" => {
            ctx.known(&["epsilon", "num_groups", "stash_type"])?;
            let t = ctx.ty_where(0, floats, "floats")?;
            ctx.float_stash()?;
            let eps = ctx.float("epsilon", 1e-5)? as f64;
            let groups = ctx.int("num_groups", 0)?;
            if groups < 1 {
                return Err("num_groups must be at least 1".into());
            }
            let groups = groups as usize;
            let per_channel = ctx.opset >= 21;
            let k: Kernel = Box::new(move |x| {
                let a = req(x, 0)?;
                if a.rank() < 2 || a.dims()[1] % groups != 0 {
                    bail!("{:?} does not split into {groups} groups", a.dims());
                }
                let (n, c) = (a.dims()[0], a.dims()[1]);
                let (y, _, _) = normalize(&a.reshape((n, groups, ()))?, 2, eps)?;
                let y = y.reshape(a.dims())?;
                let mut shape = vec![1; a.rank()];
                shape[1] = c;
                let expand = |p: &CTensor| -> CResult<CTensor> {
                    let p = p.to_dtype(y.dtype())?;
                    if per_channel {
                        p.reshape(shape.as_slice())
                    } else {
                        let g = p.reshape((groups, 1))?.broadcast_as((groups, c / groups))?.reshape(c)?;
                        g.reshape(shape.as_slice())
                    }
                };
                let y = y.broadcast_mul(&expand(req(x, 1)?)?)?.broadcast_add(&expand(req(x, 2)?)?)?;
                Ok(vec![y.to_dtype(a.dtype())?])
            });
            (k, vec![t])
        }
        "LpNormalization" => {
            ctx.known(&["axis", "p"])?;
            let t = ctx.ty_where(0, floats, "floats")?;
            let ax = ctx.int("axis", -1)?;
            let p = ctx.int("p", 2)?;
            if p != 1 && p != 2 {
                return Err(format!("p = {p} is not 1 or 2"));
            }
            let k: Kernel = Box::new(move |x| {
                let a = req(x, 0)?;
                let dim = axis(ax, a.rank())?;
                let v = a.to_dtype(CDType::F64)?;
                let norm =
                    if p == 1 { v.abs()?.sum_keepdim(dim)? } else { v.sqr()?.sum_keepdim(dim)?.sqrt()? };
                // A zero norm gives zeros, as ONNX's reference does.
                let safe = norm.eq(0.0)?.where_cond(&norm.ones_like()?, &norm)?;
                Ok(vec![v.broadcast_div(&safe)?.to_dtype(a.dtype())?])
            });
            (k, vec![t])
        }
        "RMSNormalization" => {
            ctx.known(&["axis", "epsilon", "stash_type"])?;
            let t = ctx.ty_where(0, floats, "floats")?;
            ctx.float_stash()?;
            let ax = ctx.int("axis", -1)?;
            let eps = ctx.float("epsilon", 1e-5)? as f64;
            let k: Kernel = Box::new(move |x| {
                let a = req(x, 0)?;
                let from = axis(ax, a.rank())?;
                let outer: usize = a.dims()[..from].iter().product();
                let v = a.to_dtype(CDType::F32)?.reshape((outer, ()))?;
                let inv = (v.sqr()?.mean_keepdim(1)? + eps)?.sqrt()?.recip()?;
                let y = v.broadcast_mul(&inv)?.reshape(a.dims())?;
                let y = y.broadcast_mul(&req(x, 1)?.to_dtype(CDType::F32)?)?;
                Ok(vec![y.to_dtype(a.dtype())?])
            });
            (k, vec![t])
        }
        "MeanVarianceNormalization" => {
            ctx.known(&["axes"])?;
            let t = ctx.ty_where(0, floats, "floats")?;
            let axes = ctx.ints("axes")?.unwrap_or(vec![0, 2, 3]);
            let k: Kernel = Box::new(move |x| {
                let a = req(x, 0)?;
                let mut ax: Vec<usize> = axes.iter().map(|&i| axis(i, a.rank())).collect::<CResult<_>>()?;
                ax.sort_unstable();
                ax.dedup();
                let v = a.to_dtype(CDType::F64)?;
                let mut mean = v.clone();
                for &d in &ax {
                    mean = mean.mean_keepdim(d)?;
                }
                let centered = v.broadcast_sub(&mean)?;
                let mut var = centered.sqr()?;
                for &d in &ax {
                    var = var.mean_keepdim(d)?;
                }
                let y = centered.broadcast_div(&(var + 1e-9)?.sqrt()?)?;
                Ok(vec![y.to_dtype(a.dtype())?])
            });
            (k, vec![t])
        }
        "LRN" => {
            ctx.known(&["alpha", "beta", "bias", "size"])?;
            let t = ctx.ty_where(0, floats, "floats")?;
            let alpha = ctx.float("alpha", 1e-4)? as f64;
            let beta = ctx.float("beta", 0.75)? as f64;
            let bias = ctx.float("bias", 1.0)? as f64;
            let size = ctx.int("size", 0)?;
            if size < 1 {
                return Err("size must be at least 1".into());
            }
            let size = size as usize;
            let k: Kernel = Box::new(move |x| {
                let a = req(x, 0)?;
                if a.rank() < 3 {
                    bail!("LRN needs N, C and spatial dims");
                }
                let (n, c) = (a.dims()[0], a.dims()[1]);
                let plane: usize = a.dims()[2..].iter().product();
                let v: Vec<f64> = super::values(&a.to_dtype(CDType::F64)?)?;
                let (lo, hi) = ((size - 1) / 2, (size - 1).div_ceil(2));
                let mut out = vec![0f64; v.len()];
                for b in 0..n {
                    for ch in 0..c {
                        let (from, to) = (ch.saturating_sub(lo), (ch + hi).min(c - 1));
                        for q in 0..plane {
                            let sq: f64 = (from..=to).map(|cc| v[(b * c + cc) * plane + q].powi(2)).sum();
                            let i = (b * c + ch) * plane + q;
                            out[i] = v[i] / (bias + alpha / size as f64 * sq).powf(beta);
                        }
                    }
                }
                Ok(vec![super::make(out, a.dims())?.to_dtype(a.dtype())?])
            });
            (k, vec![t])
        }
        "Softmax" | "LogSoftmax" | "Hardmax" => {
            ctx.known(&["axis"])?;
            let t = ctx.ty_where(0, floats, "floats")?;
            let legacy = ctx.opset < 13;
            let ax = ctx.int("axis", if legacy { 1 } else { -1 })?;
            let kind = op.to_string();
            let k: Kernel = Box::new(move |x| {
                let a = req(x, 0)?;
                if legacy {
                    let from = if ax < 0 { ax + a.rank() as i64 } else { ax };
                    if from < 0 || from > a.rank() as i64 {
                        bail!("axis {ax} is out of range for rank {}", a.rank());
                    }
                    let outer: usize = a.dims()[..from as usize].iter().product();
                    let y = softmax(&a.reshape((outer, ()))?, 1, &kind)?;
                    return Ok(vec![y.reshape(a.dims())?]);
                }
                Ok(vec![softmax(a, axis(ax, a.rank())?, &kind)?])
            });
            (k, vec![t])
        }
        _ => return Ok(None),
    };
    Ok(Some(built))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(kernel: &[usize], strides: &[usize], dilations: &[usize], pads: &[usize]) -> Window {
        Window {
            kernel: kernel.to_vec(),
            strides: strides.to_vec(),
            dilations: dilations.to_vec(),
            pads: Some(pads.to_vec()),
            auto_pad: "NOTSET".into(),
            ceil: false,
        }
    }

    /// Values with NaNs and ties, distinct enough to catch a misplaced read.
    fn values(n: usize) -> Vec<f32> {
        (0..n).map(|i| if i % 37 == 5 { f32::NAN } else { ((i * 7919) % 101) as f32 - 50.0 }).collect()
    }

    #[test]
    fn small_products_equal_a_plain_sum() {
        // (m, k, n): rows in pairs and alone, 32- and 8-column blocks and their padded tails, a
        // lone column, an empty inner dim, 8 rows of a narrow output.
        for &(m, k, n) in &[
            (1, 16, 64),
            (3, 5, 83),
            (2, 7, 17),
            (4, 16, 64),
            (1, 32, 3),
            (4, 9, 1),
            (2, 0, 5),
            (8, 32, 3),
            (7, 5, 7),
        ] {
            let av: Vec<f64> = (0..m * k).map(|i| ((i * 37) % 23) as f64 / 7.0 - 1.5).collect();
            let bv: Vec<f64> = (0..k * n).map(|i| ((i * 53) % 29) as f64 / 5.0 - 2.5).collect();
            let c0: Vec<f64> = (0..m * n).map(|i| (i % 5) as f64).collect();
            // `a` as the transpose of a [k, m] tensor: its rows are strided, read in place.
            let a = CTensor::from_vec(av.clone(), (m, k), &Device::Cpu).unwrap();
            let at = a.t().unwrap().contiguous().unwrap().t().unwrap();
            let plain = CTensor::from_vec(bv.clone(), (k, n), &Device::Cpu).unwrap();
            // `b` as a view of the first n columns of wider rows: padded with zeros at load as
            // a constant B is (its last block of 8 read in place), and padded with NaN, which
            // must stay in the sums that are not stored.
            let nan_padded = {
                let w = n.next_multiple_of(8) + 8;
                let v: Vec<f64> =
                    (0..k * w).map(|i| if i % w < n { bv[i / w * n + i % w] } else { f64::NAN }).collect();
                CTensor::from_vec(v, (k, w), &Device::Cpu).unwrap().narrow(1, 0, n).unwrap()
            };
            let padded = pad_columns(plain.clone()).unwrap();
            if n % 8 != 0 && k > 0 {
                assert_eq!(padded.stride()[0], n.next_multiple_of(8), "({m}, {k}, {n}) padded");
            }
            for (a, b) in [(&a, &plain), (&at, &plain), (&a, &padded), (&at, &nan_padded)] {
                let mut got = c0.clone();
                let done = with_strided(a, |a: Strided<'_, f64>| {
                    with_strided(b, |b: Strided<'_, f64>| {
                        small_gemm(a, b, a.start, b.start, &mut got, (m, k, n), 0.5, Epilogue::PLAIN)
                    })
                })
                .unwrap()
                .unwrap();
                assert!(done, "({m}, {k}, {n}) is small");
                let mut want = c0.clone();
                for i in 0..m {
                    for j in 0..n {
                        want[i * n + j] += 0.5 * (0..k).map(|p| av[i * k + p] * bv[p * n + j]).sum::<f64>();
                    }
                }
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() <= 1e-12 * (1.0 + w.abs()), "({m}, {k}, {n}): {g} vs {w}");
                }
                // Starting from a bias row instead of `c`, with a Relu as the sums are stored.
                let bias: Vec<f64> = (0..n).map(|j| (j % 7) as f64 - 3.0).collect();
                let mut got = vec![f64::NAN; m * n];
                let done = with_strided(a, |a: Strided<'_, f64>| {
                    with_strided(b, |b: Strided<'_, f64>| {
                        let epilogue = Epilogue { start: Some(&bias), relu: true };
                        small_gemm(a, b, a.start, b.start, &mut got, (m, k, n), 0.5, epilogue)
                    })
                })
                .unwrap()
                .unwrap();
                assert!(done);
                for i in 0..m {
                    for j in 0..n {
                        let sum = bias[j] + 0.5 * (0..k).map(|p| av[i * k + p] * bv[p * n + j]).sum::<f64>();
                        let (g, w) = (got[i * n + j], sum.max(0.0));
                        assert!((g - w).abs() <= 1e-12 * (1.0 + w.abs()), "({m}, {k}, {n}) relu: {g} vs {w}");
                    }
                }
            }
        }
        // Too large, too many rows, or `b` with strided rows: left to the gemm crate, `c`
        // untouched.
        let big = CTensor::zeros((64, 64), candle_core::DType::F64, &Device::Cpu).unwrap();
        let (a9, b9) = (
            CTensor::zeros((9, 2), candle_core::DType::F64, &Device::Cpu).unwrap(),
            CTensor::zeros((2, 2), candle_core::DType::F64, &Device::Cpu).unwrap(),
        );
        let bt = CTensor::zeros((3, 4), candle_core::DType::F64, &Device::Cpu).unwrap().t().unwrap();
        let a4 = CTensor::zeros((1, 4), candle_core::DType::F64, &Device::Cpu).unwrap();
        let mut c = vec![1.0; 64 * 64];
        let run = |a: &CTensor, b: &CTensor, c: &mut [f64], mkn| {
            with_strided(a, |a: Strided<'_, f64>| {
                with_strided(b, |b: Strided<'_, f64>| {
                    small_gemm(a, b, a.start, b.start, c, mkn, 1.0, Epilogue::PLAIN)
                })
            })
            .unwrap()
            .unwrap()
        };
        assert!(!run(&big, &big, &mut c, (64, 64, 64)));
        assert!(!run(&a9, &b9, &mut c[..18], (9, 2, 2)));
        assert!(!run(&a4, &bt, &mut c[..3], (1, 4, 3)));
        assert!(c.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn images_side_by_side_equal_images_one_at_a_time() {
        // 10×10 planes (100 positions): two images per product, so five images go in chunks
        // of 2, 2 and 1; two groups and a bias.
        let (n, c, m, g) = (5, 4, 6, 2);
        let finite = |len: usize| -> Vec<f32> {
            values(len).into_iter().map(|v| if v.is_nan() { 0.5 } else { v / 50.0 }).collect()
        };
        let x = CTensor::from_vec(finite(n * c * 100), (n, c, 10, 10), &Device::Cpu).unwrap();
        let w = CTensor::from_vec(finite(m * (c / g) * 9), (m, c / g, 3, 3), &Device::Cpu).unwrap();
        let b = CTensor::from_vec((0..m).map(|i| i as f32).collect::<Vec<f32>>(), m, &Device::Cpu).unwrap();
        let win = window(&[3, 3], &[1, 1], &[1, 1], &[1, 1, 1, 1]);
        let cache = GeometryCache::default();
        assert_eq!((BATCH_COLUMNS / 100).clamp(1, n), 2, "the case puts two images side by side");
        let run = |x: &CTensor, bias: Option<&CTensor>, relu: bool| -> Vec<f32> {
            let y = conv_general(x, &w, bias, &win, g, &cache, relu).unwrap();
            y.flatten_all().unwrap().to_vec1().unwrap()
        };
        let per = m * 100;
        // With and without the bias and a fused Relu: the images side by side equal each image
        // alone, and the fused Relu equals the unfused result clamped at zero.
        for bias in [Some(&b), None] {
            let plain = run(&x, bias, false);
            let fused = run(&x, bias, true);
            assert!(plain.iter().any(|&v| v < 0.0) && plain.iter().any(|&v| v > 0.0), "both signs occur");
            for (f, p) in fused.iter().zip(&plain) {
                assert_eq!(*f, p.max(0.0));
            }
            for relu in [false, true] {
                let all = if relu { &fused } else { &plain };
                for i in 0..n {
                    let one = run(&x.narrow(0, i, 1).unwrap(), bias, relu);
                    for (j, (a, o)) in all[i * per..(i + 1) * per].iter().zip(&one).enumerate() {
                        assert!(
                            (a - o).abs() <= 1e-5 * (1.0 + o.abs()),
                            "image {i}, element {j}: {a} vs {o}"
                        );
                    }
                }
            }
        }
        // The bias is each output channel's own: with it minus without it is channel `i % m`.
        let (with, without) = (run(&x, Some(&b), false), run(&x, None, false));
        for (j, (a, o)) in with.iter().zip(&without).enumerate() {
            let channel = (j / 100 % m) as f32;
            assert!((a - o - channel).abs() <= 1e-4, "element {j}: {a} - {o} is not {channel}");
        }
    }

    #[test]
    fn a_convolution_over_no_input_channels_is_its_bias() {
        let x = CTensor::zeros((2, 0, 4, 4), CDType::F32, &Device::Cpu).unwrap();
        let w = CTensor::zeros((3, 0, 3, 3), CDType::F32, &Device::Cpu).unwrap();
        let b = CTensor::from_vec(vec![-1.0f32, 2.0, 3.0], 3, &Device::Cpu).unwrap();
        let win = window(&[3, 3], &[1, 1], &[1, 1], &[1, 1, 1, 1]);
        let cache = GeometryCache::default();
        for relu in [false, true] {
            let y = conv_general(&x, &w, Some(&b), &win, 1, &cache, relu).unwrap();
            assert_eq!(y.dims(), &[2, 3, 4, 4]);
            let got: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
            let want: Vec<f32> = (0..2 * 3 * 16)
                .map(|j| [-1.0f32, 2.0, 3.0][j / 16 % 3])
                .map(|v| if relu { v.max(0.0) } else { v })
                .collect();
            assert_eq!(got, want);
        }
        let y = conv_general(&x, &w, None, &win, 1, &cache, false).unwrap();
        assert!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn im2col_block_copies_equal_the_gather_they_replace() {
        type Case =
            (&'static [usize], &'static [usize], &'static [usize], &'static [usize], &'static [usize]);
        let cases: &[Case] = &[
            // (input, kernel, strides, dilations, pads): "same" stride-1 windows take the block
            // copy; the others keep their runs; 1-D and 3-D too.
            (&[7, 9], &[3, 3], &[1, 1], &[1, 1], &[1, 1, 1, 1]),
            (&[8, 8], &[5, 5], &[1, 1], &[1, 1], &[2, 2, 2, 2]),
            (&[6, 5], &[3, 1], &[1, 1], &[1, 1], &[1, 0, 1, 0]),
            (&[5, 6], &[2, 2], &[1, 1], &[1, 1], &[1, 1, 0, 0]),
            (&[9, 9], &[3, 3], &[1, 1], &[2, 2], &[2, 2, 2, 2]),
            (&[8, 8], &[3, 3], &[1, 1], &[1, 1], &[0, 0, 0, 0]),
            (&[8, 8], &[3, 3], &[2, 2], &[1, 1], &[1, 1, 1, 1]),
            // Strided windows, whose output rows are runs with a step: a ResNet stem's 7×7
            // stride 2, a 1×1 stride-2 shortcut, stride 3 with dilation 2, and 1-D.
            (&[15, 13], &[7, 7], &[2, 2], &[1, 1], &[3, 3, 3, 3]),
            (&[9, 8], &[1, 1], &[2, 2], &[1, 1], &[0, 0, 0, 0]),
            (&[17, 16], &[3, 3], &[3, 3], &[2, 2], &[1, 2, 0, 1]),
            (&[40], &[5], &[4], &[1], &[2, 1]),
            (&[11], &[3], &[1], &[1], &[1, 1]),
            (&[4, 5, 6], &[3, 3, 3], &[1, 1, 1], &[1, 1, 1], &[1, 1, 1, 1, 1, 1]),
        ];
        let (mut block_copies, mut stepped) = (0, 0);
        for &(input, kernel, strides, dilations, pads) in cases {
            let geo = geometry(&window(kernel, strides, dilations, pads), input).unwrap();
            block_copies += geo.shifted.iter().flatten().count();
            stepped += geo.runs.iter().flatten().filter(|r| r.3 > 1).count();
            let (c, plane) = (2, input.iter().product::<usize>());
            let src = values(c * plane);
            let mut col = vec![f32::INFINITY; c * geo.k * geo.p];
            im2col(&src, &geo, c, plane, &mut col, geo.p);
            for ch in 0..c {
                for kk in 0..geo.k {
                    for pp in 0..geo.p {
                        let o = geo.by_k[kk * geo.p + pp];
                        let want = if o == PAD { 0.0 } else { src[ch * plane + o as usize] };
                        let got = col[(ch * geo.k + kk) * geo.p + pp];
                        assert!(
                            got.to_bits() == want.to_bits(),
                            "{input:?} k{kernel:?} s{strides:?} d{dilations:?} p{pads:?}: ch {ch}, kernel \
                             position {kk}, output {pp}: {got} instead of {want}"
                        );
                    }
                }
            }
        }
        assert!(block_copies >= 9 + 25 + 3, "the same-size windows use block copies ({block_copies})");
        assert!(stepped >= 49 * 4, "the strided windows' rows are runs with a step ({stepped})");
    }

    #[test]
    fn the_2x2_max_pool_equals_the_general_loop() {
        for (h, w) in [(32, 32), (5, 7), (2, 2), (1, 4), (6, 1)] {
            let planes = 3;
            let src = values(planes * h * w);
            let shape =
                Pool2d { input: [h, w], out: [h / 2, w / 2], kernel: [2, 2], strides: [2, 2], begin: [0, 0] };
            let fast = max_pool_2d(&src, &shape, planes).unwrap();
            // Against a direct reference: NaN wins a window, else the largest value.
            let mut want = Vec::new();
            for p in 0..planes {
                for oy in 0..h / 2 {
                    for ox in 0..w / 2 {
                        let at = |y: usize, x: usize| src[p * h * w + y * w + x];
                        let cells = [
                            at(2 * oy, 2 * ox),
                            at(2 * oy, 2 * ox + 1),
                            at(2 * oy + 1, 2 * ox),
                            at(2 * oy + 1, 2 * ox + 1),
                        ];
                        want.push(if cells.iter().any(|v| v.is_nan()) {
                            f32::NAN
                        } else {
                            cells.iter().copied().fold(f32::NEG_INFINITY, f32::max)
                        });
                    }
                }
            }
            let bits = |v: &[f32]| {
                v.iter().map(|x| if x.is_nan() { u32::MAX } else { x.to_bits() }).collect::<Vec<_>>()
            };
            assert_eq!(bits(&fast), bits(&want), "{h}x{w}");
        }
    }

    #[test]
    fn the_vectorizable_exp_stays_within_one_ulp() {
        let mut worst = 0f64;
        let mut x = -86.9f32;
        while x < 88.72 {
            let (fast, exact) = (exp_f32(x) as f64, (x as f64).exp());
            worst = worst.max(((fast - exact) / exact).abs());
            x += 0.0013;
        }
        // One ulp of f32 is 2^-23 relative.
        assert!(worst < f32::EPSILON as f64, "worst relative error {worst:e}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-100.0), 0.0);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
    }
}
