//! `nephrod analyze` with the real binary and the shipped demo models on a phantom study, checked
//! against the phantom's truth (truth.json, written by the generator independently of the
//! pipeline): phases and series, reference phase, registration matrices against the true
//! transforms, kidney sides and volumes; plus the report's own invariants (schema, files it
//! names exist and decode, enhancement = mean HU − non-contrast, subtype iff no reason, HTML with
//! no network references, no temporaries left), and the typed refusals (two studies, no DICOM,
//! existing output).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

#[path = "common/truth_geometry.rs"]
mod truth_geometry;
use truth_geometry::{matrix_rows, max_centre_error, numbers};

fn nephrod(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nephrod"))
        .args(args)
        .env(
            "NEPHROD_MODELS",
            concat!(env!("CARGO_MANIFEST_DIR"), "/models"),
        )
        .output()
        .unwrap()
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// Writes `cases` phantom studies (DICOM, all four phases) and returns each case folder.
fn phantom(out: &Path, cases: usize, seed: u64) -> Vec<PathBuf> {
    let o = nephrod(&[
        os("phantom"),
        os("--out"),
        out.as_os_str(),
        os("--cases"),
        os(&cases.to_string()),
        os("--seed"),
        os(&seed.to_string()),
        os("--all-phases"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("truth.json").exists())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), cases);
    dirs
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn analyze_reports_a_phantom_study_consistently_with_its_truth() {
    let tmp = tempfile::tempdir().unwrap();
    let case = &phantom(&tmp.path().join("in"), 1, 5)[0];
    let truth = read_json(&case.join("truth.json"));
    let out = tmp.path().join("reports").join("study");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let o = nephrod(&[
        os("analyze"),
        case.join("dicom").as_os_str(),
        os("--out"),
        out.as_os_str(),
        os("--no-tta"),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("report.json"), "{stdout}");
    assert!(stdout.contains("NOT FOR CLINICAL USE"), "{stdout}");
    assert!(stderr.contains("segmentation_portal"), "progress: {stderr}");
    // Nothing but the report folder next to it.
    let siblings: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
    assert_eq!(siblings.len(), 1);

    let r = read_json(&out.join("report.json"));
    assert_eq!(r["schema"], "nephrod.report/1");
    assert_eq!(r["study_uid"], truth["study_uid"]);

    // Phases: every truth series found with its phase, all used.
    let truth_phases = truth["phases"].as_array().unwrap();
    let phases = r["phases"].as_array().unwrap();
    assert_eq!(phases.len(), truth_phases.len());
    for tp in truth_phases {
        let p = phases
            .iter()
            .find(|p| p["series_uid"] == tp["series_uid"])
            .unwrap_or_else(|| panic!("series of {} missing", tp["phase"]));
        assert_eq!(p["phase"], tp["phase"]);
        assert_eq!(p["used"], true);
        let labels = out.join(p["labels_file"].as_str().unwrap());
        let hdr = std::fs::read(&labels).unwrap();
        assert!(hdr.starts_with(&[0x1f, 0x8b]), "gzip NIfTI");
    }
    let reference = truth_phases
        .iter()
        .find(|p| p["phase"] == "portal")
        .unwrap();
    assert_eq!(r["reference_phase"], "portal");
    assert_eq!(r["reference_series_uid"], reference["series_uid"]);

    // Registration: each moving phase's matrix maps the truth kidney centres (reference LPS)
    // where the true transform maps them, within 3 mm.
    let regs = r["registration"].as_array().unwrap();
    assert_eq!(regs.len(), 3);
    for reg in regs {
        let tp = truth_phases
            .iter()
            .find(|p| p["series_uid"] == reg["moving_series_uid"])
            .unwrap();
        assert_eq!(tp["phase"], reg["moving_phase"]);
        let m = numbers(&reg["matrix_ref_to_moving_lps"]);
        assert_eq!(m.len(), 16);
        let t = matrix_rows(&tp["transform_from_reference"]);
        let d = max_centre_error(&truth, &m, &t);
        assert!(
            d < 3.0,
            "{}: a kidney centre off by {d:.2} mm",
            reg["moving_phase"]
        );
        assert!(reg["dice_kidney"].as_f64().unwrap() > 0.8, "{reg}");
    }

    // Kidneys: both sides, volumes within 25 % of the truth (demo model kidney Dice ~0.91).
    let kidneys = r["kidneys"].as_array().unwrap();
    assert_eq!(kidneys.len(), 2, "{kidneys:?}");
    for tk in truth["kidneys"].as_array().unwrap() {
        let k = kidneys
            .iter()
            .find(|k| k["side"] == tk["side"])
            .unwrap_or_else(|| panic!("no {} kidney", tk["side"]));
        let (got, want) = (
            k["volume_ml"].as_f64().unwrap(),
            tk["volume_ml"].as_f64().unwrap(),
        );
        assert!(
            (got - want).abs() < 0.25 * want,
            "{} kidney {got:.1} mL, truth {want:.1} mL",
            tk["side"]
        );
    }

    // Lesions: the report's own invariants.
    for l in r["lesions"].as_array().unwrap() {
        let kind = l["kind"].as_str().unwrap();
        assert!(kind == "tumor" || kind == "cyst");
        assert!(["left", "right"].contains(&l["side"].as_str().unwrap()));
        assert!(
            l["pole"].is_null() || ["upper", "mid", "lower"].contains(&l["pole"].as_str().unwrap())
        );
        let mean = l["mean_hu"].as_object().unwrap();
        let enh = l["enhancement_hu"].as_object().unwrap();
        if let Some(base) = mean.get("non_contrast") {
            for (p, v) in mean {
                if p != "non_contrast" {
                    let e = enh[p].as_f64().unwrap();
                    assert!((e - (v.as_f64().unwrap() - base.as_f64().unwrap())).abs() < 1e-9);
                }
            }
        }
        assert_eq!(
            l["subtype"].is_null(),
            !l["not_classified_reason"].is_null(),
            "{l}"
        );
        if let Some(st) = l["subtype"].as_object() {
            let probs = st["probabilities"].as_object().unwrap();
            assert_eq!(probs.len(), 5);
            let sum: f64 = probs.values().map(|v| v.as_f64().unwrap()).sum();
            assert!((sum - 1.0).abs() < 1e-6);
            let mal: f64 = ["ccRCC", "pRCC", "chRCC"]
                .iter()
                .map(|c| probs[*c].as_f64().unwrap())
                .sum();
            assert!((mal - st["malignant_probability"].as_f64().unwrap()).abs() < 1e-6);
        }
        for img in l["images"].as_array().unwrap() {
            let png = std::fs::read(out.join(img["file"].as_str().unwrap())).unwrap();
            assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        }
    }
    let names: Vec<&str> = r["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kidney-seg-demo", "renal-mass-classifier-demo"]);
    for m in r["models"].as_array().unwrap() {
        assert_eq!(m["sha256"].as_str().unwrap().len(), 64);
    }
    for stage in [
        "ingest",
        "registration",
        "segmentation_arterial",
        "classification",
    ] {
        assert!(r["timings_s"][stage].as_f64().is_some(), "timing {stage}");
    }

    // HTML: self-contained.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("NOT FOR CLINICAL USE"));
    for bad in ["src=\"http", "href=\"http", "<script", "url(http"] {
        assert!(!html.contains(bad), "{bad}");
    }

    // A second run into the same non-empty folder is refused unless --force.
    let again = nephrod(&[
        os("analyze"),
        case.join("dicom").as_os_str(),
        os("--out"),
        out.as_os_str(),
        os("--no-tta"),
        os("--no-grad-cam"),
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(
        read_json(&out.join("report.json"))["created_utc"],
        r["created_utc"]
    );
}

#[test]
fn analyze_refuses_two_studies_and_folders_without_dicom() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    phantom(&input, 2, 77);
    let out = tmp.path().join("out");
    let o = nephrod(&[
        os("analyze"),
        input.as_os_str(),
        os("--out"),
        out.as_os_str(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("2 studies found"), "{err}");
    assert!(!out.exists());

    let junk = tmp.path().join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("notes.txt"), "not DICOM").unwrap();
    let o = nephrod(&[
        os("analyze"),
        junk.as_os_str(),
        os("--out"),
        out.as_os_str(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no DICOM CT study found (1 file(s) skipped)"),
        "{err}"
    );
    assert!(!out.exists());
}
