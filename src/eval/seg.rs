//! Segmentation metrics of one case (shared/docs/metrics.md): Dice, Surface Dice, robust HD95,
//! ASSD and volumes for the KiTS hierarchical evaluation classes (HECs) and per label, with the
//! KiTS empty-mask rules.
//!
//! * Labels: 0 background, 1 kidney, 2 tumour, 3 cyst. HECs: kidney_and_masses {1, 2, 3},
//!   masses {2, 3}, tumor {2}.
//! * Surface Dice tolerances (mm), KiTS21 = KiTS23: kidney_and_masses 1.0330772532390826,
//!   masses 1.1328796488598762, tumor 1.1498198361434828. Per label: kidney uses the
//!   kidney_and_masses tolerance, tumour and cyst the tumour tolerance.
//! * Empty masks: both empty → Dice = Surface Dice = 1, HD95 = ASSD = 0; exactly one empty →
//!   Dice = Surface Dice = 0 and the distances are undefined (`None`, JSON null).
//! * Surface quantities come from [`super::surface`] on the (k, j, i) array with spacing
//!   (s_k, s_j, s_i) — the (z, y, x) order KiTS passes to surface-distance.

use rayon::prelude::*;
use serde::Serialize;

use super::surface::{
    assd, average_surface_distance, robust_hausdorff, surface_dice, surface_distances,
};
use crate::volume::{Volume, VolumeError};

/// A hierarchical evaluation class or a single label: the label values it unites.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Class {
    pub name: &'static str,
    pub labels: &'static [u8],
    pub tolerance_mm: f64,
}

/// KiTS HECs in report order.
pub const HECS: [Class; 3] = [
    Class {
        name: "kidney_and_masses",
        labels: &[1, 2, 3],
        tolerance_mm: 1.0330772532390826,
    },
    Class {
        name: "masses",
        labels: &[2, 3],
        tolerance_mm: 1.1328796488598762,
    },
    Class {
        name: "tumor",
        labels: &[2],
        tolerance_mm: 1.1498198361434828,
    },
];

/// The single labels.
pub const LABELS: [Class; 3] = [
    Class {
        name: "kidney",
        labels: &[1],
        tolerance_mm: 1.0330772532390826,
    },
    Class {
        name: "tumor",
        labels: &[2],
        tolerance_mm: 1.1498198361434828,
    },
    Class {
        name: "cyst",
        labels: &[3],
        tolerance_mm: 1.1498198361434828,
    },
];

/// Metrics of one class in one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub dice: f64,
    pub surface_dice: f64,
    /// Robust Hausdorff distance (95th area-weighted percentile), mm; `None` if one mask is empty.
    pub hd95_mm: Option<f64>,
    /// Symmetric area-weighted mean surface distance, mm.
    pub assd_mm: Option<f64>,
    pub asd_gt_to_pred_mm: Option<f64>,
    pub asd_pred_to_gt_mm: Option<f64>,
    pub volume_truth_ml: f64,
    pub volume_pred_ml: f64,
    /// Prediction minus truth.
    pub volume_error_ml: f64,
}

/// Why two label maps cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum SegEvalError {
    #[error("prediction dims {pred:?} differ from truth dims {truth:?}")]
    Dims { pred: [usize; 3], truth: [usize; 3] },
    #[error("prediction spacing {pred:?} mm differs from truth spacing {truth:?} mm")]
    Spacing { pred: [f64; 3], truth: [f64; 3] },
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

/// Checks that two label maps share a grid (dims and spacing to 1e-4 mm).
pub fn check_same_grid(pred: &Volume<u8>, truth: &Volume<u8>) -> Result<(), SegEvalError> {
    if pred.dims() != truth.dims() {
        return Err(SegEvalError::Dims {
            pred: pred.dims(),
            truth: truth.dims(),
        });
    }
    let (ps, ts) = (pred.geometry().spacing_mm, truth.geometry().spacing_mm);
    if (0..3).any(|a| (ps[a] - ts[a]).abs() > 1e-4) {
        return Err(SegEvalError::Spacing {
            pred: ps,
            truth: ts,
        });
    }
    Ok(())
}

/// The (k, j, i) shape and spacing of a volume.
pub fn zyx(v: &Volume<u8>) -> ([usize; 3], [f64; 3]) {
    let d = v.dims();
    let s = v.geometry().spacing_mm;
    ([d[2], d[1], d[0]], [s[2], s[1], s[0]])
}

