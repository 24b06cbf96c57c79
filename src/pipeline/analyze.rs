//! One study, end to end: ingest → phase selection → segmentation of every used phase →
//! post-processing → registration to the reference phase → measurements → per-lesion
//! classification → [`Analysis`] (the report plus the files it refers to).
//!
//! Nothing here writes files: [`super::output`] does, atomically. Failures of one phase's
//! registration or of the classifier become report warnings (the rest of the study is still
//! reported); a study that cannot be analysed at all is an [`AnalyzeError`].
//!
//! Frames: measurements are taken on the reference phase's grid (every other phase resampled
//! onto it by its registration); label maps are written on each series' own grid.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use super::measure::{enhancement, kidney_volumes, mean_hu};
use super::models::ModelSet;
use super::select::{select_series, Selection};
use crate::classify::crop::PhaseView;
use crate::classify::predict::{classify_study, LesionDiagnosis, Outcome, PredictOptions};
use crate::classify::settings::CLASSES;
use crate::dicom::ingest::{ingest, Ingested};
use crate::dicom::phase::Phase;
use crate::engine::Backend;
use crate::models::bundle::rfc3339_utc;
use crate::privacy::uid_hash;
use crate::register::study::choose_reference;
use crate::register::{register_study, PhaseInput, RegisterOptions, StudyRegistration};
use crate::report::key_image::key_image_png;
use crate::report::schema::{
    ImageEntry, KidneyEntry, LesionEntry, PhaseEntry, RegistrationEntry, Report,
    SegmentationSettings, Subtype, SCHEMA,
};
use crate::segment::instances::{lesion_instances, LesionKind, Pole, Side};
use crate::segment::pipeline::{SegmentError, SegmentOptions};
use crate::segment::postprocess::postprocess_kits;
use crate::volume::Volume;

/// How to analyse.
#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    /// nnU-Net's mirroring test-time augmentation (8× the network evaluations).
    pub mirroring: bool,
    pub nnunet_postprocessing: bool,
    /// Seed 004's KiTS post-processing on every phase's label map.
    pub kits_postprocessing: bool,
    /// Grad-CAM overlays for every classified lesion.
    pub grad_cam: bool,
    /// At most this many lesions are reported, the largest; the others are counted in a
    /// warning (a failing model must not turn a report into thousands of specks).
    pub max_lesions: usize,
    pub register: RegisterOptions,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        Self {
            mirroring: true,
            nnunet_postprocessing: true,
            kits_postprocessing: true,
            grad_cam: true,
            max_lesions: 25,
            register: RegisterOptions::default(),
        }
    }
}

/// Progress of the running stage (`done` of `total` units; tiles for segmentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<'a> {
    pub stage: &'a str,
    pub done: usize,
    pub total: usize,
}

/// An analysed study: the report and the files it names (paths relative to the output folder).
pub struct Analysis {
    pub report: Report,
    pub label_maps: Vec<(String, Volume<u8>)>,
    pub images: Vec<(String, Vec<u8>)>,
}

/// Why a study could not be analysed at all.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("no DICOM CT study found ({skipped} file(s) skipped)")]
    NoStudy { skipped: usize },
    #[error("{count} studies found (hashes {hashes}): one study per analysis")]
    SeveralStudies { count: usize, hashes: String },
    #[error("no usable series: {0}")]
    NoUsableSeries(String),
    #[error("segmenting the {phase} phase: {source}")]
    Segmentation {
        phase: &'static str,
        #[source]
        source: SegmentError,
    },
}

impl AnalyzeError {
    /// Whether the input itself is at fault (quarantine it) rather than the appliance.
    pub fn is_input_error(&self) -> bool {
        !matches!(self, AnalyzeError::Segmentation { .. })
    }
}

