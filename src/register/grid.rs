//! Working grids and the soft masks sampled onto them.
//!
//! A **working grid** is a box around a label map's kidney (labels {1, 2, 3}): the kidney's
//! index-space bounding box grown by a margin in mm, with the label map's own direction
//! cosines and an isotropic spacing chosen per pyramid level. Its [`WorkGrid::geometry`]
//! follows `crate::volume`'s conventions (LPS mm, origin = centre of voxel 0); it may extend
//! beyond the label map, where everything is background.
//!
//! **Soft masks** ([`label_fractions`]) are f32 tensors (1, C, D, H, W) on a working grid, one
//! channel per structure, each voxel the fraction of the voxel covered by the structure:
//! the mean over `s_i × s_j × s_k` sub-samples (a regular sub-grid; `s` = ceil(2 × working
//! spacing / source spacing), 2…8 per axis) of the source label map's 0/1 indicator at the
//! nearest source voxel (zero outside it). [`gaussian_smooth`] blurs them (separable, zero
//! padding) for the coarse level's capture range.

use rayon::prelude::*;

use super::matrix::{inverse_affine, mul, Mat4};
use super::{RegisterError, Structure};
use crate::engine::Tensor;
use crate::volume::{Geometry, Volume};

/// A working grid: geometry and dims (i, j, k).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkGrid {
    pub geometry: Geometry,
    pub dims: [usize; 3],
}

impl WorkGrid {
    /// Index → LPS mm.
    pub fn to_lps(&self) -> Mat4 {
        self.geometry.affine_lps()
    }

