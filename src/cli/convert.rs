//! `nephrod convert`: one NIfTI per assembled series.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::dicom::ingest::ingest;
use crate::privacy::uid_hash;
use crate::volume::nifti;

pub fn run(dir: &Path, out: &Path) -> anyhow::Result<ExitCode> {
    if !dir.exists() {
        bail!("{} does not exist", dir.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let ingested = ingest(dir, true);
    let mut written = 0;
    let mut refused = 0;
    for (study, vols) in ingested.report.studies.iter().zip(ingested.volumes) {
        for (se, vol) in study.series.iter().zip(vols) {
            let Some(vol) = vol else {
                refused += 1;
                eprintln!(
                    "series {} not converted: {}",
                    uid_hash(&se.series_uid),
                    se.refusal.as_deref().unwrap_or("refused")
                );
                continue;
            };
            let name = format!(
                "{}_{}_s{}_p{}_{}.nii.gz",
                uid_hash(&study.study_uid),
                uid_hash(&se.series_uid),
                se.series_number.unwrap_or(0),
                se.part,
                se.phase.as_str()
            );
            let path = out.join(name);
            nifti::write(&path, &vol).with_context(|| format!("writing {}", path.display()))?;
            println!("{}", path.display());
            written += 1;
        }
    }
    eprintln!(
        "{written} series written, {refused} refused, {} file(s) skipped",
        ingested.report.skipped.len()
    );
    Ok(if written > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
