//! `report.json`, schema `"nephrod.report/1"`: what one analysed study hands to a radiologist,
//! a PACS bridge or a script. Documented field by field in README.md (Reports).
//!
//! Invariants:
//! * coordinates are LPS millimetres of the reference phase's DICOM frame; matrices are 4×4,
//!   row-major, homogeneous, mapping reference-phase LPS mm to the named phase's LPS mm;
//! * volumes in mL, lengths in mm, attenuation in HU, times in seconds;
//! * phase names are `non_contrast`, `arterial`, `portal`, `delayed` (`unknown` for a series
//!   whose phase could not be told);
//! * a lesion's `subtype` is `null` exactly when `not_classified_reason` is set;
//! * the report holds UIDs (it stays on the box, beside the images it describes); logs never do.
//!
//! Additions that keep every existing field's meaning keep the schema name; anything else
//! bumps it to `nephrod.report/2`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The schema name written into every report.
pub const SCHEMA: &str = "nephrod.report/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub nephrod_version: String,
    /// UTC, RFC 3339, when the report was written.
    pub created_utc: String,
    pub study_uid: String,
    /// The 12-hex-digit hash logs use for this study.
    pub study_uid_hash: String,
    pub phases: Vec<PhaseEntry>,
    /// The series every measurement refers to; `null` when no phase could be segmented.
    pub reference_series_uid: Option<String>,
    pub reference_phase: Option<String>,
    pub registration: Vec<RegistrationEntry>,
    pub kidneys: Vec<KidneyEntry>,
    pub lesions: Vec<LesionEntry>,
    pub models: Vec<ModelEntry>,
    pub segmentation: SegmentationSettings,
    /// Stage name → wall-clock seconds, in pipeline order of first appearance.
    pub timings_s: BTreeMap<String, f64>,
    pub warnings: Vec<String>,
    /// Plain statement of what the models are (demo, phantom-trained, not for clinical use).
    pub model_status: String,
}

/// One series of the study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseEntry {
    pub series_uid: String,
    pub series_number: Option<i64>,
    pub description: Option<String>,
    pub phase: String,
    /// 0–1, from the phase detector.
    pub phase_confidence: f64,
    /// How the phase was identified (tags, timing, aorta HU).
    pub phase_evidence: Vec<String>,
    /// Whether the series entered segmentation and the measurements.
    pub used: bool,
    /// Set when `used` is false.
    pub not_used_reason: Option<String>,
    pub dims: Option<[usize; 3]>,
    pub spacing_mm: Option<[f64; 3]>,
    /// Label map (NIfTI, the series' own grid), relative to the report's folder.
    pub labels_file: Option<String>,
}

/// One moving phase aligned to the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistrationEntry {
    pub moving_series_uid: String,
    pub moving_phase: String,
    /// 16 numbers, row-major: reference LPS mm → this phase's LPS mm.
    pub matrix_ref_to_moving_lps: [f64; 16],
    /// Label Dice on the reference grid after alignment; `null` when both masks are empty.
    pub dice_kidney: Option<f64>,
    pub dice_tumor: Option<f64>,
    /// The same with the centre-of-mass baseline (translation only).
    pub dice_com_kidney: Option<f64>,
    pub dice_com_tumor: Option<f64>,
    pub converged: bool,
}

/// One kidney of the reference phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KidneyEntry {
    /// The patient's side: "left" | "right".
    pub side: String,
    /// Kidney label only (masses excluded), mL.
    pub volume_ml: f64,
    /// Kidney with its masses (KiTS "kidney and masses"), mL.
    pub volume_with_masses_ml: f64,
}

/// One renal mass of the reference phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LesionEntry {
    pub id: usize,
    /// "tumor" | "cyst".
    pub kind: String,
    /// "left" | "right".
    pub side: String,
    /// "upper" | "mid" | "lower"; `null` when no kidney touches the lesion.
    pub pole: Option<String>,
    pub center_lps_mm: [f64; 3],
    pub volume_ml: f64,
    pub max_axial_diameter_mm: f64,
    /// Phase → mean HU over the lesion's voxels (that phase aligned to the reference).
    pub mean_hu: BTreeMap<String, f64>,
    /// Contrast phase → mean HU minus the non-contrast mean HU (absent without non-contrast).
    pub enhancement_hu: BTreeMap<String, f64>,
    pub subtype: Option<Subtype>,
    pub not_classified_reason: Option<String>,
    /// Key images and Grad-CAM overlays (PNG), relative to the report's folder.
    pub images: Vec<ImageEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subtype {
    /// Keys `ccRCC`, `pRCC`, `chRCC`, `oncocytoma`, `AML`; sums to 1.
    pub probabilities: BTreeMap<String, f64>,
    pub top: String,
    /// ccRCC + pRCC + chRCC.
    pub malignant_probability: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageEntry {
    /// "key_image" | "grad_cam".
    pub kind: String,
    pub phase: String,
    pub file: String,
}

/// A model that produced this report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// "segmentation" | "classification".
    pub role: String,
    pub name: String,
    pub version: String,
    /// SHA-256 of the package's signed manifest.toml (store models), else of the bundle's
    /// manifest.json; either lists the SHA-256 of every weights file.
    pub sha256: String,
    /// Installed from a signed package through the model store (`false`: a development
    /// models folder given with --models).
    #[serde(default)]
    pub signed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentationSettings {
    /// nnU-Net's mirroring test-time augmentation.
    pub tta: bool,
    /// The bundle's nnU-Net post-processing (postprocessing.json).
    pub nnunet_postprocessing: bool,
    /// KiTS post-processing (seed 004: masses off the kidney removed, small kidney fragments
    /// relabelled).
    pub kits_postprocessing: bool,
}
