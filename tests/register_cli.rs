//! `nephrod register` end to end with the real binary on a phantom's truth label maps: the
//! transform it writes maps the truth kidney centres (reference LPS mm) where the phantom's true
//! reference → moving transform maps them (within 2 mm), the aligned label map and image lie on
//! the reference grid, and the aligned kidney Dice beats the unaligned one.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[path = "common/truth_geometry.rs"]
mod truth_geometry;
use truth_geometry::{matrix_rows, max_centre_error};

#[test]
fn register_recovers_the_phantom_transform_from_truth_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let gen = tmp.path().join("gen");
    let out = Command::new(env!("CARGO_BIN_EXE_nephrod"))
        .args(["phantom", "--out"])
        .arg(&gen)
        .args([
            "--cases",
            "1",
            "--seed",
            "13",
            "--format",
            "nifti",
            "--all-phases",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let case = gen.join("case_0000");
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("truth.json")).unwrap()).unwrap();
    let reg_out = tmp.path().join("reg");
    let out = Command::new(env!("CARGO_BIN_EXE_nephrod"))
        .arg("register")
        .arg("--reference-labels")
        .arg(case.join("labels/portal.nii.gz"))
        .arg("--moving-labels")
        .arg(case.join("labels/arterial.nii.gz"))
        .arg("--moving-image")
        .arg(case.join("images/arterial.nii.gz"))
        .arg("--out")
        .arg(&reg_out)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(reg_out.join("transform.json")).unwrap())
            .unwrap();
    assert_eq!(doc["schema"], "nephrod.register/1");
    let reg = &doc["registration"];
    let est = matrix_rows(&reg["reference_to_moving_lps"]);
    let phases = truth["phases"].as_array().unwrap();
    let arterial = phases.iter().find(|p| p["phase"] == "arterial").unwrap();
    let want = matrix_rows(&arterial["transform_from_reference"]);
    let d = max_centre_error(&truth, &est, &want);
    assert!(d < 2.0, "a kidney centre off by {d:.2} mm");
    let aligned = reg["dice_aligned"]["kidney"].as_f64().unwrap();
    let identity = reg["dice_identity"]["kidney"].as_f64().unwrap();
    assert!(
        aligned > identity && aligned > 0.9,
        "{aligned} vs {identity}"
    );

    let reference =
        nephrod::volume::nifti::read_labels(&case.join("labels/portal.nii.gz")).unwrap();
    let labels =
        nephrod::volume::nifti::read_labels(Path::new(doc["aligned_labels"].as_str().unwrap()))
            .unwrap();
    let image =
        nephrod::volume::nifti::read(Path::new(doc["aligned_image"].as_str().unwrap())).unwrap();
    assert_eq!(labels.dims(), reference.dims());
    assert_eq!(image.volume.dims(), reference.dims());
    assert_eq!(labels.geometry(), reference.geometry());
}
