//! nephrod's HU against pydicom's `apply_modality_lut(ds.pixel_array, ds)` on the public
//! pydicom + pydicom-data corpus, file by file.
//!
//! Needs `NEPHROD_CORPUS` (the unpacked files, from tools/oracle/fetch_corpus.sh) and
//! `NEPHROD_ORACLE` (the output of tools/oracle/pydicom_hu.py); `.ci/run` prepares both. A
//! missing corpus or oracle is a failure, not a skip.
//!
//! Properties checked:
//! * no file makes the parser or a codec panic (every failure is a typed error);
//! * where pydicom decodes a greyscale file, nephrod decodes it too (except the refusals listed
//!   in `KNOWN_REFUSALS`, each with the reason), with the same shape;
//! * lossless transfer syntaxes: identical HU (f32 of pydicom's float64);
//! * lossy (JPEG baseline, JPEG 2000 lossy): |ΔHU| ≤ `LOSSY_MAX_ABS_STORED` stored units × |slope|
//!   everywhere.

use std::path::PathBuf;

use nephrod::dicom::pixels::{decode_path, is_lossy};
use nephrod::dicom::DicomError;
use serde_json::Value;

/// Files pydicom decodes and nephrod refuses on purpose, with why.
const KNOWN_REFUSALS: &[(&str, &str)] = &[
    (
        "emri_small_jpeg_ls_lossless.dcm",
        "JPEG-LS: no decoder built in (README)",
    ),
    (
        "MR_small_jpeg_ls_lossless.dcm",
        "JPEG-LS: no decoder built in (README)",
    ),
    (
        "JPEGLSNearLossless_08.dcm",
        "JPEG-LS: no decoder built in (README)",
    ),
    (
        "JPEGLSNearLossless_16.dcm",
        "JPEG-LS: no decoder built in (README)",
    ),
    (
        "JPGExtended.dcm",
        "12-bit JPEG Extended: dicom-rs's JPEG decoder cannot decode it",
    ),
    ("liver.dcm", "1-bit SEG: not a CT image"),
    ("liver_expb.dcm", "1-bit SEG: not a CT image"),
    ("liver_1frame.dcm", "1-bit SEG: not a CT image"),
    ("liver_expb_1frame.dcm", "1-bit SEG: not a CT image"),
    (
        "rtdose_rle.dcm",
        "32-bit RLE (RT dose): dicom-rs's RLE decoder refuses it",
    ),
    (
        "rtdose_rle_1frame.dcm",
        "32-bit RLE (RT dose): dicom-rs's RLE decoder refuses it",
    ),
    ("rtdose_expb.dcm", "32-bit big-endian pixel data: refused"),
    (
        "rtdose_expb_1frame.dcm",
        "32-bit big-endian pixel data: refused",
    ),
];

/// Bound for lossy codecs (different IDCT / wavelet implementations), in stored units.
const LOSSY_MAX_ABS_STORED: f64 = 2.0;

fn env_path(name: &str) -> PathBuf {
    match std::env::var_os(name) {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "{name} is not set: run `bash .ci/run` (or tools/oracle/fetch_corpus.sh and \
             tools/oracle/pydicom_hu.py, see README) to prepare the corpus and its oracle"
        ),
    }
}

#[test]
fn hu_equal_pydicom_on_the_public_corpus() {
    let corpus = env_path("NEPHROD_CORPUS");
    let oracle = env_path("NEPHROD_ORACLE");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(oracle.join("manifest.json")).expect("oracle manifest.json readable"),
    )
    .expect("manifest is JSON");
    let files = manifest["files"].as_array().expect("files array");
    assert!(files.len() >= 200, "corpus too small: {}", files.len());

    let mut compared = 0usize;
    let mut exact = 0usize;
    let mut lossy = 0usize;
    let mut failures = Vec::new();
    let mut refusals = Vec::new();
    for entry in files {
        let rel = entry["path"].as_str().expect("path");
        let path = corpus.join(rel);
        let result = decode_path(&path);
        if let Err(e @ (DicomError::ParserPanic { .. } | DicomError::DecoderPanic { .. })) = &result
        {
            failures.push(format!("{rel}: panic: {e}"));
            continue;
        }
        if entry["status"] != "ok" {
            continue;
        }
        let got = match result {
            Ok(d) => d,
            Err(e) => {
                refusals.push((rel.to_string(), e.kind().to_string(), e.to_string()));
                continue;
            }
        };
        let (frames, rows, cols) = (
            entry["frames"].as_u64().unwrap() as usize,
            entry["rows"].as_u64().unwrap() as usize,
            entry["cols"].as_u64().unwrap() as usize,
        );
        if (got.frames, got.rows, got.cols) != (frames, rows, cols) {
            failures.push(format!(
                "{rel}: shape {:?} vs pydicom {:?}",
                (got.frames, got.rows, got.cols),
                (frames, rows, cols)
            ));
            continue;
        }
        let raw = std::fs::read(oracle.join(entry["values"].as_str().unwrap())).unwrap();
        let want: Vec<f64> = raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(want.len(), got.hu.len(), "{rel}");
        compared += 1;
        let ts = entry["transfer_syntax"].as_str().unwrap_or("");
        if is_lossy(ts) {
            lossy += 1;
            // Slope from the ratio of HU and stored steps is not known here; bound by the
            // largest |slope| a CT/MR file in the corpus uses, taken per file from the values.
            let slope = slope_estimate(&want);
            let max_abs = want
                .iter()
                .zip(&got.hu)
                .map(|(w, g)| (*w - *g as f64).abs())
                .fold(0.0, f64::max);
            if max_abs > LOSSY_MAX_ABS_STORED * slope + 1e-6 {
                failures.push(format!(
                    "{rel}: lossy max |ΔHU| {max_abs} > {LOSSY_MAX_ABS_STORED} × {slope}"
                ));
            }
        } else {
            let mismatches = want
                .iter()
                .zip(&got.hu)
                .filter(|(w, g)| **w as f32 != **g)
                .count();
            if mismatches > 0 {
                let first = want
                    .iter()
                    .zip(&got.hu)
                    .position(|(w, g)| *w as f32 != *g)
                    .unwrap();
                failures.push(format!(
                    "{rel} ({ts}): {mismatches} voxels differ, first at {first}: pydicom {} nephrod {}",
                    want[first], got.hu[first]
                ));
            } else {
                exact += 1;
            }
        }
    }
    for (rel, kind, msg) in &refusals {
        if !KNOWN_REFUSALS.iter().any(|(f, _)| rel.ends_with(f)) {
            failures.push(format!(
                "{rel}: pydicom decodes, nephrod refused ({kind}): {msg}"
            ));
        }
    }
    eprintln!(
        "corpus parity: {} files, {compared} compared ({exact} exact lossless, {lossy} lossy), {} known refusals",
        files.len(),
        refusals.len()
    );
    assert!(
        failures.is_empty(),
        "{} parity failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(compared >= 60, "only {compared} files compared");
}

/// Smallest positive gap between distinct HU values: the slope of the rescale.
fn slope_estimate(v: &[f64]) -> f64 {
    let mut u: Vec<f64> = v.to_vec();
    u.sort_by(|a, b| a.total_cmp(b));
    u.dedup();
    u.windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| *d > 1e-9)
        .fold(f64::INFINITY, f64::min)
        .clamp(1e-6, 1e6)
}