/// Metrics of `class` for one case (same grid; see [`check_same_grid`]).
pub fn class_metrics(pred: &Volume<u8>, truth: &Volume<u8>, class: &Class) -> ClassMetrics {
    let (shape, spacing) = zyx(truth);
    let voxel_ml = spacing.iter().product::<f64>() / 1000.0;
    let mut lut = [false; 256];
    for &l in class.labels {
        lut[l as usize] = true;
    }
    let mask =
        |v: &Volume<u8>| -> Vec<bool> { v.data().par_iter().map(|&l| lut[l as usize]).collect() };
    let (p, t) = (mask(pred), mask(truth));
    let (np, nt, inter) = p
        .par_iter()
        .zip(&t)
        .fold(
            || (0usize, 0usize, 0usize),
            |(a, b, c), (&x, &y)| {
                (
                    a + usize::from(x),
                    b + usize::from(y),
                    c + usize::from(x && y),
                )
            },
        )
        .reduce(|| (0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
    let volumes = |m: &mut ClassMetrics| {
        m.volume_truth_ml = nt as f64 * voxel_ml;
        m.volume_pred_ml = np as f64 * voxel_ml;
        m.volume_error_ml = m.volume_pred_ml - m.volume_truth_ml;
    };
    let mut m = ClassMetrics {
        dice: 0.0,
        surface_dice: 0.0,
        hd95_mm: None,
        assd_mm: None,
        asd_gt_to_pred_mm: None,
        asd_pred_to_gt_mm: None,
        volume_truth_ml: 0.0,
        volume_pred_ml: 0.0,
        volume_error_ml: 0.0,
    };
    volumes(&mut m);
    match (nt == 0, np == 0) {
        (true, true) => {
            m.dice = 1.0;
            m.surface_dice = 1.0;
            m.hd95_mm = Some(0.0);
            m.assd_mm = Some(0.0);
            m.asd_gt_to_pred_mm = Some(0.0);
            m.asd_pred_to_gt_mm = Some(0.0);
            return m;
        }
        (true, false) | (false, true) => return m,
        _ => {}
    }
    m.dice = 2.0 * inter as f64 / (np + nt) as f64;
    let start = std::time::Instant::now();
    let sd = surface_distances(&t, &p, shape, spacing);
    tracing::debug!(
        class = class.name,
        surface_s = start.elapsed().as_secs_f64(),
        "surface distances"
    );
    m.surface_dice = surface_dice(&sd, class.tolerance_mm);
    m.hd95_mm = Some(robust_hausdorff(&sd, 95.0));
    m.assd_mm = Some(assd(&sd));
    let (a, b) = average_surface_distance(&sd);
    m.asd_gt_to_pred_mm = Some(a);
    m.asd_pred_to_gt_mm = Some(b);
    m
}

/// Everything measured for one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseReport {
    /// File name without .nii / .nii.gz.
    pub case: String,
    /// Keyed by HEC name, in [`HECS`] order.
    pub hec: std::collections::BTreeMap<String, ClassMetrics>,
    /// Keyed by label name (kidney, tumor, cyst).
    pub labels: std::collections::BTreeMap<String, ClassMetrics>,
    pub detection: super::detection::Detection,
}

/// Both maps cropped to the bounding box of `pred > 0 ∪ truth > 0` (one zero voxel when both
/// are empty); spacing kept, origin not meaningful afterwards.
fn crop_to_foreground(
    pred: &Volume<u8>,
    truth: &Volume<u8>,
) -> Result<(Volume<u8>, Volume<u8>), VolumeError> {
    let [ni, nj, nk] = truth.dims();
    let rows: Vec<Option<(usize, usize, usize, usize)>> = (0..nj * nk)
        .into_par_iter()
        .map(|r| {
            let (a, b) = (
                &pred.data()[r * ni..(r + 1) * ni],
                &truth.data()[r * ni..(r + 1) * ni],
            );
            let first = (0..ni).find(|&i| a[i] != 0 || b[i] != 0)?;
            let last = (0..ni).rev().find(|&i| a[i] != 0 || b[i] != 0)?;
            Some((first, last, r % nj, r / nj))
        })
        .collect();
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    for (f, l, j, k) in rows.into_iter().flatten() {
        lo = [lo[0].min(f), lo[1].min(j), lo[2].min(k)];
        hi = [hi[0].max(l + 1), hi[1].max(j + 1), hi[2].max(k + 1)];
    }
    let geometry = truth.geometry().clone();
    if lo[0] == usize::MAX {
        let one = Volume::filled([1, 1, 1], geometry, 0u8)?;
        return Ok((one.clone(), one));
    }
    let dims = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
    let crop = |v: &Volume<u8>| {
        let mut out = Vec::with_capacity(dims.iter().product());
        for k in lo[2]..hi[2] {
            for j in lo[1]..hi[1] {
                let row = (k * nj + j) * ni;
                out.extend_from_slice(&v.data()[row + lo[0]..row + hi[0]]);
            }
        }
        Volume::new(dims, geometry.clone(), out)
    };
    Ok((crop(pred)?, crop(truth)?))
}

/// Evaluates one case on a shared grid.
pub fn evaluate_case(
    case: &str,
    pred: &Volume<u8>,
    truth: &Volume<u8>,
) -> Result<CaseReport, SegEvalError> {
    check_same_grid(pred, truth)?;
    // Every metric is unchanged by cropping both maps to the box of their joint foreground.
    let (pred, truth) = crop_to_foreground(pred, truth)?;
    let (pred, truth) = (&pred, &truth);
    Ok(CaseReport {
        case: case.to_string(),
        hec: HECS
            .iter()
            .map(|c| (c.name.to_string(), class_metrics(pred, truth, c)))
            .collect(),
        labels: LABELS
            .iter()
            .map(|c| (c.name.to_string(), class_metrics(pred, truth, c)))
            .collect(),
        detection: super::detection::detect(pred, truth),
    })
}

/// Means over cases of one class: Dice and Surface Dice over all cases; the distances over the
/// cases where they are defined (`n_distance` of them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeanMetrics {
    pub dice: f64,
    pub surface_dice: f64,
    pub hd95_mm: Option<f64>,
    pub assd_mm: Option<f64>,
    pub volume_error_ml: f64,
    pub n_cases: usize,
    pub n_distance: usize,
}

