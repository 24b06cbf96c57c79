//! Folder → report (and optionally volumes): the one entry point the CLI and daemon use.
//!
//! Every file under the folder ends in exactly one place: in a series of a study (used, or
//! refused as a whole with a reason) or in `skipped` with its reason.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::phase::{self, Phase, SeriesFacts};
use super::scan::{scan, Skipped};
use super::series::{assemble, group, layout, Stack};
use crate::privacy::uid_hash;
use crate::volume::Volume;

/// One assembled (or refused) stack of a series. Field names are a documented interface
/// (README: `nephrod inspect --json`).
#[derive(Debug, Clone, Serialize)]
pub struct SeriesReport {
    pub series_uid: String,
    /// 0 unless the series was split by orientation, spacing or matrix.
    pub part: usize,
    pub series_number: Option<i64>,
    pub description: Option<String>,
    pub phase: Phase,
    pub phase_confidence: f64,
    pub phase_evidence: Vec<String>,
    /// (i, j, k) = (column, row, slice).
    pub dims: Option<[usize; 3]>,
    pub spacing_mm: Option<[f64; 3]>,
    /// World (LPS mm) position of voxel (0, 0, 0).
    pub origin_lps_mm: Option<[f64; 3]>,
    /// Row-major 3×3; columns are the i, j, k axes in LPS.
    pub direction: Option<[f64; 9]>,
    pub num_files: usize,
    pub num_slices: usize,
    pub transfer_syntaxes: Vec<String>,
    pub aorta_hu: Option<f64>,
    /// "ok" or "refused".
    pub status: &'static str,
    pub refusal: Option<String>,
    pub warnings: Vec<String>,
    /// Files of this series (in sorted order).
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StudyReport {
    pub study_uid: String,
    pub series: Vec<SeriesReport>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct IngestReport {
    pub studies: Vec<StudyReport>,
    pub skipped: Vec<Skipped>,
}

/// A report plus, when asked for, the volume of every `ok` series (same order as the report).
pub struct Ingested {
    pub report: IngestReport,
    /// `volumes[s][k]` belongs to `report.studies[s].series[k]`.
    pub volumes: Vec<Vec<Option<Volume<f32>>>>,
}

/// Scans, groups, assembles and phase-labels everything under `root`.
pub fn ingest(root: &Path, keep_volumes: bool) -> Ingested {
    let scanned = scan(root);
    let studies = group(scanned.instances);
    let mut report = IngestReport {
        studies: Vec::new(),
        skipped: scanned.skipped,
    };
    let mut volumes = Vec::new();
    for study in studies {
        let mut series_reports = Vec::new();
        let mut facts = Vec::new();
        let mut study_volumes = Vec::new();
        for stack in &study.stacks {
            let (rep, fact, vol) = build_series(stack);
            series_reports.push(rep);
            facts.push(fact);
            study_volumes.push(if keep_volumes { vol } else { None });
        }
        for (rep, call) in series_reports.iter_mut().zip(phase::detect(&facts)) {
            rep.phase = call.phase;
            rep.phase_confidence = call.confidence;
            rep.phase_evidence = call.evidence;
        }
        tracing::info!(
            study = %uid_hash(&study.study_uid),
            series = series_reports.len(),
            "study ingested"
        );
        report.studies.push(StudyReport {
            study_uid: study.study_uid.to_string(),
            series: series_reports,
        });
        volumes.push(study_volumes);
    }
    Ingested { report, volumes }
}

fn build_series(stack: &Stack) -> (SeriesReport, SeriesFacts, Option<Volume<f32>>) {
    let first = stack.first();
    let mut ts: Vec<String> = stack
        .instances
        .iter()
        .map(|h| h.transfer_syntax.clone())
        .collect();
    ts.sort();
    ts.dedup();
    let mut files: Vec<PathBuf> = stack.instances.iter().map(|h| h.path.clone()).collect();
    files.sort();
    let mut rep = SeriesReport {
        series_uid: stack.series_uid.to_string(),
        part: stack.part,
        series_number: first.series_number,
        description: first.series_description.clone(),
        phase: Phase::Unknown,
        phase_confidence: 0.0,
        phase_evidence: Vec::new(),
        dims: None,
        spacing_mm: None,
        origin_lps_mm: None,
        direction: None,
        num_files: stack.instances.len(),
        num_slices: stack.num_frames(),
        transfer_syntaxes: ts,
        aorta_hu: None,
        status: "ok",
        refusal: None,
        warnings: Vec::new(),
        files,
    };
    let mut facts = SeriesFacts {
        descriptions: [
            first.series_description.clone(),
            first.protocol_name.clone(),
        ]
        .into_iter()
        .flatten()
        .collect(),
        contrast_agent: stack
            .instances
            .iter()
            .find_map(|h| h.contrast.agent.clone()),
        contrast_start_s: stack.instances.iter().find_map(|h| h.contrast.start_time_s),
        acquisition_time_s: stack
            .instances
            .iter()
            .filter_map(|h| h.acquisition_time_s)
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.min(t)))),
        acquisition_order_s: stack.acquisition_time_s(),
        aorta_hu: None,
    };
    let lay = match layout(stack) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(series = %stack.log_id(), kind = e.kind(), "series refused");
            rep.status = "refused";
            rep.refusal = Some(e.to_string());
            return (rep, facts, None);
        }
    };
    rep.dims = Some(lay.dims);
    rep.spacing_mm = Some(lay.geometry.spacing_mm);
    rep.origin_lps_mm = Some(lay.geometry.origin_mm);
    let d = lay.geometry.direction;
    rep.direction = Some([
        d[0][0], d[0][1], d[0][2], d[1][0], d[1][1], d[1][2], d[2][0], d[2][1], d[2][2],
    ]);
    rep.warnings = lay.warnings.clone();
    match assemble(stack, &lay) {
        Ok(vol) => {
            let aorta = phase::aorta_hu(&vol).map(|v| (v * 10.0).round() / 10.0);
            rep.aorta_hu = aorta;
            facts.aorta_hu = aorta;
            (rep, facts, Some(vol))
        }
        Err(e) => {
            tracing::warn!(series = %stack.log_id(), kind = e.kind(), "series refused");
            rep.status = "refused";
            rep.refusal = Some(e.to_string());
            (rep, facts, None)
        }
    }
}
