//! Reductions (`Reduce*`, `ArgMax`, `ArgMin`), computed in f64 for floats and i64 for integers.

use candle_core::{bail, DType as CDType, Result as CResult, Tensor as CTensor};

use super::registry::{OpDef, Registry, RegistryError};
use super::{axis, ints, make, req, values, with_values, Built, Kernel, NodeCtx, Refusal};
use crate::kernels::WideKernel;
use crate::ty::Ty;

#[derive(Clone, Copy, PartialEq)]
enum Red {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

/// `x` with `axes` moved last, as `[outer, inner]` rows, plus the output dims.
fn rows(x: &CTensor, axes: &[usize], keepdims: bool) -> CResult<(CTensor, usize, usize, Vec<usize>)> {
    let r = x.rank();
    let kept: Vec<usize> = (0..r).filter(|a| !axes.contains(a)).collect();
    let mut perm = kept.clone();
    perm.extend_from_slice(axes);
    let outer: usize = kept.iter().map(|&a| x.dims()[a]).product();
    let inner: usize = axes.iter().map(|&a| x.dims()[a]).product();
    let out: Vec<usize> = if keepdims {
        (0..r).map(|a| if axes.contains(&a) { 1 } else { x.dims()[a] }).collect()
    } else {
        kept.iter().map(|&a| x.dims()[a]).collect()
    };
    let moved = if r == 0 { x.reshape(1)? } else { x.permute(perm)?.contiguous()? };
    Ok((moved, outer, inner, out))
}

fn fold_f64(op: Red, row: &[f64]) -> f64 {
    match op {
        Red::Sum => row.iter().sum(),
        Red::Mean => row.iter().sum::<f64>() / row.len() as f64,
        Red::Max => {
            row.iter()
                .fold(f64::NEG_INFINITY, |m, &v| if v.is_nan() || m.is_nan() { f64::NAN } else { m.max(v) })
        }
        Red::Min => {
            row.iter().fold(f64::INFINITY, |m, &v| if v.is_nan() || m.is_nan() { f64::NAN } else { m.min(v) })
        }
        Red::Prod => row.iter().product(),
        Red::L1 => row.iter().map(|v| v.abs()).sum(),
        Red::L2 => row.iter().map(|v| v * v).sum::<f64>().sqrt(),
        Red::LogSum => row.iter().sum::<f64>().ln(),
        Red::LogSumExp => {
            let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            if m.is_infinite() {
                row.iter().map(|v| v.exp()).sum::<f64>().ln()
            } else {
                m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
            }
        }
        Red::SumSquare => row.iter().map(|v| v * v).sum(),
    }
}

fn fold_i64(op: Red, row: &[i64], ty: Ty) -> i64 {
    match op {
        Red::Max => row.iter().copied().max().unwrap_or(match ty {
            Ty::U8 | Ty::U32 | Ty::Bool => 0,
            Ty::I8 => i8::MIN as i64,
            Ty::I16 => i16::MIN as i64,
            Ty::I32 => i32::MIN as i64,
            _ => i64::MIN,
        }),
        Red::Min => row.iter().copied().min().unwrap_or(match ty {
            Ty::U8 => u8::MAX as i64,
            Ty::Bool => 1,
            Ty::U32 => u32::MAX as i64,
            Ty::I8 => i8::MAX as i64,
            Ty::I16 => i16::MAX as i64,
            Ty::I32 => i32::MAX as i64,
            _ => i64::MAX,
        }),
        Red::Prod => row.iter().fold(1i64, |a, &v| a.wrapping_mul(v)),
        Red::L1 => row.iter().fold(0i64, |a, &v| a.wrapping_add(v.wrapping_abs())),
        Red::SumSquare => row.iter().fold(0i64, |a, &v| a.wrapping_add(v.wrapping_mul(v))),
        _ => row.iter().fold(0i64, |a, &v| a.wrapping_add(v)),
    }
}

/// The sum (or mean) of each `inner`-long row of `v` into `out` (one value per row),
/// accumulated in f64 like the other float reductions, in eight interleaved partial sums that
/// run as vectors where one running sum would wait on each addition; each result is rounded
/// once to `T`.
struct RowSums<'a, T> {
    v: &'a [T],
    inner: usize,
    mean: bool,
    out: &'a mut [T],
}

