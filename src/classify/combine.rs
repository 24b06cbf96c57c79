//! Which phases make the classifier's 3-channel images, and how their predictions combine
//! (seed 001, shared/docs/method.md A.3).
//!
//! * Channels are phases in time order (non-contrast < arterial < portal < delayed).
//! * Exactly three known phases → one image. Four → three images, each leaving out one
//!   contrast phase (arterial, portal, delayed in turn); their softmax probabilities are
//!   averaged (arithmetic mean per class). Fewer than three known phases → not classified.
//!   Phases detected as `unknown` are not used and are listed.
//! * Benign probability = P(oncocytoma) + P(AML); malignant = 1 − benign.

use serde::Serialize;

use super::crop::PhaseCrop;
use super::settings::{CropSettings, BENIGN_CLASSES, CLASSES};
use crate::dicom::phase::Phase;

/// Why a lesion was not classified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotClassified {
    /// "needs three phases".
    pub reason: String,
    /// The phases the study has (time order), including unusable ones.
    pub phases_found: Vec<Phase>,
}

/// The phase triples to classify, in the order described in the module doc.
pub fn phase_triples(phases: &[Phase]) -> Result<Vec<[Phase; 3]>, NotClassified> {
    let mut found: Vec<Phase> = phases.to_vec();
    found.sort();
    found.dedup();
    let known: Vec<Phase> = found
        .iter()
        .copied()
        .filter(|p| *p != Phase::Unknown)
        .collect();
    match known.len() {
        3 => Ok(vec![[known[0], known[1], known[2]]]),
        4 => Ok([Phase::Arterial, Phase::Portal, Phase::Delayed]
            .iter()
            .map(|left_out| {
                let t: Vec<Phase> = known.iter().copied().filter(|p| p != left_out).collect();
                [t[0], t[1], t[2]]
            })
            .collect()),
        _ => Err(NotClassified {
            reason: "needs three phases".to_string(),
            phases_found: found,
        }),
    }
}

/// The normalised 3×rows×columns network input of one triple, from the lesion's crops.
/// `None` if a phase of the triple has no crop.
pub fn stack_image(
    triple: &[Phase; 3],
    crops: &[PhaseCrop],
    settings: &CropSettings,
) -> Option<Vec<f32>> {
    let [nr, nc] = settings.size;
    let mut out = Vec::with_capacity(3 * nr * nc);
    for (c, p) in triple.iter().enumerate() {
        let crop = crops.iter().find(|k| k.phase == *p)?;
        if crop.hu.len() != nr * nc {
            return None;
        }
        out.extend(crop.hu.iter().map(|v| settings.normalise(*v, c)));
    }
    Some(out)
}

/// Softmax in f64 (max-subtracted).
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let m = logits
        .iter()
        .fold(f64::NEG_INFINITY, |a, b| a.max(*b as f64));
    let e: Vec<f64> = logits.iter().map(|v| (*v as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// A lesion's combined prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// Per class, in [`CLASSES`] order; sums to 1.
    pub probabilities: Vec<f64>,
    /// Index into [`CLASSES`] of the most probable class.
    pub top_class: usize,
    pub top_class_name: &'static str,
    /// The two most probable classes (index), for top-2 reading.
    pub top2: [usize; 2],
    pub benign_probability: f64,
    pub malignant_probability: f64,
    /// Each image's probabilities, in `phase_triples` order.
    pub per_image: Vec<Vec<f64>>,
}

/// Averages per-image probabilities (`per_image` non-empty, each of [`CLASSES`] length).
pub fn combine(per_image: Vec<Vec<f64>>) -> Option<Prediction> {
    let k = CLASSES.len();
    if per_image.is_empty() || per_image.iter().any(|p| p.len() != k) {
        return None;
    }
    let n = per_image.len() as f64;
    let probabilities: Vec<f64> = (0..k)
        .map(|c| per_image.iter().map(|p| p[c]).sum::<f64>() / n)
        .collect();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|a, b| {
        probabilities[*b]
            .total_cmp(&probabilities[*a])
            .then(a.cmp(b))
    });
    let benign: f64 = BENIGN_CLASSES.iter().map(|c| probabilities[*c]).sum();
    Some(Prediction {
        top_class: order[0],
        top_class_name: CLASSES[order[0]],
        top2: [order[0], order[1]],
        benign_probability: benign,
        malignant_probability: 1.0 - benign,
        probabilities,
        per_image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Phase::*;

    #[test]
    fn triples_follow_seed_001() {
        assert_eq!(
            phase_triples(&[Delayed, NonContrast, Portal]).unwrap(),
            vec![[NonContrast, Portal, Delayed]]
        );
        assert_eq!(
            phase_triples(&[Portal, Arterial, Delayed, NonContrast]).unwrap(),
            vec![
                [NonContrast, Portal, Delayed],
                [NonContrast, Arterial, Delayed],
                [NonContrast, Arterial, Portal]
            ]
        );
        let e = phase_triples(&[Portal, Unknown, Arterial]).unwrap_err();
        assert_eq!(e.reason, "needs three phases");
        assert_eq!(e.phases_found, vec![Arterial, Portal, Unknown]);
        assert!(phase_triples(&[Portal, Portal, Arterial]).is_err());
    }

    #[test]
    fn combine_averages_and_sums_benign() {
        let p = combine(vec![
            vec![0.5, 0.1, 0.1, 0.2, 0.1],
            vec![0.1, 0.1, 0.1, 0.6, 0.1],
        ])
        .unwrap();
        let want = [0.3, 0.1, 0.1, 0.4, 0.1];
        for (a, b) in p.probabilities.iter().zip(want) {
            assert!((a - b).abs() < 1e-12);
        }
        assert_eq!(p.top_class, 3);
        assert_eq!(p.top2, [3, 0]);
        assert!((p.benign_probability - 0.5).abs() < 1e-12);
        assert!(combine(vec![]).is_none());
    }

    #[test]
    fn softmax_is_stable() {
        let s = softmax(&[1000.0, 1000.0, f32::MIN, 0.0, 999.0]);
        assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((s[0] - s[1]).abs() < 1e-15 && s[0] > s[4]);
    }
}
