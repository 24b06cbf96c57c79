//! The model stages of `nephrod demo`: segmentation of every phase, registration of the phases,
//! classification of every tumour lesion, each compared with the phantom's truth.
//!
//! Models come from a models folder holding the two demo bundles ([`SEG_BUNDLE`],
//! [`CLS_BUNDLE`]); the folder is `--models DIR`, else `$NEPHROD_MODELS`, else the `models/`
//! folder of the source tree nephrod was built from. A missing bundle is reported (the stage is
//! listed as not run, with the reason) and is not an error: ingest still runs.
//!
//! Truth comparisons: per phase, KiTS Dice (kidney = kidney ∪ tumour ∪ cyst, tumour, cyst) of
//! the predicted label map against the phantom's label map of that phase (same grid: the
//! phantom writes the DICOM series from that grid); per classified lesion, the truth lesion whose
//! centre (reference-phase LPS mm, the frame of both) is nearest within [`MATCH_MM`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use crate::classify::bundle::ClassifierBundle;
use crate::classify::crop::PhaseView;
use crate::classify::predict::{classify_study, Outcome, PredictOptions};
use crate::classify::settings::CLASSES;
use crate::dicom::phase::Phase;
use crate::engine::Backend;
use crate::eval::seg::evaluate_case;
use crate::models::bundle::Bundle;
use crate::phantom::truth::{LesionTruth, Truth};
use crate::register::{register_study, PhaseInput, RegisterOptions};
use crate::segment::pipeline::{segment_volume, SegmentOptions};
use crate::volume::{nifti, Volume};

/// Segmentation bundle folder name inside the models folder.
pub const SEG_BUNDLE: &str = "kidney-seg-demo";
/// Classifier bundle folder name inside the models folder.
pub const CLS_BUNDLE: &str = "renal-mass-classifier-demo";
/// A classified lesion matches the nearest truth lesion centre within this distance (mm).
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

/// One ingested phase handed to the model stages.
pub struct DemoPhase {
    pub phase: Phase,
    /// The phase the phantom acquired (for the truth label map); `None` if unknown.
    pub truth_phase: Option<Phase>,
    pub ct: Volume<f32>,
}

#[derive(Debug, Serialize)]
pub struct PhaseSegmentation {
    pub phase: Phase,
    pub seconds: f64,
    pub labels_file: PathBuf,
    /// KiTS HEC Dice against the truth, `None` when the truth is missing or on another grid.
    pub kidney_dice: Option<f64>,
    pub tumour_dice: Option<f64>,
    pub cyst_dice: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct LesionResult {
    pub lesion_id: usize,
    pub centre_lps_mm: [f64; 3],
    pub voxels: usize,
    pub predicted_class: Option<&'static str>,
    pub probabilities: Option<Vec<f64>>,
    pub benign_probability: Option<f64>,
    pub not_classified_reason: Option<String>,
    pub truth_lesion_id: Option<usize>,
    pub truth_class: Option<String>,
    pub correct: Option<bool>,
}

#[derive(Debug, Default, Serialize)]
pub struct ModelStages {
    pub models_dir: PathBuf,
    pub stages_run: Vec<&'static str>,
    /// Stage → why it did not run.
    pub stages_not_run: Vec<(String, String)>,
    /// Whether segmentation used mirroring test-time augmentation.
    pub segmentation_tta: bool,
    pub segmentation: Vec<PhaseSegmentation>,
    pub reference_phase: Option<Phase>,
    pub registration: Option<serde_json::Value>,
    pub lesions: Vec<LesionResult>,
    /// Truth tumours (five subtypes) no classified lesion matched.
    pub truth_tumours_missed: Vec<usize>,
}

fn not_run(st: &mut ModelStages, stage: &str, why: String) {
    println!("  {stage}: not run ({why})");
    st.stages_not_run.push((stage.to_string(), why));
}

/// Runs segmentation, registration and classification on `phases`; writes label maps under
/// `result/labels/`.
pub fn run_model_stages(
    phases: Vec<DemoPhase>,
    truth: &Truth,
    case_dir: &Path,
    result: &Path,
    models: &Path,
    backend: &dyn Backend,
    mirroring: bool,
) -> anyhow::Result<ModelStages> {
    let mut st = ModelStages {
        models_dir: models.to_path_buf(),
        segmentation_tta: mirroring,
        ..Default::default()
    };
    let seg_dir = models.join(SEG_BUNDLE);
    let bundle = match Bundle::open(&seg_dir) {
        Ok(b) => b,
        Err(e) => {
            not_run(
                &mut st,
                "segmentation",
                format!("{}: {e}", seg_dir.display()),
            );
            not_run(&mut st, "registration", "needs segmentation".into());
            not_run(&mut st, "classification", "needs segmentation".into());
            return Ok(st);
        }
    };
    let labels_dir = result.join("labels");
    std::fs::create_dir_all(&labels_dir)?;
    let mut inputs = Vec::new();
    for p in phases {
        let t0 = Instant::now();
        let labels = segment_volume(
            &p.ct,
            &bundle,
            backend,
            SegmentOptions {
                mirroring,
                ..SegmentOptions::default()
            },
            &mut |_| {},
        )
        .with_context(|| format!("segmenting the {} phase", p.phase.as_str()))?;
        let seconds = t0.elapsed().as_secs_f64();
        let file = labels_dir.join(format!("{}.nii.gz", p.phase.as_str()));
        nifti::write(&file, &labels).with_context(|| format!("writing {}", file.display()))?;
        let (mut kidney, mut tumour, mut cyst) = (None, None, None);
        if let Some(tp) = p.truth_phase {
            let tf = case_dir
                .join("labels")
                .join(format!("{}.nii.gz", tp.as_str()));
            match nifti::read_labels(&tf) {
                Ok(t) if t.dims() == labels.dims() => {
                    let r = evaluate_case(tp.as_str(), &labels, &t)?;
                    kidney = r.hec.get("kidney_and_masses").map(|m| m.dice);
                    tumour = r.hec.get("tumor").map(|m| m.dice);
                    cyst = r.labels.get("cyst").map(|m| m.dice);
                }
                Ok(_) => tracing::warn!(phase = tp.as_str(), "truth labels on another grid"),
                Err(e) => tracing::warn!(error = %e, "no truth labels"),
            }
        }
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3}"));
        println!(
            "  segmented {:<12} {:>5.1} s   Dice kidney {} tumour {} cyst {}",
            p.phase.as_str(),
            seconds,
            fmt(kidney),
            fmt(tumour),
            fmt(cyst)
        );
        st.segmentation.push(PhaseSegmentation {
            phase: p.phase,
            seconds,
            labels_file: file,
            kidney_dice: kidney,
            tumour_dice: tumour,
            cyst_dice: cyst,
        });
        inputs.push(PhaseInput {
            phase: p.phase,
            ct: p.ct,
            labels,
        });
    }
    st.stages_run.push("segmentation");

