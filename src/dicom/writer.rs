//! Writes a `Volume<f32>` (HU) as a DICOM CT series: classic single-frame CT Image Storage (one
//! file per slice) or one Enhanced CT Image Storage multi-frame file, with native, RLE Lossless
//! or JPEG 2000 Lossless pixel data ([`SeriesLayout`] × [`PixelEncoding`], all six combinations).
//!
//! Used by tests (series with known geometry written shuffled, flipped, feet-first, in every
//! layout and encoding), by `nephrod example` and by the phantom generator.
//!
//! Guarantees:
//! * Geometry: slice `k` of the volume has ImagePositionPatient = world position of voxel
//!   (0, 0, k) and ImageOrientationPatient = the volume's i and j axes; PixelSpacing =
//!   (Δj, Δi). Enhanced CT carries these in the per-frame PlanePositionSequence and the shared
//!   PixelMeasuresSequence / PlaneOrientationSequence.
//! * Values: signed 16-bit stored values, BitsStored 16, `stored = round((HU − intercept) /
//!   slope)` clamped to the `i16` range; the reader's HU are `stored × slope + intercept` exactly,
//!   whatever the encoding (both codecs are lossless; every encoding decodes to the same stored
//!   values). Enhanced CT carries the rescale in the shared PixelValueTransformationSequence.
//! * Encapsulated pixel data: a Basic Offset Table with one offset per frame, then exactly one
//!   even-length fragment per frame (RLE from [`super::rle`], J2K codestreams from
//!   [`super::j2k_encode`], padded with one zero byte when odd).
//! * Files: single-frame files are `IM{n:05}.dcm` with `n = first_instance + write position`;
//!   the multi-frame file is `MF{n:05}.dcm` with `n` = its InstanceNumber = `first_instance + 1`.
//!   UIDs derive deterministically from the series UID, so a rerun writes identical files.

use std::path::{Path, PathBuf};

use dicom_core::value::PixelFragmentSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::header::{CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE};
use super::j2k_encode::{self, J2kError};
use super::rle::{self, RleError};
use crate::volume::Volume;

/// Explicit VR Little Endian.
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// RLE Lossless.
pub const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";
/// JPEG 2000 Image Compression (Lossless Only).
pub const JPEG2000_LOSSLESS: &str = "1.2.840.10008.1.2.4.90";

/// Order in which slices are written: file order for [`SeriesLayout::SingleFrame`] (file
/// names follow write order), frame order inside the file for
/// [`SeriesLayout::EnhancedMultiFrame`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FileOrder {
    Ascending,
    Descending,
    /// Pseudo-random permutation from the seed.
    Shuffled(u64),
}

/// How pixel data is encoded (the file's transfer syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PixelEncoding {
    /// Native pixel data, Explicit VR Little Endian (1.2.840.10008.1.2.1).
    #[default]
    Native,
    /// RLE Lossless (1.2.840.10008.1.2.5), nephrod's own encoder.
    RleLossless,
    /// JPEG 2000 Lossless Only (1.2.840.10008.1.2.4.90): reversible 5/3 J2K codestreams.
    Jpeg2000Lossless,
}

impl PixelEncoding {
    /// Every encoding, for tests and tools that cover all of them.
    pub const ALL: [PixelEncoding; 3] = [
        PixelEncoding::Native,
        PixelEncoding::RleLossless,
        PixelEncoding::Jpeg2000Lossless,
    ];

    /// The transfer syntax UID written to the file meta.
    pub fn transfer_syntax_uid(self) -> &'static str {
        match self {
            PixelEncoding::Native => EXPLICIT_VR_LE,
            PixelEncoding::RleLossless => RLE_LOSSLESS,
            PixelEncoding::Jpeg2000Lossless => JPEG2000_LOSSLESS,
        }
    }

    /// Whether pixel data is encapsulated (fragments) rather than native.
    pub fn is_encapsulated(self) -> bool {
        self != PixelEncoding::Native
    }
}

