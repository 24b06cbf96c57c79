//! Measurements of the reference phase's label map for the report: kidney volumes per side and
//! lesion attenuation per phase.
//!
//! Labels: 0 background, 1 kidney, 2 tumour, 3 cyst, on the reference grid (all phases are
//! resampled onto it by registration). Definitions:
//! * an organ is a 26-connected component of labels 1–3; the midline is halfway between the
//!   x (LPS) centres of the two largest organs, or the grid centre's x with fewer than two;
//!   an organ whose centre lies at larger x than the midline is on the patient's left (LPS +x);
//! * a side's `volume_ml` counts its organs' kidney voxels (label 1), `volume_with_masses_ml`
//!   all their voxels; a side without any organ is not listed;
//! * a lesion's mean HU in a phase averages that phase's aligned CT over the lesion's voxels,
//!   skipping voxels outside the phase's acquired volume ([`OUTSIDE_HU`]); no value when fewer
//!   than half of the voxels were acquired;
//! * enhancement of a contrast phase = its mean HU − the non-contrast mean HU.

use std::collections::BTreeMap;

use crate::dicom::phase::Phase;
use crate::register::OUTSIDE_HU;
use crate::segment::instances::{midline_x, Side};
use crate::segment::postprocess::components_26;
use crate::volume::Volume;

/// One side's kidney volumes.
#[derive(Debug, Clone, PartialEq)]
pub struct KidneyVolume {
    pub side: Side,
    pub volume_ml: f64,
    pub volume_with_masses_ml: f64,
}

/// Kidney volumes per side (see the module doc), right before left.
pub fn kidney_volumes(labels: &Volume<u8>) -> Vec<KidneyVolume> {
    let [ni, nj, nk] = labels.dims();
    let data = labels.data();
    let g = labels.geometry();
    let voxel_ml = g.spacing_mm.iter().product::<f64>() / 1000.0;
    let organ: Vec<bool> = data.iter().map(|l| (1..=3).contains(l)).collect();
    let (comp, sizes) = components_26(&organ, [nk, nj, ni]);
    if sizes.is_empty() {
        return Vec::new();
    }
    let mut sum_i = vec![[0f64; 3]; sizes.len()];
    let mut kidney = vec![0usize; sizes.len()];
    for (o, c) in comp.iter().enumerate() {
        if *c == 0 {
            continue;
        }
        let c = *c as usize - 1;
        let ijk = [o % ni, (o / ni) % nj, o / (ni * nj)];
        for a in 0..3 {
            sum_i[c][a] += ijk[a] as f64;
        }
        if data[o] == 1 {
            kidney[c] += 1;
        }
    }
    let centre_x: Vec<f64> = (0..sizes.len())
        .map(|c| g.index_to_world(sum_i[c].map(|s| s / sizes[c] as f64))[0])
        .collect();
    let midline = midline_x(&centre_x, &sizes, labels);
    let mut out = Vec::new();
    for side in [Side::Right, Side::Left] {
        let on_side: Vec<usize> = (0..sizes.len())
            .filter(|c| (centre_x[*c] > midline) == (side == Side::Left))
            .collect();
        if on_side.is_empty() {
            continue;
        }
        out.push(KidneyVolume {
            side,
            volume_ml: on_side.iter().map(|c| kidney[*c]).sum::<usize>() as f64 * voxel_ml,
            volume_with_masses_ml: on_side.iter().map(|c| sizes[*c]).sum::<usize>() as f64
                * voxel_ml,
        });
    }
    out
}

/// Mean of `ct` over `members` (flat offsets), skipping unacquired voxels (module doc).
pub fn mean_hu(ct: &Volume<f32>, members: &[usize]) -> Option<f64> {
    let data = ct.data();
    let (mut sum, mut n) = (0f64, 0usize);
    for &o in members {
        match data.get(o) {
            Some(v) if *v > OUTSIDE_HU && v.is_finite() => {
                sum += *v as f64;
                n += 1;
            }
            _ => {}
        }
    }
    (n > 0 && 2 * n >= members.len()).then(|| sum / n as f64)
}

