//! `nephrod eval seg --json` against the field's reference code (tools/oracle/eval_golden.py:
//! the official kits23 evaluation code for Dice / Surface Dice of the HECs, google-deepmind's
//! surface-distance for HD95 and surface distances, skimage components for detection) on
//! generated label maps: anisotropic spacing, empty masks, touching lesions, one-voxel lesions,
//! border lesions. Every number must agree to 1e-6; undefined distances are null on both sides.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/eval/seg")
}

fn run_json(pred: &std::path::Path, truth: &std::path::Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_nephrod"))
        .args(["eval", "seg", "--json", "--pred"])
        .arg(pred)
        .arg("--truth")
        .arg(truth)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn close(got: &Value, want: &Value, what: &str) {
    match (got.as_f64(), want.as_f64()) {
        (Some(g), Some(w)) => assert!(
            (g - w).abs() <= 1e-6 * w.abs().max(1.0),
            "{what}: nephrod {g}, reference {w}"
        ),
        _ => assert!(
            got.is_null() && want.is_null(),
            "{what}: nephrod {got}, reference {want}"
        ),
    }
}

const METRICS: [&str; 8] = [
    "dice",
    "surface_dice",
    "hd95_mm",
    "assd_mm",
    "asd_gt_to_pred_mm",
    "asd_pred_to_gt_mm",
    "volume_truth_ml",
    "volume_pred_ml",
];

#[test]
fn seg_metrics_equal_the_reference() {
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("seg_golden.json")).unwrap())
            .unwrap();
    let got = run_json(&dir().join("pred"), &dir().join("truth"));
    assert_eq!(got["schema"], "nephrod.eval.seg/1");
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    assert_eq!(got["cases"].as_array().unwrap().len(), cases.len());
    let mut checked = 0;
    for want in cases {
        let name = want["case"].as_str().unwrap();
        let g = got["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["case"] == name)
            .unwrap_or_else(|| panic!("case {name} missing"));
        for hec in ["kidney_and_masses", "masses", "tumor"] {
            for m in METRICS {
                close(
                    &g["hec"][hec][m],
                    &want["hec"][hec][m],
                    &format!("{name} {hec} {m}"),
                );
                checked += 1;
            }
        }
        for (label, name_l) in [("1", "kidney"), ("2", "tumor"), ("3", "cyst")] {
            for m in METRICS {
                close(
                    &g["labels"][name_l][m],
                    &want["labels"][label][m],
                    &format!("{name} label {label} {m}"),
                );
                checked += 1;
            }
        }
        for stratum in ["all", "lt5mm", "ge5mm"] {
            for k in [
                "truth_lesions",
                "detected",
                "fn",
                "pred_lesions",
                "tp_pred",
                "fp",
                "recall",
                "precision",
                "f1",
            ] {
                close(
                    &g["detection"][stratum][k],
                    &want["detection"][stratum][k],
                    &format!("{name} detection {stratum} {k}"),
                );
                checked += 1;
            }
        }
    }
    for hec in ["kidney_and_masses", "masses", "tumor"] {
        for m in ["dice", "surface_dice", "hd95_mm"] {
            close(
                &got["mean"][hec][m],
                &golden["mean"][hec][m],
                &format!("mean {hec} {m}"),
            );
        }
    }
    println!("{checked} values equal the reference");
}

#[test]
fn missing_predictions_and_grid_mismatches_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let pred = tmp.path().join("pred");
    std::fs::create_dir(&pred).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nephrod"))
        .args(["eval", "seg", "--pred"])
        .arg(&pred)
        .arg("--truth")
        .arg(dir().join("truth"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no prediction"), "{err}");
    // Two cases on different grids.
    let files: Vec<PathBuf> = std::fs::read_dir(dir().join("truth"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let a = &files[0];
    let b = files
        .iter()
        .find(|f| {
            nephrod::volume::nifti::read_labels(f).unwrap().dims()
                != nephrod::volume::nifti::read_labels(a).unwrap().dims()
                || nephrod::volume::nifti::read_labels(f)
                    .unwrap()
                    .geometry()
                    .spacing_mm
                    != nephrod::volume::nifti::read_labels(a)
                        .unwrap()
                        .geometry()
                        .spacing_mm
        })
        .expect("goldens have two grids");
    let out = Command::new(env!("CARGO_BIN_EXE_nephrod"))
        .args(["eval", "seg", "--pred"])
        .arg(b)
        .arg("--truth")
        .arg(a)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("differ"), "{err}");
}