/// Ingests `dir` and analyses its one study.
pub fn analyze_dir(
    dir: &Path,
    models: &ModelSet,
    backend: &dyn Backend,
    opts: &AnalyzeOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Analysis, AnalyzeError> {
    progress(Progress {
        stage: "ingest",
        done: 0,
        total: 1,
    });
    let t0 = Instant::now();
    let ingested = ingest(dir, true);
    let seconds = t0.elapsed().as_secs_f64();
    let mut analysis = analyze_ingested(ingested, models, backend, opts, progress)?;
    analysis
        .report
        .timings_s
        .insert("ingest".into(), round_ms(seconds));
    Ok(analysis)
}

fn round_ms(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

fn side_name(s: Side) -> String {
    match s {
        Side::Left => "left".into(),
        Side::Right => "right".into(),
    }
}

/// One used phase before registration.
struct Segmented {
    series_uid: String,
    input: PhaseInput,
}

/// Analyses an ingested folder holding exactly one study.
pub fn analyze_ingested(
    ingested: Ingested,
    models: &ModelSet,
    backend: &dyn Backend,
    opts: &AnalyzeOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Analysis, AnalyzeError> {
    let Ingested { report, volumes } = ingested;
    let mut warnings = Vec::new();
    if !report.skipped.is_empty() {
        warnings.push(format!(
            "{} file(s) were not part of any assembled series (not DICOM, not CT, or unreadable)",
            report.skipped.len()
        ));
    }
    let count = report.studies.len();
    if count == 0 {
        return Err(AnalyzeError::NoStudy {
            skipped: report.skipped.len(),
        });
    }
    if count > 1 {
        let hashes: Vec<String> = report
            .studies
            .iter()
            .map(|s| uid_hash(&s.study_uid))
            .collect();
        return Err(AnalyzeError::SeveralStudies {
            count,
            hashes: hashes.join(", "),
        });
    }
    let (Some(study), Some(vols)) = (
        report.studies.into_iter().next(),
        volumes.into_iter().next(),
    ) else {
        return Err(AnalyzeError::NoStudy { skipped: 0 });
    };
    let has_volume: Vec<bool> = vols.iter().map(Option::is_some).collect();
    let selection = select_series(&study.series, &has_volume);
    let mut timings = BTreeMap::new();
    let mut phases = Vec::new();
    let mut label_maps = Vec::new();
    let mut segmented: Vec<Segmented> = Vec::new();
    for ((se, vol), sel) in study.series.iter().zip(vols).zip(&selection) {
        let mut entry = PhaseEntry {
            series_uid: se.series_uid.clone(),
            series_number: se.series_number,
            description: se.description.clone(),
            phase: se.phase.as_str().into(),
            phase_confidence: se.phase_confidence,
            phase_evidence: se.phase_evidence.clone(),
            used: false,
            not_used_reason: None,
            dims: se.dims,
            spacing_mm: se.spacing_mm,
            labels_file: None,
        };
        for w in &se.warnings {
            warnings.push(format!("series {}: {w}", uid_hash(&se.series_uid)));
        }
        match (sel, vol) {
            (Selection::Used, Some(ct)) => {
                let stage = format!("segmentation_{}", se.phase.as_str());
                let t0 = Instant::now();
                let mut labels = models
                    .segmentation
                    .segment(
                        &ct,
                        backend,
                        SegmentOptions {
                            mirroring: opts.mirroring,
                            nnunet_postprocessing: opts.nnunet_postprocessing,
                        },
                        &mut |p| {
                            progress(Progress {
                                stage: &stage,
                                done: p.done,
                                total: p.total,
                            })
                        },
                    )
                    .map_err(|source| AnalyzeError::Segmentation {
                        phase: se.phase.as_str(),
                        source,
                    })?;
                if opts.kits_postprocessing {
                    let [ni, nj, nk] = labels.dims();
                    let pp = postprocess_kits(labels.data_mut(), [nk, nj, ni]);
                    tracing::debug!(phase = se.phase.as_str(), ?pp, "KiTS post-processing");
                }
                timings.insert(stage, round_ms(t0.elapsed().as_secs_f64()));
                let file = format!("labels/{}.nii.gz", se.phase.as_str());
                label_maps.push((file.clone(), labels.clone()));
                entry.used = true;
                entry.labels_file = Some(file);
                segmented.push(Segmented {
                    series_uid: se.series_uid.clone(),
                    input: PhaseInput {
                        phase: se.phase,
                        ct,
                        labels,
                    },
                });
            }
            (Selection::Used, None) => {
                entry.not_used_reason = Some("no volume".into());
            }
            (Selection::NotUsed(reason), _) => entry.not_used_reason = Some(reason.clone()),
        }
        phases.push(entry);
    }
    if segmented.is_empty() {
        let reasons: Vec<String> = phases
            .iter()
            .map(|p| {
                format!(
                    "series {} ({}): {}",
                    uid_hash(&p.series_uid),
                    p.phase,
                    p.not_used_reason.as_deref().unwrap_or("?")
                )
            })
            .collect();
        return Err(AnalyzeError::NoUsableSeries(reasons.join("; ")));
    }
    let series_of: BTreeMap<Phase, String> = segmented
        .iter()
        .map(|s| (s.input.phase, s.series_uid.clone()))
        .collect();

    // Registration (a failure keeps the reference phase alone, with a warning).
    progress(Progress {
        stage: "registration",
        done: 0,
        total: segmented.len().saturating_sub(1),
    });
    let t0 = Instant::now();
    let inputs: Vec<PhaseInput> = segmented.into_iter().map(|s| s.input).collect();
    let kinds: Vec<Phase> = inputs.iter().map(|p| p.phase).collect();
    let fallback = choose_reference(&kinds).map(|(i, _)| inputs[i].clone());
    let study_reg = match register_study(backend, inputs, &opts.register) {
        Ok(s) => s,
        Err(e) => {
            warnings.push(format!(
                "registration failed ({}): {e}; only the reference phase is measured",
                e.kind()
            ));
            let phase = fallback.as_ref().map_or(Phase::Unknown, |p| p.phase);
            StudyRegistration::unregistered(fallback.into_iter().collect(), phase)
        }
    };
    timings.insert("registration".into(), round_ms(t0.elapsed().as_secs_f64()));
    for f in &study_reg.failures {
        warnings.push(format!(
            "the {} phase could not be aligned ({}): {}; it is left out of the measurements",
            f.phase.as_str(),
            f.kind,
            f.message
        ));
    }
    let registration: Vec<RegistrationEntry> = study_reg
        .phases
        .iter()
        .filter_map(|p| {
            let r = p.registration.as_ref()?;
            let m = r.reference_to_moving_lps;
            Some(RegistrationEntry {
                moving_series_uid: series_of.get(&p.phase).cloned().unwrap_or_default(),
                moving_phase: p.phase.as_str().into(),
                matrix_ref_to_moving_lps: std::array::from_fn(|k| m[k / 4][k % 4]),
                dice_kidney: r.dice_aligned.kidney,
                dice_tumor: r.dice_aligned.tumor,
                dice_com_kidney: r.dice_centre_of_mass.kidney,
                dice_com_tumor: r.dice_centre_of_mass.tumor,
                converged: r.converged,
            })
        })
        .collect();

    // Measurements on the reference grid.
    let t0 = Instant::now();
    let mut kidneys = Vec::new();
    let mut lesions = Vec::new();
    let mut images = Vec::new();
    let reference = study_reg.reference();
    if let Some(reference) = reference {
        kidneys = kidney_volumes(&reference.labels)
            .into_iter()
            .map(|k| KidneyEntry {
                side: side_name(k.side),
                volume_ml: k.volume_ml,
                volume_with_masses_ml: k.volume_with_masses_ml,
            })
            .collect();
        if kidneys.is_empty() {
            warnings.push("no kidney was segmented in the reference phase".into());
        }
        let mut found = lesion_instances(&reference.labels);
        if found.len() > opts.max_lesions {
            found.sort_by(|a, b| b.voxels.cmp(&a.voxels).then(a.id.cmp(&b.id)));
            let dropped = found.split_off(opts.max_lesions);
            let largest = dropped.iter().map(|l| l.volume_ml).fold(0.0, f64::max);
            warnings.push(format!(
                "{} further segmented lesions (each {largest:.2} mL or smaller) are not reported: \
                 at most the {} largest are",
                dropped.len(),
                opts.max_lesions
            ));
            found.sort_by_key(|l| l.id);
        }
        for l in found {
            let mut hu = BTreeMap::new();
            for p in &study_reg.phases {
                if let Some(v) = mean_hu(&p.ct, &l.members) {
                    hu.insert(p.phase, v);
                }
            }
            let half_width = (1.5 * l.max_axial_diameter_mm).max(30.0);
            let mut lesion_images = Vec::new();
            for p in &study_reg.phases {
                if let Some(png) = key_image_png(&p.ct, &p.labels, l.centre_lps_mm, half_width) {
                    let file = format!("images/lesion-{}-{}.png", l.id, p.phase.as_str());
                    lesion_images.push(ImageEntry {
                        kind: "key_image".into(),
                        phase: p.phase.as_str().into(),
                        file: file.clone(),
                    });
                    images.push((file, png));
                }
            }
            lesions.push(LesionEntry {
                id: l.id,
                kind: match l.kind {
                    LesionKind::Tumour => "tumor".into(),
                    LesionKind::Cyst => "cyst".into(),
                },
                side: side_name(l.side),
                pole: match l.pole {
                    Pole::Upper => Some("upper".into()),
                    Pole::Middle => Some("mid".into()),
                    Pole::Lower => Some("lower".into()),
                    Pole::Unknown => None,
                },
                center_lps_mm: l.centre_lps_mm,
                volume_ml: l.volume_ml,
                max_axial_diameter_mm: l.max_axial_diameter_mm,
                enhancement_hu: enhancement(&hu)
                    .into_iter()
                    .map(|(p, v)| (p.as_str().to_string(), v))
                    .collect(),
                mean_hu: hu
                    .into_iter()
                    .map(|(p, v)| (p.as_str().to_string(), v))
                    .collect(),
                subtype: None,
                not_classified_reason: None,
                images: lesion_images,
            });
        }
    }
    timings.insert("measurement".into(), round_ms(t0.elapsed().as_secs_f64()));

    // Classification of every tumour.
    let t0 = Instant::now();
    progress(Progress {
        stage: "classification",
        done: 0,
        total: lesions.len(),
    });
    let diagnoses: Result<Vec<LesionDiagnosis>, String> = match (&models.classifier, reference) {
        (None, _) => Err(models
            .classifier_missing
            .clone()
            .unwrap_or_else(|| "no classifier model".into())),
        (Some(_), None) => Err("no reference phase".into()),
        (Some((cls, _)), Some(reference)) => classify_study(
            cls,
            &reference.labels,
            &PhaseView::of_study(&study_reg),
            PredictOptions {
                grad_cam: opts.grad_cam,
            },
        )
        .map_err(|e| {
            warnings.push(format!("classification failed: {e}"));
            format!("classification failed: {e}")
        }),
    };
    for lesion in &mut lesions {
        if lesion.kind == "cyst" {
            lesion.not_classified_reason = Some("cyst: the subtypes describe solid tumours".into());
            continue;
        }
        let found = match &diagnoses {
            Err(reason) => Err(reason.clone()),
            Ok(d) => d
                .iter()
                .find(|d| d.lesion.id == lesion.id)
                .ok_or_else(|| "no classifier output for this lesion".to_string()),
        };
        match found.map(|d| (&d.outcome, &d.grad_cam)) {
            Err(reason) => lesion.not_classified_reason = Some(reason),
            Ok((Outcome::NotClassified(n), _)) => {
                lesion.not_classified_reason = Some(n.reason.clone())
            }
            Ok((Outcome::Classified(p), cams)) => {
                lesion.subtype = Some(Subtype {
                    probabilities: CLASSES
                        .iter()
                        .zip(&p.probabilities)
                        .map(|(c, v)| (c.to_string(), *v))
                        .collect(),
                    top: p.top_class_name.to_string(),
                    malignant_probability: p.malignant_probability,
                });
                for (k, cam) in cams.iter().enumerate() {
                    let file = format!(
                        "images/lesion-{}-gradcam-{}-{}.png",
                        lesion.id,
                        k,
                        cam.phase.as_str()
                    );
                    lesion.images.push(ImageEntry {
                        kind: "grad_cam".into(),
                        phase: cam.phase.as_str().into(),
                        file: file.clone(),
                    });
                    images.push((file, cam.png.clone()));
                }
            }
        }
    }
    timings.insert(
        "classification".into(),
        round_ms(t0.elapsed().as_secs_f64()),
    );

    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let report = Report {
        schema: SCHEMA.into(),
        nephrod_version: env!("CARGO_PKG_VERSION").into(),
        created_utc: rfc3339_utc(created),
        study_uid_hash: uid_hash(&study.study_uid),
        study_uid: study.study_uid,
        phases,
        reference_series_uid: reference.and_then(|r| series_of.get(&r.phase).cloned()),
        reference_phase: reference.map(|r| r.phase.as_str().to_string()),
        registration,
        kidneys,
        lesions,
        models: models.entries(),
        segmentation: SegmentationSettings {
            tta: opts.mirroring,
            nnunet_postprocessing: opts.nnunet_postprocessing,
            kits_postprocessing: opts.kits_postprocessing,
        },
        timings_s: timings,
        warnings,
        model_status: models.status(),
    };
    Ok(Analysis {
        report,
        label_maps,
        images,
    })
}