    let study = match register_study(backend, inputs, &RegisterOptions::default()) {
        Ok(s) => s,
        Err(e) => {
            not_run(&mut st, "registration", e.to_string());
            not_run(&mut st, "classification", "needs registration".into());
            return Ok(st);
        }
    };
    st.stages_run.push("registration");
    st.reference_phase = Some(study.reference_phase);
    st.registration = Some(serde_json::to_value(study.report())?);

    let cls_dir = models.join(CLS_BUNDLE);
    let cls = match ClassifierBundle::open(&cls_dir) {
        Ok(b) => b,
        Err(e) => {
            not_run(
                &mut st,
                "classification",
                format!("{}: {e}", cls_dir.display()),
            );
            return Ok(st);
        }
    };
    let Some(reference) = study.reference() else {
        not_run(&mut st, "classification", "no reference phase".into());
        return Ok(st);
    };
    let views = PhaseView::of_study(&study);
    let diagnoses = classify_study(&cls, &reference.labels, &views, PredictOptions::default())?;
    st.stages_run.push("classification");
    let tumours: Vec<&LesionTruth> = truth
        .lesions
        .iter()
        .filter(|l| crate::classify::dataset::class_index(l.class.as_str()).is_some())
        .collect();
    let mut matched = Vec::new();
    for d in &diagnoses {
        let c = d.lesion.centre_lps_mm;
        let nearest = truth
            .lesions
            .iter()
            .map(|t| {
                let dist = (0..3)
                    .map(|a| (t.centre_lps_mm[a] - c[a]).powi(2))
                    .sum::<f64>()
                    .sqrt();
                (t, dist)
            })
            .filter(|(_, dist)| *dist <= MATCH_MM)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(t, _)| t);
        let (pred, probs, benign, reason) = match &d.outcome {
            Outcome::Classified(p) => (
                Some(CLASSES[p.top_class]),
                Some(p.probabilities.clone()),
                Some(p.benign_probability),
                None,
            ),
            Outcome::NotClassified(n) => (None, None, None, Some(format!("{n:?}"))),
        };
        if let Some(t) = nearest {
            matched.push(t.id);
        }
        let truth_class = nearest.map(|t| t.class.as_str().to_string());
        let correct = match (pred, &truth_class) {
            (Some(p), Some(t)) => Some(p == t.as_str()),
            _ => None,
        };
        println!(
            "  lesion {}: {:<10} truth {:<10} {}",
            d.lesion.id,
            pred.unwrap_or("not classified"),
            truth_class.as_deref().unwrap_or("none"),
            match correct {
                Some(true) => "ok",
                Some(false) => "WRONG",
                None => "",
            }
        );
        st.lesions.push(LesionResult {
            lesion_id: d.lesion.id,
            centre_lps_mm: c,
            voxels: d.lesion.voxels,
            predicted_class: pred,
            probabilities: probs,
            benign_probability: benign,
            not_classified_reason: reason,
            truth_lesion_id: nearest.map(|t| t.id),
            truth_class,
            correct,
        });
    }
    st.truth_tumours_missed = tumours
        .iter()
        .filter(|t| !matched.contains(&t.id))
        .map(|t| t.id)
        .collect();
    Ok(st)
}