/// How slices are distributed over files (and which SOP class is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeriesLayout {
    /// One CT Image Storage file per slice (`IM{n:05}.dcm`).
    #[default]
    SingleFrame,
    /// One Enhanced CT Image Storage file holding every slice as a frame (`MF{n:05}.dcm`),
    /// geometry and rescale in functional groups.
    EnhancedMultiFrame,
}

impl SeriesLayout {
    /// Every layout, for tests and tools that cover all of them.
    pub const ALL: [SeriesLayout; 2] =
        [SeriesLayout::SingleFrame, SeriesLayout::EnhancedMultiFrame];
}

/// Patient and study identity written into every file of a series (synthetic data only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientStudy {
    pub patient_name: String,
    pub patient_id: String,
    /// Empty: not written.
    pub study_description: String,
    /// Empty: written empty (type 2).
    pub accession_number: String,
    /// StudyTime (TM); `None`: the series' acquisition time.
    pub study_time: Option<String>,
}

impl Default for PatientStudy {
    fn default() -> Self {
        Self {
            patient_name: "PHANTOM^SYNTHETIC".to_string(),
            patient_id: "PHANTOM".to_string(),
            study_description: String::new(),
            accession_number: String::new(),
            study_time: None,
        }
    }
}

/// Series-level attributes.
#[derive(Debug, Clone)]
pub struct SeriesSpec {
    /// Patient and study identity. Default: one anonymous phantom patient.
    pub patient: PatientStudy,
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
    /// InstanceNumber deliberately scrambled (assembly must not use it). Single-frame only.
    pub scramble_instance_numbers: bool,
    /// Added to the slice index in SOPInstanceUIDs, InstanceNumbers and file names, so several
    /// calls can write parts of one series.
    pub first_instance: usize,
    /// Transfer syntax of the pixel data. Default: [`PixelEncoding::Native`].
    pub pixel_encoding: PixelEncoding,
    /// One file per slice, or one Enhanced CT multi-frame file. Default:
    /// [`SeriesLayout::SingleFrame`].
    pub layout: SeriesLayout,
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
    #[error("{path}: a {rows}×{cols} matrix does not fit DICOM Rows/Columns (at most 65535)")]
    MatrixTooLarge {
        path: PathBuf,
        rows: usize,
        cols: usize,
    },
    #[error("{path}: rescale slope {slope} / intercept {intercept} must be finite, slope ≠ 0")]
    InvalidRescale {
        path: PathBuf,
        slope: f64,
        intercept: f64,
    },
    #[error("{path}: frame {frame}: RLE encoding failed: {source}")]
    RleEncode {
        path: PathBuf,
        frame: usize,
        #[source]
        source: RleError,
    },
    #[error("{path}: frame {frame}: JPEG 2000 encoding failed: {source}")]
    J2kEncode {
        path: PathBuf,
        frame: usize,
        #[source]
        source: J2kError,
    },
    #[error("{path}: encapsulated pixel data of {bytes} bytes exceeds the 32-bit offset table")]
    PixelDataTooLarge { path: PathBuf, bytes: u64 },
}

impl WriteError {
    /// Short stable name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            WriteError::Write { .. } => "write",
            WriteError::CreateDir { .. } => "create_dir",
            WriteError::MatrixTooLarge { .. } => "matrix_too_large",
            WriteError::InvalidRescale { .. } => "invalid_rescale",
            WriteError::RleEncode { .. } => "rle_encode",
            WriteError::J2kEncode { .. } => "j2k_encode",
            WriteError::PixelDataTooLarge { .. } => "pixel_data_too_large",
        }
    }
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

/// The stored value the writer puts in the file for `hu` (see the module doc).
pub fn stored_value(hu: f32, slope: f64, intercept: f64) -> i16 {
    let s = ((hu as f64 - intercept) / slope).round();
    s.clamp(i16::MIN as f64, i16::MAX as f64) as i16
}

