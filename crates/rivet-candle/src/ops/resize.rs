//! Resize (opset 11 and later) and Upsample: separable N-D interpolation (nearest, linear,
//! cubic), one axis at a time, computed in f64, following the coordinate rules of ONNX's
//! reference implementation.

use candle_core::{bail, DType as CDType, Result as CResult, Tensor as CTensor};

use super::registry::{OpDef, Registry, RegistryError};
use super::{ints, make, req, values, Built, Kernel, NodeCtx, Refusal};
use crate::ty::Ty;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, PartialEq)]
enum Coord {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfCropAndResize,
}

#[derive(Clone, Copy, PartialEq)]
enum Nearest {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

#[derive(Clone)]
struct Resize {
    mode: Mode,
    coord: Coord,
    nearest: Nearest,
    cubic_a: f64,
    exclude_outside: bool,
    extrapolation: f64,
    axes: Option<Vec<i64>>,
    policy: u8, // 0 stretch, 1 not_larger, 2 not_smaller
}

/// The taps (input index, weight) of each output coordinate on one axis; `None` means the
/// extrapolation value (tf_crop_and_resize outside the input).
fn taps(
    r: &Resize,
    input: usize,
    output: usize,
    scale: f64,
    roi: (f64, f64),
) -> Vec<Option<Vec<(usize, f64)>>> {
    let (inw, outw) = (input as f64, scale * input as f64);
    (0..output)
        .map(|x| {
            let x = x as f64;
            let ori = match r.coord {
                Coord::AlignCorners => {
                    if outw == 1.0 {
                        0.0
                    } else {
                        x * (inw - 1.0) / (outw - 1.0)
                    }
                }
                Coord::Asymmetric => x / scale,
                Coord::TfCropAndResize => {
                    let o = if outw == 1.0 {
                        (roi.1 - roi.0) * (inw - 1.0) / 2.0
                    } else {
                        x * (roi.1 - roi.0) * (inw - 1.0) / (outw - 1.0)
                    } + roi.0 * (inw - 1.0);
                    if o < 0.0 || o > inw - 1.0 {
                        return None;
                    }
                    o
                }
                Coord::PytorchHalfPixel => {
                    if outw == 1.0 {
                        -0.5
                    } else {
                        (x + 0.5) / scale - 0.5
                    }
                }
                Coord::HalfPixel => (x + 0.5) / scale - 0.5,
                Coord::HalfPixelSymmetric => {
                    let adjustment = output as f64 / outw;
                    let offset = inw / 2.0 * (1.0 - adjustment);
                    offset + (x + 0.5) / scale - 0.5
                }
            };
            // The left neighbour and the ratio in (0, 1], as the reference picks them.
            let base = ori.ceil() - 1.0;
            let ratio = ori - base;
            let (first, coeffs): (f64, Vec<f64>) = match r.mode {
                Mode::Nearest => {
                    let right = match r.nearest {
                        _ if ratio == 1.0 => true,
                        Nearest::RoundPreferFloor => ratio > 0.5,
                        Nearest::RoundPreferCeil => ratio >= 0.5,
                        Nearest::Floor => false,
                        Nearest::Ceil => true,
                    };
                    (base, if right { vec![0.0, 1.0] } else { vec![1.0, 0.0] })
                }
                Mode::Linear => (base, vec![1.0 - ratio, ratio]),
                Mode::Cubic => {
                    let a = r.cubic_a;
                    let s = 1.0 - ratio;
                    (
                        base - 1.0,
                        vec![
                            ((a * (ratio + 1.0) - 5.0 * a) * (ratio + 1.0) + 8.0 * a) * (ratio + 1.0)
                                - 4.0 * a,
                            ((a + 2.0) * ratio - (a + 3.0)) * ratio * ratio + 1.0,
                            ((a + 2.0) * s - (a + 3.0)) * s * s + 1.0,
                            ((a * (s + 1.0) - 5.0 * a) * (s + 1.0) + 8.0 * a) * (s + 1.0) - 4.0 * a,
                        ],
                    )
                }
            };
            let mut t: Vec<(i64, f64)> =
                coeffs.iter().enumerate().map(|(i, &c)| (first as i64 + i as i64, c)).collect();
            if r.exclude_outside {
                for (i, c) in t.iter_mut() {
                    if *i < 0 || *i >= input as i64 {
                        *c = 0.0;
                    }
                }
                let sum: f64 = t.iter().map(|p| p.1).sum();
                for p in t.iter_mut() {
                    p.1 /= sum;
                }
            }
            Some(t.into_iter().map(|(i, c)| (i.clamp(0, input as i64 - 1) as usize, c)).collect())
        })
        .collect()
}

/// Resamples `v` (of `dims`) along `ax` with `taps`.
fn resample(v: &[f64], dims: &[usize], ax: usize, taps: &[Option<Vec<(usize, f64)>>], fill: f64) -> Vec<f64> {
    let d = dims[ax];
    let outer: usize = dims[..ax].iter().product();
    let inner: usize = dims[ax + 1..].iter().product();
    let o = taps.len();
    let mut out = vec![0.0; outer * o * inner];
    for a in 0..outer {
        for (j, t) in taps.iter().enumerate() {
            let dst = &mut out[(a * o + j) * inner..(a * o + j + 1) * inner];
            match t {
                None => dst.iter_mut().for_each(|x| *x = fill),
                Some(t) => {
                    for &(i, w) in t {
                        if w == 0.0 {
                            continue;
                        }
                        let src = &v[(a * d + i) * inner..(a * d + i + 1) * inner];
                        for (x, s) in dst.iter_mut().zip(src) {
                            *x += w * s;
                        }
                    }
                }
            }
        }
    }
    out
}

fn run(
    r: &Resize,
    x: &CTensor,
    roi: Option<Vec<f64>>,
    scales: Option<Vec<f64>>,
    sizes: Option<Vec<i64>>,
) -> CResult<CTensor> {
    let rank = x.rank();
    let axes: Vec<usize> = match &r.axes {
        Some(a) => a.iter().map(|&i| super::axis(i, rank)).collect::<CResult<_>>()?,
        None => (0..rank).collect(),
    };
    let n = axes.len();
    let dims = x.dims().to_vec();
    let mut scale = vec![1.0; rank];
    let mut out = dims.clone();
    match (scales, sizes) {
        (Some(s), None) => {
            if s.len() != n {
                bail!("{} scales for {n} axes", s.len());
            }
            for (i, &a) in axes.iter().enumerate() {
                if s[i].is_nan() || s[i] <= 0.0 {
                    bail!("scale {} is not positive", s[i]);
                }
                scale[a] = s[i];
                out[a] = (s[i] * dims[a] as f64) as usize;
            }
        }
        (None, Some(z)) => {
            if z.len() != n {
                bail!("{} sizes for {n} axes", z.len());
            }
            for (i, &a) in axes.iter().enumerate() {
                if z[i] < 0 {
                    bail!("size {} is negative", z[i]);
                }
                out[a] = z[i] as usize;
                scale[a] = z[i] as f64 / dims[a] as f64;
            }
            if r.policy != 0 {
                let pick = axes.iter().map(|&a| scale[a]);
                let s =
                    if r.policy == 1 { pick.fold(f64::INFINITY, f64::min) } else { pick.fold(0.0, f64::max) };
                for &a in &axes {
                    scale[a] = s;
                    out[a] = (s * dims[a] as f64 + 0.5) as usize;
                }
            }
        }
        _ => bail!("exactly one of scales and sizes must be given"),
    }
    let roi_of = |a: usize| -> CResult<(f64, f64)> {
        match &roi {
            Some(v) if !v.is_empty() => {
                let (k, i) = match axes.iter().position(|&b| b == a) {
                    Some(i) => (n, i),
                    None => return Ok((0.0, 1.0)),
                };
                if v.len() != 2 * k {
                    bail!("roi of {} values for {k} axes", v.len());
                }
                Ok((v[i], v[k + i]))
            }
            _ if r.coord == Coord::TfCropAndResize => bail!("tf_crop_and_resize needs roi"),
            _ => Ok((0.0, 1.0)),
        }
    };
    if dims.contains(&0) {
        bail!("Resize of an empty tensor");
    }
    super::check_size(&out, 8)?;
    let mut v: Vec<f64> = values(&x.to_dtype(CDType::F64)?)?;
    let mut cur = dims.clone();
    for a in 0..rank {
        if out[a] == cur[a] && scale[a] == 1.0 && r.coord != Coord::TfCropAndResize {
            continue;
        }
        let t = taps(r, cur[a], out[a], scale[a], roi_of(a)?);
        v = resample(&v, &cur, a, &t, r.extrapolation);
        cur[a] = out[a];
    }
    make(v, &cur)?.to_dtype(x.dtype())
}

fn floats_of(t: Option<&CTensor>) -> CResult<Option<Vec<f64>>> {
    t.filter(|t| t.elem_count() > 0).map(|t| values::<f64>(&t.to_dtype(CDType::F64)?)).transpose()
}

/// The family these operators are listed under.
const FAMILY: &str = "resize";

/// Registers the resize operators.
pub(super) fn register(r: &mut Registry) -> Result<(), RegistryError> {
    r.add_all([
        OpDef::tensor(FAMILY, "GridSample", build_grid_sample),
        OpDef::tensor(FAMILY, "Resize", build_resize).since(11),
        OpDef::tensor(FAMILY, "Upsample", build_upsample),
    ])
}

/// Builds `GridSample`.
fn build_grid_sample(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&["align_corners", "mode", "padding_mode"])?;
    let t = ctx.ty_where(0, |t| matches!(t, Ty::F32 | Ty::F64), "float and double")?;
    let g = ctx.ty_where(1, |t| matches!(t, Ty::F32 | Ty::F64), "a float or double grid")?;
    let mode = match ctx.string("mode")?.as_deref().unwrap_or("linear") {
        "linear" | "bilinear" => GridMode::Linear,
        "nearest" => GridMode::Nearest,
        "cubic" | "bicubic" => GridMode::Cubic,
        other => return Err(refuse!("mode \"{other}\" is not supported")),
    };
    let padding = match ctx.string("padding_mode")?.as_deref().unwrap_or("zeros") {
        "zeros" => GridPad::Zeros,
        "border" => GridPad::Border,
        "reflection" => GridPad::Reflection,
        other => return Err(refuse!("padding_mode \"{other}\" is not supported")),
    };
    let align = ctx.int("align_corners", 0)? != 0;
    let k: Kernel =
        Box::new(move |x| Ok(vec![grid_sample(req(x, 0)?, req(x, 1)?, mode, padding, align, g)?]));
    Ok((k, vec![t]))
}

