//! Lesion detection per connected component (seed 003; shared/docs/metrics.md).
//!
//! * Lesions: 26-connected components of the masses mask (labels 2 tumour or 3 cyst) in the
//!   truth and in the prediction.
//! * A predicted component overlapping (≥ 1 voxel) any truth lesion is a true positive,
//!   otherwise a false positive; a truth lesion overlapped by any predicted component is
//!   detected, otherwise a false negative.
//! * recall = detected / truth lesions, precision = true-positive components / predicted
//!   components, F1 = 2PR / (P + R) (0 when P = R = 0); each `None` when undefined.
//! * Size strata by mean lesion diameter, defined here as the equivalent-sphere diameter
//!   (6V/π)^(1/3) in mm of the component itself (truth lesions for recall, predicted
//!   components for precision): `lt5mm` (< 5 mm) and `ge5mm` (≥ 5 mm).

use serde::Serialize;

use crate::segment::postprocess::components_26;
use crate::volume::Volume;

/// Diameter (mm) separating the two strata.
pub const STRATUM_MM: f64 = 5.0;

/// One lesion (component) with its size and whether it was matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lesion {
    pub voxels: usize,
    pub diameter_mm: f64,
    pub matched: bool,
}

/// Counts and rates of one stratum (or all lesions).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DetectionCounts {
    pub truth_lesions: usize,
    pub detected: usize,
    #[serde(rename = "fn")]
    pub false_negatives: usize,
    pub pred_lesions: usize,
    pub tp_pred: usize,
    #[serde(rename = "fp")]
    pub false_positives: usize,
    pub recall: Option<f64>,
    pub precision: Option<f64>,
    pub f1: Option<f64>,
}

impl DetectionCounts {
    fn from_lesions<'a>(
        truth: impl Iterator<Item = &'a Lesion>,
        pred: impl Iterator<Item = &'a Lesion>,
    ) -> Self {
        let mut c = DetectionCounts::default();
        for l in truth {
            c.truth_lesions += 1;
            if l.matched {
                c.detected += 1;
            }
        }
        for l in pred {
            c.pred_lesions += 1;
            if l.matched {
                c.tp_pred += 1;
            }
        }
        c.finish();
        c
    }

    /// Derives FN, FP and the rates from the four counts.
    pub fn finish(&mut self) {
        self.false_negatives = self.truth_lesions - self.detected;
        self.false_positives = self.pred_lesions - self.tp_pred;
        self.recall =
            (self.truth_lesions > 0).then(|| self.detected as f64 / self.truth_lesions as f64);
        self.precision =
            (self.pred_lesions > 0).then(|| self.tp_pred as f64 / self.pred_lesions as f64);
        self.f1 = match (self.precision, self.recall) {
            (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
            (Some(_), Some(_)) => Some(0.0),
            _ => None,
        };
    }

    /// Sums counts (rates recomputed).
    pub fn add(&mut self, o: &DetectionCounts) {
        self.truth_lesions += o.truth_lesions;
        self.detected += o.detected;
        self.pred_lesions += o.pred_lesions;
        self.tp_pred += o.tp_pred;
        self.finish();
    }
}

/// Detection of one case: all lesions and the two size strata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    pub all: DetectionCounts,
    pub lt5mm: DetectionCounts,
    pub ge5mm: DetectionCounts,
    pub truth: Vec<Lesion>,
    pub pred: Vec<Lesion>,
}

fn lesions(v: &Volume<u8>) -> (Vec<u32>, Vec<usize>) {
    let d = v.dims();
    let mask: Vec<bool> = v.data().iter().map(|&l| l == 2 || l == 3).collect();
    components_26(&mask, [d[2], d[1], d[0]])
}

/// Detection for one case (same grid).
pub fn detect(pred: &Volume<u8>, truth: &Volume<u8>) -> Detection {
    let voxel_mm3: f64 = truth.geometry().spacing_mm.iter().product();
    let diameter = |n: usize| (6.0 * n as f64 * voxel_mm3 / std::f64::consts::PI).cbrt();
    let (tid, tsizes) = lesions(truth);
    let (pid, psizes) = lesions(pred);
    let mut tmatched = vec![false; tsizes.len()];
    let mut pmatched = vec![false; psizes.len()];
    for (t, p) in tid.iter().zip(&pid) {
        if *t != 0 && *p != 0 {
            tmatched[*t as usize - 1] = true;
            pmatched[*p as usize - 1] = true;
        }
    }
    let make = |sizes: &[usize], matched: &[bool]| -> Vec<Lesion> {
        sizes
            .iter()
            .zip(matched)
            .map(|(&voxels, &matched)| Lesion {
                voxels,
                diameter_mm: diameter(voxels),
                matched,
            })
            .collect()
    };
    let truth_l = make(&tsizes, &tmatched);
    let pred_l = make(&psizes, &pmatched);
    let small = |l: &&Lesion| l.diameter_mm < STRATUM_MM;
    let large = |l: &&Lesion| l.diameter_mm >= STRATUM_MM;
    Detection {
        all: DetectionCounts::from_lesions(truth_l.iter(), pred_l.iter()),
        lt5mm: DetectionCounts::from_lesions(
            truth_l.iter().filter(small),
            pred_l.iter().filter(small),
        ),
        ge5mm: DetectionCounts::from_lesions(
            truth_l.iter().filter(large),
            pred_l.iter().filter(large),
        ),
        truth: truth_l,
        pred: pred_l,
    }
}
