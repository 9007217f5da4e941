//! A sliding window's geometry (convolutions and pooling): padding resolved from `auto_pad` or
//! `pads`, output sizes, and per-shape tables of what each output position reads.

use super::strides;
use candle_core::{bail, Result as CResult};

/// Per-spatial-dim padding, resolved from `auto_pad` or `pads`.
#[derive(Clone)]
pub(crate) struct Window {
    pub(crate) kernel: Vec<usize>,
    pub(crate) strides: Vec<usize>,
    pub(crate) dilations: Vec<usize>,
    pub(crate) pads: Option<Vec<usize>>,
    pub(crate) auto_pad: String,
    pub(crate) ceil: bool,
}

impl Window {
    /// This window with its kernel shape taken from weights of shape `wdims` (and unit strides
    /// and dilations where none were given), checked.
    pub(crate) fn for_weights(&self, wdims: &[usize]) -> CResult<Window> {
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
    pub(crate) fn resolve(&self, input: &[usize]) -> CResult<(Vec<usize>, Vec<usize>, Vec<usize>)> {
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
pub(crate) const PAD: u32 = u32::MAX;

/// One kernel position's reads when output position `pp` reads input offset `pp + shift`
/// wherever it reads at all, as in a stride-1 convolution whose output has its input's size
/// ("same" padding): one block copy of `[from, to)`, zeros outside it, and zeros at `holes`
/// (the positions inside the block whose window falls in the padding, such as a row's first
/// column for a window reaching left). This replaces a copy per output row with one per plane.
pub(crate) struct Shifted {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) shift: isize,
    pub(crate) holes: Vec<u32>,
}

impl Shifted {
    /// The block form of the reads `row` (offsets or [`PAD`]) of a plane of `plane`
    /// elements, when they have one and it leaves at most one position in 8 to patch.
    pub(crate) fn find(row: &[u32], plane: usize) -> Option<Shifted> {
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
pub(crate) struct Geometry {
    pub(crate) out: Vec<usize>,
    /// Output positions.
    pub(crate) p: usize,
    /// Kernel positions.
    pub(crate) k: usize,
    /// `[k][p]`: the input offset within a plane, or [`PAD`].
    pub(crate) by_k: Vec<u32>,
    /// Per kernel position, runs of consecutive output positions reading input offsets a
    /// constant step apart: `(first output position, first input offset, length, step)` (step
    /// 1 for a stride-1 window, the stride for a strided one, so that a strided window's
    /// output row is one run rather than a gather element by element).
    pub(crate) runs: Vec<Vec<(usize, usize, usize, usize)>>,
    /// Per kernel position, the same reads as one block copy where that is what they are.
    pub(crate) shifted: Vec<Option<Shifted>>,
    /// Per output position, the window positions inside the input.
    pub(crate) inside: Vec<usize>,
    /// Per output position, the window positions inside the input plus its explicit padding.
    pub(crate) padded: Vec<usize>,
    /// Padding before each spatial dim's first position.
    pub(crate) begin: Vec<usize>,
    /// Padding after each spatial dim's last position.
    pub(crate) end: Vec<usize>,
}

pub(crate) fn geometry(w: &Window, input: &[usize]) -> CResult<Geometry> {
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
    Ok(Geometry { out, p, k, by_k, runs, shifted, inside, padded, begin, end })
}

/// The geometries a kernel has computed, by input shape (the last few kept), and, for a
/// convolution on one of the direct kernels, the last weights it packed and for which kernel.
#[derive(Default)]
pub(crate) struct GeometryCache(
    std::sync::Mutex<Vec<(Vec<usize>, std::sync::Arc<Geometry>)>>,
    #[allow(clippy::type_complexity)]
    std::sync::Mutex<Option<(candle_core::TensorId, &'static str, std::sync::Arc<Vec<f32>>)>>,
);

impl GeometryCache {
    pub(crate) fn get(&self, w: &Window, input: &[usize]) -> CResult<std::sync::Arc<Geometry>> {
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

    /// The weights tensor `id`'s packed form for the kernel `layout` names: the one kept when
    /// it is that tensor's in that layout (a model's constant weights are the same tensor every
    /// run), else `pack()`'s, which is then kept. The layout is part of the key because the
    /// kernel a convolution takes depends on its input's size, which can change from run to
    /// run.
    pub(crate) fn packed(
        &self,
        id: candle_core::TensorId,
        layout: &'static str,
        pack: impl FnOnce() -> Vec<f32>,
    ) -> std::sync::Arc<Vec<f32>> {
        if let Ok(kept) = self.1.lock() {
            if let Some((_, _, packed)) = kept.as_ref().filter(|(k, l, _)| *k == id && *l == layout) {
                return packed.clone();
            }
        }
        let packed = std::sync::Arc::new(pack());
        if let Ok(mut kept) = self.1.lock() {
            *kept = Some((id, layout, packed.clone()));
        }
        packed
    }
}
