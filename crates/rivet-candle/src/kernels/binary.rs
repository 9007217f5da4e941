//! Float arithmetic (Add, Sub, Mul, Div) with numpy broadcasting, in runs along the innermost
//! dimension the operands share: a bias over rows, a scalar over a tensor or a mask over
//! attention scores each become one loop over contiguous values per run, compiled for the
//! CPU's widest vectors. Each element is one IEEE operation on the same two values, so the
//! answer is the one Candle's broadcasting operators give.

use candle_core::{DType as CDType, Device, Result as CResult, Tensor as CTensor};

/// One of the four arithmetic operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

/// `a op b` for float32 or float64 operands of the same type, broadcast as numpy does; `None`
/// for other types or shapes that do not broadcast (the caller's general path answers those,
/// with its own error).
pub(crate) fn broadcast_arith(a: &CTensor, b: &CTensor, op: Arith) -> CResult<Option<CTensor>> {
    match (a.dtype(), b.dtype()) {
        (CDType::F32, CDType::F32) => broadcast_typed::<f32>(a, b, op),
        (CDType::F64, CDType::F64) => broadcast_typed::<f64>(a, b, op),
        _ => Ok(None),
    }
}

/// How two operands walk a broadcast output: its dims (merged where both operands continue
/// contiguously, ones dropped) and each operand's stride along them (0 where it broadcasts).
#[derive(Debug, PartialEq)]
pub(crate) struct Walk {
    pub(crate) dims: Vec<usize>,
    pub(crate) a: Vec<usize>,
    pub(crate) b: Vec<usize>,
}

/// The broadcast output's shape and the [`Walk`] over it, or `None` when the shapes do not
/// broadcast.
pub(crate) fn walk(a: &[usize], b: &[usize]) -> Option<(Vec<usize>, Walk)> {
    let rank = a.len().max(b.len());
    let pad = |d: &[usize]| -> Vec<usize> {
        let mut v = vec![1; rank - d.len()];
        v.extend_from_slice(d);
        v
    };
    let (a, b) = (pad(a), pad(b));
    let mut out = Vec::with_capacity(rank);
    for (&x, &y) in a.iter().zip(&b) {
        out.push(match (x, y) {
            _ if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        });
    }
    let strides = |d: &[usize]| -> Vec<usize> {
        let row = super::strides(d);
        d.iter().zip(row).map(|(&n, s)| if n == 1 { 0 } else { s }).collect()
    };
    let (sa, sb) = (strides(&a), strides(&b));
    let mut w = Walk { dims: Vec::new(), a: Vec::new(), b: Vec::new() };
    for i in 0..rank {
        if out[i] == 1 {
            continue;
        }
        if let (Some(&d), Some(&pa), Some(&pb)) = (w.dims.last(), w.a.last(), w.b.last()) {
            // The previous dim continues into this one for both operands: merge them.
            if pa == sa[i] * out[i] && pb == sb[i] * out[i] {
                let last = w.dims.len() - 1;
                w.dims[last] = d * out[i];
                w.a[last] = sa[i];
                w.b[last] = sb[i];
                continue;
            }
        }
        w.dims.push(out[i]);
        w.a.push(sa[i]);
        w.b.push(sb[i]);
    }
    Some((out, w))
}

/// Element types [`broadcast_arith`] computes in.
trait ArithElem: candle_core::WithDType + num_traits::Float {}
impl ArithElem for f32 {}
impl ArithElem for f64 {}

