//! Writes generated cases to disk.
//!
//! Layouts (paths relative to the output folder):
//! * `dicom`:  `case_NNNN/truth.json`, `case_NNNN/dicom/SNN_<phase>/…dcm` (one study, one
//!   series per phase), `case_NNNN/labels/<phase>.nii.gz`;
//! * `nifti`:  `case_NNNN/truth.json`, `case_NNNN/images/<phase>.nii.gz` (HU, float32),
//!   `case_NNNN/labels/<phase>.nii.gz` (uint8);
//! * `nnunet`: an nnU-Net v2 raw dataset — `imagesTr/case_NNNN_<phase>_0000.nii.gz`,
//!   `labelsTr/case_NNNN_<phase>.nii.gz`, `dataset.json` (one channel "CT"; labels background 0,
//!   kidney 1, tumor 2, cyst 3), and `truth/case_NNNN.json`. Each phase is its own training
//!   case. Place or link the folder as `$nnUNet_raw/DatasetXXX_Name` to train on it.
//!
//! Paths inside truth files are relative to the truth file's folder.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::rng::Rng;
use super::truth::Truth;
use super::{GeneratedCase, PhantomError};
use crate::dicom::writer::{
    write_series, FileOrder, PatientStudy, PixelEncoding, SeriesLayout, SeriesSpec,
};
use crate::volume::nifti;

/// Output format of `nephrod phantom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Dicom,
    Nifti,
    Nnunet,
}

/// Pixel-data compression of written DICOM series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Compression {
    /// Native (uncompressed) pixel data.
    #[default]
    None,
    /// RLE Lossless.
    Rle,
    /// JPEG 2000 lossless.
    J2k,
    /// Drawn per series among the three.
    Mixed,
}

/// Single-frame (classic CT) or Enhanced CT multi-frame series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Frames {
    /// One file per slice (CT Image Storage).
    #[default]
    Single,
    /// One Enhanced CT multi-frame file per series.
    Multi,
    /// Drawn per series.
    Mixed,
}

/// DICOM encoding choices (ignored by the NIfTI formats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DicomOptions {
    /// Shuffle the order in which a series' files are written for some series.
    pub shuffle_files: bool,
    pub compression: Compression,
    pub frames: Frames,
}

impl DicomOptions {
    fn encoding(&self, rng: &mut Rng) -> PixelEncoding {
        match self.compression {
            Compression::None => PixelEncoding::Native,
            Compression::Rle => PixelEncoding::RleLossless,
            Compression::J2k => PixelEncoding::Jpeg2000Lossless,
            Compression::Mixed => PixelEncoding::ALL[rng.below(PixelEncoding::ALL.len())],
        }
    }

    fn layout(&self, rng: &mut Rng) -> SeriesLayout {
        match self.frames {
            Frames::Single => SeriesLayout::SingleFrame,
            Frames::Multi => SeriesLayout::EnhancedMultiFrame,
            Frames::Mixed => {
                if rng.chance(0.5) {
                    SeriesLayout::EnhancedMultiFrame
                } else {
                    SeriesLayout::SingleFrame
                }
            }
        }
    }
}

fn write_err(path: &Path, e: impl std::fmt::Display) -> PhantomError {
    PhantomError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn create_dir(path: &Path) -> Result<(), PhantomError> {
    std::fs::create_dir_all(path).map_err(|e| write_err(path, e))
}

/// Writes JSON pretty-printed, via a temporary file renamed into place.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), PhantomError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| write_err(path, e))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n").map_err(|e| write_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| write_err(path, e))
}

