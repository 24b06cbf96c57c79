//! `nephrod inspect`: what is in a DICOM folder, as a table or JSON.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::dicom::ingest::{ingest, IngestReport};

pub fn run(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    if !dir.exists() {
        bail!("{} does not exist", dir.display());
    }
    let report = ingest(dir, false).report;
    if json {
        let text = serde_json::to_string_pretty(&report).context("serialising the report")?;
        println!("{text}");
    } else {
        print!("{}", table(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn fmt3(v: Option<[f64; 3]>, prec: usize) -> String {
    v.map(|a| format!("{:.p$} × {:.p$} × {:.p$}", a[0], a[1], a[2], p = prec))
        .unwrap_or_else(|| "-".into())
}

/// Human-readable summary.
pub fn table(report: &IngestReport) -> String {
    let mut s = String::new();
    for study in &report.studies {
        s += &format!("study {}\n", study.study_uid);
        for se in &study.series {
            let dims = se
                .dims
                .map(|d| format!("{}×{}×{}", d[0], d[1], d[2]))
                .unwrap_or_else(|| "-".into());
            s += &format!(
                "  series {}{}  #{}  \"{}\"\n    phase {} ({:.2})  dims {}  spacing {} mm  files {}  slices {}  {}\n",
                se.series_uid,
                if se.part > 0 { format!(" part {}", se.part) } else { String::new() },
                se.series_number.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                se.description.as_deref().unwrap_or(""),
                se.phase.as_str(),
                se.phase_confidence,
                dims,
                fmt3(se.spacing_mm, 3),
                se.num_files,
                se.num_slices,
                se.transfer_syntaxes.join(","),
            );
            for e in &se.phase_evidence {
                s += &format!("    evidence: {e}\n");
            }
            if let Some(r) = &se.refusal {
                s += &format!("    REFUSED: {r}\n");
            }
            for w in &se.warnings {
                s += &format!("    warning: {w}\n");
            }
        }
    }
    if !report.skipped.is_empty() {
        s += &format!("skipped {} file(s):\n", report.skipped.len());
        for k in &report.skipped {
            s += &format!("  {}: {}\n", k.path.display(), k.reason);
        }
    }
    s
}
