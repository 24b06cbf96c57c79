//! ROC and precision–recall figures of `nephrod eval cls --plots DIR`: `roc.{svg,png}` (one
//! one-vs-rest curve per class, legend with AUC and its bootstrap 95 % CI, chance diagonal),
//! `pr.{svg,png}` (per class, legend with average precision) and, when oncocytoma and AML are
//! classes, `roc_benign_vs_malignant.{svg,png}`. PNGs are drawn at 2× (1120 px wide) for print.
//!
//! Curves follow scikit-learn: `roc_curve` points at every distinct score (descending) from
//! (0, 0); `precision_recall_curve` points from the highest threshold, starting at recall 0 /
//! precision 1; average precision = Σ (Rₙ − Rₙ₋₁)·Pₙ.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::eval::cls_report::{ClsInput, ClsReport};
use crate::report::chart::{Chart, LineStyle, Series};

/// (fpr, tpr) and (recall, precision) points of one binary problem; `None` without both
/// positives and negatives.
#[allow(clippy::type_complexity)]
fn curves(scores: &[f64], positive: &[bool]) -> Option<(Vec<(f64, f64)>, Vec<(f64, f64)>, f64)> {
    let p = positive.iter().filter(|&&b| b).count();
    let n = positive.len() - p;
    if p == 0 || n == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut roc = vec![(0.0, 0.0)];
    let mut pr = vec![(0.0, 1.0)];
    let mut ap = 0.0;
    let mut last_recall = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            if positive[idx[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        let (tpr, fpr) = (tp as f64 / p as f64, fp as f64 / n as f64);
        roc.push((fpr, tpr));
        let precision = tp as f64 / (tp + fp) as f64;
        pr.push((tpr, precision));
        ap += (tpr - last_recall) * precision;
        last_recall = tpr;
    }
    Some((roc, pr, ap))
}

fn write_chart(
    dir: &Path,
    stem: &str,
    chart: &Chart,
    out: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    for (ext, bytes) in [
        ("svg", chart.to_svg().into_bytes()),
        ("png", chart.to_png(2)),
    ] {
        let path = dir.join(format!("{stem}.{ext}"));
        let tmp = dir.join(format!(".{stem}.{ext}.tmp"));
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        out.push(path);
    }
    Ok(())
}

/// Writes the figures; returns the files written.
pub fn write_plots(
    input: &ClsInput,
    report: &ClsReport,
    dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut roc = Vec::new();
    let mut pr = Vec::new();
    for (c, name) in input.classes.iter().enumerate() {
        let scores: Vec<f64> = input.scores.iter().map(|s| s[c]).collect();
        let positive: Vec<bool> = input.truth.iter().map(|&t| t == c).collect();
        let Some((r, p, ap)) = curves(&scores, &positive) else {
            continue;
        };
        let auc = report.auc.get(name).map_or(String::new(), |w| {
            format!(" AUC {:.3} ({:.3}–{:.3})", w.value, w.ci95[0], w.ci95[1])
        });
        roc.push(Series {
            label: format!("{name}{auc}"),
            points: r,
            style: LineStyle::cycle(c),
        });
        pr.push(Series {
            label: format!("{name} AP {ap:.3}"),
            points: p,
            style: LineStyle::cycle(c),
        });
    }
    let macro_auc = report.auc.get("macro").map_or(String::new(), |w| {
        format!(
            ", macro AUC {:.3} ({:.3}–{:.3})",
            w.value, w.ci95[0], w.ci95[1]
        )
    });
    let n = input.truth.len();
    let mut written = Vec::new();
    write_chart(
        dir,
        "roc",
        &Chart {
            title: format!("ROC, one vs rest (n = {n}){macro_auc}"),
            x_label: "False positive rate (1 – specificity)".into(),
            y_label: "True positive rate (sensitivity)".into(),
            series: roc,
            diagonal: true,
            hline: None,
        },
        &mut written,
    )?;
    write_chart(
        dir,
        "pr",
        &Chart {
            title: format!("Precision–recall, one vs rest (n = {n})"),
            x_label: "Recall (sensitivity)".into(),
            y_label: "Precision (PPV)".into(),
            series: pr,
            diagonal: false,
            hline: None,
        },
        &mut written,
    )?;
    if let Some(b) = &report.benign_vs_malignant {
        let f = |n: &str| input.classes.iter().position(|c| c.eq_ignore_ascii_case(n));
        if let (Some(o), Some(a)) = (f("oncocytoma"), f("AML")) {
            let scores: Vec<f64> = input.scores.iter().map(|s| s[o] + s[a]).collect();
            let positive: Vec<bool> = input.truth.iter().map(|&t| t == o || t == a).collect();
            if let Some((r, _, _)) = curves(&scores, &positive) {
                write_chart(
                    dir,
                    "roc_benign_vs_malignant",
                    &Chart {
                        title: format!("Benign (oncocytoma + AML) vs malignant (n = {n})"),
                        x_label: "False positive rate (1 – specificity)".into(),
                        y_label: "True positive rate (sensitivity)".into(),
                        series: vec![Series {
                            label: format!(
                                "benign AUC {:.3} ({:.3}–{:.3})",
                                b.value, b.ci95[0], b.ci95[1]
                            ),
                            points: r,
                            style: LineStyle::Solid,
                        }],
                        diagonal: true,
                        hline: None,
                    },
                    &mut written,
                )?;
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_follow_sklearn() {
        // sklearn: roc_curve([1,0,1,0], [0.9,0.8,0.8,0.1]) → fpr [0, 0, .5, 1], tpr [0, .5, 1, 1];
        // average_precision_score = 0.5·1 + 0.5·(2/3) = 0.8333.
        let (roc, pr, ap) = curves(&[0.9, 0.8, 0.8, 0.1], &[true, false, true, false]).unwrap();
        assert_eq!(roc, vec![(0.0, 0.0), (0.0, 0.5), (0.5, 1.0), (1.0, 1.0)]);
        assert_eq!(pr[1], (0.5, 1.0));
        assert!((ap - (0.5 + 0.5 * 2.0 / 3.0)).abs() < 1e-15);
        assert!(curves(&[0.1], &[true]).is_none());
    }
}
