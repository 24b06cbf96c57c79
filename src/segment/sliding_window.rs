//! nnU-Net's sliding-window prediction (shared/docs/nnunet-inference.md §4), with the network as
//! a parameter so that tests can feed nnU-Net's own network outputs.
//!
//! * Arrays are (1, C, D, H, W) = nnU-Net's (C, X, Y, Z) after `transpose_forward`.
//! * An image smaller than the patch along an axis is zero-padded to the patch (`pad_lo =
//!   diff / 2`), and the logits are cropped back.
//! * Tile starts per axis: `n = ceil((image − patch) / (patch · step)) + 1`, start `i` =
//!   round-half-even(i · (image − patch) / (n − 1)); tiles are visited axis 0 outermost.
//! * Importance map ([`gaussian_importance`]): bit-exact with nnU-Net's `compute_gaussian` (f64
//!   kernels normalised with numpy's pairwise sum, scaled to max 10, rounded f64 → f32 → f16,
//!   zeros replaced by the smallest non-zero value).
//! * Mirroring TTA: the network on the tile, plus, for every non-empty subset of the allowed
//!   axes in `itertools.combinations` order, the flipped-back prediction of the flipped tile;
//!   summed in f32 in that order and divided by the count.
//! * Aggregation in f16 exactly as torch does it (`engine::cpu_pointwise::accumulate_patch`,
//!   `normalize_accumulated`), or f32 when the plan says so; an infinite logit is an error.
//! * Folds: f16 logits summed in order, `f16(f32(a) + f32(b))`, then `f16(f32(sum) / n)`.

use half::f16;
use std::borrow::Cow;

use crate::engine::{cpu_pointwise, Element, EngineError, Tensor, TensorF16};
use crate::segment::plan::{OutputHeads, SlidingWindow};