impl<T: candle_core::WithDType> WideKernel for RowSums<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let RowSums { v, inner, mean, out } = self;
        for (o, row) in out.iter_mut().zip(v.chunks_exact(inner)) {
            let mut acc = [0.0f64; 8];
            let mut eights = row.chunks_exact(8);
            for e in &mut eights {
                for (a, x) in acc.iter_mut().zip(e) {
                    *a += x.to_f64();
                }
            }
            let mut sum = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
            for x in eights.remainder() {
                sum += x.to_f64();
            }
            *o = T::from_f64(if mean { sum / inner as f64 } else { sum });
        }
    }
}

/// [`RowSums`] of every `inner`-long row of `v`, whose rows come in `images` equal runs (one per
/// image of a batch): split by images ([`split_batch`](crate::kernels::threads::split_batch)),
/// so that each thread reads the images the layer before left in its cache. Each row's sum is
/// the same whichever thread computes it.
fn row_sums<T: candle_core::WithDType>(v: &[T], inner: usize, mean: bool, images: usize) -> Vec<T> {
    let rows = v.len() / inner;
    let mut out = vec![T::zero(); rows];
    if images < 2 || rows < images || !rows.is_multiple_of(images) {
        crate::kernels::wide(RowSums { v, inner, mean, out: &mut out });
        return out;
    }
    let per = rows / images;
    let outs = crate::kernels::threads::Chunks::new(&mut out, per);
    crate::kernels::threads::split_batch(images, 0, |split| {
        split.run_ranges(images, |i| {
            // SAFETY: image i is one item of the split, which takes chunk i once.
            let out = unsafe { outs.take(i) };
            let v = &v[i * per * inner..(i + 1) * per * inner];
            crate::kernels::wide(RowSums { v, inner, mean, out });
        })
    });
    out
}

/// Reduces `x` over `axes` (already normalized).
fn reduce(x: &CTensor, op: Red, ty: Ty, axes: &[usize], keepdims: bool) -> CResult<CTensor> {
    let (moved, outer, inner, out) = rows(x, axes, keepdims)?;
    // Sums and means of float and double rows (a global average pool written as ReduceMean):
    // read in place, with no copy to f64 first, split by images where the batch axis is kept
    // (the first of `moved`'s).
    if matches!(op, Red::Sum | Red::Mean) && inner > 0 {
        let mean = op == Red::Mean;
        let images = if x.rank() > 1 && !axes.contains(&0) { x.dims()[0] } else { 1 };
        match moved.dtype() {
            CDType::F32 => {
                let o = with_values(&moved, |v: &[f32]| row_sums(v, inner, mean, images))?;
                return make(o, &out);
            }
            CDType::F64 => {
                let o = with_values(&moved, |v: &[f64]| row_sums(v, inner, mean, images))?;
                return make(o, &out);
            }
            _ => {}
        }
    }
    if ty.is_float() {
        let v: Vec<f64> = values(&moved.to_dtype(CDType::F64)?)?;
        let o: Vec<f64> = (0..outer).map(|i| fold_f64(op, &v[i * inner..(i + 1) * inner])).collect();
        make(o, &out)?.to_dtype(x.dtype())
    } else {
        let v = ints(&moved)?;
        let o: Vec<i64> = (0..outer).map(|i| fold_i64(op, &v[i * inner..(i + 1) * inner], ty)).collect();
        make(o, &out)?.to_dtype(x.dtype())
    }
}

/// The family these operators are listed under.
const FAMILY: &str = "reduction";

/// Registers the reductions.
pub(super) fn register(r: &mut Registry) -> Result<(), RegistryError> {
    r.add_all([
        OpDef::tensor(FAMILY, "ReduceSum", build_reduce),
        OpDef::tensor(FAMILY, "ReduceMean", build_reduce),
        OpDef::tensor(FAMILY, "ReduceMax", build_reduce),
        OpDef::tensor(FAMILY, "ReduceMin", build_reduce),
        OpDef::tensor(FAMILY, "ReduceProd", build_reduce),
        OpDef::tensor(FAMILY, "ReduceL1", build_reduce),
        OpDef::tensor(FAMILY, "ReduceL2", build_reduce),
        OpDef::tensor(FAMILY, "ReduceLogSum", build_reduce),
        OpDef::tensor(FAMILY, "ReduceLogSumExp", build_reduce),
        OpDef::tensor(FAMILY, "ReduceSumSquare", build_reduce),
        OpDef::tensor(FAMILY, "ArgMax", build_arg),
        OpDef::tensor(FAMILY, "ArgMin", build_arg),
    ])
}

