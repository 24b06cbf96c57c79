//! Surface distances as google-deepmind/surface-distance computes them (the library KiTS's
//! Surface Dice and robust Hausdorff use; shared/docs/metrics.md):
//!
//! 1. Crop both masks to the bounding box of their union.
//! 2. Neighbour codes on the corner grid (one point more per axis than the box): the code of
//!    corner point (i, j, k) has bit `128 >> (4a + 2b + c)` set when voxel
//!    (i − 1 + a, j − 1 + b, k − 1 + c) is in the mask (voxels outside the box are empty).
//! 3. Border points: code ∉ {0, 255}.
//! 4. For every border point of one mask, the distance (mm) to the nearest border point of the
//!    other ([`super::edt`]); +∞ when the other has no border.
//! 5. Each border point's surfel area: Σ over its code's normals n (from
//!    [`super::surfel_normals`], units of 1/8) of ‖(n₀·s₁·s₂, n₁·s₀·s₂, n₂·s₀·s₁)‖.
//!
//! Masks are C order with `shape` (slowest first) and `spacing_mm` in the same axis order — for
//! a nephrod [`crate::volume::Volume`] that is (k, j, i), the (z, y, x) order of the SimpleITK
//! arrays KiTS evaluates.

use rayon::prelude::*;

use super::edt::distance_to_seeds;
use super::surfel_normals::{NORMALS, START};
use crate::numeric::pairwise_sum;

/// Border points of both masks: distance to the other mask's border and surfel area, sorted
/// by (distance, area) ascending as the library sorts them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SurfaceDistances {
    pub distances_gt_to_pred: Vec<f64>,
    pub areas_gt: Vec<f64>,
    pub distances_pred_to_gt: Vec<f64>,
    pub areas_pred: Vec<f64>,
}

/// The surfel area (mm²) of every neighbour code at `spacing_mm`.
pub fn area_table(spacing_mm: [f64; 3]) -> [f64; 256] {
    let [s0, s1, s2] = spacing_mm;
    let mut table = [0f64; 256];
    for (code, t) in table.iter_mut().enumerate() {
        let mut sum = 0.0;
        for n in &NORMALS[START[code] as usize..START[code + 1] as usize] {
            let v = [
                n[0] as f64 / 8.0 * s1 * s2,
                n[1] as f64 / 8.0 * s0 * s2,
                n[2] as f64 / 8.0 * s0 * s1,
            ];
            sum += (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        }
        *t = sum;
    }
    table
}

/// Half-open bounding box of `mask` per axis, `None` when empty.
fn bbox(mask: &[bool], shape: [usize; 3]) -> Option<[[usize; 2]; 3]> {
    let mut lo = shape;
    let mut hi = [0usize; 3];
    let plane = shape[1] * shape[2];
    for a in 0..shape[0] {
        for b in 0..shape[1] {
            let row = &mask[a * plane + b * shape[2]..a * plane + (b + 1) * shape[2]];
            let Some(first) = row.iter().position(|&v| v) else {
                continue;
            };
            let last = row.iter().rposition(|&v| v).unwrap_or(first);
            lo = [lo[0].min(a), lo[1].min(b), lo[2].min(first)];
            hi = [hi[0].max(a + 1), hi[1].max(b + 1), hi[2].max(last + 1)];
        }
    }
    (hi[0] > 0).then_some([[lo[0], hi[0]], [lo[1], hi[1]], [lo[2], hi[2]]])
}

/// Neighbour codes on the corner grid of box `b` (dims = box size + 1 per axis).
fn neighbour_codes(mask: &[bool], shape: [usize; 3], b: [[usize; 2]; 3]) -> (Vec<u8>, [usize; 3]) {
    let n = [b[0][1] - b[0][0], b[1][1] - b[1][0], b[2][1] - b[2][0]];
    let cd = [n[0] + 1, n[1] + 1, n[2] + 1];
    let voxel = |i: isize, j: isize, k: isize| -> bool {
        if i < 0 || j < 0 || k < 0 || i >= n[0] as isize || j >= n[1] as isize || k >= n[2] as isize
        {
            return false;
        }
        let (x, y, z) = (
            b[0][0] + i as usize,
            b[1][0] + j as usize,
            b[2][0] + k as usize,
        );
        mask[(x * shape[1] + y) * shape[2] + z]
    };
    let mut codes = vec![0u8; cd.iter().product()];
    codes
        .par_chunks_mut(cd[1] * cd[2])
        .enumerate()
        .for_each(|(i, plane)| {
            for j in 0..cd[1] {
                for k in 0..cd[2] {
                    let mut code = 0u8;
                    for a in 0..2 {
                        for bb in 0..2 {
                            for c in 0..2 {
                                if voxel(
                                    i as isize - 1 + a as isize,
                                    j as isize - 1 + bb as isize,
                                    k as isize - 1 + c as isize,
                                ) {
                                    code |= 128u8 >> (4 * a + 2 * bb + c);
                                }
                            }
                        }
                    }
                    plane[j * cd[2] + k] = code;
                }
            }
        });
    (codes, cd)
}

fn is_border(code: u8) -> bool {
    code != 0 && code != 255
}

/// surface-distance's `compute_surface_distances(mask_gt, mask_pred, spacing_mm)`.
pub fn surface_distances(
    gt: &[bool],
    pred: &[bool],
    shape: [usize; 3],
    spacing_mm: [f64; 3],
) -> SurfaceDistances {
    let union: Vec<bool> = gt.iter().zip(pred).map(|(a, b)| *a || *b).collect();
    let Some(b) = bbox(&union, shape) else {
        return SurfaceDistances::default();
    };
    drop(union);
    let table = area_table(spacing_mm);
    let (codes_gt, cd) = neighbour_codes(gt, shape, b);
    let (codes_pred, _) = neighbour_codes(pred, shape, b);
    let border_gt: Vec<bool> = codes_gt.iter().map(|&c| is_border(c)).collect();
    let border_pred: Vec<bool> = codes_pred.iter().map(|&c| is_border(c)).collect();
    let dist_gt = distance_to_seeds(&border_gt, cd, spacing_mm);
    let dist_pred = distance_to_seeds(&border_pred, cd, spacing_mm);
    let collect = |border: &[bool], codes: &[u8], other: &[f64]| -> (Vec<f64>, Vec<f64>) {
        let mut pairs: Vec<(f64, f64)> = border
            .iter()
            .enumerate()
            .filter(|(_, &b)| b)
            .map(|(i, _)| (other[i], table[codes[i] as usize]))
            .collect();
        pairs.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.total_cmp(&y.1)));
        pairs.into_iter().unzip()
    };
    let (distances_gt_to_pred, areas_gt) = collect(&border_gt, &codes_gt, &dist_pred);
    let (distances_pred_to_gt, areas_pred) = collect(&border_pred, &codes_pred, &dist_gt);
    SurfaceDistances {
        distances_gt_to_pred,
        areas_gt,
        distances_pred_to_gt,
        areas_pred,
    }
}

