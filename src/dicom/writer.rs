//! Writes a `Volume<f32>` (HU) as a classic single-frame CT Image Storage series.
//!
//! Used by tests (series with known geometry written shuffled, flipped, feet-first) and by
//! `nephrod example`. Slice `k` of the volume becomes one file whose ImagePositionPatient is the
//! world position of voxel (0, 0, k) and whose ImageOrientationPatient is the volume's i and j
//! axes. Stored values are signed 16-bit: `stored = round((HU − intercept) / slope)`.

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use sha2::{Digest, Sha256};

use super::header::CT_IMAGE_STORAGE;
use crate::volume::Volume;

/// Explicit VR Little Endian.
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";

/// Order in which slices are written to files (file names follow write order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FileOrder {
    Ascending,
    Descending,
    /// Pseudo-random permutation from the seed.
    Shuffled(u64),
}

/// Series-level attributes.
#[derive(Debug, Clone)]
pub struct SeriesSpec {
    pub study_uid: String,
    pub series_uid: String,
    pub series_number: i32,
    pub description: String,
    pub contrast_agent: Option<String>,
    /// TM text, e.g. "101500".
    pub contrast_start_time: Option<String>,
    pub acquisition_time: String,
    pub acquisition_date: String,
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    pub file_order: FileOrder,
    /// InstanceNumber deliberately scrambled (assembly must not use it).
    pub scramble_instance_numbers: bool,
    /// Added to the slice index in SOPInstanceUIDs, InstanceNumbers and file names, so several
    /// calls can write parts of one series.
    pub first_instance: usize,
}

/// Errors writing a series.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A deterministic UID under the `2.25` (UUID-derived) root from any seed text.
pub fn uid_from_seed(seed: &str) -> String {
    let d = Sha256::digest(seed.as_bytes());
    let mut v: u128 = 0;
    for b in d.iter().take(16) {
        v = (v << 8) | *b as u128;
    }
    format!("2.25.{}", v >> 1)
}

fn ds(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    if s.len() > 16 {
        format!("{v:.4e}")
    } else {
        s
    }
}

fn ds_multi(v: &[f64]) -> String {
    v.iter().map(|x| ds(*x)).collect::<Vec<_>>().join("\\")
}

fn permutation(n: usize, order: FileOrder) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    match order {
        FileOrder::Ascending => {}
        FileOrder::Descending => idx.reverse(),
        FileOrder::Shuffled(seed) => {
            let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
            for i in (1..n).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let j = (state % (i as u64 + 1)) as usize;
                idx.swap(i, j);
            }
        }
    }
    idx
}