/// Builds `Resize`.
fn build_resize(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    ctx.known(&[
        "mode",
        "coordinate_transformation_mode",
        "nearest_mode",
        "cubic_coeff_a",
        "exclude_outside",
        "extrapolation_value",
        "antialias",
        "axes",
        "keep_aspect_ratio_policy",
    ])?;
    let t = ctx.ty_where(0, Ty::is_float, "floats")?;
    if ctx.int("antialias", 0)? != 0 {
        return Err("antialias=1 is not supported".into());
    }
    let mode = match ctx.string("mode")?.as_deref() {
        None | Some("nearest") => Mode::Nearest,
        Some("linear") => Mode::Linear,
        Some("cubic") => Mode::Cubic,
        Some(m) => return Err(refuse!("mode \"{m}\" is not supported")),
    };
    let coord = match ctx.string("coordinate_transformation_mode")?.as_deref() {
        None | Some("half_pixel") => Coord::HalfPixel,
        Some("half_pixel_symmetric") => Coord::HalfPixelSymmetric,
        Some("pytorch_half_pixel") => Coord::PytorchHalfPixel,
        Some("align_corners") => Coord::AlignCorners,
        Some("asymmetric") => Coord::Asymmetric,
        Some("tf_crop_and_resize") => Coord::TfCropAndResize,
        Some(m) => return Err(refuse!("coordinate_transformation_mode \"{m}\" is not supported")),
    };
    let nearest = match ctx.string("nearest_mode")?.as_deref() {
        None | Some("round_prefer_floor") => Nearest::RoundPreferFloor,
        Some("round_prefer_ceil") => Nearest::RoundPreferCeil,
        Some("floor") => Nearest::Floor,
        Some("ceil") => Nearest::Ceil,
        Some(m) => return Err(refuse!("nearest_mode \"{m}\" is not supported")),
    };
    let policy = match ctx.string("keep_aspect_ratio_policy")?.as_deref() {
        None | Some("stretch") => 0,
        Some("not_larger") => 1,
        Some("not_smaller") => 2,
        Some(m) => return Err(refuse!("keep_aspect_ratio_policy \"{m}\" is not supported")),
    };
    let r = Resize {
        mode,
        coord,
        nearest,
        cubic_a: ctx.float("cubic_coeff_a", -0.75)? as f64,
        exclude_outside: ctx.int("exclude_outside", 0)? != 0,
        extrapolation: ctx.float("extrapolation_value", 0.0)? as f64,
        axes: ctx.ints("axes")?,
        policy,
    };
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let roi = floats_of(x.get(1).copied().flatten())?;
        let scales = floats_of(x.get(2).copied().flatten())?;
        let sizes = x.get(3).copied().flatten().filter(|t| t.elem_count() > 0).map(ints).transpose()?;
        Ok(vec![run(&r, a, roi, scales, sizes)?])
    });
    Ok((k, vec![t]))
}