/// Writes `vol` in `dir` as `spec.layout` and `spec.pixel_encoding` say; returns the paths in
/// write order (one path for [`SeriesLayout::EnhancedMultiFrame`]).
pub fn write_series(
    dir: &Path,
    vol: &Volume<f32>,
    spec: &SeriesSpec,
) -> Result<Vec<PathBuf>, WriteError> {
    let [ni, nj, _] = vol.dims();
    if ni > u16::MAX as usize || nj > u16::MAX as usize {
        return Err(WriteError::MatrixTooLarge {
            path: dir.to_path_buf(),
            rows: nj,
            cols: ni,
        });
    }
    let (slope, intercept) = (spec.rescale_slope, spec.rescale_intercept);
    if !(slope.is_finite() && intercept.is_finite() && slope != 0.0) {
        return Err(WriteError::InvalidRescale {
            path: dir.to_path_buf(),
            slope,
            intercept,
        });
    }
    std::fs::create_dir_all(dir).map_err(|source| WriteError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    match spec.layout {
        SeriesLayout::SingleFrame => write_single_frames(dir, vol, spec),
        SeriesLayout::EnhancedMultiFrame => write_multi_frame(dir, vol, spec).map(|p| vec![p]),
    }
}

fn put_str(obj: &mut InMemDicomObject, tag: Tag, vr: VR, v: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
}

fn put_u16(obj: &mut InMemDicomObject, tag: Tag, v: u16) {
    obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
}

fn put_empty(obj: &mut InMemDicomObject, tag: Tag, vr: VR) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::Empty));
}

/// A sequence of the given items.
fn put_seq(obj: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    obj.put(DataElement::new(
        tag,
        VR::SQ,
        dicom_core::value::DataSetSequence::from(items),
    ));
}

/// A one-item sequence whose item is filled by `fill`.
fn put_item(obj: &mut InMemDicomObject, tag: Tag, fill: impl FnOnce(&mut InMemDicomObject)) {
    let mut item = InMemDicomObject::new_empty();
    fill(&mut item);
    put_seq(obj, tag, vec![item]);
}

/// A code sequence item (CodeValue, CodingSchemeDesignator, CodeMeaning).
fn code_item(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    put_str(&mut item, tags::CODE_VALUE, VR::SH, value);
    put_str(&mut item, tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme);
    put_str(&mut item, tags::CODE_MEANING, VR::LO, meaning);
    item
}

