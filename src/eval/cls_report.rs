//! The classification evaluation as one typed report (JSON schema `nephrod.eval.cls/1`,
//! README): inputs are per-case probabilities (`case,<class>…`), truth (`case,label`) and
//! optionally a reader's diagnoses (`case,label`), matched by case name.
//!
//! AUC CIs in `auc` are percentile-bootstrap CIs (seed 001's method; resampling and seed in
//! `bootstrap`); DeLong CIs are given beside them in `auc_delong`. Benign = oncocytoma + AML
//! when both classes exist; its probability is the sum of theirs.

use std::collections::BTreeMap;

use serde::Serialize;

use super::cls::{
    argmax, auc_delong, bootstrap_auc, counts, in_top_k, permutation_test, WithCi, Z_975,
};

/// Parsed inputs, aligned by case (truth order).
#[derive(Debug, Clone, PartialEq)]
pub struct ClsInput {
    pub classes: Vec<String>,
    pub cases: Vec<String>,
    /// One probability row per case, in `classes` order.
    pub scores: Vec<Vec<f64>>,
    /// Class index per case.
    pub truth: Vec<usize>,
    /// Reader's class index per case, if given.
    pub reader: Option<Vec<usize>>,
}

/// Why the inputs were refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ClsInputError {
    #[error("{file}: {message}")]
    Csv { file: String, message: String },
    #[error("{file}: line {line}: {message}")]
    Line {
        file: String,
        line: usize,
        message: String,
    },
}

/// A CSV's header and its (line number, fields) rows.
type Csv = (Vec<String>, Vec<(usize, Vec<String>)>);

fn rows(file: &str, text: &str) -> Result<Csv, ClsInputError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| ClsInputError::Csv {
        file: file.into(),
        message: "empty file".into(),
    })?;
    let split = |l: &str| -> Vec<String> { l.split(',').map(|f| f.trim().to_string()).collect() };
    if header.contains('"') {
        return Err(ClsInputError::Csv {
            file: file.into(),
            message: "quoted CSV fields are not supported".into(),
        });
    }
    let header = split(header);
    let mut out = Vec::new();
    for (n, l) in lines {
        let f = split(l);
        if f.len() != header.len() {
            return Err(ClsInputError::Line {
                file: file.into(),
                line: n,
                message: format!("{} fields, header has {}", f.len(), header.len()),
            });
        }
        out.push((n, f));
    }
    Ok((header, out))
}

/// Parses the three CSV texts (`reader` optional).
pub fn parse_inputs(
    preds: (&str, &str),
    truth: (&str, &str),
    reader: Option<(&str, &str)>,
) -> Result<ClsInput, ClsInputError> {
    let (pf, pt) = preds;
    let (header, prow) = rows(pf, pt)?;
    if header.len() < 3 || header[0] != "case" {
        return Err(ClsInputError::Csv {
            file: pf.into(),
            message: "header must be case,<class>,<class>… (at least two classes)".into(),
        });
    }
    let classes: Vec<String> = header[1..].to_vec();
    let mut by_case: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (n, f) in prow {
        let mut p = Vec::with_capacity(classes.len());
        for v in &f[1..] {
            let x: f64 = v.parse().map_err(|_| ClsInputError::Line {
                file: pf.into(),
                line: n,
                message: format!("{v:?} is not a number"),
            })?;
            if !x.is_finite() {
                return Err(ClsInputError::Line {
                    file: pf.into(),
                    line: n,
                    message: format!("{v} is not finite"),
                });
            }
            p.push(x);
        }
        if by_case.insert(f[0].clone(), p).is_some() {
            return Err(ClsInputError::Line {
                file: pf.into(),
                line: n,
                message: format!("case {} listed twice", f[0]),
            });
        }
    }
    let labels =
        |file: &str, text: &str| -> Result<Vec<(usize, String, usize)>, ClsInputError> {
            let (h, r) = rows(file, text)?;
            if h.len() != 2 || h[0] != "case" || h[1] != "label" {
                return Err(ClsInputError::Csv {
                    file: file.into(),
                    message: "header must be case,label".into(),
                });
            }
            r.into_iter()
                .map(|(n, f)| {
                    let c = classes.iter().position(|c| *c == f[1]).ok_or_else(|| {
                        ClsInputError::Line {
                            file: file.into(),
                            line: n,
                            message: format!("label {} is not one of {}", f[1], classes.join(", ")),
                        }
                    })?;
                    Ok((n, f[0].clone(), c))
                })
                .collect()
        };
    let (tf, tt) = truth;
    let t = labels(tf, tt)?;
    if t.is_empty() {
        return Err(ClsInputError::Csv {
            file: tf.into(),
            message: "no cases".into(),
        });
    }
    let mut cases = Vec::new();
    let mut scores = Vec::new();
    let mut tr = Vec::new();
    for (n, case, c) in &t {
        let p = by_case.get(case).ok_or_else(|| ClsInputError::Line {
            file: tf.into(),
            line: *n,
            message: format!("case {case} has no prediction in {pf}"),
        })?;
        cases.push(case.clone());
        scores.push(p.clone());
        tr.push(*c);
    }
    let reader = match reader {
        None => None,
        Some((rf, rt)) => {
            let r: BTreeMap<String, usize> = labels(rf, rt)?
                .into_iter()
                .map(|(_, k, c)| (k, c))
                .collect();
            let mut v = Vec::with_capacity(cases.len());
            for case in &cases {
                v.push(*r.get(case).ok_or_else(|| ClsInputError::Csv {
                    file: rf.into(),
                    message: format!("case {case} has no reader label"),
                })?);
            }
            Some(v)
        }
    };
    Ok(ClsInput {
        classes,
        cases,
        scores,
        truth: tr,
        reader,
    })
}

