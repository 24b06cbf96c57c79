//! Phantom DICOM output read back three ways:
//! * nephrod's own reader assembles every series onto exactly the geometry and voxels of the
//!   NIfTI image written for the same case (all encodings, single- and multi-frame, orientation
//!   variants, shuffled file order);
//! * `nephrod inspect` names the phases the truth names (matched by series UID);
//! * pydicom (the pinned oracle, `tools/oracle/check_phantom_dicom.py`) reads every file and
//!   finds the same voxels and geometry. Needs `NEPHROD_PYTHON` (tools/test.sh sets it).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use nephrod::dicom::ingest::ingest;
use nephrod::phantom::acquisition::{AcquisitionOptions, StudySize};
use nephrod::phantom::output::{write_case, Compression, DicomOptions, Frames, OutputFormat};
use nephrod::phantom::{generate_case, CaseOptions};
use nephrod::volume::nifti;

const SEED: u64 = 4242;
const CASES: usize = 4;

fn options() -> CaseOptions {
    CaseOptions {
        acquisition: AcquisitionOptions {
            size: StudySize::Small,
            orientation_variants: true,
            all_phases: false,
        },
        ..CaseOptions::default()
    }
}

fn mixed() -> DicomOptions {
    DicomOptions {
        shuffle_files: true,
        compression: Compression::Mixed,
        frames: Frames::Mixed,
    }
}

/// Writes the same cases as DICOM and as NIfTI.
fn write_both(root: &Path) {
    for i in 0..CASES {
        let case = generate_case(SEED, i, &options()).unwrap();
        write_case(&case, &root.join("dicom"), OutputFormat::Dicom, &mixed()).unwrap();
        write_case(&case, &root.join("nifti"), OutputFormat::Nifti, &mixed()).unwrap();
    }
}

fn truth(root: &Path, case: usize) -> serde_json::Value {
    let p = root.join(format!("case_{case:04}/truth.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn dicom_reads_back_onto_the_nifti_geometry_and_voxels() {
    let dir = tempfile::tempdir().unwrap();
    write_both(dir.path());
    let mut series_checked = 0;
    let mut transfer_syntaxes = BTreeMap::new();
    for i in 0..CASES {
        let case_dir = dir.path().join(format!("dicom/case_{i:04}"));
        let t = truth(&dir.path().join("dicom"), i);
        let ing = ingest(&case_dir.join("dicom"), true);
        assert!(ing.report.skipped.is_empty(), "{:?}", ing.report.skipped);
        assert_eq!(ing.report.studies.len(), 1);
        let study = &ing.report.studies[0];
        assert_eq!(study.study_uid, t["study_uid"].as_str().unwrap());
        let phases = t["phases"].as_array().unwrap();
        assert_eq!(study.series.len(), phases.len());
        for (s, series) in study.series.iter().enumerate() {
            for ts in &series.transfer_syntaxes {
                *transfer_syntaxes.entry(ts.clone()).or_insert(0) += 1;
            }
            let pt = phases
                .iter()
                .find(|p| p["series_uid"] == series.series_uid.as_str())
                .expect("series UID in truth");
            let nifti_path = dir
                .path()
                .join(format!("nifti/case_{i:04}"))
                .join(format!("images/{}.nii.gz", pt["phase"].as_str().unwrap()));
            let reference = nifti::read(&nifti_path).unwrap().volume;
            let vol = ing.volumes[0][s].as_ref().expect("volume kept");
            assert_eq!(vol.dims(), reference.dims());
            let (g, r) = (vol.geometry(), reference.geometry());
            for a in 0..3 {
                assert!(
                    (g.origin_mm[a] - r.origin_mm[a]).abs() < 1e-3,
                    "origin {g:?} {r:?}"
                );
                assert!((g.spacing_mm[a] - r.spacing_mm[a]).abs() < 1e-4);
                for b in 0..3 {
                    assert!((g.direction[a][b] - r.direction[a][b]).abs() < 1e-5);
                }
            }
            assert_eq!(vol.data(), reference.data(), "voxels differ");
            series_checked += 1;
        }
    }
    assert!(series_checked >= 8, "{series_checked}");
    // The mixed options exercised more than one encoding.
    assert!(transfer_syntaxes.len() >= 2, "{transfer_syntaxes:?}");
}

#[test]
fn inspect_names_the_truth_phases() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let opts = options();
    let mut checked = 0;
    for i in 0..6 {
        let case = generate_case(SEED + 1, i, &opts).unwrap();
        write_case(&case, root, OutputFormat::Dicom, &mixed()).unwrap();
        let case_dir = root.join(format!("case_{i:04}"));
        let out = Command::new(env!("CARGO_BIN_EXE_nephrod"))
            .args(["inspect", "--json"])
            .arg(case_dir.join("dicom"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let t = truth(root, i);
        for pt in t["phases"].as_array().unwrap() {
            let uid = pt["series_uid"].as_str().unwrap();
            let series = report["studies"][0]["series"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["series_uid"] == uid)
                .expect("series found by inspect");
            assert_eq!(
                series["phase"], pt["phase"],
                "case {i}: {} detected as {} ({})",
                pt["series_description"], series["phase"], series["phase_evidence"]
            );
            checked += 1;
        }
    }
    assert!(checked >= 12);
}

#[test]
fn pydicom_reads_every_file_written() {
    let python = std::env::var_os("NEPHROD_PYTHON")
        .expect("NEPHROD_PYTHON is not set (a Python with pydicom; tools/test.sh sets it)");
    let dir = tempfile::tempdir().unwrap();
    write_both(dir.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/oracle/check_phantom_dicom.py");
    let out = Command::new(python)
        .arg(script)
        .arg(dir.path().join("dicom"))
        .arg(dir.path().join("nifti"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let files_written = walkdir::WalkDir::new(dir.path().join("dicom"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "dcm"))
        .count();
    assert_eq!(summary["files"].as_u64(), Some(files_written as u64));
    // Every encoding and both SOP classes (classic and Enhanced CT) were exercised.
    assert_eq!(
        summary["transfer_syntaxes"].as_object().unwrap().len(),
        3,
        "{summary}"
    );
    assert_eq!(
        summary["sop_classes"].as_object().unwrap().len(),
        2,
        "{summary}"
    );
}