/// Patient, study, series, equipment and frame-of-reference attributes shared by both layouts.
fn put_common(obj: &mut InMemDicomObject, spec: &SeriesSpec, sop_class: &str, sop_uid: &str) {
    put_str(obj, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100");
    put_str(obj, tags::SOP_CLASS_UID, VR::UI, sop_class);
    put_str(obj, tags::SOP_INSTANCE_UID, VR::UI, sop_uid);
    put_str(obj, tags::STUDY_DATE, VR::DA, &spec.acquisition_date);
    put_str(obj, tags::MODALITY, VR::CS, "CT");
    put_str(obj, tags::MANUFACTURER, VR::LO, "nephrod synthetic");
    put_str(obj, tags::SERIES_DESCRIPTION, VR::LO, &spec.description);
    put_str(obj, tags::PATIENT_NAME, VR::PN, &spec.patient.patient_name);
    put_str(obj, tags::PATIENT_ID, VR::LO, &spec.patient.patient_id);
    if !spec.patient.study_description.is_empty() {
        put_str(
            obj,
            tags::STUDY_DESCRIPTION,
            VR::LO,
            &spec.patient.study_description,
        );
    }
    put_str(
        obj,
        tags::ACCESSION_NUMBER,
        VR::SH,
        &spec.patient.accession_number,
    );
    put_str(
        obj,
        tags::STUDY_TIME,
        VR::TM,
        spec.patient
            .study_time
            .as_deref()
            .unwrap_or(&spec.acquisition_time),
    );
    if let Some(agent) = &spec.contrast_agent {
        put_str(obj, tags::CONTRAST_BOLUS_AGENT, VR::LO, agent);
    }
    if let Some(t) = &spec.contrast_start_time {
        put_str(obj, tags::CONTRAST_BOLUS_START_TIME, VR::TM, t);
    }
    put_str(obj, tags::STUDY_INSTANCE_UID, VR::UI, &spec.study_uid);
    put_str(obj, tags::SERIES_INSTANCE_UID, VR::UI, &spec.series_uid);
    put_str(
        obj,
        tags::SERIES_NUMBER,
        VR::IS,
        &spec.series_number.to_string(),
    );
    put_str(
        obj,
        tags::FRAME_OF_REFERENCE_UID,
        VR::UI,
        &uid_from_seed(&spec.study_uid),
    );
}

/// Image Pixel module attributes (everything but PixelData): 16-bit signed greyscale.
fn put_image_pixel(obj: &mut InMemDicomObject, rows: u16, cols: u16) {
    put_u16(obj, tags::SAMPLES_PER_PIXEL, 1);
    put_str(obj, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
    put_u16(obj, tags::ROWS, rows);
    put_u16(obj, tags::COLUMNS, cols);
    put_u16(obj, tags::BITS_ALLOCATED, 16);
    put_u16(obj, tags::BITS_STORED, 16);
    put_u16(obj, tags::HIGH_BIT, 15);
    put_u16(obj, tags::PIXEL_REPRESENTATION, 1);
}

/// Stored values of slice `k`, row-major.
fn stored_slice(vol: &Volume<f32>, k: usize, spec: &SeriesSpec) -> Vec<i16> {
    let [ni, nj, _] = vol.dims();
    vol.data()[k * ni * nj..(k + 1) * ni * nj]
        .iter()
        .map(|hu| stored_value(*hu, spec.rescale_slope, spec.rescale_intercept))
        .collect()
}

/// The PixelData element for `frames` (each `rows × cols` stored values) in `encoding`.
fn pixel_data(
    path: &Path,
    frames: &[Vec<i16>],
    rows: usize,
    cols: usize,
    encoding: PixelEncoding,
) -> Result<DataElement<InMemDicomObject>, WriteError> {
    type Encode = fn(&Path, usize, &[i16], usize, usize) -> Result<Vec<u8>, WriteError>;
    let encode: Encode = match encoding {
        PixelEncoding::Native => {
            let all: Vec<u16> = frames.iter().flatten().map(|v| *v as u16).collect();
            return Ok(DataElement::new(
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U16(all.into()),
            ));
        }
        PixelEncoding::RleLossless => |path, frame, values, rows, cols| {
            rle::encode_frame_i16(values, rows, cols).map_err(|source| WriteError::RleEncode {
                path: path.to_path_buf(),
                frame,
                source,
            })
        },
        PixelEncoding::Jpeg2000Lossless => |path, frame, values, rows, cols| {
            j2k_encode::encode_i16_lossless(values, rows, cols).map_err(|source| {
                WriteError::J2kEncode {
                    path: path.to_path_buf(),
                    frame,
                    source,
                }
            })
        },
    };
    // Frames are independent: encode them in parallel, keep their order.
    let fragments = frames
        .par_iter()
        .enumerate()
        .map(|(frame, values)| {
            let mut fragment = encode(path, frame, values, rows, cols)?;
            if fragment.len() % 2 == 1 {
                fragment.push(0);
            }
            Ok(fragment)
        })
        .collect::<Result<Vec<Vec<u8>>, WriteError>>()?;
    Ok(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        encapsulate(path, fragments)?,
    ))
}

/// Basic Offset Table (offset of each frame's item from the first fragment item) + fragments.
fn encapsulate(
    path: &Path,
    fragments: Vec<Vec<u8>>,
) -> Result<PixelFragmentSequence<Vec<u8>>, WriteError> {
    let mut offsets = Vec::with_capacity(fragments.len());
    let mut at: u64 = 0;
    for f in &fragments {
        let offset = u32::try_from(at).map_err(|_| WriteError::PixelDataTooLarge {
            path: path.to_path_buf(),
            bytes: at,
        })?;
        offsets.push(offset);
        at += 8 + f.len() as u64;
    }
    Ok(PixelFragmentSequence::new(offsets, fragments))
}

/// Adds the file meta and writes `obj` to `path`.
fn save(
    obj: InMemDicomObject,
    path: &Path,
    sop_class: &str,
    sop_uid: &str,
    encoding: PixelEncoding,
) -> Result<(), WriteError> {
    let werr = |message: String| WriteError::Write {
        path: path.to_path_buf(),
        message,
    };
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(encoding.transfer_syntax_uid())
                .media_storage_sop_class_uid(sop_class)
                .media_storage_sop_instance_uid(sop_uid),
        )
        .map_err(|e| werr(e.to_string()))?;
    file.write_to_file(path).map_err(|e| werr(e.to_string()))
}