/// Why a sliding-window prediction failed.
#[derive(Debug, thiserror::Error)]
pub enum SlidingWindowError {
    #[error("network on tile {tile}: {message}")]
    Network { tile: usize, message: String },
    #[error("the network returned shape {got:?} for a tile of {want:?}")]
    TileShape { got: [usize; 5], want: [usize; 5] },
    #[error("input shape {0:?}: need (1, C, D, H, W) with non-empty axes")]
    Input([usize; 5]),
    #[error("an aggregated logit is infinite (f16 overflow), as nnU-Net would refuse")]
    Infinite,
    #[error("sliding-window settings: {0}")]
    Settings(String),
    #[error("fold logits have different shapes")]
    FoldShapes,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Tile start positions along one axis (`image ≥ patch`, `step` in (0, 1]).
pub fn tile_starts(image: usize, patch: usize, step: f64) -> Vec<usize> {
    if image <= patch {
        return vec![0];
    }
    let target = patch as f64 * step;
    let span = (image - patch) as f64;
    let n = (span / target).ceil() as usize + 1;
    if n <= 1 {
        return vec![0];
    }
    let actual = span / (n - 1) as f64;
    (0..n)
        .map(|i| (actual * i as f64).round_ties_even() as usize)
        .collect()
}

pub use crate::numeric::pairwise_sum;

/// scipy's 1-D Gaussian kernel of `gaussian_filter` (truncate 4) applied to a delta at
/// `len / 2`: `phi(i − c) / Σ phi` inside the radius, 0 outside.
fn gaussian_1d(len: usize, sigma: f64) -> Vec<f64> {
    let radius = (4.0 * sigma + 0.5) as i64;
    let phi: Vec<f64> = (-radius..=radius)
        .map(|x| (-0.5 / (sigma * sigma) * (x * x) as f64).exp())
        .collect();
    let sum = pairwise_sum(&phi);
    let c = (len / 2) as i64;
    (0..len as i64)
        .map(|i| {
            let x = i - c;
            if x.abs() <= radius {
                phi[(x + radius) as usize] / sum
            } else {
                0.0
            }
        })
        .collect()
}

/// nnU-Net's `compute_gaussian(patch, sigma_scale, value_scaling_factor)` as f16, (D, H, W)
/// order, W fastest.
pub fn gaussian_importance(patch: [usize; 3], sigma_scale: f64, value_scale: f64) -> Vec<f16> {
    let k: Vec<Vec<f64>> = (0..3)
        .map(|a| gaussian_1d(patch[a], patch[a] as f64 * sigma_scale))
        .collect();
    let mut g = Vec::with_capacity(patch.iter().product());
    for &a in &k[0] {
        for &b in &k[1] {
            for &c in &k[2] {
                g.push((a * b) * c);
            }
        }
    }
    let max = g.iter().copied().fold(f64::MIN, f64::max);
    let scale = max / value_scale;
    let mut h: Vec<f16> = g
        .iter()
        .map(|v| f16::from_f32((v / scale) as f32))
        .collect();
    let min_nonzero = h
        .iter()
        .filter(|v| v.to_f32() != 0.0)
        .copied()
        .fold(f16::INFINITY, f16::min);
    for v in &mut h {
        if v.to_f32() == 0.0 {
            *v = min_nonzero;
        }
    }
    h
}

/// Non-empty subsets of `axes` in `itertools.combinations` order (by size, then lexicographic).
pub fn mirror_combinations(axes: &[usize]) -> Vec<Vec<usize>> {
    let n = axes.len();
    let mut out = Vec::new();
    for size in 1..=n {
        let mut idx: Vec<usize> = (0..size).collect();
        loop {
            out.push(idx.iter().map(|&i| axes[i]).collect());
            // next combination
            let mut i = size;
            let mut advanced = false;
            while i > 0 {
                i -= 1;
                if idx[i] < n - size + i {
                    idx[i] += 1;
                    for j in i + 1..size {
                        idx[j] = idx[j - 1] + 1;
                    }
                    advanced = true;
                    break;
                }
            }
            if !advanced {
                break;
            }
        }
    }
    out
}

/// `t` reversed along the spatial axes `axes` (0 = D, 1 = H, 2 = W).
pub fn flip(t: &Tensor, axes: &[usize]) -> Tensor {
    let s = t.shape();
    let f = [0, 1, 2].map(|a| axes.contains(&a));
    Tensor::from_fn(s, |[n, c, d, h, w]| {
        let d = if f[0] { s[2] - 1 - d } else { d };
        let h = if f[1] { s[3] - 1 - h } else { h };
        let w = if f[2] { s[4] - 1 - w } else { w };
        t.at([n, c, d, h, w])
    })
}

/// The network's prediction for one tile with mirroring over `mirror_axes` (§4.4), f32.
pub fn predict_with_mirroring<E: std::fmt::Display>(
    tile: &Tensor,
    mirror_axes: &[usize],
    net: &mut dyn FnMut(&Tensor) -> Result<Tensor, E>,
) -> Result<Tensor, String> {
    let mut p = net(tile).map_err(|e| e.to_string())?;
    let combos = mirror_combinations(mirror_axes);
    if combos.is_empty() {
        return Ok(p);
    }
    for axes in &combos {
        let q = flip(&net(&flip(tile, axes)).map_err(|e| e.to_string())?, axes);
        if q.shape() != p.shape() {
            return Err(format!("mirrored prediction shape {:?}", q.shape()));
        }
        for (a, b) in p.data_mut().iter_mut().zip(q.data()) {
            *a += b;
        }
    }
    let n = (combos.len() + 1) as f32;
    for a in p.data_mut() {
        *a /= n;
    }
    Ok(p)
}

fn crop(t: &Tensor, start: [usize; 3], size: [usize; 3]) -> Result<Tensor, SlidingWindowError> {
    Ok(cpu_pointwise::crop_spatial(t, start, size)?)
}

fn crop_f16(
    t: &TensorF16,
    start: [usize; 3],
    size: [usize; 3],
) -> Result<TensorF16, SlidingWindowError> {
    Ok(cpu_pointwise::crop_spatial(t, start, size)?)
}

/// The tiles of one prediction and where their results go.
struct Tiles<'a> {
    padded: &'a Tensor,
    starts: &'a [Vec<usize>],
    patch: [usize; 3],
    out_shape: [usize; 5],
    want: [usize; 5],
    mirror_axes: &'a [usize],
    total: usize,
}

