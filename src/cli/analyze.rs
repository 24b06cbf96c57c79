//! `nephrod analyze <study dir> --out <dir>`: one study folder → one report folder
//! (`report.json`, `report.html`, `labels/<phase>.nii.gz`, `images/*.png`), with progress and
//! per-stage timings on stderr.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::engine::select_backend;
use crate::pipeline::{analyze_dir, write_analysis, AnalyzeOptions, ModelSet, Progress};

/// Progress on stderr: an in-place bar on a terminal, one line per stage otherwise.
struct ProgressPrinter {
    tty: bool,
    start: Instant,
    stage: String,
    last_pct: Option<usize>,
}

impl ProgressPrinter {
    fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
            stage: String::new(),
            last_pct: None,
        }
    }

    fn update(&mut self, p: Progress) {
        let pct = (p.done * 100).checked_div(p.total).unwrap_or(0).min(100);
        let mut err = std::io::stderr().lock();
        let t = self.start.elapsed().as_secs_f64();
        if p.stage != self.stage {
            if self.tty && !self.stage.is_empty() {
                let _ = writeln!(err);
            }
            self.stage = p.stage.to_string();
            self.last_pct = None;
            if !self.tty {
                let _ = writeln!(err, "[{t:7.1} s] {}", p.stage);
            }
        }
        if self.tty && self.last_pct != Some(pct) {
            let filled = pct / 5;
            let _ = write!(
                err,
                "\r[{t:7.1} s] {:<24} [{}{}] {pct:3}%",
                p.stage,
                "#".repeat(filled),
                ".".repeat(20 - filled)
            );
            let _ = err.flush();
        }
        self.last_pct = Some(pct);
    }

    fn finish(&self) {
        if self.tty && !self.stage.is_empty() {
            let _ = writeln!(std::io::stderr());
        }
    }
}

pub fn run(
    study: &Path,
    out: &Path,
    models_dir: &Path,
    prefer_gpu: bool,
    opts: AnalyzeOptions,
    force: bool,
) -> anyhow::Result<ExitCode> {
    if !study.is_dir() {
        anyhow::bail!("{}: not a folder", study.display());
    }
    let models = ModelSet::open(models_dir).context("opening the models")?;
    let backend = select_backend(prefer_gpu);
    let mut printer = ProgressPrinter::new();
    let analysis = analyze_dir(study, &models, backend.as_ref(), &opts, &mut |p| {
        printer.update(p)
    });
    printer.finish();
    let analysis = analysis.with_context(|| format!("analysing {}", study.display()))?;
    write_analysis(&analysis, out, force)?;
    let r = &analysis.report;
    println!("{}", summary(r));
    println!("report: {}", out.join("report.json").display());
    println!("        {}", out.join("report.html").display());
    Ok(ExitCode::SUCCESS)
}

/// A one-screen summary of a report.
pub fn summary(r: &crate::report::schema::Report) -> String {
    let mut s = String::new();
    let used: Vec<&str> = r
        .phases
        .iter()
        .filter(|p| p.used)
        .map(|p| p.phase.as_str())
        .collect();
    s += &format!(
        "study {}: phases {} (reference {})\n",
        r.study_uid_hash,
        used.join(", "),
        r.reference_phase.as_deref().unwrap_or("none")
    );
    for k in &r.kidneys {
        s += &format!("  {} kidney {:.0} mL\n", k.side, k.volume_ml);
    }
    for l in &r.lesions {
        let what = match &l.subtype {
            Some(st) => format!(
                "{} {:.0} %, malignant {:.0} %",
                st.top,
                100.0 * st.probabilities.get(&st.top).copied().unwrap_or(0.0),
                100.0 * st.malignant_probability
            ),
            None => format!(
                "not classified ({})",
                l.not_classified_reason.as_deref().unwrap_or("?")
            ),
        };
        s += &format!(
            "  lesion {}: {} {} {} pole, {:.0} mm, {:.1} mL: {what}\n",
            l.id,
            l.kind,
            l.side,
            l.pole.as_deref().unwrap_or("-"),
            l.max_axial_diameter_mm,
            l.volume_ml
        );
    }
    let total: f64 = r.timings_s.values().sum();
    s += &format!("  {} warning(s); {total:.1} s in all\n", r.warnings.len());
    s += &format!("  {}", r.model_status);
    s
}
