//! Rasterises one phase of a synthetic patient onto its acquisition grid.
//!
//! For voxel centre `y` (this phase's LPS mm) the anatomy is sampled at `T⁻¹ y` (anatomy
//! frame). Per voxel:
//! * **label** and lesion number: the anatomy at the voxel centre (point sampling, so label
//!   volumes converge to the true volumes as voxels shrink);
//! * **HU**: the mean tissue value over `n` points spread through the slice thickness (the slice
//!   profile, `n` = thickness / 1.5 mm rounded, 1–3), then an in-plane 3-tap blur
//!   (σ ≈ 0.55 pixel, the scanner's point-spread) — together the partial-volume effect;
//! * **noise**: white Gaussian noise passed through the same in-plane kernel (correlated like CT
//!   noise) and scaled to the phase's standard deviation; finally rounded to whole HU and
//!   clamped to [−1024, 3071] as a 12-bit scanner stores them.
//!
//! All randomness is counter-based (keyed by the phase's noise key and voxel index), so the
//! result does not depend on how rayon splits the work.

use rayon::prelude::*;

use super::acquisition::{Affine, PhaseAcquisition};
use super::anatomy::Anatomy;
use super::attenuation::{phase_index, CaseAttenuation, Tissue};
use super::rng::hash_normal;
use super::shapes::{mul_mm, mul_mv, Mat3, Vec3};
use super::PhantomError;
use crate::dicom::phase::Phase;
use crate::volume::Volume;

/// In-plane blur kernel (point-spread function), applied along i then j.
const PSF: [f32; 3] = [0.15, 0.7, 0.15];
pub const HU_MIN: f32 = -1024.0;
pub const HU_MAX: f32 = 3071.0;

/// One rendered phase.
#[derive(Debug, Clone)]
pub struct RenderedPhase {
    pub phase: Phase,
    /// Final image (HU, whole numbers).
    pub hu: Volume<f32>,
    /// Segmentation labels 0–3.
    pub labels: Volume<u8>,
    /// Lesion number per voxel (0 none, n = lesion n), same grid as `labels`.
    pub lesion_ids: Volume<u8>,
    /// Voxels per label value 0..=3.
    pub label_voxels: [usize; 4],
    /// Per lesion: mean noise-free tissue HU over the lesion's voxels (None when the grid has
    /// no voxel centre inside it).
    pub lesion_model_mean_hu: Vec<Option<f64>>,
    /// Per lesion: mean of the final image over the same voxels.
    pub lesion_image_mean_hu: Vec<Option<f64>>,
}

/// The tissue value at a sample, with lesion heterogeneity applied to the enhancement.
fn sample_hu(att: &CaseAttenuation, phase: Phase, tissue: Tissue, enh: f64) -> f64 {
    let row = att.row(tissue);
    let nc = row[0];
    nc + (row[phase_index(phase)] - nc) * enh
}