/// Builds `ArgMax` and `ArgMin`.
fn build_arg(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    arg(ctx.node.op_type.as_str(), ctx)
}

/// Builds the `Reduce*` operators.
fn build_reduce(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    let op = ctx.node.op_type.as_str();
    let red = match op {
        "ReduceSum" => Red::Sum,
        "ReduceMean" => Red::Mean,
        "ReduceMax" => Red::Max,
        "ReduceMin" => Red::Min,
        "ReduceProd" => Red::Prod,
        "ReduceL1" => Red::L1,
        "ReduceL2" => Red::L2,
        "ReduceLogSum" => Red::LogSum,
        "ReduceLogSumExp" => Red::LogSumExp,
        "ReduceSumSquare" => Red::SumSquare,
        _ => return Err(refuse!("{op} is not a reduction")),
    };
    let float_only = matches!(red, Red::Mean | Red::L2 | Red::LogSum | Red::LogSumExp);
    let t = ctx.ty(0)?;
    let ok = if float_only {
        t.is_float()
    } else if matches!(red, Red::Max | Red::Min) {
        t.is_numeric() || (t == Ty::Bool && ctx.opset >= 20)
    } else {
        t.is_numeric()
    };
    if !ok {
        return Err(refuse!("input 0 is {t}, which {op} does not take here"));
    }
    let since = if red == Red::Sum { 13 } else { 18 };
    let keepdims = ctx.int("keepdims", 1)? != 0;
    let (axes_attr, from_input) = if ctx.opset >= since {
        ctx.known(&["keepdims", "noop_with_empty_axes"])?;
        if ctx.has(1) {
            ctx.ty_where(1, |t| t == Ty::I64, "int64 axes")?;
        }
        (None, true)
    } else {
        ctx.known(&["keepdims", "axes"])?;
        (ctx.ints("axes")?, false)
    };
    let noop = ctx.int("noop_with_empty_axes", 0)? != 0;
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let given: Option<Vec<i64>> =
            if from_input { x.get(1).copied().flatten().map(ints).transpose()? } else { axes_attr.clone() };
        let axes: Vec<usize> = match given {
            Some(v) if !v.is_empty() => {
                let mut n = v.iter().map(|&i| axis(i, a.rank())).collect::<CResult<Vec<_>>>()?;
                n.sort_unstable();
                n.dedup();
                n
            }
            _ if noop => return Ok(vec![a.clone()]),
            _ => (0..a.rank()).collect(),
        };
        Ok(vec![reduce(a, red, t, &axes, keepdims)?])
    });
    Ok((k, vec![t]))
}

