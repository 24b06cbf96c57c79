//! `nephrod demo` (README's first command) runs end to end on its embedded phantom: exit 0, a
//! truth comparison (result/demo.json) whose detected phases match the truth file written beside
//! the study, and NIfTI volumes whose grids are the truth's grids. Without models the model
//! stages are reported as not run; with the shipped demo models (models/) every stage runs, the
//! appliance report folder (report/) is written and its label maps land on the phases' grids.

use std::path::Path;
use std::process::Command;

fn run_demo(out_dir: &Path, models: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nephrod"))
        .args(["-vv", "demo", "--seed", "3", "--out"])
        .arg(out_dir)
        .arg("--models")
        .arg(models)
        .args(extra)
        .output()
        .unwrap()
}

/// The grid dimensions the truth file gives for `phase`.
fn truth_dims(truth_phases: &[serde_json::Value], phase: &serde_json::Value) -> Vec<usize> {
    let t = truth_phases.iter().find(|p| &p["phase"] == phase).unwrap();
    t["dims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect()
}

#[test]
fn demo_without_models_reports_the_model_stages_as_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let out = run_demo(dir.path(), empty.path(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("result/demo.json")).unwrap(),
    )
    .unwrap();
    let not_run: Vec<&str> = report["stages_not_run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0].as_str().unwrap())
        .collect();
    assert_eq!(
        not_run,
        ["segmentation", "registration", "classification", "report"]
    );
    assert!(report["report_dir"].is_null());
    assert!(report["stages_not_run"][0][1]
        .as_str()
        .unwrap()
        .contains("kidney-seg-demo"));
    assert_eq!(
        report["stages_run"],
        serde_json::json!(["ingest", "phase_detection", "nifti_export"])
    );
}

#[test]
fn demo_runs_and_reports_against_truth() {
    let dir = tempfile::tempdir().unwrap();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    // Without test-time augmentation (8x cheaper on CI's CPU); the mirroring path itself is
    // checked against nnU-Net in tests/segment_*.
    let out = run_demo(dir.path(), &models, &["--no-tta"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report_path = dir.path().join("result/demo.json");
    assert!(
        stdout.contains(&report_path.display().to_string()),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    let truth_path = report["truth_file"].as_str().unwrap();
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(truth_path).unwrap()).unwrap();
    let truth_phases = truth["phases"].as_array().unwrap();
    assert_eq!(truth_phases.len(), 4);
    assert_eq!(report["phases_total"], 4);
    assert_eq!(report["phases_correct"], 4, "{report}");
    for s in report["series"].as_array().unwrap() {
        let nifti = s["nifti"].as_str().expect("volume written");
        let img = nephrod::volume::nifti::read(std::path::Path::new(nifti)).unwrap();
        let dims = truth_dims(truth_phases, &s["detected_phase"]);
        assert_eq!(img.volume.dims().to_vec(), dims);
        // Logs and report name series by hash only.
        assert_eq!(s["series_uid_hash"].as_str().unwrap().len(), 12);
    }
    // Debug logs carry neither UIDs nor patient names (the phantom writes PHANTOM^CASE_…).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DEBUG") || stderr.contains("INFO"),
        "no logs to check: {stderr}"
    );
    assert!(!stderr.contains(truth["study_uid"].as_str().unwrap()));
    assert!(!stderr.contains("PHANTOM^"));

    // The shipped demo models: every stage runs; each phase's label map is on that phase's
    // grid and overlaps the truth (a loose integration bound — orientation or grid mix-ups give
    // Dice near 0; the models' measured quality is in models/EVALUATION.md, not asserted here).
    assert_eq!(
        report["stages_run"],
        serde_json::json!([
            "ingest",
            "phase_detection",
            "nifti_export",
            "segmentation",
            "registration",
            "classification",
            "report"
        ]),
        "{report}"
    );
    assert_eq!(report["segmentation_tta"], false);
    let report_dir = Path::new(report["report_dir"].as_str().unwrap());
    let appliance: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("report.json")).unwrap())
            .unwrap();
    assert!(stdout.contains(&report_dir.join("report.html").display().to_string()));
    assert_eq!(appliance["schema"], "nephrod.report/1");
    assert_eq!(appliance["segmentation"]["tta"], false);
    let used: Vec<&serde_json::Value> = appliance["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["used"] == true)
        .collect();
    assert_eq!(used.len(), 4);
    for p in used {
        let labels = nephrod::volume::nifti::read_labels(
            &report_dir.join(p["labels_file"].as_str().unwrap()),
        )
        .unwrap();
        assert_eq!(
            labels.dims().to_vec(),
            truth_dims(truth_phases, &p["phase"])
        );
    }
    let segs = report["truth_comparison"]["segmentation"]
        .as_array()
        .unwrap();
    assert_eq!(segs.len(), 4);
    for s in segs {
        let dice = s["kidney_dice"].as_f64().unwrap();
        assert!(dice > 0.8, "kidney Dice {dice} in {s}");
    }
    for l in appliance["lesions"].as_array().unwrap() {
        if let Some(p) = l["subtype"]["probabilities"].as_object() {
            let sum: f64 = p.values().map(|v| v.as_f64().unwrap()).sum();
            assert!((sum - 1.0).abs() < 1e-5, "{l}");
        }
    }
}
