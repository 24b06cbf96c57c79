//! One DICOM file's header: what nephrod needs to group, sort, calibrate and phase-label it.
//!
//! Geometry per frame comes from ImagePositionPatient / ImageOrientationPatient / PixelSpacing
//! (classic CT) or from the per-frame, then shared, functional groups (Enhanced CT). Note the
//! DICOM trap: PixelSpacing = (spacing between rows, spacing between columns) = (Δj, Δi).

use std::path::{Path, PathBuf};

use dicom_core::Tag;
use dicom_dictionary_std::tags;

use super::attrs::{self, Obj};
use super::{DicomError, Uid};

/// CT Image Storage.
pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
/// Enhanced CT Image Storage.
pub const ENHANCED_CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2.1";
/// Legacy Converted Enhanced CT Image Storage.
pub const LEGACY_ENHANCED_CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2.2";

/// Stored value → HU mapping of one frame.
#[derive(Debug, Clone, PartialEq)]
pub enum ModalityTransform {
    /// `HU = stored × slope + intercept`.
    Linear { slope: f64, intercept: f64 },
    /// Modality LUT Sequence: `HU = data[clamp(stored − first_mapped, 0, len − 1)]`.
    Lut { first_mapped: i64, data: Vec<f64> },
}

impl ModalityTransform {
    pub fn apply(&self, stored: f64) -> f64 {
        match self {
            ModalityTransform::Linear { slope, intercept } => stored * slope + intercept,
            ModalityTransform::Lut { first_mapped, data } => {
                let idx = (stored as i64 - first_mapped).clamp(0, data.len() as i64 - 1);
                data[idx as usize]
            }
        }
    }
}

/// Where one frame sits in patient space.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameGeometry {
    /// ImagePositionPatient: LPS mm of the centre of the first transmitted pixel.
    pub position_mm: [f64; 3],
    /// Unit vector along a row (direction of increasing column index `i`).
    pub row_dir: [f64; 3],
    /// Unit vector down a column (direction of increasing row index `j`).
    pub col_dir: [f64; 3],
    /// (Δi, Δj) in mm: PixelSpacing reversed.
    pub spacing_ij_mm: [f64; 2],
    pub slice_thickness_mm: Option<f64>,
    pub transform: ModalityTransform,
}

/// Contrast-related tags.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ContrastTags {
    pub agent: Option<String>,
    pub route: Option<String>,
    /// Seconds since midnight.
    pub start_time_s: Option<f64>,
}

/// Pixel format of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelFormat {
    pub rows: u16,
    pub cols: u16,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub signed: bool,
    pub photometric: String,
    pub number_of_frames: u32,
    pub padding_value: Option<f64>,
    pub padding_range_limit: Option<f64>,
}

/// A parsed file header (pixel data not read).
#[derive(Debug, Clone)]
pub struct InstanceHeader {
    pub path: PathBuf,
    pub transfer_syntax: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: Uid,
    pub study_uid: Uid,
    pub series_uid: Uid,
    pub modality: String,
    pub image_type: Vec<String>,
    pub series_description: Option<String>,
    pub protocol_name: Option<String>,
    pub series_number: Option<i64>,
    pub contrast: ContrastTags,
    /// Acquisition time (seconds since midnight).
    pub acquisition_time_s: Option<f64>,
    /// Acquisition date+time (seconds since the Unix epoch) when the date is known.
    pub acquisition_datetime_s: Option<f64>,
    pub series_time_s: Option<f64>,
    pub pixels: Option<PixelFormat>,
    pub frames: Vec<FrameGeometry>,
    pub gantry_tilt_deg: Option<f64>,
    pub has_pixel_data: bool,
    /// Top-level modality transform (used when no per-frame transform exists).
    pub modality_transform: ModalityTransform,
}

/// Converts a string to a UID, refusing anything longer than the standard's 64 bytes.
pub fn to_uid(s: &str) -> Option<Uid> {
    let t = s.trim_matches(|c: char| c == ' ' || c == '\0');
    if t.is_empty() {
        return None;
    }
    Uid::try_from(t).ok()
}

