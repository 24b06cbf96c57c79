//! `truth.json`: what a generated case contains, independent of how it was written.
//!
//! Coordinates are LPS mm of the **reference phase** (see `acquisition`); each phase's
//! `transform_from_reference` (row-major 4×4) maps them into that phase's LPS mm. Volumes are
//! in mL of the reference phase's anatomy: lesion volumes are the exact ellipsoid volumes;
//! kidney volumes (kidney label only, lesions excluded) are integrated on a 0.5 mm grid.
//! A phase whose transform scales (affine motion) shows volumes × det(L).

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;

use super::anatomy::{
    exophytic_fraction, Anatomy, Growth, Kidney, LesionClass, LesionInterior, Pole, Side,
};
use super::render::RenderedPhase;
use crate::dicom::phase::Phase;

/// Schema name and version written into every truth file.
pub const TRUTH_SCHEMA: &str = "nephrod.phantom.truth/1";

#[derive(Debug, Clone, Serialize)]
pub struct Truth {
    pub schema: &'static str,
    pub case_id: String,
    /// The case's own seed (derived from the run seed and case number).
    pub case_seed: u64,
    pub study_uid: String,
    pub study_date: String,
    pub reference_phase: Phase,
    /// Label values of the label maps.
    pub labels: BTreeMap<&'static str, u8>,
    pub bolus_factor: f64,
    pub contrast_agent: String,
    pub phases: Vec<PhaseTruth>,
    pub kidneys: Vec<KidneyTruth>,
    pub lesions: Vec<LesionTruth>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseTruth {
    pub phase: Phase,
    pub series_uid: String,
    pub series_number: i32,
    pub series_description: String,
    /// Seconds after the start of contrast injection (negative: before).
    pub seconds_after_injection: f64,
    /// DICOM TM of the acquisition.
    pub acquisition_time: String,
    pub dims: [usize; 3],
    pub spacing_mm: [f64; 3],
    pub origin_lps_mm: [f64; 3],
    /// Columns are the i, j, k axes in LPS.
    pub direction: [[f64; 3]; 3],
    pub slice_thickness_mm: f64,
    pub noise_sd_hu: f64,
    /// Reference-phase LPS mm → this phase's LPS mm.
    pub transform_from_reference: [[f64; 4]; 4],
    /// Voxels per label in this phase's label map.
    pub label_voxels: BTreeMap<&'static str, usize>,
    /// Image of this phase relative to the case's truth.json (a DICOM series folder or a
    /// NIfTI file); filled by the writer.
    pub image_path: Option<String>,
    /// NIfTI label map of this phase relative to the case's truth.json.
    pub label_path: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KidneyTruth {
    pub side: Side,
    pub centre_lps_mm: [f64; 3],
    /// Pole-to-pole length (long axis), mm.
    pub length_mm: f64,
    /// Kidney label volume (lesions excluded), mL.
    pub volume_ml: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LesionTruth {
    /// 1-based; the same number as in the phase's lesion-id map.
    pub id: usize,
    pub class: LesionClass,
    /// Segmentation label (2 tumour, 3 cyst).
    pub label: u8,
    pub interior: LesionInterior,
    pub side: Side,
    pub pole: Pole,
    pub growth: Growth,
    /// Fraction of the volume outside the kidney outline.
    pub exophytic_fraction: f64,
    pub centre_lps_mm: [f64; 3],
    pub semi_axes_mm: [f64; 3],
    pub volume_ml: f64,
    pub max_axial_diameter_mm: f64,
    /// Mean noise-free tissue HU over the lesion's voxels, per phase.
    pub mean_hu: BTreeMap<Phase, f64>,
    /// Mean of the final image (noise, blur) over the same voxels, per phase.
    pub measured_mean_hu: BTreeMap<Phase, f64>,
}

/// Label names and values.
pub fn label_table() -> BTreeMap<&'static str, u8> {
    BTreeMap::from([("background", 0), ("kidney", 1), ("tumor", 2), ("cyst", 3)])
}

/// Kidney label volume (mm³) of `kidney` with every lesion removed: midpoint rule on a regular
/// `step_mm` grid over the kidney's bounding box.
pub fn kidney_volume_mm3(anatomy: &Anatomy, kidney: &Kidney, step_mm: f64) -> f64 {
    let bb = kidney.aabb();
    let n = [0, 1, 2].map(|a| ((bb.max[a] - bb.min[a]) / step_mm).ceil() as usize);
    let count: usize = (0..n[2])
        .into_par_iter()
        .map(|k| {
            let z = bb.min[2] + (k as f64 + 0.5) * step_mm;
            let mut c = 0usize;
            for j in 0..n[1] {
                let y = bb.min[1] + (j as f64 + 0.5) * step_mm;
                for i in 0..n[0] {
                    let p = [bb.min[0] + (i as f64 + 0.5) * step_mm, y, z];
                    if kidney.contains(p) && !anatomy.lesions.iter().any(|l| l.shape.contains(p)) {
                        c += 1;
                    }
                }
            }
            c
        })
        .sum();
    count as f64 * step_mm.powi(3)
}

/// Kidney and lesion truth from the anatomy and the rendered phases.
pub fn anatomy_truth(
    anatomy: &Anatomy,
    rendered: &[RenderedPhase],
) -> (Vec<KidneyTruth>, Vec<LesionTruth>) {
    let kidneys = anatomy
        .kidneys
        .iter()
        .map(|k| KidneyTruth {
            side: k.side,
            centre_lps_mm: k.envelope.centre,
            length_mm: 2.0 * k.envelope.semi_axes_mm[0],
            volume_ml: kidney_volume_mm3(anatomy, k, 0.5) / 1000.0,
        })
        .collect();
    let lesions = anatomy
        .lesions
        .iter()
        .enumerate()
        .map(|(n, l)| {
            let kidney = anatomy.kidneys.iter().find(|k| k.side == l.side);
            let frac = kidney.map_or(0.0, |k| exophytic_fraction(l, k));
            let pole = kidney.map_or(Pole::Interpolar, |k| k.pole_of(l.shape.centre));
            let mut mean_hu = BTreeMap::new();
            let mut measured = BTreeMap::new();
            for r in rendered {
                if let Some(Some(v)) = r.lesion_model_mean_hu.get(n) {
                    mean_hu.insert(r.phase, *v);
                }
                if let Some(Some(v)) = r.lesion_image_mean_hu.get(n) {
                    measured.insert(r.phase, *v);
                }
            }
            LesionTruth {
                id: n + 1,
                class: l.class,
                label: l.class.label(),
                interior: l.interior,
                side: l.side,
                pole,
                growth: if frac < 0.02 {
                    Growth::Endophytic
                } else {
                    Growth::Exophytic
                },
                exophytic_fraction: frac,
                centre_lps_mm: l.shape.centre,
                semi_axes_mm: l.shape.semi_axes_mm,
                volume_ml: l.shape.volume_mm3() / 1000.0,
                max_axial_diameter_mm: l.shape.max_axial_diameter_mm(),
                mean_hu,
                measured_mean_hu: measured,
            }
        })
        .collect();
    (kidneys, lesions)
}
