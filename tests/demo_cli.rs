//! `nephrod demo` (README's first command) runs end to end on its embedded phantom: exit 0, a
//! report whose detected phases match the truth file written beside the study, and NIfTI
//! volumes whose grids are the truth's grids.

use std::process::Command;

#[test]
fn demo_runs_and_reports_against_truth() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nephrod"))
        .args(["-vv", "demo", "--seed", "3", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report_path = dir.path().join("result/report.json");
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
        let t = truth_phases
            .iter()
            .find(|p| p["phase"] == s["detected_phase"])
            .unwrap();
        let dims: Vec<usize> = t["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
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
}