impl Tiles<'_> {
    /// Runs every tile (axis 0 outermost) and aggregates with storage `T`.
    fn run<T: Element, E: std::fmt::Display>(
        &self,
        gaussian: &[T],
        net: &mut dyn FnMut(&Tensor) -> Result<Tensor, E>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Tensor<T>, SlidingWindowError> {
        let mut acc = Tensor::<T>::zeros(self.out_shape);
        let spatial = self.out_shape[2] * self.out_shape[3] * self.out_shape[4];
        let mut wsum = vec![T::default(); spatial];
        let mut tile = 0;
        for &a in &self.starts[0] {
            for &b in &self.starts[1] {
                for &c in &self.starts[2] {
                    let x = crop(self.padded, [a, b, c], self.patch)?;
                    let p = predict_with_mirroring(&x, self.mirror_axes, net)
                        .map_err(|message| SlidingWindowError::Network { tile, message })?;
                    if p.shape() != self.want {
                        return Err(SlidingWindowError::TileShape {
                            got: p.shape(),
                            want: self.want,
                        });
                    }
                    cpu_pointwise::accumulate_patch(&mut acc, &mut wsum, &p, gaussian, [a, b, c])?;
                    tile += 1;
                    progress(tile, self.total);
                }
            }
        }
        Ok(cpu_pointwise::normalize_accumulated_in_place(acc, &wsum)?)
    }
}

