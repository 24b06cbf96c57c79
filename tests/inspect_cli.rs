//! The real `nephrod` binary on the public pydicom corpus: `inspect --json` exits 0, its JSON
//! has the documented fields, and every file of the corpus appears exactly once — in one
//! series' `files` or in `skipped` with a non-empty reason. Needs `NEPHROD_CORPUS` (see
//! tests/dicom_corpus_parity.rs); missing is a failure.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

#[test]
fn inspect_accounts_for_every_corpus_file() {
    let corpus = PathBuf::from(std::env::var_os("NEPHROD_CORPUS").expect(
        "NEPHROD_CORPUS is not set: run tools/test.sh (README) to fetch the pydicom corpus",
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_nephrod"))
        .args(["inspect", "--json"])
        .arg(&corpus)
        .output()
        .expect("nephrod runs");
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");

    let mut seen: BTreeMap<PathBuf, usize> = BTreeMap::new();
    let mut series_count = 0;
    for study in report["studies"].as_array().unwrap() {
        assert!(study["study_uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty() && u.len() <= 64));
        for se in study["series"].as_array().unwrap() {
            series_count += 1;
            for key in [
                "series_uid",
                "phase",
                "phase_confidence",
                "num_files",
                "warnings",
                "status",
            ] {
                assert!(!se[key].is_null(), "series lacks {key}: {se}");
            }
            if se["status"] == "ok" {
                assert_eq!(se["dims"].as_array().unwrap().len(), 3);
                assert_eq!(se["spacing_mm"].as_array().unwrap().len(), 3);
                assert_eq!(se["origin_lps_mm"].as_array().unwrap().len(), 3);
                assert_eq!(se["direction"].as_array().unwrap().len(), 9);
            } else {
                assert!(se["refusal"].as_str().is_some_and(|r| !r.is_empty()));
            }
            let c = se["phase_confidence"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&c));
            for f in se["files"].as_array().unwrap() {
                *seen.entry(PathBuf::from(f.as_str().unwrap())).or_default() += 1;
            }
        }
    }
    for sk in report["skipped"].as_array().unwrap() {
        assert!(sk["reason"].as_str().is_some_and(|r| !r.is_empty()), "{sk}");
        *seen
            .entry(PathBuf::from(sk["path"].as_str().unwrap()))
            .or_default() += 1;
    }
    let all: Vec<PathBuf> = walk(&corpus);
    assert!(all.len() >= 240, "{}", all.len());
    for f in &all {
        assert_eq!(
            seen.get(f),
            Some(&1),
            "{} accounted for {:?} times",
            f.display(),
            seen.get(f)
        );
    }
    assert_eq!(
        seen.len(),
        all.len(),
        "report names files that do not exist"
    );
    assert!(series_count >= 5, "{series_count} CT series found");
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