/// `compute_surface_dice_at_tolerance`: the surfel area within `tolerance_mm` (≤) of the other
/// surface over the total area of both; NaN when both surfaces are empty (0 / 0).
pub fn surface_dice(sd: &SurfaceDistances, tolerance_mm: f64) -> f64 {
    // numpy sums with pairwise summation; so does this.
    let within = |d: &[f64], a: &[f64]| -> f64 {
        let kept: Vec<f64> = d
            .iter()
            .zip(a)
            .filter(|(d, _)| **d <= tolerance_mm)
            .map(|(_, a)| *a)
            .collect();
        pairwise_sum(&kept)
    };
    let overlap = within(&sd.distances_gt_to_pred, &sd.areas_gt)
        + within(&sd.distances_pred_to_gt, &sd.areas_pred);
    let total = pairwise_sum(&sd.areas_gt) + pairwise_sum(&sd.areas_pred);
    overlap / total
}

/// One direction of `compute_robust_hausdorff`: the distance at the first index where the
/// cumulative area fraction reaches `percent` / 100; +∞ when there is no border point.
fn percentile_distance(d: &[f64], a: &[f64], percent: f64) -> f64 {
    if d.is_empty() {
        return f64::INFINITY;
    }
    let total = pairwise_sum(a);
    let target = percent / 100.0;
    let mut cum = 0.0;
    for (i, area) in a.iter().enumerate() {
        cum += area;
        if cum / total >= target {
            return d[i];
        }
    }
    d[d.len() - 1]
}

/// `compute_robust_hausdorff(sd, percent)`: the larger of the two directed percentiles.
pub fn robust_hausdorff(sd: &SurfaceDistances, percent: f64) -> f64 {
    percentile_distance(&sd.distances_gt_to_pred, &sd.areas_gt, percent).max(percentile_distance(
        &sd.distances_pred_to_gt,
        &sd.areas_pred,
        percent,
    ))
}

/// `compute_average_surface_distance`: area-weighted mean distance gt → pred and pred → gt.
pub fn average_surface_distance(sd: &SurfaceDistances) -> (f64, f64) {
    let mean = |d: &[f64], a: &[f64]| -> f64 {
        d.iter().zip(a).map(|(d, a)| d * a).sum::<f64>() / a.iter().sum::<f64>()
    };
    (
        mean(&sd.distances_gt_to_pred, &sd.areas_gt),
        mean(&sd.distances_pred_to_gt, &sd.areas_pred),
    )
}

/// Symmetric area-weighted mean surface distance over both surfaces.
pub fn assd(sd: &SurfaceDistances) -> f64 {
    let num: f64 = sd
        .distances_gt_to_pred
        .iter()
        .zip(&sd.areas_gt)
        .chain(sd.distances_pred_to_gt.iter().zip(&sd.areas_pred))
        .map(|(d, a)| d * a)
        .sum();
    let den: f64 = sd.areas_gt.iter().sum::<f64>() + sd.areas_pred.iter().sum::<f64>();
    num / den
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_corner_code_has_the_documented_area() {
        // metrics.md: code 1 at unit spacing has area √3/8.
        let t = area_table([1.0, 1.0, 1.0]);
        assert!((t[1] - 3f64.sqrt() / 8.0).abs() < 1e-15);
        assert_eq!(t[0], 0.0);
        assert_eq!(t[255], 0.0);
    }
}