    /// The engine's output size (D, H, W) = (nk, nj, ni).
    pub fn dhw(&self) -> [usize; 3] {
        [self.dims[2], self.dims[1], self.dims[0]]
    }

    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Inclusive index bounds (min, max) of the kidney labels {1, 2, 3}; `None` when there are none.
pub fn kidney_index_bounds(labels: &Volume<u8>) -> Option<([usize; 3], [usize; 3])> {
    let [ni, nj, _] = labels.dims();
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    let mut any = false;
    for (o, l) in labels.data().iter().enumerate() {
        if Structure::Kidney.labels().contains(l) {
            let ijk = [o % ni, (o / ni) % nj, o / (ni * nj)];
            for a in 0..3 {
                lo[a] = lo[a].min(ijk[a]);
                hi[a] = hi[a].max(ijk[a]);
            }
            any = true;
        }
    }
    any.then_some((lo, hi))
}

/// The working grid around `labels`' kidney: bounding box + `margin_mm` on every side, voxel
/// `spacing_mm`, `labels`' direction. `None` without kidney labels.
pub fn work_grid_around_kidney(
    labels: &Volume<u8>,
    spacing_mm: f64,
    margin_mm: f64,
) -> Option<WorkGrid> {
    let (lo, hi) = kidney_index_bounds(labels)?;
    let g = labels.geometry();
    let mut start = [0.0; 3];
    let mut dims = [0usize; 3];
    for a in 0..3 {
        let sp = g.spacing_mm[a];
        let lo_mm = lo[a] as f64 * sp - margin_mm;
        let hi_mm = hi[a] as f64 * sp + margin_mm;
        start[a] = lo_mm / sp;
        dims[a] = ((hi_mm - lo_mm) / spacing_mm).ceil().max(1.0) as usize + 1;
    }
    let geometry = Geometry {
        origin_mm: g.index_to_world(start),
        spacing_mm: [spacing_mm; 3],
        direction: g.direction,
    };
    Some(WorkGrid { geometry, dims })
}

/// Soft masks of `structures` of `labels` on `grid` (see the module doc): (1, C, D, H, W).
pub fn label_fractions(
    labels: &Volume<u8>,
    grid: &WorkGrid,
    structures: &[Structure],
) -> Result<Tensor, RegisterError> {
    let src_from_lps =
        inverse_affine(&labels.geometry().affine_lps()).ok_or(RegisterError::Singular {
            what: "label map geometry",
        })?;
    let m = mul(&src_from_lps, &grid.to_lps());
    let sub: [usize; 3] = [0, 1, 2].map(|c| {
        let len = (0..3).map(|r| m[r][c] * m[r][c]).sum::<f64>().sqrt();
        (2.0 * len - 1e-6).ceil().clamp(2.0, 8.0) as usize
    });
    let offsets: Vec<[f64; 3]> = {
        let u = |a: usize, b: usize| (b as f64 + 0.5) / sub[a] as f64 - 0.5;
        let mut v = Vec::new();
        for c in 0..sub[2] {
            for b in 0..sub[1] {
                for a in 0..sub[0] {
                    v.push([u(0, a), u(1, b), u(2, c)]);
                }
            }
        }
        v
    };
    let n_sub = offsets.len() as f64;
    let [ni, nj, nk] = grid.dims;
    let sd = labels.dims();
    let data = labels.data();
    let c = structures.len();
    let mut out = Tensor::zeros([1, c, nk, nj, ni]);
    for (ch, s) in structures.iter().enumerate() {
        let set = s.labels();
        let inside = |i: isize, j: isize, k: isize| -> f64 {
            if i < 0
                || j < 0
                || k < 0
                || i >= sd[0] as isize
                || j >= sd[1] as isize
                || k >= sd[2] as isize
            {
                return 0.0;
            }
            let l = data[i as usize + sd[0] * (j as usize + sd[1] * k as usize)];
            if set.contains(&l) {
                1.0
            } else {
                0.0
            }
        };
        out.channel_mut(0, ch)
            .par_chunks_mut(ni * nj)
            .enumerate()
            .for_each(|(k, slab)| {
                for j in 0..nj {
                    for i in 0..ni {
                        let mut acc = 0.0;
                        for u in &offsets {
                            let q = [i as f64 + u[0], j as f64 + u[1], k as f64 + u[2]];
                            let p = [0, 1, 2].map(|r| {
                                (m[r][0] * q[0] + m[r][1] * q[1] + m[r][2] * q[2] + m[r][3])
                                    .round_ties_even() as isize
                            });
                            acc += inside(p[0], p[1], p[2]);
                        }
                        slab[i + ni * j] = (acc / n_sub) as f32;
                    }
                }
            });
    }
    Ok(out)
}

/// Separable Gaussian blur of every channel, `sigma_voxels` (≤ 0: no-op), kernel radius
/// ⌈3σ⌉, weights normalised to 1, zero padding.
pub fn gaussian_smooth(t: &mut Tensor, sigma_voxels: f64) {
    if sigma_voxels <= 0.0 || !sigma_voxels.is_finite() {
        return;
    }
    let radius = (3.0 * sigma_voxels).ceil() as isize;
    let mut kernel: Vec<f64> = (-radius..=radius)
        .map(|x| (-0.5 * (x as f64 / sigma_voxels).powi(2)).exp())
        .collect();
    let total: f64 = kernel.iter().sum();
    kernel.iter_mut().for_each(|w| *w /= total);
    let s = t.shape();
    let (nd, nh, nw) = (s[2], s[3], s[4]);
    for n in 0..s[0] {
        for c in 0..s[1] {
            let ch = t.channel_mut(n, c);
            // (stride, length) of W, H, D.
            for (stride, len) in [(1usize, nw), (nw, nh), (nw * nh, nd)] {
                let src = ch.to_vec();
                ch.par_iter_mut().enumerate().for_each(|(o, v)| {
                    let pos = ((o / stride) % len) as isize;
                    let base = o - (pos as usize) * stride;
                    let mut acc = 0.0;
                    for (kk, w) in kernel.iter().enumerate() {
                        let p = pos + kk as isize - radius;
                        if p >= 0 && p < len as isize {
                            acc += w * f64::from(src[base + p as usize * stride]);
                        }
                    }
                    *v = acc as f32;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2 mm grid over a 1 mm label map: each working voxel covers 2×2×2 source voxels, so
    /// a half-filled block gives fractions 1 inside, 0 outside and partial on the boundary;
    /// the total mask volume is preserved.
    #[test]
    fn fractions_preserve_volume() {
        let dims = [20, 20, 20];
        let mut data = vec![0u8; 8000];
        for k in 5..15 {
            for j in 4..13 {
                for i in 6..11 {
                    data[i + 20 * (j + 20 * k)] = if i < 8 { 2 } else { 1 };
                }
            }
        }
        let labels = Volume::new(dims, Geometry::identity(), data).unwrap();
        let grid = work_grid_around_kidney(&labels, 2.0, 4.0).unwrap();
        let t = label_fractions(&labels, &grid, &[Structure::Kidney, Structure::Tumor]).unwrap();
        let kidney: f64 = t.channel(0, 0).iter().map(|v| f64::from(*v)).sum::<f64>() * 8.0;
        let tumour: f64 = t.channel(0, 1).iter().map(|v| f64::from(*v)).sum::<f64>() * 8.0;
        assert!((kidney - 450.0).abs() < 1.0, "{kidney}");
        assert!((tumour - 180.0).abs() < 1.0, "{tumour}");
    }

    #[test]
    fn smoothing_preserves_mass() {
        let mut t = Tensor::zeros([1, 1, 15, 15, 15]);
        let o = t.offset([0, 0, 7, 7, 7]);
        t.data_mut()[o] = 1.0;
        gaussian_smooth(&mut t, 1.0);
        let s: f64 = t.data().iter().map(|v| f64::from(*v)).sum();
        assert!((s - 1.0).abs() < 1e-5, "{s}");
        assert!(t.at([0, 0, 7, 7, 8]) < t.at([0, 0, 7, 7, 7]));
    }
}
