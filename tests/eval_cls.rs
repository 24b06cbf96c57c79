//! `nephrod eval cls --json` against scikit-learn 1.9.1 and a DeLong reference
//! (tools/oracle/eval_golden.py) on 80 cases with many tied scores: deterministic numbers equal
//! to 1e-6; the bootstrap CIs and permutation p-values (nephrod's own RNG) must fall inside the
//! spread of the reference's over 30 seeds (widened by that spread) or, for p-values, within
//! four Monte-Carlo standard errors of the exact permutation p-value.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/eval/cls")
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-6,
        "{what}: nephrod {got}, reference {want}"
    );
}

fn run(extra: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_nephrod"))
        .args(["eval", "cls", "--json", "--pred"])
        .arg(dir().join("preds.csv"))
        .arg("--truth")
        .arg(dir().join("truth.csv"))
        .arg("--reader")
        .arg(dir().join("reader.csv"))
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn deterministic_metrics_equal_sklearn() {
    let g: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("cls_golden.json")).unwrap())
            .unwrap();
    let r = run(&[]);
    assert_eq!(r["schema"], "nephrod.eval.cls/1");
    assert_eq!(r["classes"], g["classes"]);
    close(f(&r["accuracy"]), f(&g["accuracy"]), "accuracy");
    close(
        f(&r["top2_accuracy"]),
        f(&g["top2_accuracy"]),
        "top-2 accuracy",
    );
    assert_eq!(r["confusion"], g["confusion_matrix"]);
    assert_eq!(r["reader"]["confusion"], g["reader_confusion_matrix"]);
    close(
        f(&r["reader"]["accuracy"]),
        f(&g["reader_accuracy"]),
        "reader accuracy",
    );
    for c in g["classes"].as_array().unwrap() {
        let c = c.as_str().unwrap();
        let (rc, gc) = (&r["per_class"][c], &g["per_class"][c]);
        for k in ["sensitivity", "specificity", "ppv", "f1"] {
            close(f(&rc[k]), f(&gc[k]), &format!("{c} {k}"));
        }
        assert_eq!(rc["support"], gc["support"]);
        close(
            f(&r["auc"][c]["value"]),
            f(&gc["roc_auc"]),
            &format!("{c} AUC"),
        );
        let d = &r["auc_delong"][c];
        close(
            f(&d["se"]),
            f(&gc["delong"]["se"]),
            &format!("{c} DeLong SE"),
        );
        close(
            f(&d["ci95"][0]),
            f(&gc["delong"]["ci95"][0]),
            &format!("{c} DeLong lo"),
        );
        close(
            f(&d["ci95"][1]),
            f(&gc["delong"]["ci95"][1]),
            &format!("{c} DeLong hi"),
        );
    }
    close(
        f(&r["auc"]["macro"]["value"]),
        f(&g["macro_roc_auc"]),
        "macro AUC",
    );
    close(
        f(&r["benign_vs_malignant"]["value"]),
        f(&g["benign_vs_malignant"]["roc_auc"]),
        "benign vs malignant AUC",
    );
}

#[test]
fn resampling_statistics_fall_within_the_reference_spread() {
    let g: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("cls_golden.json")).unwrap())
            .unwrap();
    let spread = &g["bootstrap"]["spread_over_seeds"];
    let p_exact = &g["permutation"]["p_exact_limit"];
    for seed in ["0", "1", "2"] {
        let r = run(&["--seed", seed]);
        for c in g["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .chain(["macro"])
        {
            let s = &spread[c];
            for (end, i) in [("lower", 0), ("upper", 1)] {
                let (lo, hi) = (f(&s[format!("{end}_min")]), f(&s[format!("{end}_max")]));
                let w = (hi - lo).max(1e-3);
                let v = f(&r["auc"][c]["ci95"][i]);
                assert!(
                    v >= lo - w && v <= hi + w,
                    "seed {seed} {c} {end} CI bound {v} outside the reference spread [{lo}, {hi}] ± {w}"
                );
            }
        }
        let n = f(&r["reader"]["permutations"]);
        for c in g["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
        {
            for k in ["sensitivity", "specificity"] {
                let exact = f(&p_exact[c][k]).min(1.0);
                let got = f(&r["reader"]["permutation"][c][format!("{k}_p")]);
                let se = (exact * (1.0 - exact) / n).sqrt();
                assert!(
                    (got - exact).abs() <= 4.0 * se + 2.0 / (n + 1.0),
                    "seed {seed} {c} {k}: p {got} vs exact {exact}"
                );
            }
        }
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let preds = write("p.csv", "case,a,b\nx,0.2,0.8\ny,0.7,0.3\n");
    for (truth, why) in [
        ("case,label\nx,a\nz,b\n", "has no prediction"),
        ("case,label\nx,c\n", "is not one of"),
        ("case,lbl\nx,a\n", "header must be case,label"),
    ] {
        let t = write("t.csv", truth);
        let out = Command::new(env!("CARGO_BIN_EXE_nephrod"))
            .args(["eval", "cls", "--pred"])
            .arg(&preds)
            .arg("--truth")
            .arg(&t)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{why}: {err}");
    }
    let bad = write("bad.csv", "case,a,b\nx,0.2,zz\n");
    let t = write("t2.csv", "case,label\nx,a\n");
    let out = Command::new(env!("CARGO_BIN_EXE_nephrod"))
        .args(["eval", "cls", "--pred"])
        .arg(&bad)
        .arg("--truth")
        .arg(&t)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a number"));
}

#[test]
fn plots_are_written_as_png_and_svg_with_auc_legends() {
    let tmp = tempfile::tempdir().unwrap();
    let plots = tmp.path().join("plots");
    let out = Command::new(env!("CARGO_BIN_EXE_nephrod"))
        .args(["eval", "cls", "--json", "--pred"])
        .arg(dir().join("preds.csv"))
        .arg("--truth")
        .arg(dir().join("truth.csv"))
        .arg("--plots")
        .arg(&plots)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    for stem in ["roc", "pr", "roc_benign_vs_malignant"] {
        let png = std::fs::read(plots.join(format!("{stem}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{stem}.png");
        assert!(png.len() > 10_000, "{stem}.png too small");
        let svg = std::fs::read_to_string(plots.join(format!("{stem}.svg"))).unwrap();
        assert!(
            svg.contains("<svg") && svg.trim_end().ends_with("</svg>"),
            "{stem}.svg"
        );
    }
    let roc = std::fs::read_to_string(plots.join("roc.svg")).unwrap();
    for c in ["ccRCC", "pRCC", "chRCC", "oncocytoma", "AML"] {
        let w = &r["auc"][c];
        let label = format!(
            "{c} AUC {:.3} ({:.3}–{:.3})",
            f(&w["value"]),
            f(&w["ci95"][0]),
            f(&w["ci95"][1])
        );
        assert!(roc.contains(&label), "roc.svg lacks {label}");
    }
    assert!(std::fs::read_to_string(plots.join("pr.svg"))
        .unwrap()
        .contains("ccRCC AP "));
}