/// Writes every slice of `vol` as one file in `dir`; returns the paths in write order.
pub fn write_series(
    dir: &Path,
    vol: &Volume<f32>,
    spec: &SeriesSpec,
) -> Result<Vec<PathBuf>, WriteError> {
    std::fs::create_dir_all(dir).map_err(|source| WriteError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let [ni, nj, nk] = vol.dims();
    let g = vol.geometry();
    let (r, c) = (g.axis(0), g.axis(1));
    let mut paths = Vec::new();
    for (file_no, k) in permutation(nk, spec.file_order).into_iter().enumerate() {
        let inst_no = spec.first_instance + k;
        let sop_uid = uid_from_seed(&format!("{}/{inst_no}", spec.series_uid));
        let pos = g.index_to_world([0.0, 0.0, k as f64]);
        let mut obj = InMemDicomObject::new_empty();
        let put_str = |obj: &mut InMemDicomObject, tag, vr, v: &str| {
            obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
        };
        put_str(&mut obj, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100");
        put_str(
            &mut obj,
            tags::IMAGE_TYPE,
            VR::CS,
            "ORIGINAL\\PRIMARY\\AXIAL",
        );
        put_str(&mut obj, tags::SOP_CLASS_UID, VR::UI, CT_IMAGE_STORAGE);
        put_str(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, &sop_uid);
        put_str(&mut obj, tags::STUDY_DATE, VR::DA, &spec.acquisition_date);
        put_str(
            &mut obj,
            tags::ACQUISITION_DATE,
            VR::DA,
            &spec.acquisition_date,
        );
        put_str(
            &mut obj,
            tags::ACQUISITION_TIME,
            VR::TM,
            &spec.acquisition_time,
        );
        put_str(&mut obj, tags::MODALITY, VR::CS, "CT");
        put_str(&mut obj, tags::MANUFACTURER, VR::LO, "nephrod synthetic");
        put_str(
            &mut obj,
            tags::SERIES_DESCRIPTION,
            VR::LO,
            &spec.description,
        );
        put_str(&mut obj, tags::PATIENT_NAME, VR::PN, "PHANTOM^SYNTHETIC");
        put_str(&mut obj, tags::PATIENT_ID, VR::LO, "PHANTOM");
        if let Some(agent) = &spec.contrast_agent {
            put_str(&mut obj, tags::CONTRAST_BOLUS_AGENT, VR::LO, agent);
        }
        if let Some(t) = &spec.contrast_start_time {
            put_str(&mut obj, tags::CONTRAST_BOLUS_START_TIME, VR::TM, t);
        }
        put_str(
            &mut obj,
            tags::SLICE_THICKNESS,
            VR::DS,
            &ds(g.spacing_mm[2]),
        );
        put_str(&mut obj, tags::STUDY_INSTANCE_UID, VR::UI, &spec.study_uid);
        put_str(
            &mut obj,
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            &spec.series_uid,
        );
        put_str(
            &mut obj,
            tags::SERIES_NUMBER,
            VR::IS,
            &spec.series_number.to_string(),
        );
        let inst = if spec.scramble_instance_numbers {
            (inst_no * 7919 + 13) % (nk * 3 + 1) + 1
        } else {
            inst_no + 1
        };
        put_str(&mut obj, tags::INSTANCE_NUMBER, VR::IS, &inst.to_string());
        put_str(
            &mut obj,
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            &ds_multi(&pos),
        );
        put_str(
            &mut obj,
            tags::IMAGE_ORIENTATION_PATIENT,
            VR::DS,
            &ds_multi(&[r[0], r[1], r[2], c[0], c[1], c[2]]),
        );
        put_str(
            &mut obj,
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            &uid_from_seed(&spec.study_uid),
        );
        obj.put(DataElement::new(
            tags::SAMPLES_PER_PIXEL,
            VR::US,
            PrimitiveValue::from(1u16),
        ));
        put_str(
            &mut obj,
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            "MONOCHROME2",
        );
        obj.put(DataElement::new(
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(nj as u16),
        ));
        obj.put(DataElement::new(
            tags::COLUMNS,
            VR::US,
            PrimitiveValue::from(ni as u16),
        ));
        put_str(
            &mut obj,
            tags::PIXEL_SPACING,
            VR::DS,
            &ds_multi(&[g.spacing_mm[1], g.spacing_mm[0]]),
        );
        obj.put(DataElement::new(
            tags::BITS_ALLOCATED,
            VR::US,
            PrimitiveValue::from(16u16),
        ));
        obj.put(DataElement::new(
            tags::BITS_STORED,
            VR::US,
            PrimitiveValue::from(16u16),
        ));
        obj.put(DataElement::new(
            tags::HIGH_BIT,
            VR::US,
            PrimitiveValue::from(15u16),
        ));
        obj.put(DataElement::new(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(1u16),
        ));
        put_str(
            &mut obj,
            tags::RESCALE_INTERCEPT,
            VR::DS,
            &ds(spec.rescale_intercept),
        );
        put_str(
            &mut obj,
            tags::RESCALE_SLOPE,
            VR::DS,
            &ds(spec.rescale_slope),
        );
        put_str(&mut obj, tags::RESCALE_TYPE, VR::LO, "HU");
        let plane = &vol.data()[k * ni * nj..(k + 1) * ni * nj];
        let stored: Vec<u16> = plane
            .iter()
            .map(|hu| {
                let s = ((*hu as f64 - spec.rescale_intercept) / spec.rescale_slope).round();
                s.clamp(i16::MIN as f64, i16::MAX as f64) as i16 as u16
            })
            .collect();
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(stored.into()),
        ));
        let path = dir.join(format!("IM{:05}.dcm", spec.first_instance + file_no));
        let werr = |message: String| WriteError::Write {
            path: path.clone(),
            message,
        };
        let file = obj
            .with_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax(EXPLICIT_VR_LE)
                    .media_storage_sop_class_uid(CT_IMAGE_STORAGE)
                    .media_storage_sop_instance_uid(sop_uid.as_str()),
            )
            .map_err(|e| werr(e.to_string()))?;
        file.write_to_file(&path).map_err(|e| werr(e.to_string()))?;
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    #[test]
    fn uids_fit_the_standard() {
        let u = super::uid_from_seed("anything at all");
        assert!(u.len() <= 64 && u.starts_with("2.25."));
        assert!(u.chars().all(|c| c.is_ascii_digit() || c == '.'));
    }
}