fn uid_attr(obj: &Obj, tag: Tag, name: &'static str, path: &Path) -> Result<Uid, DicomError> {
    attrs::text(obj, tag)
        .as_deref()
        .and_then(to_uid)
        .ok_or_else(|| DicomError::MissingAttribute {
            path: path.to_path_buf(),
            attribute: name,
        })
}

fn vec3(v: &[f64]) -> Option<[f64; 3]> {
    (v.len() >= 3).then(|| [v[0], v[1], v[2]])
}

fn unit(v: [f64; 3]) -> Option<[f64; 3]> {
    let n = crate::volume::geometry::norm(v);
    (n > 1e-6 && n.is_finite()).then(|| [v[0] / n, v[1] / n, v[2] / n])
}

/// Linear or LUT modality transform from a data set (top level or a functional group item).
fn modality_transform(obj: &Obj) -> Option<ModalityTransform> {
    if let Some(item) = attrs::items(obj, tags::MODALITY_LUT_SEQUENCE).first() {
        let desc = attrs::numbers(item, tags::LUT_DESCRIPTOR)?;
        if desc.len() < 3 {
            return None;
        }
        let n = if desc[0] == 0.0 {
            65536
        } else {
            desc[0] as usize
        };
        let first = desc[1] as i64;
        let bits = desc[2] as u32;
        let raw = attrs::bytes(item, tags::LUT_DATA)?;
        let data: Vec<f64> = if bits > 8 || raw.len() >= 2 * n {
            raw.chunks_exact(2)
                .take(n)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as f64)
                .collect()
        } else {
            raw.iter().take(n).map(|&b| b as f64).collect()
        };
        if data.is_empty() {
            return None;
        }
        return Some(ModalityTransform::Lut {
            first_mapped: first,
            data,
        });
    }
    let slope = attrs::number(obj, tags::RESCALE_SLOPE);
    let intercept = attrs::number(obj, tags::RESCALE_INTERCEPT);
    match (slope, intercept) {
        (None, None) => None,
        (s, i) => Some(ModalityTransform::Linear {
            slope: s.unwrap_or(1.0),
            intercept: i.unwrap_or(0.0),
        }),
    }
}

/// Looks for `seq_tag`'s first item in the per-frame item, then in the shared item.
fn group_item<'a>(
    per_frame: Option<&'a Obj>,
    shared: Option<&'a Obj>,
    seq_tag: Tag,
) -> Option<&'a Obj> {
    per_frame
        .and_then(|f| attrs::items(f, seq_tag).first())
        .or_else(|| shared.and_then(|s| attrs::items(s, seq_tag).first()))
}

fn frame_from(
    position: Option<Vec<f64>>,
    orientation: Option<Vec<f64>>,
    spacing: Option<Vec<f64>>,
    thickness: Option<f64>,
    transform: ModalityTransform,
) -> Option<FrameGeometry> {
    let position_mm = vec3(&position?)?;
    let o = orientation?;
    if o.len() < 6 {
        return None;
    }
    let row_dir = unit([o[0], o[1], o[2]])?;
    let col_dir = unit([o[3], o[4], o[5]])?;
    let s = spacing?;
    if s.len() < 2 || !(s[0] > 0.0 && s[1] > 0.0) {
        return None;
    }
    Some(FrameGeometry {
        position_mm,
        row_dir,
        col_dir,
        spacing_ij_mm: [s[1], s[0]],
        slice_thickness_mm: thickness,
        transform,
    })
}

fn identity_transform() -> ModalityTransform {
    ModalityTransform::Linear {
        slope: 1.0,
        intercept: 0.0,
    }
}