/// Per-class decision statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassStats {
    pub support: usize,
    pub sensitivity: f64,
    pub specificity: f64,
    pub ppv: f64,
    pub f1: f64,
}

/// DeLong AUC with standard error and CI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delong {
    pub value: f64,
    pub se: f64,
    pub ci95: [f64; 2],
}

/// Model vs reader on one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReaderComparison {
    pub sensitivity_model: f64,
    pub sensitivity_reader: f64,
    pub sensitivity_p: f64,
    pub specificity_model: f64,
    pub specificity_reader: f64,
    pub specificity_p: f64,
}

/// The reader block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReaderReport {
    pub accuracy: f64,
    pub confusion: Vec<Vec<usize>>,
    pub per_class: BTreeMap<String, ClassStats>,
    pub permutation: BTreeMap<String, ReaderComparison>,
    pub permutations: usize,
    pub seed: u64,
}

/// How the bootstrap was done.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BootstrapInfo {
    pub resamples: usize,
    pub seed: u64,
    pub stratified: bool,
    pub method: &'static str,
    /// Resamples skipped per class (a class without positives or negatives), "macro" too.
    pub skipped: BTreeMap<String, usize>,
}

/// `nephrod.eval.cls/1`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClsReport {
    pub schema: &'static str,
    pub classes: Vec<String>,
    pub n_cases: usize,
    pub accuracy: f64,
    pub top2_accuracy: f64,
    /// Rows = truth, columns = decision, class order.
    pub confusion: Vec<Vec<usize>>,
    pub per_class: BTreeMap<String, ClassStats>,
    /// Per class and "macro": value and percentile-bootstrap 95 % CI.
    pub auc: BTreeMap<String, WithCi>,
    pub auc_delong: BTreeMap<String, Delong>,
    pub benign_vs_malignant: Option<WithCi>,
    pub bootstrap: BootstrapInfo,
    pub reader: Option<ReaderReport>,
}

/// Settings of the resampling statistics.
#[derive(Debug, Clone, Copy)]
pub struct ClsSettings {
    pub resamples: usize,
    pub permutations: usize,
    pub seed: u64,
}

impl Default for ClsSettings {
    fn default() -> Self {
        Self {
            resamples: 1000,
            permutations: 10_000,
            seed: 0,
        }
    }
}

fn confusion(decisions: &[usize], truth: &[usize], k: usize) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0; k]; k];
    for (&d, &t) in decisions.iter().zip(truth) {
        m[t][d] += 1;
    }
    m
}

fn stats(decisions: &[usize], truth: &[usize], classes: &[String]) -> BTreeMap<String, ClassStats> {
    classes
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let k = counts(decisions, truth, c);
            (
                name.clone(),
                ClassStats {
                    support: k.tp + k.fn_,
                    sensitivity: k.sensitivity(),
                    specificity: k.specificity(),
                    ppv: k.ppv(),
                    f1: k.f1(),
                },
            )
        })
        .collect()
}

fn accuracy(decisions: &[usize], truth: &[usize]) -> f64 {
    decisions.iter().zip(truth).filter(|(d, t)| d == t).count() as f64 / truth.len() as f64
}

/// Index of oncocytoma and AML when both are classes.
fn benign_classes(classes: &[String]) -> Option<[usize; 2]> {
    let f = |n: &str| classes.iter().position(|c| c.eq_ignore_ascii_case(n));
    Some([f("oncocytoma")?, f("AML")?])
}

