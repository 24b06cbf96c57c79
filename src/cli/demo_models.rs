//! The demo's check of the appliance pipeline against the phantom's truth.
//!
//! The pipeline itself ([`crate::pipeline`]) runs exactly as `nephrod analyze` runs it; this
//! module only compares its [`Analysis`] with the truth the phantom wrote:
//! * per phase, KiTS Dice (kidney = kidney ∪ tumour ∪ cyst, tumour, cyst) of the predicted
//!   label map against the phantom's label map of that phase (same grid: the phantom writes the
//!   DICOM series from that grid);
//! * per reported tumour, the truth lesion whose centre (reference-phase LPS mm, the frame of
//!   both) is nearest within [`MATCH_MM`]; truth tumours no reported lesion matched are listed.
//!
//! Models come from a models folder (`--models DIR`, else `$NEPHROD_MODELS`, else the `models/`
//! folder of the source tree nephrod was built from).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::eval::seg::evaluate_case;
use crate::phantom::truth::Truth;
use crate::pipeline::Analysis;

/// A reported lesion matches the nearest truth lesion centre within this distance (mm).
pub const MATCH_MM: f64 = 15.0;

/// The models folder: `explicit`, else `$NEPHROD_MODELS`, else the source tree's `models/`.
pub fn models_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os("NEPHROD_MODELS") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/models")),
    }
}

#[derive(Debug, Serialize)]
pub struct PhaseDice {
    pub phase: String,
    /// KiTS HEC Dice against the truth, `None` when the truth is missing or on another grid.
    pub kidney_dice: Option<f64>,
    pub tumour_dice: Option<f64>,
    pub cyst_dice: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct LesionCheck {
    pub lesion_id: usize,
    pub kind: String,
    pub predicted_class: Option<String>,
    pub truth_lesion_id: Option<usize>,
    pub truth_class: Option<String>,
    pub correct: Option<bool>,
}

/// The pipeline's results against the truth.
#[derive(Debug, Default, Serialize)]
pub struct TruthComparison {
    pub segmentation: Vec<PhaseDice>,
    pub lesions: Vec<LesionCheck>,
    /// Truth lesions of the five tumour subtypes that no reported lesion matched.
    pub truth_tumours_missed: Vec<usize>,
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |x| format!("{x:.3}"))
}

/// Compares `analysis` with `truth` (see the module doc) and prints one line per phase and
/// lesion.
pub fn compare_with_truth(
    analysis: &Analysis,
    truth: &Truth,
    case_dir: &Path,
) -> anyhow::Result<TruthComparison> {
    let mut cmp = TruthComparison::default();
    let report = &analysis.report;
    for entry in report.phases.iter().filter(|p| p.used) {
        let Some(file) = &entry.labels_file else {
            continue;
        };
        let Some((_, labels)) = analysis.label_maps.iter().find(|(f, _)| f == file) else {
            continue;
        };
        let truth_phase = truth
            .phases
            .iter()
            .find(|p| p.series_uid == entry.series_uid);
        let (mut kidney, mut tumour, mut cyst) = (None, None, None);
        if let Some(tp) = truth_phase {
            let tf = case_dir
                .join("labels")
                .join(format!("{}.nii.gz", tp.phase.as_str()));
            match crate::volume::nifti::read_labels(&tf) {
                Ok(t) if t.dims() == labels.dims() => {
                    let r = evaluate_case(tp.phase.as_str(), labels, &t)?;
                    kidney = r.hec.get("kidney_and_masses").map(|m| m.dice);
                    tumour = r.hec.get("tumor").map(|m| m.dice);
                    cyst = r.labels.get("cyst").map(|m| m.dice);
                }
                Ok(_) => tracing::warn!(phase = tp.phase.as_str(), "truth labels on another grid"),
                Err(e) => tracing::warn!(error = %e, "no truth labels"),
            }
        }
        println!(
            "  {:<12} Dice against the truth: kidney {} tumour {} cyst {}",
            entry.phase,
            fmt(kidney),
            fmt(tumour),
            fmt(cyst)
        );
        cmp.segmentation.push(PhaseDice {
            phase: entry.phase.clone(),
            kidney_dice: kidney,
            tumour_dice: tumour,
            cyst_dice: cyst,
        });
    }
    let mut matched = Vec::new();
    for l in &report.lesions {
        let c = l.center_lps_mm;
        let nearest = truth
            .lesions
            .iter()
            .map(|t| {
                let d = (0..3)
                    .map(|a| (t.centre_lps_mm[a] - c[a]).powi(2))
                    .sum::<f64>()
                    .sqrt();
                (t, d)
            })
            .filter(|(_, d)| *d <= MATCH_MM)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(t, _)| t);
        if let Some(t) = nearest {
            matched.push(t.id);
        }
        let predicted = l.subtype.as_ref().map(|s| s.top.clone());
        let truth_class = nearest.map(|t| t.class.as_str().to_string());
        let correct = match (&predicted, &truth_class) {
            (Some(p), Some(t)) => Some(p.eq_ignore_ascii_case(t)),
            _ => None,
        };
        println!(
            "  lesion {} ({}): {:<10} truth {:<10} {}",
            l.id,
            l.kind,
            predicted.as_deref().unwrap_or("not classified"),
            truth_class.as_deref().unwrap_or("none"),
            match correct {
                Some(true) => "ok",
                Some(false) => "WRONG",
                None => "",
            }
        );
        cmp.lesions.push(LesionCheck {
            lesion_id: l.id,
            kind: l.kind.clone(),
            predicted_class: predicted,
            truth_lesion_id: nearest.map(|t| t.id),
            truth_class,
            correct,
        });
    }
    cmp.truth_tumours_missed = truth
        .lesions
        .iter()
        .filter(|t| crate::classify::dataset::class_index(t.class.as_str()).is_some())
        .filter(|t| !matched.contains(&t.id))
        .map(|t| t.id)
        .collect();
    Ok(cmp)
}
