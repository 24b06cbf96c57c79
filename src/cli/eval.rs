//! `nephrod eval`: segmentation, classification and registration metrics (src/eval) as a
//! terminal table and as JSON (schemas in README: `nephrod.eval.seg/1`, `nephrod.eval.cls/1`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::eval::seg::{evaluate_case, summarize, CaseReport, SegReport};
use crate::volume::nifti;

/// The case name of a label-map file: its name without `.nii.gz` / `.nii`.
pub fn case_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".nii.gz")
        .or_else(|| name.strip_suffix(".nii"))
        .map(str::to_string)
}

/// (case, file) pairs of a NIfTI file or of the NIfTI files of a folder, sorted by case.
fn nifti_files(path: &Path) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    if path.is_dir() {
        let rd = std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?;
        for e in rd {
            let p = e
                .with_context(|| format!("reading {}", path.display()))?
                .path();
            if let Some(c) = case_name(&p).filter(|_| p.is_file()) {
                out.insert(c, p);
            }
        }
    } else if let Some(c) = case_name(path) {
        out.insert(c, path.to_path_buf());
    } else {
        bail!("{}: not a .nii/.nii.gz file or a folder", path.display());
    }
    Ok(out)
}

/// Pairs predictions with truths: both single files → one case (named after the truth);
/// folders → by case name; every truth case needs a prediction.
fn pair_cases(pred: &Path, truth: &Path) -> anyhow::Result<Vec<(String, PathBuf, PathBuf)>> {
    let t = nifti_files(truth)?;
    if t.is_empty() {
        bail!("{}: no .nii/.nii.gz label maps", truth.display());
    }
    if !pred.is_dir() && !truth.is_dir() {
        let (case, tp) = t.into_iter().next().context("no truth file")?;
        return Ok(vec![(case, pred.to_path_buf(), tp)]);
    }
    let p = nifti_files(pred)?;
    let missing: Vec<&String> = t.keys().filter(|c| !p.contains_key(*c)).collect();
    if !missing.is_empty() {
        bail!(
            "no prediction in {} for {} case(s): {}",
            pred.display(),
            missing.len(),
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for extra in p.keys().filter(|c| !t.contains_key(*c)) {
        eprintln!("note: prediction {extra} has no truth and is not evaluated");
    }
    Ok(t.into_iter()
        .map(|(c, tp)| {
            let pp = p[&c].clone();
            (c, pp, tp)
        })
        .collect())
}

/// Evaluates every case (in parallel).
pub fn evaluate_seg(pred: &Path, truth: &Path) -> anyhow::Result<SegReport> {
    use rayon::prelude::*;
    let pairs = pair_cases(pred, truth)?;
    let cases: Vec<CaseReport> = pairs
        .par_iter()
        .map(|(case, pp, tp)| -> anyhow::Result<CaseReport> {
            let start = std::time::Instant::now();
            let p = nifti::read_labels(pp).with_context(|| format!("reading {}", pp.display()))?;
            let t = nifti::read_labels(tp).with_context(|| format!("reading {}", tp.display()))?;
            let read = start.elapsed();
            let r = evaluate_case(case, &p, &t).with_context(|| format!("case {case}"))?;
            tracing::debug!(
                read_s = read.as_secs_f64(),
                metrics_s = (start.elapsed() - read).as_secs_f64(),
                "case evaluated"
            );
            Ok(r)
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(summarize(cases))
}

fn opt(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.2}"),
        Some(_) => "inf".into(),
        None => "—".into(),
    }
}

fn rate(v: Option<f64>) -> String {
    v.map_or("—".into(), |x| format!("{:.3}", x))
}

/// Prints the readable table.
pub fn print_seg(r: &SegReport) {
    let hecs = ["kidney_and_masses", "masses", "tumor"];
    println!(
        "{:<24} {:>7} {:>7} {:>7}   {:>7} {:>7} {:>7}   {:>8} {:>8} {:>8}",
        "case",
        "Dice K+M",
        "masses",
        "tumour",
        "SD K+M",
        "masses",
        "tumour",
        "HD95 K+M",
        "masses",
        "tumour"
    );
    let row = |name: &str, d: [f64; 3], s: [f64; 3], h: [Option<f64>; 3]| {
        println!(
            "{:<24} {:>8.4} {:>7.4} {:>7.4}   {:>7.4} {:>7.4} {:>7.4}   {:>8} {:>8} {:>8}",
            name,
            d[0],
            d[1],
            d[2],
            s[0],
            s[1],
            s[2],
            opt(h[0]),
            opt(h[1]),
            opt(h[2])
        )
    };
    for c in &r.cases {
        row(
            &c.case,
            hecs.map(|h| c.hec[h].dice),
            hecs.map(|h| c.hec[h].surface_dice),
            hecs.map(|h| c.hec[h].hd95_mm),
        );
    }
    row(
        "mean",
        hecs.map(|h| r.mean[h].dice),
        hecs.map(|h| r.mean[h].surface_dice),
        hecs.map(|h| r.mean[h].hd95_mm),
    );
    println!("(Surface Dice at the KiTS tolerances; HD95 in mm, mean over cases where defined)");
    let d = &r.detection;
    for (name, k) in [
        ("all lesions", &d.all),
        ("< 5 mm", &d.lt5mm),
        ("≥ 5 mm", &d.ge5mm),
    ] {
        println!(
            "detection {name:<12} truth {:>3}, detected {:>3}, FN {:>3}; predicted {:>3}, TP {:>3}, FP {:>3}; recall {}, precision {}, F1 {}",
            k.truth_lesions, k.detected, k.false_negatives, k.pred_lesions, k.tp_pred, k.false_positives,
            rate(k.recall), rate(k.precision), rate(k.f1)
        );
    }
}

/// `nephrod eval seg`.
pub fn run_seg(pred: &Path, truth: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let report = evaluate_seg(pred, truth)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_seg(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// Options of `nephrod eval cls`.
pub struct ClsArgs<'a> {
    pub pred: &'a Path,
    pub truth: &'a Path,
    pub reader: Option<&'a Path>,
    pub json: bool,
    pub plots: Option<&'a Path>,
    pub settings: crate::eval::cls_report::ClsSettings,
}

fn read_text(p: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
}

/// `nephrod eval cls`.
pub fn run_cls(a: &ClsArgs) -> anyhow::Result<ExitCode> {
    use crate::eval::cls_report::{evaluate, parse_inputs};
    let (pt, tt) = (read_text(a.pred)?, read_text(a.truth)?);
    let rt = a.reader.map(read_text).transpose()?;
    let (pn, tn) = (a.pred.display().to_string(), a.truth.display().to_string());
    let rn = a.reader.map(|r| r.display().to_string());
    let input = parse_inputs((&pn, &pt), (&tn, &tt), rn.as_deref().zip(rt.as_deref()))?;
    let report = evaluate(&input, a.settings);
    if let Some(dir) = a.plots {
        let written = super::eval_plots::write_plots(&input, &report, dir)?;
        for p in written {
            eprintln!("wrote {}", p.display());
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} cases; accuracy {:.3}, top-2 accuracy {:.3}",
        report.n_cases, report.accuracy, report.top2_accuracy
    );
    println!(
        "{:<12} {:>7} {:>6} {:>6} {:>6} {:>6}   {:>24}   {:>24}",
        "class",
        "support",
        "sens",
        "spec",
        "PPV",
        "F1",
        "AUC (bootstrap 95 % CI)",
        "DeLong 95 % CI"
    );
    for c in &report.classes {
        let s = &report.per_class[c];
        let auc = report.auc.get(c).map_or("—".to_string(), |w| {
            format!("{:.3} ({:.3}–{:.3})", w.value, w.ci95[0], w.ci95[1])
        });
        let dl = report.auc_delong.get(c).map_or("—".to_string(), |d| {
            format!("{:.3}–{:.3}", d.ci95[0], d.ci95[1])
        });
        println!(
            "{:<12} {:>7} {:>6.3} {:>6.3} {:>6.3} {:>6.3}   {:>24}   {:>24}",
            c, s.support, s.sensitivity, s.specificity, s.ppv, s.f1, auc, dl
        );
    }
    if let Some(m) = report.auc.get("macro") {
        println!(
            "macro AUC {:.3} ({:.3}–{:.3})",
            m.value, m.ci95[0], m.ci95[1]
        );
    }
    if let Some(b) = &report.benign_vs_malignant {
        println!(
            "benign (oncocytoma + AML) vs malignant AUC {:.3} ({:.3}–{:.3})",
            b.value, b.ci95[0], b.ci95[1]
        );
    }
    println!(
        "confusion (rows truth, columns model): {}",
        report.classes.join(", ")
    );
    for (c, row) in report.classes.iter().zip(&report.confusion) {
        println!("  {:<12} {:?}", c, row);
    }
    if let Some(r) = &report.reader {
        println!(
            "reader accuracy {:.3}; model vs reader, two-sided permutation test ({} permutations, seed {}):",
            r.accuracy, r.permutations, r.seed
        );
        for c in &report.classes {
            let x = &r.permutation[c];
            println!(
                "  {:<12} sensitivity {:.3} vs {:.3} (p = {:.4}), specificity {:.3} vs {:.3} (p = {:.4})",
                c, x.sensitivity_model, x.sensitivity_reader, x.sensitivity_p,
                x.specificity_model, x.specificity_reader, x.specificity_p
            );
        }
    }
    println!(
        "(bootstrap: {} resamples of cases, not stratified, seed {})",
        report.bootstrap.resamples, report.bootstrap.seed
    );
    Ok(ExitCode::SUCCESS)
}

/// `nephrod eval reg`: `moving[i]` (and `aligned[i]`, when given) against `reference`.
pub fn run_reg(
    reference: &Path,
    moving: &[PathBuf],
    aligned: &[PathBuf],
    json: bool,
) -> anyhow::Result<ExitCode> {
    use crate::eval::reg::{evaluate_pair, PairDice};
    if !aligned.is_empty() && aligned.len() != moving.len() {
        bail!(
            "{} --aligned for {} --moving: give one aligned label map per moving phase, in the same order",
            aligned.len(),
            moving.len()
        );
    }
    let r = nifti::read_labels(reference)
        .with_context(|| format!("reading {}", reference.display()))?;
    let mut pairs = Vec::new();
    for (i, m) in moving.iter().enumerate() {
        let mv = nifti::read_labels(m).with_context(|| format!("reading {}", m.display()))?;
        let al = aligned
            .get(i)
            .map(|a| nifti::read_labels(a).with_context(|| format!("reading {}", a.display())))
            .transpose()?;
        let name = case_name(m).unwrap_or_else(|| m.display().to_string());
        pairs.push(evaluate_pair(&name, &r, &mv, al.as_ref())?);
    }
    if json {
        let doc = serde_json::json!({
            "schema": "nephrod.eval.reg/1",
            "reference": case_name(reference),
            "pairs": pairs,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    let f = |v: Option<f64>| v.map_or("—".to_string(), |x| format!("{x:.4}"));
    let both = |d: &PairDice| format!("{:>7} {:>7}", f(d.kidney), f(d.tumor));
    println!(
        "{:<28} {:>15}   {:>15}   {:>15}",
        "moving phase", "no alignment", "centre of mass", "registration"
    );
    println!(
        "{:<28} {:>7} {:>7}   {:>7} {:>7}   {:>7} {:>7}",
        "", "kidney", "tumour", "kidney", "tumour", "kidney", "tumour"
    );
    for p in &pairs {
        println!(
            "{:<28} {}   {}   {}",
            p.moving,
            both(&p.identity),
            both(&p.centre_of_mass),
            p.aligned
                .as_ref()
                .map_or("      —       —".to_string(), both)
        );
    }
    println!("(Dice against the reference phase's labels; kidney = labels 1–3, tumour = label 2)");
    Ok(ExitCode::SUCCESS)
}