fn broadcast_typed<T: ArithElem>(a: &CTensor, b: &CTensor, op: Arith) -> CResult<Option<CTensor>> {
    let Some((out_dims, w)) = walk(a.dims(), b.dims()) else {
        return Ok(None);
    };
    super::check_size(&out_dims, std::mem::size_of::<T>())?;
    let len: usize = out_dims.iter().product();
    let out = super::with_values(a, |xs: &[T]| {
        super::with_values(b, |ys: &[T]| {
            // Written in full below before it is read: not zeroed first.
            let mut out: Vec<T> = Vec::with_capacity(len);
            if len > 0 && a.dims() == b.dims() {
                // The same shapes: one run per image's values, split by images when large.
                let out_ptr = super::conv::SharedOut::new(&mut out.spare_capacity_mut()[..len]);
                super::threads::elementwise_by_images(a.dims().first().copied().unwrap_or(1), len, |r| {
                    let Some((_, walk)) = walk(&[r.len()], &[r.len()]) else { return };
                    // SAFETY: each range of values is one task's alone, within the output.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(
                            out_ptr.at(r.start) as *mut std::mem::MaybeUninit<T>,
                            r.len(),
                        )
                    };
                    let (xs, ys) = (&xs[r.clone()], &ys[r]);
                    match op {
                        Arith::Add => {
                            super::wide(Runs { xs, ys, out: dst, walk: &walk, f: |p: T, q: T| p + q })
                        }
                        Arith::Sub => {
                            super::wide(Runs { xs, ys, out: dst, walk: &walk, f: |p: T, q: T| p - q })
                        }
                        Arith::Mul => {
                            super::wide(Runs { xs, ys, out: dst, walk: &walk, f: |p: T, q: T| p * q })
                        }
                        Arith::Div => {
                            super::wide(Runs { xs, ys, out: dst, walk: &walk, f: |p: T, q: T| p / q })
                        }
                    }
                });
            } else if len > 0 {
                let dst = &mut out.spare_capacity_mut()[..len];
                match op {
                    Arith::Add => super::wide(Runs { xs, ys, out: dst, walk: &w, f: |p: T, q: T| p + q }),
                    Arith::Sub => super::wide(Runs { xs, ys, out: dst, walk: &w, f: |p: T, q: T| p - q }),
                    Arith::Mul => super::wide(Runs { xs, ys, out: dst, walk: &w, f: |p: T, q: T| p * q }),
                    Arith::Div => super::wide(Runs { xs, ys, out: dst, walk: &w, f: |p: T, q: T| p / q }),
                }
            }
            // SAFETY: `Runs` wrote each of the `len` elements (its runs tile the output).
            unsafe { out.set_len(len) };
            out
        })
    })??;
    Ok(Some(CTensor::from_vec(out, out_dims, &Device::Cpu)?))
}

/// [`broadcast_typed`]'s loop, to run through [`super::wide`].
struct Runs<'a, T, F> {
    xs: &'a [T],
    ys: &'a [T],
    out: &'a mut [std::mem::MaybeUninit<T>],
    walk: &'a Walk,
    f: F,
}

impl<T: ArithElem, F: Fn(T, T) -> T> super::WideKernel for Runs<'_, T, F> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Runs { xs, ys, out, walk, f } = self;
        // The innermost dim is the run, the one above it a row of runs walked with fixed
        // steps, and the dims above those an odometer.
        let n = walk.dims.len();
        let (run, ra, rb) = if n == 0 { (1, 0, 0) } else { (walk.dims[n - 1], walk.a[n - 1], walk.b[n - 1]) };
        let (row, sa, sb) = if n < 2 { (1, 0, 0) } else { (walk.dims[n - 2], walk.a[n - 2], walk.b[n - 2]) };
        let outer = n.saturating_sub(2);
        let mut index = vec![0usize; outer];
        let (mut oa, mut ob) = (0usize, 0usize);
        for block in out.chunks_exact_mut(run * row) {
            for (r, dst) in block.chunks_exact_mut(run).enumerate() {
                apply(dst, &xs[oa + r * sa..], &ys[ob + r * sb..], ra, rb, &f);
            }
            for d in (0..outer).rev() {
                index[d] += 1;
                oa += walk.a[d];
                ob += walk.b[d];
                if index[d] < walk.dims[d] {
                    break;
                }
                oa -= walk.a[d] * walk.dims[d];
                ob -= walk.b[d] * walk.dims[d];
                index[d] = 0;
            }
        }
    }
}

/// One run: `dst[i] = f(x[i * ra], y[i * rb])`, each stride 1 or 0 (a broadcast value).
#[inline(always)]
fn apply<T: Copy>(
    dst: &mut [std::mem::MaybeUninit<T>],
    x: &[T],
    y: &[T],
    ra: usize,
    rb: usize,
    f: &impl Fn(T, T) -> T,
) {
    let n = dst.len();
    match (ra, rb) {
        (0, 0) => {
            let v = f(x[0], y[0]);
            for d in dst.iter_mut() {
                d.write(v);
            }
        }
        (0, _) => {
            let p = x[0];
            for (d, &q) in dst.iter_mut().zip(&y[..n]) {
                d.write(f(p, q));
            }
        }
        (_, 0) => {
            let q = y[0];
            for (d, &p) in dst.iter_mut().zip(&x[..n]) {
                d.write(f(p, q));
            }
        }
        _ => {
            for ((d, &p), &q) in dst.iter_mut().zip(&x[..n]).zip(&y[..n]) {
                d.write(f(p, q));
            }
        }
    }
}