fn relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Writes one case; returns its truth with the written paths filled in.
pub fn write_case(
    case: &GeneratedCase,
    out: &Path,
    format: OutputFormat,
    dicom: &DicomOptions,
) -> Result<Truth, PhantomError> {
    let mut truth = case.truth.clone();
    match format {
        OutputFormat::Dicom | OutputFormat::Nifti => {
            let case_dir = out.join(&case.case_id);
            let labels_dir = case_dir.join("labels");
            create_dir(&labels_dir)?;
            let mut rng = Rng::new(case.truth.case_seed).fork("dicom output");
            let patient = PatientStudy {
                patient_name: format!("PHANTOM^{}", case.case_id.to_uppercase()),
                patient_id: format!("NPH{:012}", case.truth.case_seed % 1_000_000_000_000),
                study_description: [
                    "CT ABDOMEN RENAL MASS PROTOCOL",
                    "CT KIDNEYS MULTIPHASE",
                    "CT UROGRAM",
                    "ABDOMEN^RENAL",
                ][rng.below(4)]
                .to_string(),
                accession_number: format!("A{:08}", case.truth.case_seed % 100_000_000),
                study_time: truth.phases.first().map(|p| p.acquisition_time.clone()),
            };
            // Scanners differ in their rescale intercept (same across one study).
            let intercept = if rng.chance(0.3) { -1000.0 } else { -1024.0 };
            for (n, r) in case.phases.iter().enumerate() {
                let pt = &mut truth.phases[n];
                let label_path = labels_dir.join(format!("{}.nii.gz", r.phase.as_str()));
                nifti::write(&label_path, &r.labels).map_err(|e| write_err(&label_path, e))?;
                pt.label_path = Some(relative(&label_path, &case_dir));
                if format == OutputFormat::Nifti {
                    let images = case_dir.join("images");
                    create_dir(&images)?;
                    let p = images.join(format!("{}.nii.gz", r.phase.as_str()));
                    nifti::write(&p, &r.hu).map_err(|e| write_err(&p, e))?;
                    pt.image_path = Some(relative(&p, &case_dir));
                    continue;
                }
                let series_dir = case_dir.join("dicom").join(format!(
                    "S{:02}_{}",
                    pt.series_number,
                    r.phase.as_str()
                ));
                let contrast = r.phase != crate::dicom::phase::Phase::NonContrast;
                let file_order = if dicom.shuffle_files && rng.chance(0.4) {
                    FileOrder::Shuffled(rng.next_u64())
                } else {
                    FileOrder::Ascending
                };
                let spec = SeriesSpec {
                    patient: patient.clone(),
                    study_uid: truth.study_uid.clone(),
                    series_uid: pt.series_uid.clone(),
                    series_number: pt.series_number,
                    description: pt.series_description.clone(),
                    contrast_agent: contrast.then(|| case.acquisition.contrast_agent.clone()),
                    contrast_start_time: contrast
                        .then(|| super::tm_text(case.acquisition.injection_time_of_day_s)),
                    acquisition_time: pt.acquisition_time.clone(),
                    acquisition_date: case.acquisition.study_date.clone(),
                    rescale_slope: 1.0,
                    rescale_intercept: intercept,
                    file_order,
                    scramble_instance_numbers: false,
                    first_instance: 0,
                    pixel_encoding: dicom.encoding(&mut rng),
                    layout: dicom.layout(&mut rng),
                };
                write_series(&series_dir, &r.hu, &spec).map_err(|e| write_err(&series_dir, e))?;
                pt.image_path = Some(relative(&series_dir, &case_dir));
            }
            write_json(&case_dir.join("truth.json"), &truth)?;
        }
        OutputFormat::Nnunet => {
            let images = out.join("imagesTr");
            let labels = out.join("labelsTr");
            let truths = out.join("truth");
            for d in [&images, &labels, &truths] {
                create_dir(d)?;
            }
            for (n, r) in case.phases.iter().enumerate() {
                let pt = &mut truth.phases[n];
                let name = nnunet_case_name(&case.case_id, r.phase);
                let ip = images.join(format!("{name}_0000.nii.gz"));
                let lp = labels.join(format!("{name}.nii.gz"));
                nifti::write(&ip, &r.hu).map_err(|e| write_err(&ip, e))?;
                nifti::write(&lp, &r.labels).map_err(|e| write_err(&lp, e))?;
                pt.image_path = Some(format!("../imagesTr/{name}_0000.nii.gz"));
                pt.label_path = Some(format!("../labelsTr/{name}.nii.gz"));
            }
            write_json(&truths.join(format!("{}.json", case.case_id)), &truth)?;
        }
    }
    Ok(truth)
}

/// The nnU-Net training-case identifier of one phase of a case.
pub fn nnunet_case_name(case_id: &str, phase: crate::dicom::phase::Phase) -> String {
    format!("{case_id}_{}", phase.as_str())
}

/// nnU-Net v2 `dataset.json`.
#[derive(Debug, Serialize)]
pub struct NnunetDatasetJson {
    pub channel_names: std::collections::BTreeMap<String, String>,
    pub labels: std::collections::BTreeMap<&'static str, u8>,
    #[serde(rename = "numTraining")]
    pub num_training: usize,
    pub file_ending: &'static str,
    pub name: String,
    pub description: String,
    pub reference: String,
    pub licence: String,
    pub release: String,
}

/// Writes `dataset.json` for `num_training` training cases.
pub fn write_nnunet_dataset_json(
    out: &Path,
    num_training: usize,
    seed: u64,
) -> Result<PathBuf, PhantomError> {
    let d = NnunetDatasetJson {
        channel_names: [("0".to_string(), "CT".to_string())].into(),
        labels: super::truth::label_table(),
        num_training,
        file_ending: ".nii.gz",
        name: "NephrodPhantom".to_string(),
        description: format!(
            "Synthetic multi-phase renal CT generated by nephrod {} (seed {seed}); one contrast \
             phase per training case",
            env!("CARGO_PKG_VERSION")
        ),
        reference: "nephrod phantom (src/phantom)".to_string(),
        licence: "CC0-1.0 (synthetic, no patient data)".to_string(),
        release: env!("CARGO_PKG_VERSION").to_string(),
    };
    let path = out.join("dataset.json");
    create_dir(out)?;
    write_json(&path, &d)?;
    Ok(path)
}