/// Enhancement of every contrast phase against the non-contrast phase (module doc); empty
/// without a non-contrast value.
pub fn enhancement(mean_hu: &BTreeMap<Phase, f64>) -> BTreeMap<Phase, f64> {
    let Some(base) = mean_hu.get(&Phase::NonContrast) else {
        return BTreeMap::new();
    };
    mean_hu
        .iter()
        .filter(|(p, _)| !matches!(p, Phase::NonContrast | Phase::Unknown))
        .map(|(p, v)| (*p, v - base))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::geometry::Geometry;

    fn grid(spacing: [f64; 3]) -> Geometry {
        let mut g = Geometry::identity();
        g.spacing_mm = spacing;
        g
    }

    /// Two boxes: patient right (low x) 4×5×6 kidney voxels with a 2×2×2 tumour inside the box
    /// extent, patient left (high x) 3×3×3 kidney voxels.
    fn two_kidneys() -> Volume<u8> {
        let dims = [30, 12, 12];
        let mut v = Volume::filled(dims, grid([1.0, 2.0, 0.5]), 0u8).unwrap();
        for k in 2..8 {
            for j in 2..7 {
                for i in 2..6 {
                    let o = v.offset(i, j, k).unwrap();
                    v.data_mut()[o] = if i < 4 && j < 4 && k < 4 { 2 } else { 1 };
                }
            }
        }
        for k in 1..4 {
            for j in 1..4 {
                for i in 20..23 {
                    let o = v.offset(i, j, k).unwrap();
                    v.data_mut()[o] = 1;
                }
            }
        }
        v
    }

    #[test]
    fn kidney_volumes_count_voxels_per_side() {
        let v = two_kidneys();
        let k = kidney_volumes(&v);
        let ml = 1.0 * 2.0 * 0.5 / 1000.0;
        assert_eq!(k.len(), 2);
        assert_eq!(k[0].side, Side::Right);
        assert!((k[0].volume_ml - (120.0 - 8.0) * ml).abs() < 1e-12);
        assert!((k[0].volume_with_masses_ml - 120.0 * ml).abs() < 1e-12);
        assert_eq!(k[1].side, Side::Left);
        assert!((k[1].volume_ml - 27.0 * ml).abs() < 1e-12);
    }

    #[test]
    fn one_kidney_is_placed_by_the_grid_centre() {
        let mut v = two_kidneys();
        // Keep only the right (low-x) box.
        let [ni, _, _] = v.dims();
        for (o, x) in v.data_mut().iter_mut().enumerate() {
            if o % ni >= 15 {
                *x = 0;
            }
        }
        let k = kidney_volumes(&v);
        assert_eq!(k.len(), 1);
        assert_eq!(k[0].side, Side::Right);
        assert!(
            kidney_volumes(&Volume::filled([4, 4, 4], Geometry::identity(), 0u8).unwrap())
                .is_empty()
        );
    }

    #[test]
    fn mean_hu_skips_unacquired_voxels_and_needs_half() {
        let mut ct = Volume::filled([4, 1, 1], Geometry::identity(), 0f32).unwrap();
        ct.data_mut()
            .copy_from_slice(&[10.0, 30.0, OUTSIDE_HU, 50.0]);
        assert_eq!(mean_hu(&ct, &[0, 1, 2]), Some(20.0));
        assert_eq!(mean_hu(&ct, &[2, 3]), Some(50.0));
        ct.data_mut()[3] = OUTSIDE_HU;
        assert_eq!(mean_hu(&ct, &[0, 2, 3]), None);
        assert_eq!(mean_hu(&ct, &[]), None);
    }

    #[test]
    fn enhancement_is_relative_to_non_contrast() {
        let m: BTreeMap<Phase, f64> = [
            (Phase::NonContrast, 30.0),
            (Phase::Arterial, 150.0),
            (Phase::Portal, 110.0),
        ]
        .into();
        let e = enhancement(&m);
        assert_eq!(e.len(), 2);
        assert_eq!(e[&Phase::Arterial], 120.0);
        assert_eq!(e[&Phase::Portal], 80.0);
        let no_base: BTreeMap<Phase, f64> = [(Phase::Arterial, 150.0)].into();
        assert!(enhancement(&no_base).is_empty());
    }
}