/// Builds `Upsample`.
fn build_upsample(ctx: &NodeCtx<'_>) -> Result<Built, Refusal> {
    // As ONNX's reference: nearest with whole-number scales (each element repeated).
    ctx.known(&["mode", "scales"])?;
    let t = ctx.ty_where(0, Ty::is_float, "floats")?;
    if !matches!(ctx.string("mode")?.as_deref(), None | Some("nearest")) {
        return Err("only mode nearest is supported".into());
    }
    let attr = ctx.floats("scales")?.map(|v| v.into_iter().map(f64::from).collect::<Vec<_>>());
    let r = Resize {
        mode: Mode::Nearest,
        coord: Coord::Asymmetric,
        nearest: Nearest::Floor,
        cubic_a: -0.75,
        exclude_outside: false,
        extrapolation: 0.0,
        axes: None,
        policy: 0,
    };
    let k: Kernel = Box::new(move |x| {
        let a = req(x, 0)?;
        let scales = match &attr {
            Some(s) => s.clone(),
            None => floats_of(x.get(1).copied().flatten())?.unwrap_or_default(),
        };
        if scales.iter().any(|s| s.fract() != 0.0 || *s < 1.0) {
            bail!("Upsample scales {scales:?} are not whole numbers of at least 1");
        }
        Ok(vec![run(&r, a, None, Some(scales), None)?])
    });
    Ok((k, vec![t]))
}