/// Classic CT Image Storage: one file per slice.
fn write_single_frames(
    dir: &Path,
    vol: &Volume<f32>,
    spec: &SeriesSpec,
) -> Result<Vec<PathBuf>, WriteError> {
    let [ni, nj, nk] = vol.dims();
    let g = vol.geometry();
    let (r, c) = (g.axis(0), g.axis(1));
    // Files are independent: written in parallel; names and the returned order follow the
    // write order (the permutation).
    let write_one = |file_no: usize, k: usize| -> Result<PathBuf, WriteError> {
        let path = dir.join(format!("IM{:05}.dcm", spec.first_instance + file_no));
        let inst_no = spec.first_instance + k;
        let sop_uid = uid_from_seed(&format!("{}/{inst_no}", spec.series_uid));
        let pos = g.index_to_world([0.0, 0.0, k as f64]);
        let mut obj = InMemDicomObject::new_empty();
        put_common(&mut obj, spec, CT_IMAGE_STORAGE, &sop_uid);
        put_str(
            &mut obj,
            tags::IMAGE_TYPE,
            VR::CS,
            "ORIGINAL\\PRIMARY\\AXIAL",
        );
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
        put_str(
            &mut obj,
            tags::SLICE_THICKNESS,
            VR::DS,
            &ds(g.spacing_mm[2]),
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
        put_image_pixel(&mut obj, nj as u16, ni as u16);
        put_str(
            &mut obj,
            tags::PIXEL_SPACING,
            VR::DS,
            &ds_multi(&[g.spacing_mm[1], g.spacing_mm[0]]),
        );
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
        if spec.pixel_encoding.is_encapsulated() {
            put_str(&mut obj, tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
        }
        obj.put(pixel_data(
            &path,
            &[stored_slice(vol, k, spec)],
            nj,
            ni,
            spec.pixel_encoding,
        )?);
        save(obj, &path, CT_IMAGE_STORAGE, &sop_uid, spec.pixel_encoding)?;
        Ok(path)
    };
    permutation(nk, spec.file_order)
        .into_par_iter()
        .enumerate()
        .map(|(file_no, k)| write_one(file_no, k))
        .collect()
}

/// CT Image Frame Type macro values (shared by the top level and the functional group).
fn put_frame_type_values(obj: &mut InMemDicomObject) {
    put_str(obj, tags::PIXEL_PRESENTATION, VR::CS, "MONOCHROME");
    put_str(obj, tags::VOLUMETRIC_PROPERTIES, VR::CS, "VOLUME");
    put_str(
        obj,
        tags::VOLUME_BASED_CALCULATION_TECHNIQUE,
        VR::CS,
        "NONE",
    );
}

/// Enhanced CT Image Storage: one file, every slice a frame (in `spec.file_order`).
fn write_multi_frame(
    dir: &Path,
    vol: &Volume<f32>,
    spec: &SeriesSpec,
) -> Result<PathBuf, WriteError> {
    const IMAGE_TYPE: &str = "ORIGINAL\\PRIMARY\\AXIAL\\NONE";
    let [ni, nj, nk] = vol.dims();
    let g = vol.geometry();
    let (r, c) = (g.axis(0), g.axis(1));
    let instance_number = spec.first_instance + 1;
    let path = dir.join(format!("MF{instance_number:05}.dcm"));
    let sop_uid = uid_from_seed(&format!("{}/mf/{}", spec.series_uid, spec.first_instance));
    let datetime = format!("{}{}", spec.acquisition_date, spec.acquisition_time);
    let dim_org_uid = uid_from_seed(&format!("{}/dimensions", spec.series_uid));
    let order = permutation(nk, spec.file_order);

    let mut obj = InMemDicomObject::new_empty();
    put_common(&mut obj, spec, ENHANCED_CT_IMAGE_STORAGE, &sop_uid);
    // Type 2 attributes of the patient / study modules, present and empty.
    put_empty(&mut obj, tags::PATIENT_BIRTH_DATE, VR::DA);
    put_empty(&mut obj, tags::PATIENT_SEX, VR::CS);
    put_empty(&mut obj, tags::REFERRING_PHYSICIAN_NAME, VR::PN);
    put_empty(&mut obj, tags::STUDY_ID, VR::SH);
    put_empty(&mut obj, tags::POSITION_REFERENCE_INDICATOR, VR::LO);
    // Enhanced General Equipment.
    put_str(&mut obj, tags::MANUFACTURER_MODEL_NAME, VR::LO, "nephrod");
    put_str(&mut obj, tags::DEVICE_SERIAL_NUMBER, VR::LO, "0");
    put_str(
        &mut obj,
        tags::SOFTWARE_VERSIONS,
        VR::LO,
        env!("CARGO_PKG_VERSION"),
    );
    // Enhanced CT Image.
    put_str(&mut obj, tags::IMAGE_TYPE, VR::CS, IMAGE_TYPE);
    put_frame_type_values(&mut obj);
    put_str(&mut obj, tags::ACQUISITION_NUMBER, VR::IS, "1");
    put_str(&mut obj, tags::ACQUISITION_DATE_TIME, VR::DT, &datetime);
    obj.put(DataElement::new(
        tags::ACQUISITION_DURATION,
        VR::FD,
        PrimitiveValue::from(0.5f64),
    ));
    put_str(&mut obj, tags::CONTENT_QUALIFICATION, VR::CS, "RESEARCH");
    put_str(&mut obj, tags::BURNED_IN_ANNOTATION, VR::CS, "NO");
    put_str(&mut obj, tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
    put_str(&mut obj, tags::PRESENTATION_LUT_SHAPE, VR::CS, "IDENTITY");
    put_image_pixel(&mut obj, nj as u16, ni as u16);
    // Multi-frame Functional Groups.
    put_str(
        &mut obj,
        tags::INSTANCE_NUMBER,
        VR::IS,
        &instance_number.to_string(),
    );
    put_str(&mut obj, tags::CONTENT_DATE, VR::DA, &spec.acquisition_date);
    put_str(&mut obj, tags::CONTENT_TIME, VR::TM, &spec.acquisition_time);
    put_str(&mut obj, tags::NUMBER_OF_FRAMES, VR::IS, &nk.to_string());
    // Multi-frame Dimension: (StackID, InStackPositionNumber), both in FrameContentSequence.
    put_item(&mut obj, tags::DIMENSION_ORGANIZATION_SEQUENCE, |it| {
        put_str(it, tags::DIMENSION_ORGANIZATION_UID, VR::UI, &dim_org_uid);
    });
    put_str(&mut obj, tags::DIMENSION_ORGANIZATION_TYPE, VR::CS, "3D");
    let dimension = |pointer: Tag, label: &str| {
        let mut it = InMemDicomObject::new_empty();
        put_str(
            &mut it,
            tags::DIMENSION_ORGANIZATION_UID,
            VR::UI,
            &dim_org_uid,
        );
        it.put(DataElement::new(
            tags::DIMENSION_INDEX_POINTER,
            VR::AT,
            PrimitiveValue::Tags(vec![pointer].into()),
        ));
        it.put(DataElement::new(
            tags::FUNCTIONAL_GROUP_POINTER,
            VR::AT,
            PrimitiveValue::Tags(vec![tags::FRAME_CONTENT_SEQUENCE].into()),
        ));
        put_str(&mut it, tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label);
        it
    };
    put_seq(
        &mut obj,
        tags::DIMENSION_INDEX_SEQUENCE,
        vec![
            dimension(tags::STACK_ID, "Stack ID"),
            dimension(tags::IN_STACK_POSITION_NUMBER, "In-Stack Position Number"),
        ],
    );

    // Shared functional groups: measures, orientation, rescale, frame type, window, anatomy.
    put_item(&mut obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, |sh| {
        put_item(sh, tags::PIXEL_MEASURES_SEQUENCE, |it| {
            put_str(
                it,
                tags::PIXEL_SPACING,
                VR::DS,
                &ds_multi(&[g.spacing_mm[1], g.spacing_mm[0]]),
            );
            put_str(it, tags::SLICE_THICKNESS, VR::DS, &ds(g.spacing_mm[2]));
            put_str(
                it,
                tags::SPACING_BETWEEN_SLICES,
                VR::DS,
                &ds(g.spacing_mm[2]),
            );
        });
        put_item(sh, tags::PLANE_ORIENTATION_SEQUENCE, |it| {
            put_str(
                it,
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                &ds_multi(&[r[0], r[1], r[2], c[0], c[1], c[2]]),
            );
        });
        put_item(sh, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, |it| {
            put_str(
                it,
                tags::RESCALE_INTERCEPT,
                VR::DS,
                &ds(spec.rescale_intercept),
            );
            put_str(it, tags::RESCALE_SLOPE, VR::DS, &ds(spec.rescale_slope));
            put_str(it, tags::RESCALE_TYPE, VR::LO, "HU");
        });
        put_item(sh, tags::CT_IMAGE_FRAME_TYPE_SEQUENCE, |it| {
            put_str(it, tags::FRAME_TYPE, VR::CS, IMAGE_TYPE);
            put_frame_type_values(it);
        });
        put_item(sh, tags::CT_ACQUISITION_TYPE_SEQUENCE, |it| {
            put_str(it, tags::ACQUISITION_TYPE, VR::CS, "SPIRAL");
            put_str(it, tags::CONSTANT_VOLUME_FLAG, VR::CS, "NO");
            put_str(it, tags::FLUOROSCOPY_FLAG, VR::CS, "NO");
        });
        put_item(sh, tags::FRAME_VOILUT_SEQUENCE, |it| {
            put_str(it, tags::WINDOW_CENTER, VR::DS, "40");
            put_str(it, tags::WINDOW_WIDTH, VR::DS, "400");
        });
        put_item(sh, tags::FRAME_ANATOMY_SEQUENCE, |it| {
            put_str(it, tags::FRAME_LATERALITY, VR::CS, "U");
            put_seq(
                it,
                tags::ANATOMIC_REGION_SEQUENCE,
                vec![code_item("818981001", "SCT", "Abdomen")],
            );
        });
        put_item(sh, tags::IRRADIATION_EVENT_IDENTIFICATION_SEQUENCE, |it| {
            put_str(
                it,
                tags::IRRADIATION_EVENT_UID,
                VR::UI,
                &uid_from_seed(&format!("{}/irradiation", spec.series_uid)),
            );
        });
    });

    // Per-frame functional groups: position and frame content, in frame order.
    let per_frame: Vec<InMemDicomObject> = order
        .iter()
        .map(|&k| {
            let pos = g.index_to_world([0.0, 0.0, k as f64]);
            let mut pf = InMemDicomObject::new_empty();
            put_item(&mut pf, tags::FRAME_CONTENT_SEQUENCE, |it| {
                put_str(it, tags::FRAME_ACQUISITION_DATE_TIME, VR::DT, &datetime);
                put_str(it, tags::FRAME_REFERENCE_DATE_TIME, VR::DT, &datetime);
                it.put(DataElement::new(
                    tags::FRAME_ACQUISITION_DURATION,
                    VR::FD,
                    PrimitiveValue::from(0.5f64),
                ));
                put_str(it, tags::STACK_ID, VR::SH, "1");
                it.put(DataElement::new(
                    tags::IN_STACK_POSITION_NUMBER,
                    VR::UL,
                    PrimitiveValue::from(k as u32 + 1),
                ));
                it.put(DataElement::new(
                    tags::DIMENSION_INDEX_VALUES,
                    VR::UL,
                    PrimitiveValue::U32(vec![1, k as u32 + 1].into()),
                ));
            });
            put_item(&mut pf, tags::PLANE_POSITION_SEQUENCE, |it| {
                put_str(it, tags::IMAGE_POSITION_PATIENT, VR::DS, &ds_multi(&pos));
            });
            pf
        })
        .collect();
    put_seq(
        &mut obj,
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        per_frame,
    );

    let frames: Vec<Vec<i16>> = order.iter().map(|&k| stored_slice(vol, k, spec)).collect();
    obj.put(pixel_data(&path, &frames, nj, ni, spec.pixel_encoding)?);
    save(
        obj,
        &path,
        ENHANCED_CT_IMAGE_STORAGE,
        &sop_uid,
        spec.pixel_encoding,
    )?;
    Ok(path)
}

/// Helpers for codec unit tests: one encoded frame in a minimal file, decoded by nephrod's
/// reader (dicom-rs's codecs).
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// Writes `fragment` as the single frame of a `rows × cols` signed 16-bit CT file in
    /// transfer syntax `ts`, reads it back with [`crate::dicom::pixels::decode_path`] (slope 1,
    /// intercept 0, so HU = stored value) and returns the stored values.
    pub(crate) fn decode_one_fragment(
        ts: &str,
        fragment: Vec<u8>,
        rows: usize,
        cols: usize,
    ) -> Vec<i16> {
        let mut fragment = fragment;
        if fragment.len() % 2 == 1 {
            fragment.push(0);
        }
        let mut obj = InMemDicomObject::new_empty();
        put_str(&mut obj, tags::SOP_CLASS_UID, VR::UI, CT_IMAGE_STORAGE);
        put_str(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, "2.25.1");
        put_image_pixel(&mut obj, rows as u16, cols as u16);
        let seq = encapsulate(Path::new("test"), vec![fragment]).unwrap();
        obj.put(DataElement::new(tags::PIXEL_DATA, VR::OB, seq));
        let file = obj
            .with_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax(ts)
                    .media_storage_sop_class_uid(CT_IMAGE_STORAGE)
                    .media_storage_sop_instance_uid("2.25.1"),
            )
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frame.dcm");
        file.write_to_file(&path).unwrap();
        let d = crate::dicom::pixels::decode_path(&path).unwrap();
        assert_eq!((d.rows, d.cols, d.frames), (rows, cols, 1));
        d.hu.iter().map(|v| *v as i16).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_fit_the_standard() {
        let u = super::uid_from_seed("anything at all");
        assert!(u.len() <= 64 && u.starts_with("2.25."));
        assert!(u.chars().all(|c| c.is_ascii_digit() || c == '.'));
    }

    #[test]
    fn basic_offset_table_points_at_each_frame_item() {
        let seq = encapsulate(Path::new("x"), vec![vec![0; 10], vec![1; 4], vec![2; 6]]).unwrap();
        assert_eq!(seq.offset_table(), &[0, 18, 30]);
        assert_eq!(seq.fragments().len(), 3);
    }

    #[test]
    fn stored_values_round_and_clamp() {
        assert_eq!(stored_value(-1024.0, 1.0, -1024.0), 0);
        assert_eq!(stored_value(3000.0, 0.5, -1024.0), 8048);
        assert_eq!(stored_value(0.3, 0.5, 0.0), 1);
        assert_eq!(stored_value(1e9, 1.0, 0.0), i16::MAX);
        assert_eq!(stored_value(-1e9, 1.0, 0.0), i16::MIN);
    }

    #[test]
    fn encodings_name_their_transfer_syntax() {
        assert_eq!(
            PixelEncoding::default().transfer_syntax_uid(),
            EXPLICIT_VR_LE
        );
        assert_eq!(
            PixelEncoding::RleLossless.transfer_syntax_uid(),
            RLE_LOSSLESS
        );
        assert_eq!(
            PixelEncoding::Jpeg2000Lossless.transfer_syntax_uid(),
            JPEG2000_LOSSLESS
        );
        assert_eq!(SeriesLayout::default(), SeriesLayout::SingleFrame);
    }
}
