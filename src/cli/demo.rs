//! `nephrod demo`: the main job on the embedded default data.
//!
//! Generates one synthetic four-phase study (phantom, with truth) into a spool folder, runs the
//! appliance pipeline on it exactly as `nephrod analyze` does (ingest, phase detection,
//! segmentation of every phase, post-processing, registration, measurements, classification;
//! the report folder `report/` with report.json, report.html, label maps and key images), and
//! checks each stage against the truth ([`super::demo_models`]) in `result/demo.json`, beside
//! one NIfTI volume per series. Without models, the model stages are listed as not run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use super::demo_models::{compare_with_truth, TruthComparison};
use crate::dicom::ingest::ingest;
use crate::dicom::phase::Phase;
use crate::engine::select_backend;
use crate::phantom::acquisition::{AcquisitionOptions, StudySize};
use crate::phantom::output::{self, Compression, DicomOptions, Frames, OutputFormat};
use crate::phantom::truth::LesionTruth;
use crate::phantom::{generate_case, CaseOptions};
use crate::pipeline::{analyze_ingested, write_analysis, AnalyzeOptions, ModelSet};
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
    /// Stage → why it did not run.
    stages_not_run: Vec<(String, String)>,
    models_dir: PathBuf,
    segmentation_tta: bool,
    /// The appliance report folder (report.json, report.html, labels/, images/).
    report_dir: Option<PathBuf>,
    truth_comparison: Option<TruthComparison>,
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
    for (study, vols) in ingested.report.studies.iter().zip(&ingested.volumes) {
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
                    nifti::write(&p, v).with_context(|| format!("writing {}", p.display()))?;
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

    // 3. The appliance pipeline with the models, then the truth comparison.
    println!("models: {}", models.display());
    let skipped_files = ingested.report.skipped.len();
    let mut stages_run = vec!["ingest", "phase_detection", "nifti_export"];
    let mut stages_not_run = Vec::new();
    let (mut report_dir, mut truth_comparison) = (None, None);
    match ModelSet::open(models) {
        Err(e) => {
            println!("  model stages not run: {e}");
            for stage in ["segmentation", "registration", "classification", "report"] {
                stages_not_run.push((stage.to_string(), e.to_string()));
            }
        }
        Ok(set) => {
            let backend = select_backend(prefer_gpu);
            let opts = AnalyzeOptions {
                mirroring,
                ..AnalyzeOptions::default()
            };
            let mut last = String::new();
            let analysis = analyze_ingested(ingested, &set, backend.as_ref(), &opts, &mut |p| {
                if p.stage != last {
                    eprintln!("  {}", p.stage);
                    last = p.stage.to_string();
                }
            })
            .context("analysing the demo study")?;
            let dir = out.join("report");
            write_analysis(&analysis, &dir, true)?;
            println!("{}", super::analyze::summary(&analysis.report));
            truth_comparison = Some(compare_with_truth(&analysis, &truth, &case_dir)?);
            stages_run.extend(["segmentation", "registration"]);
            match &set.classifier_missing {
                None => stages_run.push("classification"),
                Some(why) => stages_not_run.push(("classification".to_string(), why.clone())),
            }
            stages_run.push("report");
            report_dir = Some(dir);
        }
    }
    let report = DemoReport {
        nephrod_version: env!("CARGO_PKG_VERSION"),
        seed,
        study_uid_hash: study_hash,
        stages_run,
        stages_not_run,
        models_dir: models.to_path_buf(),
        segmentation_tta: mirroring,
        report_dir: report_dir.clone(),
        truth_comparison,
        phases_total: truth.phases.len(),
        phases_correct,
        skipped_files,
        series,
        truth_file: case_dir.join("truth.json"),
        truth_lesions: truth.lesions.clone(),
    };
    let demo_path = result.join("demo.json");
    output::write_json(&demo_path, &report)?;
    println!(
        "phases: {}/{} correct; stages run: {}",
        report.phases_correct,
        report.phases_total,
        report.stages_run.join(", "),
    );
    if let Some(dir) = &report_dir {
        println!("report: {}", dir.join("report.json").display());
        println!("        {}", dir.join("report.html").display());
    }
    println!("truth comparison: {}", demo_path.display());
    let complete = report.series.len() == report.phases_total
        && report.series.iter().all(|s| s.status == "ok");
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