/// One sliding-window prediction of `data` (1, C, D, H, W) → logits (1, heads, D, H, W) in
/// f16 (nnU-Net's `predict_sliding_window_return_logits`). `mirror_axes` empty = no TTA.
/// `progress(done, total)` is called after every tile.
pub fn predict_sliding_window<E: std::fmt::Display>(
    data: &Tensor,
    window: &SlidingWindow,
    heads: usize,
    mirror_axes: &[usize],
    net: &mut dyn FnMut(&Tensor) -> Result<Tensor, E>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<TensorF16, SlidingWindowError> {
    let s = data.shape();
    if s[0] != 1 || s[1] == 0 || s[2..].contains(&0) {
        return Err(SlidingWindowError::Input(s));
    }
    let patch = window.patch_size;
    if patch.contains(&0) || !(window.step_size > 0.0 && window.step_size <= 1.0) {
        return Err(SlidingWindowError::Settings(format!(
            "patch {patch:?} and step {} (need a non-empty patch and 0 < step ≤ 1)",
            window.step_size
        )));
    }
    let img = [s[2], s[3], s[4]];
    // Pad to at least the patch (constant 0).
    let padded_size = [0, 1, 2].map(|a| img[a].max(patch[a]));
    let pad_lo = [0, 1, 2].map(|a| (padded_size[a] - img[a]) / 2);
    let padded = if padded_size == img {
        Cow::Borrowed(data)
    } else {
        let mut p = Tensor::zeros([1, s[1], padded_size[0], padded_size[1], padded_size[2]]);
        for c in 0..s[1] {
            for d in 0..img[0] {
                for h in 0..img[1] {
                    for w in 0..img[2] {
                        let o = p.offset([0, c, d + pad_lo[0], h + pad_lo[1], w + pad_lo[2]]);
                        p.data_mut()[o] = data.at([0, c, d, h, w]);
                    }
                }
            }
        }
        Cow::Owned(p)
    };
    let starts: Vec<Vec<usize>> = (0..3)
        .map(|a| tile_starts(padded_size[a], patch[a], window.step_size))
        .collect();
    let total = starts[0].len() * starts[1].len() * starts[2].len();
    let gaussian = gaussian_importance(
        patch,
        window.gaussian_sigma_scale,
        window.gaussian_value_scale,
    );
    let out_shape = [1, heads, padded_size[0], padded_size[1], padded_size[2]];
    let want = [1, heads, patch[0], patch[1], patch[2]];
    let tiles = Tiles {
        padded: padded.as_ref(),
        starts: &starts,
        patch,
        out_shape,
        want,
        mirror_axes,
        total,
    };
    let logits = if window.accumulate_f16 {
        tiles.run(&gaussian, net, progress)?
    } else {
        let g32: Vec<f32> = gaussian.iter().map(|g| g.to_f32()).collect();
        tiles.run(&g32, net, progress)?.to_f16()
    };
    if logits.data().iter().any(|v| v.is_infinite()) {
        return Err(SlidingWindowError::Infinite);
    }
    Ok(if padded_size == img {
        logits
    } else {
        crop_f16(&logits, pad_lo, img)?
    })
}

/// nnU-Net's fold ensemble of f16 logits (§4.6).
pub fn average_folds(folds: Vec<TensorF16>) -> Result<TensorF16, SlidingWindowError> {
    let mut avg = FoldAverage::default();
    for f in folds {
        avg.add(f)?;
    }
    avg.finish()
}

/// [`average_folds`] one fold at a time, so that only the running sum and the newest fold's
/// logits are held: `sum += fold` in f16 (each addition rounded, as torch adds half tensors),
/// then `/ n` in f16.
#[derive(Debug, Default)]
pub struct FoldAverage {
    sum: Option<TensorF16>,
    n: usize,
}

impl FoldAverage {
    /// Adds one fold's logits (same shape as the first).
    pub fn add(&mut self, fold: TensorF16) -> Result<(), SlidingWindowError> {
        match &mut self.sum {
            None => self.sum = Some(fold),
            Some(sum) => {
                if fold.shape() != sum.shape() {
                    return Err(SlidingWindowError::FoldShapes);
                }
                for (a, b) in sum.data_mut().iter_mut().zip(fold.data()) {
                    *a = f16::from_f32(a.to_f32() + b.to_f32());
                }
            }
        }
        self.n += 1;
        Ok(())
    }

    /// The average (an error when no fold was added).
    pub fn finish(self) -> Result<TensorF16, SlidingWindowError> {
        let mut sum = self.sum.ok_or(SlidingWindowError::FoldShapes)?;
        if self.n > 1 {
            let n = self.n as f32;
            for a in sum.data_mut() {
                *a = f16::from_f32(a.to_f32() / n);
            }
        }
        Ok(sum)
    }
}

/// Label map from f16 logits (1, heads, …) (§2): argmax (first maximum) for label heads;
/// for regions `sigmoid(f32(logit)) > 0.5` in class order, later regions overwriting.
pub fn decode_labels(logits: &TensorF16, heads: &OutputHeads) -> Vec<u16> {
    let s = logits.shape();
    let len = logits.spatial_len();
    let mut out = vec![0u16; len];
    match heads {
        OutputHeads::Labels { .. } => {
            let mut best: Vec<f32> = logits.channel(0, 0).iter().map(|v| v.to_f32()).collect();
            for c in 1..s[1] {
                for ((o, b), v) in out
                    .iter_mut()
                    .zip(best.iter_mut())
                    .zip(logits.channel(0, c))
                {
                    let v = v.to_f32();
                    if v > *b {
                        *b = v;
                        *o = c as u16;
                    }
                }
            }
        }
        OutputHeads::Regions { class_order, .. } => {
            for (c, label) in class_order.iter().enumerate().take(s[1]) {
                for (o, v) in out.iter_mut().zip(logits.channel(0, c)) {
                    let x = v.to_f32();
                    if 1.0 / (1.0 + (-x).exp()) > 0.5 {
                        *o = *label;
                    }
                }
            }
        }
    }
    out
}