#[derive(Clone, Copy, PartialEq)]
enum GridMode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, PartialEq)]
enum GridPad {
    Zeros,
    Border,
    Reflection,
}

/// `x` reflected into `[lo, hi]` (ONNX's reference rule).
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let range = hi - lo;
    if x < lo {
        let d = lo - x;
        let n = (d / range) as i64;
        let r = d - n as f64 * range;
        if n % 2 == 0 {
            lo + r
        } else {
            hi - r
        }
    } else if x > hi {
        let d = x - hi;
        let n = (d / range) as i64;
        let r = d - n as f64 * range;
        if n % 2 == 0 {
            hi - r
        } else {
            lo + r
        }
    } else {
        x
    }
}

/// Keys' cubic weights (alpha -0.75) for the four neighbours of a point `t` past the first.
fn cubic_weights(t: f64) -> [f64; 4] {
    let a = -0.75;
    let w = |x: f64| {
        let x = x.abs();
        if x <= 1.0 {
            ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        } else {
            ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
        }
    };
    [w(t + 1.0), w(t), w(1.0 - t), w(2.0 - t)]
}

/// GridSample over N-D spatial dims: per output point and spatial dim, the input indices and
/// weights (1 for nearest, 2 for linear, 4 for cubic) after padding, then their tensor product.
fn grid_sample(
    x: &CTensor,
    grid: &CTensor,
    mode: GridMode,
    padding: GridPad,
    align: bool,
    grid_ty: Ty,
) -> CResult<CTensor> {
    let nd = x.rank().saturating_sub(2);
    if nd == 0 || grid.rank() != nd + 2 || grid.dims()[0] != x.dims()[0] || grid.dims()[nd + 1] != nd {
        bail!("GridSample of {:?} with grid {:?}", x.dims(), grid.dims());
    }
    let (n, c) = (x.dims()[0], x.dims()[1]);
    let dims = &x.dims()[2..];
    let out_sp = &grid.dims()[1..nd + 1];
    let points: usize = out_sp.iter().product();
    let plane: usize = dims.iter().product();
    let mut out_dims = vec![n, c];
    out_dims.extend_from_slice(out_sp);
    super::check_size(&out_dims, 8)?;
    let xv: Vec<f64> = values(&x.to_dtype(CDType::F64)?)?;
    let gv: Vec<f64> = values(&grid.to_dtype(CDType::F64)?)?;
    let round = |v: f64| if grid_ty == Ty::F32 { v as f32 as f64 } else { v };
    let st = crate::kernels::strides(dims);
    let mut out = vec![0.0; n * c * points];
    for b in 0..n {
        for p in 0..points {
            let g = &gv[(b * points + p) * nd..][..nd];
            // Per spatial dim (grid coordinates are reversed: x first), (offset, weight) pairs;
            // `None` offsets read zero padding.
            let mut taps: Vec<Vec<(Option<usize>, f64)>> = Vec::with_capacity(nd);
            for (i, &len) in dims.iter().enumerate() {
                let v = g[nd - 1 - i];
                let mut pos = if align {
                    round(round(round(v + 1.0) / 2.0) * (len as f64 - 1.0))
                } else {
                    round(round(round(round(v + 1.0) * len as f64) - 1.0) / 2.0)
                };
                if mode == GridMode::Nearest {
                    pos = pos.round_ties_even();
                }
                let (lo, hi) = if align { (0.0, len as f64 - 1.0) } else { (-0.5, len as f64 - 0.5) };
                if pos < lo || pos > hi {
                    match padding {
                        GridPad::Border => pos = pos.clamp(0.0, len as f64 - 1.0),
                        GridPad::Reflection => pos = round(reflect(pos, lo, hi)),
                        GridPad::Zeros => {}
                    }
                }
                let at = |k: i64| -> Option<usize> {
                    let d = len as i64;
                    let k = match padding {
                        GridPad::Zeros => k,
                        GridPad::Border => k.clamp(0, d - 1),
                        GridPad::Reflection => reflect(k as f64, lo, hi) as i64,
                    };
                    (0..d).contains(&k).then(|| k as usize * st[i])
                };
                let f = pos.floor();
                let t = pos - f;
                let f = f as i64;
                taps.push(match mode {
                    GridMode::Nearest => vec![(at(pos as i64), 1.0)],
                    GridMode::Linear => vec![(at(f), 1.0 - t), (at(f + 1), t)],
                    GridMode::Cubic => {
                        let w = cubic_weights(t);
                        (0..4).map(|k| (at(f - 1 + k as i64), w[k])).collect()
                    }
                });
            }
            for ch in 0..c {
                let src = &xv[(b * c + ch) * plane..][..plane];
                // The tensor product of every dim's taps.
                let combos: usize = taps.iter().map(Vec::len).product();
                let mut acc = 0.0;
                for combo in 0..combos {
                    let (mut rest, mut w, mut off) = (combo, 1.0, Some(0usize));
                    for dim_taps in taps.iter().rev() {
                        let (o, wk) = dim_taps[rest % dim_taps.len()];
                        rest /= dim_taps.len();
                        w *= wk;
                        off = off.zip(o).map(|(a, b)| a + b);
                    }
                    if let Some(o) = off {
                        acc += w * src[o];
                    }
                }
                out[(b * c + ch) * points + p] = acc;
            }
        }
    }
    make(out, &out_dims)?.to_dtype(x.dtype())
}
