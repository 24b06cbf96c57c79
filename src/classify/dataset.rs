//! Labelled multi-phase datasets for `nephrod export-crops`, and the `.npy` files it writes.
//!
//! # Dataset layout
//! A folder of case folders, each with a `truth.json` — as `nephrod phantom` writes them, or
//! converted from a hospital research set. Only this subset is read (paths relative to the
//! truth file's folder):
//! ```json
//! { "case_id": "case_0000",
//!   "phases": [ { "phase": "portal", "image_path": "images/portal.nii.gz",
//!                 "label_path": "labels/portal.nii.gz" }, … ],
//!   "lesions": [ { "id": 1, "class": "ccrcc", "centre_lps_mm": [x, y, z] }, … ] }
//! ```
//! `image_path` is a NIfTI file or a DICOM series folder; `label_path` a NIfTI label map
//! (0 background, 1 kidney, 2 tumour, 3 cyst) on that image's grid; lesion centres are in the
//! reference phase's LPS mm. Classes: `ccrcc`, `prcc`, `chrcc`, `oncocytoma`, `aml` (the
//! classifier's five) and `cyst` (not classified).
//!
//! # Matching segmented lesions to labelled ones
//! A lesion component takes the class of the labelled lesion whose centre falls in it (the
//! component voxel nearest the centre is within one voxel diagonal); otherwise of the nearest
//! labelled centre within `MATCH_MM`; otherwise it is reported unmatched and not exported.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::crop::LesionRegion;
use crate::dicom::phase::Phase;
use crate::volume::Volume;

/// A labelled centre further than this (mm) from every voxel of a component never matches it.
pub const MATCH_MM: f64 = 10.0;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Truth { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
pub struct CasePhase {
    pub phase: Phase,
    pub image_path: PathBuf,
    pub label_path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CaseLesion {
    pub id: usize,
    pub class: String,
    pub centre_lps_mm: [f64; 3],
}

/// One case of a labelled dataset, paths resolved.
#[derive(Debug, Clone, Deserialize)]
pub struct LabelledCase {
    pub case_id: String,
    pub phases: Vec<CasePhase>,
    pub lesions: Vec<CaseLesion>,
}

/// The classifier's class index of a dataset class name (`None` for cysts and unknown names).
pub fn class_index(name: &str) -> Option<usize> {
    match name.to_ascii_lowercase().as_str() {
        "ccrcc" => Some(0),
        "prcc" => Some(1),
        "chrcc" => Some(2),
        "oncocytoma" => Some(3),
        "aml" => Some(4),
        _ => None,
    }
}

/// Reads `dir/truth.json` with paths made absolute.
pub fn read_case(dir: &Path) -> Result<LabelledCase, DatasetError> {
    let path = dir.join("truth.json");
    let text = std::fs::read_to_string(&path).map_err(|source| DatasetError::Io {
        path: path.clone(),
        source,
    })?;
    let mut case: LabelledCase = serde_json::from_str(&text).map_err(|e| DatasetError::Truth {
        path: path.clone(),
        message: e.to_string(),
    })?;
    for p in &mut case.phases {
        for rel in [&mut p.image_path, &mut p.label_path] {
            if rel.is_absolute() || rel.components().any(|c| c.as_os_str() == "..") {
                return Err(DatasetError::Truth {
                    path: path.clone(),
                    message: format!("{} must be relative, inside the case folder", rel.display()),
                });
            }
            *rel = dir.join(&*rel);
        }
    }
    Ok(case)
}

/// The case folders (holding a `truth.json`) under `root`, sorted by name.
pub fn case_dirs(root: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let rd = std::fs::read_dir(root).map_err(|source| DatasetError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("truth.json").is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// The labelled lesion matching `region` on `labels`' grid (see the module doc).
pub fn match_lesion<'a>(
    region: &LesionRegion,
    labels: &Volume<u8>,
    lesions: &'a [CaseLesion],
) -> Option<&'a CaseLesion> {
    let g = labels.geometry();
    let [ni, nj, _] = labels.dims();
    let diag = g.spacing_mm.iter().map(|s| s * s).sum::<f64>().sqrt();
    let nearest_voxel = |c: [f64; 3]| {
        region
            .members
            .iter()
            .map(|o| {
                let p = g.index_to_world([
                    (o % ni) as f64,
                    ((o / ni) % nj) as f64,
                    (o / (ni * nj)) as f64,
                ]);
                (0..3).map(|a| (p[a] - c[a]).powi(2)).sum::<f64>().sqrt()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let scored: Vec<(f64, &CaseLesion)> = lesions
        .iter()
        .map(|l| (nearest_voxel(l.centre_lps_mm), l))
        .collect();
    if let Some((_, l)) = scored
        .iter()
        .filter(|(d, _)| *d <= diag)
        .min_by(|a, b| a.0.total_cmp(&b.0))
    {
        return Some(l);
    }
    let centre_dist = |l: &CaseLesion| {
        (0..3)
            .map(|a| (l.centre_lps_mm[a] - region.centre_lps_mm[a]).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    scored
        .iter()
        .filter(|(d, _)| *d <= MATCH_MM)
        .min_by(|a, b| centre_dist(a.1).total_cmp(&centre_dist(b.1)))
        .map(|(_, l)| *l)
}

/// A little-endian f32 `.npy` (format 1.0, C order) of `data` with `shape`.
pub fn npy_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned() {
        let b = npy_f32(&[3, 2, 2], &[0.0; 12]);
        let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hl) % 64, 0);
        assert_eq!(b.len(), 10 + hl + 48);
        let h = std::str::from_utf8(&b[10..10 + hl]).unwrap();
        assert!(h.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2, 2), }"));
        assert!(h.ends_with('\n'));
    }

    #[test]
    fn classes() {
        assert_eq!(class_index("ccrcc"), Some(0));
        assert_eq!(class_index("AML"), Some(4));
        assert_eq!(class_index("cyst"), None);
    }
}