/// Reads the header of a parsed file. Fails only when the file cannot be identified at all
/// (no SOP class / UIDs); geometry may be empty for non-image objects.
///
/// With `require_uids == false` missing UIDs become empty (only for decoding a lone file, never
/// for grouping).
pub fn read_header(
    path: &Path,
    obj: &Obj,
    transfer_syntax: &str,
    sop_class_meta: &str,
    has_pixel_data: bool,
    require_uids: bool,
) -> Result<InstanceHeader, DicomError> {
    let sop_class_uid =
        attrs::text(obj, tags::SOP_CLASS_UID).unwrap_or_else(|| sop_class_meta.to_string());
    let uid = |tag, name| match uid_attr(obj, tag, name, path) {
        Err(_) if !require_uids => Ok(Uid::new()),
        other => other,
    };
    let sop_instance_uid = uid(tags::SOP_INSTANCE_UID, "SOPInstanceUID")?;
    let study_uid = uid(tags::STUDY_INSTANCE_UID, "StudyInstanceUID")?;
    let series_uid = uid(tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")?;
    let modality = attrs::text(obj, tags::MODALITY)
        .unwrap_or_default()
        .to_ascii_uppercase();
    let image_type = attrs::texts(obj, tags::IMAGE_TYPE)
        .into_iter()
        .map(|s| s.to_ascii_uppercase())
        .collect();
    // Enhanced CT has no AcquisitionTime: fall back to the time of day of AcquisitionDateTime.
    let acquisition_time_s = attrs::text(obj, tags::ACQUISITION_TIME)
        .as_deref()
        .and_then(attrs::parse_tm)
        .or_else(|| {
            attrs::text(obj, tags::ACQUISITION_DATE_TIME)
                .as_deref()
                .and_then(attrs::parse_dt)
                .map(|s| s.rem_euclid(86400.0))
        });
    let acquisition_datetime_s = attrs::text(obj, tags::ACQUISITION_DATE_TIME)
        .as_deref()
        .and_then(attrs::parse_dt)
        .or_else(|| {
            let d = attrs::text(obj, tags::ACQUISITION_DATE)
                .as_deref()
                .and_then(attrs::parse_da)?;
            Some(d as f64 * 86400.0 + acquisition_time_s?)
        });
    let contrast_agent = attrs::text(obj, tags::CONTRAST_BOLUS_AGENT).or_else(|| {
        attrs::items(obj, tags::CONTRAST_BOLUS_AGENT_SEQUENCE)
            .first()
            .map(|item| {
                attrs::text(item, tags::CODE_MEANING).unwrap_or_else(|| "coded agent".to_string())
            })
    });
    let contrast = ContrastTags {
        agent: contrast_agent,
        route: attrs::text(obj, tags::CONTRAST_BOLUS_ROUTE),
        start_time_s: attrs::text(obj, tags::CONTRAST_BOLUS_START_TIME)
            .as_deref()
            .and_then(attrs::parse_tm),
    };

    let pixels = match (
        attrs::u16_value(obj, tags::ROWS),
        attrs::u16_value(obj, tags::COLUMNS),
        attrs::u16_value(obj, tags::BITS_ALLOCATED),
    ) {
        (Some(rows), Some(cols), Some(bits_allocated)) => Some(PixelFormat {
            rows,
            cols,
            samples_per_pixel: attrs::u16_value(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1),
            bits_allocated,
            bits_stored: attrs::u16_value(obj, tags::BITS_STORED).unwrap_or(bits_allocated),
            signed: attrs::u16_value(obj, tags::PIXEL_REPRESENTATION) == Some(1),
            photometric: attrs::text(obj, tags::PHOTOMETRIC_INTERPRETATION)
                .unwrap_or_default()
                .to_ascii_uppercase(),
            number_of_frames: attrs::number(obj, tags::NUMBER_OF_FRAMES)
                .filter(|n| *n >= 1.0 && n.fract() == 0.0 && *n <= u32::MAX as f64)
                .map(|n| n as u32)
                .unwrap_or(1),
            padding_value: attrs::number(obj, tags::PIXEL_PADDING_VALUE),
            padding_range_limit: attrs::number(obj, tags::PIXEL_PADDING_RANGE_LIMIT),
        }),
        _ => None,
    };

    let top_transform = modality_transform(obj).unwrap_or_else(identity_transform);
    let mut frames = Vec::new();
    let per_frame = attrs::items(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
    let shared = attrs::items(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).first();
    if !per_frame.is_empty() {
        for item in per_frame {
            let pos = group_item(Some(item), shared, tags::PLANE_POSITION_SEQUENCE)
                .and_then(|g| attrs::numbers(g, tags::IMAGE_POSITION_PATIENT));
            let ori = group_item(Some(item), shared, tags::PLANE_ORIENTATION_SEQUENCE)
                .and_then(|g| attrs::numbers(g, tags::IMAGE_ORIENTATION_PATIENT));
            let measures = group_item(Some(item), shared, tags::PIXEL_MEASURES_SEQUENCE);
            let spacing = measures.and_then(|g| attrs::numbers(g, tags::PIXEL_SPACING));
            let thickness = measures.and_then(|g| attrs::number(g, tags::SLICE_THICKNESS));
            let transform = group_item(
                Some(item),
                shared,
                tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
            )
            .and_then(modality_transform)
            .unwrap_or_else(|| top_transform.clone());
            match frame_from(pos, ori, spacing, thickness, transform) {
                Some(f) => frames.push(f),
                None => {
                    frames.clear();
                    break;
                }
            }
        }
    } else if let Some(f) = frame_from(
        attrs::numbers(obj, tags::IMAGE_POSITION_PATIENT),
        attrs::numbers(obj, tags::IMAGE_ORIENTATION_PATIENT),
        attrs::numbers(obj, tags::PIXEL_SPACING),
        attrs::number(obj, tags::SLICE_THICKNESS),
        top_transform.clone(),
    ) {
        frames.push(f);
    }

    Ok(InstanceHeader {
        path: path.to_path_buf(),
        transfer_syntax: transfer_syntax.trim_end_matches('\0').to_string(),
        sop_class_uid: sop_class_uid.trim_end_matches('\0').to_string(),
        sop_instance_uid,
        study_uid,
        series_uid,
        modality,
        image_type,
        series_description: attrs::text(obj, tags::SERIES_DESCRIPTION),
        protocol_name: attrs::text(obj, tags::PROTOCOL_NAME),
        series_number: attrs::number(obj, tags::SERIES_NUMBER).map(|n| n as i64),
        contrast,
        acquisition_time_s,
        acquisition_datetime_s,
        series_time_s: attrs::text(obj, tags::SERIES_TIME)
            .as_deref()
            .and_then(attrs::parse_tm),
        pixels,
        frames,
        gantry_tilt_deg: attrs::number(obj, tags::GANTRY_DETECTOR_TILT),
        has_pixel_data,
        modality_transform: top_transform,
    })
}

/// Why this instance is not a CT image nephrod assembles, or `None` if it is one.
pub fn skip_reason(h: &InstanceHeader) -> Option<String> {
    let ct_class = [
        CT_IMAGE_STORAGE,
        ENHANCED_CT_IMAGE_STORAGE,
        LEGACY_ENHANCED_CT_IMAGE_STORAGE,
    ]
    .contains(&h.sop_class_uid.as_str());
    if !ct_class {
        return Some(if h.modality.is_empty() {
            format!("SOP class {} is not a CT image", h.sop_class_uid)
        } else {
            format!(
                "modality {} / SOP class {} is not a CT image",
                h.modality, h.sop_class_uid
            )
        });
    }
    if !h.modality.is_empty() && h.modality != "CT" {
        return Some(format!("modality {} is not CT", h.modality));
    }
    if h.image_type.iter().any(|t| t == "LOCALIZER") {
        return Some("localizer (scout) image".to_string());
    }
    if h.image_type.first().is_some_and(|t| t == "DERIVED")
        || h.image_type.get(1).is_some_and(|t| t == "SECONDARY")
    {
        return Some(format!(
            "derived/secondary image (ImageType {})",
            h.image_type.join("\\")
        ));
    }
    if !h.has_pixel_data {
        return Some("no pixel data".to_string());
    }
    let Some(px) = &h.pixels else {
        return Some("missing Rows/Columns/BitsAllocated".to_string());
    };
    if px.samples_per_pixel != 1 || !px.photometric.starts_with("MONOCHROME") {
        return Some(format!(
            "not a greyscale image (PhotometricInterpretation {}, {} samples per pixel)",
            px.photometric, px.samples_per_pixel
        ));
    }
    if h.frames.is_empty() {
        return Some(
            "missing or invalid ImagePositionPatient / ImageOrientationPatient / PixelSpacing"
                .to_string(),
        );
    }
    if h.frames.len() as u32 != px.number_of_frames {
        return Some(format!(
            "{} frames declared but geometry for {}",
            px.number_of_frames,
            h.frames.len()
        ));
    }
    None
}
