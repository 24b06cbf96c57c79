//! Classifies every tumour lesion of a registered study: crops per phase ([`super::crop`]),
//! phase triples and probability averaging ([`super::combine`]), the network of a
//! [`ClassifierBundle`], and optional Grad-CAM overlays for the top class.
//!
//! Inputs: the reference phase's label map and every phase's CT and labels on the reference
//! grid (see [`super::crop`]). Lesions are classified independently; a study with fewer than
//! three known phases yields "not classified: needs three phases" for every lesion.

use serde::Serialize;

use super::bundle::ClassifierBundle;
use super::combine::{combine, phase_triples, softmax, stack_image, NotClassified, Prediction};
use super::crop::{
    check_views, crop_phase, tumour_lesions, CropError, LesionRegion, PhaseCrop, PhaseView,
};
use super::error::ClassifyError;
use super::overlay::overlay_png;
use crate::dicom::phase::Phase;
use crate::volume::Volume;

/// Why a study could not be classified at all.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    Crop(#[from] CropError),
    #[error(transparent)]
    Model(#[from] ClassifyError),
}

/// A Grad-CAM overlay of one input channel.
#[derive(Debug, Clone, Serialize)]
pub struct GradCamImage {
    /// The triple of the network input it explains (time order).
    pub triple: [Phase; 3],
    /// The channel (phase) the overlay is drawn on.
    pub phase: Phase,
    /// The class explained (the lesion's top class).
    pub class: usize,
    #[serde(skip)]
    pub png: Vec<u8>,
}

/// One lesion's result.
#[derive(Debug, Clone, Serialize)]
pub struct LesionDiagnosis {
    pub lesion: LesionRegion,
    pub crops: Vec<PhaseCrop>,
    #[serde(flatten)]
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grad_cam: Vec<GradCamImage>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Classified(Prediction),
    NotClassified(NotClassified),
}

#[derive(Debug, Clone, Copy, Default)]
pub struct PredictOptions {
    pub grad_cam: bool,
}

/// Classifies every tumour lesion of `reference_labels` (see the module doc).
pub fn classify_study(
    bundle: &ClassifierBundle,
    reference_labels: &Volume<u8>,
    views: &[PhaseView],
    opts: PredictOptions,
) -> Result<Vec<LesionDiagnosis>, PredictError> {
    check_views(views, reference_labels)?;
    let settings = &bundle.manifest.crop;
    settings.validate()?;
    let [nr, nc] = settings.size;
    let mut ordered: Vec<PhaseView> = views.to_vec();
    ordered.sort_by_key(|v| v.phase);
    let triples = phase_triples(&ordered.iter().map(|v| v.phase).collect::<Vec<_>>());
    let mut out = Vec::new();
    for lesion in tumour_lesions(reference_labels) {
        let crops = ordered
            .iter()
            .filter(|v| v.phase != Phase::Unknown)
            .map(|v| crop_phase(v, &lesion, settings))
            .collect::<Result<Vec<_>, _>>()?;
        let (outcome, grad_cam) = match &triples {
            Err(nc) => (Outcome::NotClassified(nc.clone()), Vec::new()),
            Ok(triples) => {
                let mut images = Vec::with_capacity(triples.len());
                for t in triples {
                    // Every known phase has a crop, so a triple always stacks.
                    let img = stack_image(t, &crops, settings).ok_or_else(|| {
                        ClassifyError::Input(format!("no crop for a phase of {t:?}"))
                    })?;
                    images.push(img);
                }
                let flat: Vec<f32> = images.concat();
                let logits = bundle.network.logits(&flat, images.len(), nr, nc)?;
                let per_image: Vec<Vec<f64>> = logits.iter().map(|l| softmax(l)).collect();
                let prediction = combine(per_image).ok_or_else(|| {
                    ClassifyError::Input("the network gave no or malformed outputs".into())
                })?;
                let mut cams = Vec::new();
                if opts.grad_cam {
                    for (t, img) in triples.iter().zip(&images) {
                        let cam = bundle.network.grad_cam(img, nr, nc, prediction.top_class)?;
                        for p in t {
                            let Some(crop) = crops.iter().find(|c| c.phase == *p) else {
                                continue;
                            };
                            if let Some(png) = overlay_png(&crop.hu, &cam.heatmap, settings) {
                                cams.push(GradCamImage {
                                    triple: *t,
                                    phase: *p,
                                    class: prediction.top_class,
                                    png,
                                });
                            }
                        }
                    }
                }
                (Outcome::Classified(prediction), cams)
            }
        };
        out.push(LesionDiagnosis {
            lesion,
            crops,
            outcome,
            grad_cam,
        });
    }
    Ok(out)
}
