//! `nephrod bench ingest`: slices per second for a generated 512×512×N CT series, beside
//! pydicom reading and rescaling the same files in the same run, reported as a ratio.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::dicom::ingest::ingest;
use crate::dicom::phase::Phase;
use crate::dicom::writer::{uid_from_seed, write_series, FileOrder, SeriesSpec};
use crate::phantom::simple_abdomen;

pub fn run_ingest(
    slices: usize,
    repeats: usize,
    python: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let dir = tempdir()?;
    let vol = simple_abdomen(Phase::Portal, [512, 512, slices], [0.7, 0.7, 1.0], 10.0)?;
    let spec = SeriesSpec {
        study_uid: uid_from_seed("bench study"),
        series_uid: uid_from_seed("bench series"),
        series_number: 1,
        description: "bench PV".into(),
        contrast_agent: Some("Iohexol".into()),
        contrast_start_time: Some("100000".into()),
        acquisition_time: "100120".into(),
        acquisition_date: "20260101".into(),
        rescale_slope: 1.0,
        rescale_intercept: -1024.0,
        file_order: FileOrder::Shuffled(1),
        scramble_instance_numbers: true,
        first_instance: 0,
        patient: Default::default(),
        pixel_encoding: Default::default(),
        layout: Default::default(),
    };
    write_series(&dir, &vol, &spec).context("writing the bench series")?;
    drop(vol);
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        let ing = ingest(&dir, true);
        let secs = t.elapsed().as_secs_f64();
        let ok = ing.volumes.iter().flatten().flatten().count();
        if ok != 1 {
            bail!("bench series did not assemble");
        }
        best = best.min(secs);
    }
    let ours = slices as f64 / best;
    println!("nephrod ingest: {slices} slices 512×512 in {best:.3} s (best of {repeats}) = {ours:.0} slices/s");
    let python = python.unwrap_or_else(default_python);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/oracle/bench_pydicom_ingest.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&dir)
        .arg(repeats.max(1).to_string())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let v: serde_json::Value =
                serde_json::from_slice(&o.stdout).context("pydicom bench output")?;
            let secs = v["seconds"].as_f64().unwrap_or(f64::NAN);
            let theirs = slices as f64 / secs;
            println!("pydicom read + apply_modality_lut: {secs:.3} s = {theirs:.0} slices/s");
            println!("ratio nephrod / pydicom: {:.2}×", ours / theirs);
        }
        Ok(o) => println!(
            "pydicom reference failed ({}): {}",
            python.display(),
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => println!("pydicom reference not run ({}): {e}", python.display()),
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ExitCode::SUCCESS)
}

fn default_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("nephrod-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}