/// The whole evaluation (JSON schema `nephrod.eval.seg/1`, README).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegReport {
    pub schema: &'static str,
    pub cases: Vec<CaseReport>,
    pub mean: std::collections::BTreeMap<String, MeanMetrics>,
    pub mean_labels: std::collections::BTreeMap<String, MeanMetrics>,
    /// Lesion counts summed over cases.
    pub detection: DetectionSummary,
}

/// Detection counts over all cases.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DetectionSummary {
    pub all: super::detection::DetectionCounts,
    pub lt5mm: super::detection::DetectionCounts,
    pub ge5mm: super::detection::DetectionCounts,
}

fn mean_of(cases: &[CaseReport], pick: impl Fn(&CaseReport) -> &ClassMetrics) -> MeanMetrics {
    let n = cases.len();
    let avg = |v: Vec<f64>| -> Option<f64> {
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let hd: Vec<f64> = cases.iter().filter_map(|c| pick(c).hd95_mm).collect();
    let n_distance = hd.len();
    MeanMetrics {
        dice: avg(cases.iter().map(|c| pick(c).dice).collect()).unwrap_or(f64::NAN),
        surface_dice: avg(cases.iter().map(|c| pick(c).surface_dice).collect()).unwrap_or(f64::NAN),
        hd95_mm: avg(hd),
        assd_mm: avg(cases.iter().filter_map(|c| pick(c).assd_mm).collect()),
        volume_error_ml: avg(cases.iter().map(|c| pick(c).volume_error_ml).collect())
            .unwrap_or(f64::NAN),
        n_cases: n,
        n_distance,
    }
}

/// Summarises evaluated cases.
pub fn summarize(cases: Vec<CaseReport>) -> SegReport {
    let mean = HECS
        .iter()
        .map(|c| (c.name.to_string(), mean_of(&cases, |r| &r.hec[c.name])))
        .collect();
    let mean_labels = LABELS
        .iter()
        .map(|c| (c.name.to_string(), mean_of(&cases, |r| &r.labels[c.name])))
        .collect();
    let mut detection = DetectionSummary::default();
    for c in &cases {
        detection.all.add(&c.detection.all);
        detection.lt5mm.add(&c.detection.lt5mm);
        detection.ge5mm.add(&c.detection.ge5mm);
    }
    SegReport {
        schema: "nephrod.eval.seg/1",
        cases,
        mean,
        mean_labels,
        detection,
    }
}
