//! `nephrod eval reg`: on a label map and a shifted copy of it (tests/data/eval/seg case
//! c08_shift_aniso_xy, a pure in-plane translation), the centre-of-mass baseline restores a
//! perfect overlap that the scanner geometry alone does not, the registration column reports
//! the given aligned map, and the JSON carries the baseline's translation.

use std::path::PathBuf;
use std::process::Command;

fn seg(which: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/eval/seg")
        .join(which)
        .join("c08_shift_aniso_xy.nii.gz")
}

#[test]
fn centre_of_mass_baseline_and_aligned_column() {
    let out = Command::new(env!("CARGO_BIN_EXE_nephrod"))
        .args(["eval", "reg", "--json", "--reference"])
        .arg(seg("truth"))
        .arg("--moving")
        .arg(seg("pred"))
        .arg("--aligned")
        .arg(seg("truth"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], "nephrod.eval.reg/1");
    let p = &v["pairs"][0];
    let identity = p["identity"]["kidney"].as_f64().unwrap();
    assert!(identity < 0.99, "{identity}");
    assert_eq!(p["centre_of_mass"]["kidney"].as_f64(), Some(1.0));
    assert_eq!(p["centre_of_mass"]["tumor"].as_f64(), Some(1.0));
    assert_eq!(p["aligned"]["kidney"].as_f64(), Some(1.0));
    let shift: Vec<f64> = p["centre_of_mass_shift_mm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert!(
        shift.iter().map(|s| s.abs()).sum::<f64>() > 0.5,
        "{shift:?}"
    );
}

#[test]
fn aligned_maps_must_match_the_moving_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_nephrod"))
        .args(["eval", "reg", "--reference"])
        .arg(seg("truth"))
        .arg("--moving")
        .arg(seg("pred"))
        .arg("--moving")
        .arg(seg("pred"))
        .arg("--aligned")
        .arg(seg("truth"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("one aligned label map per moving"));
}
