//! The image `nephrod segment` works on: a NIfTI file, or one series of a DICOM folder.
//!
//! A DICOM folder must hold exactly one assembled series unless `--series` names one by its
//! UID hash (the 12-hex-digit name `nephrod inspect` prints) or `--phase` by its detected
//! contrast phase; otherwise the error lists the candidates (hashes and phases only, never
//! patient data).

use std::path::Path;

use anyhow::{bail, Context};

use crate::dicom::ingest::ingest;
use crate::privacy::uid_hash;
use crate::volume::{nifti, Volume};

/// The chosen image: HU voxels with their geometry and a name safe to log and to use in file
/// names.
pub struct SegmentInput {
    pub volume: Volume<f32>,
    pub name: String,
}

/// Loads `path` (a `.nii`/`.nii.gz` file or a DICOM folder) as described in the module doc.
pub fn load(
    path: &Path,
    series: Option<&str>,
    phase: Option<&str>,
) -> anyhow::Result<SegmentInput> {
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    if path.is_file() {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| {
                n.trim_end_matches(".gz")
                    .trim_end_matches(".nii")
                    .to_string()
            })
            .unwrap_or_else(|| "image".to_string());
        let img = nifti::read(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(SegmentInput {
            volume: img.volume,
            name,
        });
    }
    let ingested = ingest(path, true);
    let mut candidates = Vec::new();
    for (study, vols) in ingested.report.studies.iter().zip(ingested.volumes) {
        for (se, vol) in study.series.iter().zip(vols) {
            let Some(vol) = vol else { continue };
            let hash = uid_hash(&se.series_uid);
            let name = if se.part == 0 {
                hash.clone()
            } else {
                format!("{hash}_p{}", se.part)
            };
            candidates.push((name, se.phase.as_str().to_string(), vol));
        }
    }
    let listing = |c: &[(String, String, Volume<f32>)]| {
        c.iter()
            .map(|(n, p, _)| format!("{n} ({p})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let all = listing(&candidates);
    if let Some(s) = series {
        candidates.retain(|(n, _, _)| n == s || n.starts_with(&format!("{s}_p")));
    }
    if let Some(p) = phase {
        candidates.retain(|(_, ph, _)| ph.eq_ignore_ascii_case(p));
    }
    match candidates.len() {
        1 => {
            let (name, _, volume) = candidates.remove(0);
            Ok(SegmentInput { volume, name })
        }
        0 if all.is_empty() => bail!(
            "{}: no assembled CT series ({} file(s) skipped; see `nephrod inspect`)",
            path.display(),
            ingested.report.skipped.len()
        ),
        0 => bail!("no series matches the selection; series found: {all}"),
        _ => bail!(
            "{} series match; choose one with --series HASH or --phase PHASE: {}",
            candidates.len(),
            listing(&candidates)
        ),
    }
}
