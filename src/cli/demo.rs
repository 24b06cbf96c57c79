//! `nephrod demo`: the main job on the embedded default data.
//!
//! Generates one synthetic four-phase study (phantom, with truth) into a spool folder, runs the
//! pipeline — ingest (series assembly, HU calibration), phase detection and NIfTI export, then
//! with the demo models ([`super::demo_models`]) segmentation of every phase, registration and
//! classification of every tumour — compares each stage with the truth and writes
//! `result/report.json`. The appliance's report (issue 9) joins here when it lands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use super::demo_models::{run_model_stages, DemoPhase};
use crate::dicom::ingest::ingest;
use crate::dicom::phase::Phase;
use crate::engine::select_backend;
use crate::phantom::acquisition::{AcquisitionOptions, StudySize};
use crate::phantom::output::{self, Compression, DicomOptions, Frames, OutputFormat};
use crate::phantom::truth::LesionTruth;
use crate::phantom::{generate_case, CaseOptions};
use crate::privacy::uid_hash;
use crate::volume::nifti;

#[derive(Serialize)]
struct SeriesResult {
    series_uid_hash: String,
    description: Option<String>,
    detected_phase: Phase,
    phase_confidence: f64,
    truth_phase: Option<Phase>,
    phase_correct: bool,
    dims: Option<[usize; 3]>,
    spacing_mm: Option<[f64; 3]>,
    aorta_hu: Option<f64>,
    status: &'static str,
    nifti: Option<PathBuf>,
}

#[derive(Serialize)]
struct DemoReport {
    nephrod_version: &'static str,
    seed: u64,
    study_uid_hash: String,
    stages_run: Vec<&'static str>,
    stages_not_yet_available: Vec<&'static str>,
    models: super::demo_models::ModelStages,
    series: Vec<SeriesResult>,
    phases_correct: usize,
    phases_total: usize,
    skipped_files: usize,
    truth_file: PathBuf,
    truth_lesions: Vec<LesionTruth>,
}

/// Default demo folder: a fresh directory under the system temporary directory.
fn default_out() -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("nephrod-demo-{stamp}-{}", std::process::id()))
}

pub fn run(
    out: Option<&Path>,
    seed: u64,
    models: &Path,
    prefer_gpu: bool,
    mirroring: bool,
) -> anyhow::Result<ExitCode> {
    let out = out.map(Path::to_path_buf).unwrap_or_else(default_out);
    let spool = out.join("spool");
    let result = out.join("result");
    std::fs::create_dir_all(&result).with_context(|| format!("creating {}", result.display()))?;

    // 1. A study arrives in the spool.
    let opts = CaseOptions {
        acquisition: AcquisitionOptions {
            size: StudySize::Small,
            orientation_variants: false,
            all_phases: true,
        },
        ..CaseOptions::default()
    };
    let case = generate_case(seed, 0, &opts).context("generating the demo study")?;
    let dicom = DicomOptions {
        shuffle_files: true,
        compression: Compression::Mixed,
        frames: Frames::Mixed,
    };
    let truth = output::write_case(&case, &spool, OutputFormat::Dicom, &dicom)
        .context("writing the demo study")?;
    let case_dir = spool.join(&truth.case_id);
    println!(
        "study: synthetic 4-phase renal CT, {} lesion(s), written to {}",
        truth.lesions.len(),
        case_dir.join("dicom").display()
    );

    // 2. Ingest and phase detection.
    let ingested = ingest(&case_dir.join("dicom"), true);
    let volumes_dir = result.join("volumes");
    std::fs::create_dir_all(&volumes_dir)?;
    let mut series = Vec::new();
    let mut study_hash = String::new();
    let mut phases = Vec::new();
    for (study, vols) in ingested.report.studies.iter().zip(ingested.volumes) {
        study_hash = uid_hash(&study.study_uid);
        for (se, vol) in study.series.iter().zip(vols) {
            let truth_phase = truth
                .phases
                .iter()
                .find(|p| p.series_uid == se.series_uid)
                .map(|p| p.phase);
            let nifti_path = match vol {
                Some(v) => {
                    let p = volumes_dir.join(format!("{}.nii.gz", se.phase.as_str()));
                    nifti::write(&p, &v).with_context(|| format!("writing {}", p.display()))?;
                    phases.push(DemoPhase {
                        phase: se.phase,
                        truth_phase,
                        ct: v,
                    });
                    Some(p)
                }
                None => None,
            };
            series.push(SeriesResult {
                series_uid_hash: uid_hash(&se.series_uid),
                description: se.description.clone(),
                detected_phase: se.phase,
                phase_confidence: se.phase_confidence,
                truth_phase,
                phase_correct: truth_phase == Some(se.phase),
                dims: se.dims,
                spacing_mm: se.spacing_mm,
                aorta_hu: se.aorta_hu,
                status: se.status,
                nifti: nifti_path,
            });
        }
    }
    let phases_correct = series.iter().filter(|s| s.phase_correct).count();
    for s in &series {
        println!(
            "  series {}: {:<12} detected {:<12} (truth {:<12}) aorta {:>6} HU  {}",
            s.series_uid_hash,
            s.description.as_deref().unwrap_or("-"),
            s.detected_phase.as_str(),
            s.truth_phase.map_or("?", Phase::as_str),
            s.aorta_hu.map_or("-".to_string(), |v| format!("{v:.0}")),
            if s.phase_correct { "ok" } else { "MISMATCH" }
        );
    }

    // 3. Segmentation, registration, classification with the demo models.
    println!("models: {}", models.display());
    let backend = select_backend(prefer_gpu);
    let model_stages = run_model_stages(
        phases,
        &truth,
        &case_dir,
        &result,
        models,
        backend.as_ref(),
        mirroring,
    )?;
    let mut stages_run = vec!["ingest", "phase_detection", "nifti_export"];
    stages_run.extend(model_stages.stages_run.iter().copied());
    let report = DemoReport {
        nephrod_version: env!("CARGO_PKG_VERSION"),
        seed,
        study_uid_hash: study_hash,
        stages_run,
        stages_not_yet_available: vec!["report"],
        models: model_stages,
        phases_total: truth.phases.len(),
        phases_correct,
        skipped_files: ingested.report.skipped.len(),
        series,
        truth_file: case_dir.join("truth.json"),
        truth_lesions: truth.lesions.clone(),
    };
    let report_path = result.join("report.json");
    output::write_json(&report_path, &report)?;
    println!(
        "phases: {}/{} correct; stages run: {}; not yet available: {}",
        report.phases_correct,
        report.phases_total,
        report.stages_run.join(", "),
        report.stages_not_yet_available.join(", ")
    );
    println!("result: {}", report_path.display());
    let complete = report.series.len() == report.phases_total
        && report.series.iter().all(|s| s.status == "ok");
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