/// Renders `acq` (one phase) of `anatomy`.
pub fn render(
    anatomy: &Anatomy,
    att: &CaseAttenuation,
    acq: &PhaseAcquisition,
) -> Result<RenderedPhase, PhantomError> {
    let inv: Affine = acq
        .from_reference
        .inverse()
        .ok_or(PhantomError::SingularTransform(acq.phase))?;
    let g = &acq.geometry;
    let [ni, nj, nk] = acq.dims;
    // index → anatomy frame: inv.L · (origin + D · diag(s) · ijk) + inv.t
    let ds: Mat3 = {
        let mut m = g.direction;
        for row in m.iter_mut() {
            for (c, v) in row.iter_mut().enumerate() {
                *v *= g.spacing_mm[c];
            }
        }
        m
    };
    let m = mul_mm(&inv.linear, &ds);
    let b = inv.apply(g.origin_mm);
    let to_anatomy = |i: f64, j: f64, k: f64| -> Vec3 {
        let v = mul_mv(&m, [i, j, k]);
        [v[0] + b[0], v[1] + b[1], v[2] + b[2]]
    };
    let n_sub = ((acq.slice_thickness_mm / 1.5).round() as usize).clamp(1, 3);
    let sub_offsets: Vec<f64> = (0..n_sub)
        .map(|s| (s as f64 + 0.5) / n_sub as f64 - 0.5)
        .collect();
    let plane = ni * nj;
    let phase = acq.phase;
    let n_lesions = anatomy.lesions.len();

    let mut clean = vec![0f32; plane * nk];
    let mut labels = vec![0u8; plane * nk];
    let mut lesion_ids = vec![0u8; plane * nk];
    // Per slice: (sum of model HU per lesion, count per lesion).
    let per_slice: Vec<Vec<(f64, usize)>> = clean
        .par_chunks_mut(plane)
        .zip(labels.par_chunks_mut(plane))
        .zip(lesion_ids.par_chunks_mut(plane))
        .enumerate()
        .map(|(k, ((hu_k, lab_k), les_k))| {
            let mut acc = vec![(0.0f64, 0usize); n_lesions];
            for j in 0..nj {
                for i in 0..ni {
                    let centre = anatomy.sample(to_anatomy(i as f64, j as f64, k as f64));
                    let centre_hu = sample_hu(att, phase, centre.tissue, centre.enhancement_scale);
                    let mut sum = 0.0;
                    for off in &sub_offsets {
                        if off.abs() < 1e-12 {
                            sum += centre_hu;
                        } else {
                            let s = anatomy.sample(to_anatomy(i as f64, j as f64, k as f64 + off));
                            sum += sample_hu(att, phase, s.tissue, s.enhancement_scale);
                        }
                    }
                    let idx = i + ni * j;
                    hu_k[idx] = (sum / n_sub as f64) as f32;
                    lab_k[idx] = centre.label;
                    les_k[idx] = centre.lesion;
                    if centre.lesion > 0 {
                        let slot = &mut acc[centre.lesion as usize - 1];
                        slot.0 += centre_hu;
                        slot.1 += 1;
                    }
                }
            }
            acc
        })
        .collect();

    // Blur the clean image and add correlated noise, slice by slice.
    let kernel_gain: f32 = PSF.iter().map(|w| w * w).sum::<f32>();
    let noise_scale = acq.noise_sd_hu as f32 / kernel_gain; // 2-D separable: gain² → /gain
    let key = acq.noise_key;
    let mut hu = vec![0f32; plane * nk];
    hu.par_chunks_mut(plane)
        .zip(clean.par_chunks(plane))
        .enumerate()
        .for_each(|(k, (out, src))| {
            let blurred = blur2d(src, ni, nj);
            let white: Vec<f32> = (0..plane)
                .map(|idx| hash_normal(key, (k * plane + idx) as u64) as f32)
                .collect();
            let noise = blur2d(&white, ni, nj);
            for idx in 0..plane {
                let v = blurred[idx] + noise_scale * noise[idx];
                out[idx] = v.round().clamp(HU_MIN, HU_MAX);
            }
        });

    let mut label_voxels = [0usize; 4];
    for l in &labels {
        if let Some(c) = label_voxels.get_mut(*l as usize) {
            *c += 1;
        }
    }
    let mut model_sum = vec![(0.0f64, 0usize); n_lesions];
    for acc in &per_slice {
        for (t, a) in model_sum.iter_mut().zip(acc) {
            t.0 += a.0;
            t.1 += a.1;
        }
    }
    let lesion_model_mean_hu = model_sum
        .iter()
        .map(|(s, n)| (*n > 0).then(|| s / *n as f64))
        .collect();
    let mut image_sum = vec![(0.0f64, 0usize); n_lesions];
    for (v, id) in hu.iter().zip(&lesion_ids) {
        if *id > 0 {
            let slot = &mut image_sum[*id as usize - 1];
            slot.0 += *v as f64;
            slot.1 += 1;
        }
    }
    let lesion_image_mean_hu = image_sum
        .iter()
        .map(|(s, n)| (*n > 0).then(|| s / *n as f64))
        .collect();
    let vol = |data| Volume::new(acq.dims, g.clone(), data);
    Ok(RenderedPhase {
        phase,
        hu: vol(hu)?,
        labels: Volume::new(acq.dims, g.clone(), labels)?,
        lesion_ids: Volume::new(acq.dims, g.clone(), lesion_ids)?,
        label_voxels,
        lesion_model_mean_hu,
        lesion_image_mean_hu,
    })
}

/// Separable 3-tap blur along i then j with edge replication.
fn blur2d(src: &[f32], ni: usize, nj: usize) -> Vec<f32> {
    let mut tmp = vec![0f32; src.len()];
    for j in 0..nj {
        let row = &src[j * ni..(j + 1) * ni];
        for i in 0..ni {
            let l = row[i.saturating_sub(1)];
            let r = row[(i + 1).min(ni - 1)];
            tmp[j * ni + i] = PSF[0] * l + PSF[1] * row[i] + PSF[2] * r;
        }
    }
    let mut out = vec![0f32; src.len()];
    for j in 0..nj {
        let up = j.saturating_sub(1);
        let down = (j + 1).min(nj - 1);
        for i in 0..ni {
            out[j * ni + i] =
                PSF[0] * tmp[up * ni + i] + PSF[1] * tmp[j * ni + i] + PSF[2] * tmp[down * ni + i];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_preserves_constants_and_mass() {
        let (ni, nj) = (7, 5);
        let flat = vec![3.5f32; ni * nj];
        assert!(blur2d(&flat, ni, nj).iter().all(|v| (v - 3.5).abs() < 1e-5));
        let mut spike = vec![0f32; ni * nj];
        spike[2 * ni + 3] = 1.0;
        let s: f32 = blur2d(&spike, ni, nj).iter().sum();
        assert!((s - 1.0).abs() < 1e-6);
    }

    /// The noise added to a uniform region has the requested standard deviation.
    #[test]
    fn noise_scaling_gives_requested_sd() {
        let (ni, nj) = (200, 200);
        let white: Vec<f32> = (0..ni * nj)
            .map(|i| hash_normal(11, i as u64) as f32)
            .collect();
        let gain: f32 = PSF.iter().map(|w| w * w).sum();
        let noise: Vec<f32> = blur2d(&white, ni, nj)
            .iter()
            .map(|v| v * 10.0 / gain)
            .collect();
        // Interior only (edges replicate).
        let mut s = (0.0f64, 0.0f64, 0usize);
        for j in 2..nj - 2 {
            for i in 2..ni - 2 {
                let v = noise[j * ni + i] as f64;
                s.0 += v;
                s.1 += v * v;
                s.2 += 1;
            }
        }
        let mean = s.0 / s.2 as f64;
        let sd = (s.1 / s.2 as f64 - mean * mean).sqrt();
        assert!((sd - 10.0).abs() < 0.3, "sd {sd}");
    }
}