/// Computes the whole report.
pub fn evaluate(input: &ClsInput, settings: ClsSettings) -> ClsReport {
    let k = input.classes.len();
    let t = &input.truth;
    let decisions: Vec<usize> = input.scores.iter().map(|p| argmax(p)).collect();
    let top2 = input
        .scores
        .iter()
        .zip(t)
        .filter(|(p, &c)| in_top_k(p, c, 2))
        .count() as f64
        / t.len() as f64;
    let boot = bootstrap_auc(&input.scores, t, k, settings.resamples, settings.seed);
    let mut auc = BTreeMap::new();
    let mut auc_delong_map = BTreeMap::new();
    let mut skipped = BTreeMap::new();
    let mut values = Vec::new();
    for (c, name) in input.classes.iter().enumerate() {
        let pos: Vec<f64> = input
            .scores
            .iter()
            .zip(t)
            .filter(|(_, &y)| y == c)
            .map(|(s, _)| s[c])
            .collect();
        let neg: Vec<f64> = input
            .scores
            .iter()
            .zip(t)
            .filter(|(_, &y)| y != c)
            .map(|(s, _)| s[c])
            .collect();
        let (lo, hi, used) = boot.per_class[c];
        skipped.insert(name.clone(), settings.resamples - used);
        if let Some((a, var)) = auc_delong(&pos, &neg) {
            values.push(a);
            auc.insert(
                name.clone(),
                WithCi {
                    value: a,
                    ci95: [lo, hi],
                },
            );
            let se = var.sqrt();
            auc_delong_map.insert(
                name.clone(),
                Delong {
                    value: a,
                    se,
                    ci95: [(a - Z_975 * se).max(0.0), (a + Z_975 * se).min(1.0)],
                },
            );
        }
    }
    if values.len() == k {
        let (lo, hi, used) = boot.macro_ci;
        skipped.insert("macro".into(), settings.resamples - used);
        auc.insert(
            "macro".into(),
            WithCi {
                value: values.iter().sum::<f64>() / k as f64,
                ci95: [lo, hi],
            },
        );
    }
    let benign_vs_malignant = benign_classes(&input.classes).and_then(|[o, a]| {
        let score: Vec<Vec<f64>> = input
            .scores
            .iter()
            .map(|p| vec![0.0, p[o] + p[a]])
            .collect();
        let y: Vec<usize> = t.iter().map(|&c| usize::from(c == o || c == a)).collect();
        let pos: Vec<f64> = score
            .iter()
            .zip(&y)
            .filter(|(_, &v)| v == 1)
            .map(|(s, _)| s[1])
            .collect();
        let neg: Vec<f64> = score
            .iter()
            .zip(&y)
            .filter(|(_, &v)| v == 0)
            .map(|(s, _)| s[1])
            .collect();
        let (value, _) = auc_delong(&pos, &neg)?;
        let b = bootstrap_auc(&score, &y, 2, settings.resamples, settings.seed);
        Some(WithCi {
            value,
            ci95: [b.per_class[1].0, b.per_class[1].1],
        })
    });
    let reader = input.reader.as_ref().map(|r| {
        let permutation = input
            .classes
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let (ps, pp) =
                    permutation_test(&decisions, r, t, c, settings.permutations, settings.seed);
                let (m, rr) = (counts(&decisions, t, c), counts(r, t, c));
                (
                    name.clone(),
                    ReaderComparison {
                        sensitivity_model: m.sensitivity(),
                        sensitivity_reader: rr.sensitivity(),
                        sensitivity_p: ps,
                        specificity_model: m.specificity(),
                        specificity_reader: rr.specificity(),
                        specificity_p: pp,
                    },
                )
            })
            .collect();
        ReaderReport {
            accuracy: accuracy(r, t),
            confusion: confusion(r, t, k),
            per_class: stats(r, t, &input.classes),
            permutation,
            permutations: settings.permutations,
            seed: settings.seed,
        }
    });
    ClsReport {
        schema: "nephrod.eval.cls/1",
        classes: input.classes.clone(),
        n_cases: t.len(),
        accuracy: accuracy(&decisions, t),
        top2_accuracy: top2,
        confusion: confusion(&decisions, t, k),
        per_class: stats(&decisions, t, &input.classes),
        auc,
        auc_delong: auc_delong_map,
        benign_vs_malignant,
        bootstrap: BootstrapInfo {
            resamples: settings.resamples,
            seed: settings.seed,
            stratified: false,
            method: "percentile bootstrap over cases (2.5th and 97.5th percentiles, linear interpolation)",
            skipped,
        },
        reader,
    }
}