fn arg(op: &str, ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["axis", "keepdims", "select_last_index"])?;
    let t = ctx.ty_where(0, Ty::is_numeric, "numbers")?;
    let ax = ctx.int("axis", 0)?;
    let keepdims = ctx.int("keepdims", 1)? != 0;
    let last = ctx.int("select_last_index", 0)? != 0;
    let max = op == "ArgMax";
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let dim = axis(ax, a.rank())?;
        if a.dims()[dim] == 0 {
            bail!("{} over an empty axis", if max { "ArgMax" } else { "ArgMin" });
        }
        let (moved, outer, inner, out) = rows(a, &[dim], keepdims)?;
        let v: Vec<f64> = if t.is_float() {
            values(&moved.to_dtype(CDType::F64)?)?
        } else {
            ints(&moved)?.into_iter().map(|v| v as f64).collect()
        };
        let o: Vec<i64> = (0..outer)
            .map(|i| {
                let row = &v[i * inner..(i + 1) * inner];
                let mut best = 0;
                for (j, &val) in row.iter().enumerate().skip(1) {
                    let better = if max { val > row[best] } else { val < row[best] };
                    if better || (last && val == row[best]) {
                        best = j;
                    }
                }
                best as i64
            })
            .collect();
        Ok(vec![make(o, &out)?])
    });
    Ok((k, vec![Ty::I64]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Row sums the plain way: in order, in f64.
    fn in_order(v: &[f64], inner: usize, mean: bool) -> Vec<f64> {
        v.chunks_exact(inner).map(|r| r.iter().sum::<f64>() / if mean { inner as f64 } else { 1.0 }).collect()
    }

    #[test]
    fn row_sums_in_place_agree_with_the_sum_in_order() {
        // Lengths around the eight partial sums, values of mixed sign and size.
        for inner in [1, 3, 7, 8, 9, 16, 63, 64, 65] {
            let outer = 5;
            let v: Vec<f64> = (0..outer * inner)
                .map(|i| ((i * 37 % 101) as f64 - 50.0) * 1.5f64.powi((i % 9) as i32))
                .collect();
            for mean in [false, true] {
                let want = in_order(&v, inner, mean);
                let got = row_sums(&v, inner, mean, 1);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "inner {inner}: {g} vs {w}");
                }
                let v32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                let want32 = in_order(&v32.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(), inner, mean);
                let got32 = row_sums(&v32, inner, mean, 1);
                assert_eq!(got32, want32.iter().map(|&w| w as f32).collect::<Vec<_>>(), "inner {inner}, f32");
            }
        }
        // NaN and infinities reach the sum whatever the lane they fall in.
        let v = [1.0f32, f32::INFINITY, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, f32::NEG_INFINITY, 1.0];
        assert!(row_sums(&v, 10, false, 1)[0].is_nan());
        assert_eq!(row_sums(&v[..8], 8, false, 1)[0], f32::INFINITY);
        let v = [1.0f64, 2.0, f64::NAN, 3.0];
        assert!(row_sums(&v, 4, true, 1)[0].is_nan());
    }

    #[test]
    fn row_sums_split_by_images_are_the_same_bits_at_every_thread_count() {
        use crate::kernels::threads::{with_budget, Budget};
        // Eight images of 32 rows of 64 (the bundled CNN's ReduceMean at batch 8), an image
        // count the rows do not divide into (computed whole), and images with no rows.
        for (images, rows, inner) in [(8, 8 * 32, 64), (3, 3 * 5, 9), (4, 10, 7), (2, 0, 4)] {
            let v: Vec<f32> = (0..rows * inner).map(|i| ((i * 53 % 97) as f32 - 48.0) / 7.0).collect();
            let want = row_sums(&v, inner, true, 1);
            for threads in [1, 2, 3] {
                let budget = Budget::new(threads).unwrap();
                let got = with_budget(Some(&budget), || row_sums(&v, inner, true, images));
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{images} images, {threads} threads");
            }
            let exact: Vec<f32> = v
                .chunks_exact(inner)
                .map(|r| (r.iter().map(|&x| f64::from(x)).sum::<f64>() / inner as f64) as f32)
                .collect();
            assert_eq!(want, exact, "{images} images: the f64 mean of each row");
        }
    }

    #[test]
    fn reduce_mean_over_trailing_axes_keeps_shape_and_dtype() {
        let x = CTensor::from_vec(
            (0..2 * 3 * 4 * 5).map(|i| i as f32).collect::<Vec<_>>(),
            (2, 3, 4, 5),
            &Device::Cpu,
        )
        .unwrap();
        let got = reduce(&x, Red::Mean, Ty::F32, &[2, 3], false).unwrap();
        assert_eq!(got.dims(), &[2, 3]);
        assert_eq!(got.dtype(), CDType::F32);
        // Plane i holds 20i .. 20i + 19: its mean is 20i + 9.5.
        let want: Vec<f32> = (0..6).map(|i| 20.0 * i as f32 + 9.5).collect();
        assert_eq!(got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want);
        let kept = reduce(&x.to_dtype(CDType::F64).unwrap(), Red::Sum, Ty::F64, &[1, 3], true).unwrap();
        assert_eq!(kept.dims(), &[2, 1, 4, 1]);
        // Over channels c and width w at height h of batch b: Σ (60b + 20c + 5h + w).
        let sums: Vec<f64> = kept.flatten_all().unwrap().to_vec1().unwrap();
        let want: Vec<f64> = (0..2)
            .flat_map(|b| {
                (0..4).map(move |h| {
                    (0..3).flat_map(|c| (0..5).map(move |w| (60 * b + 20 * c + 5 * h + w) as f64)).sum()
                })
            })
            .collect();
        assert_eq!(sums, want);
    }
}
