//! The series writer in every layout × encoding (single-frame CT / Enhanced CT multi-frame ×
//! native / RLE Lossless / JPEG 2000 Lossless), two rescales each, read back by nephrod's own
//! ingest: one stack, the same dims, geometry within 1e-4 mm, and HU equal exactly to the
//! writer's stored-value quantisation `round((HU − b) / m) · m + b`.
//!
//! The volume is 23×17×9 voxels, anisotropic, on an oblique right-handed grid, with values from
//! −1024 to 3000 HU (and fractional HU in the slope-0.5 case, so rounding is exercised).
//!
//! With `NEPHROD_WRITER_OUT=DIR` the variants are kept in `DIR/<variant>/dicom/` beside
//! `DIR/<variant>/expected_hu.npy` (float32, shape (k, j, i)) for
//! `tools/oracle/check_written_dicom.py DIR`, which has pydicom read every file.

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use nephrod::dicom::ingest::ingest;
use nephrod::dicom::scan::parse_file;
use nephrod::dicom::writer::{
    uid_from_seed, write_series, FileOrder, PixelEncoding, SeriesLayout, SeriesSpec, WriteError,
};
use nephrod::volume::{Geometry, Volume};

const DIMS: [usize; 3] = [23, 17, 9];
const SPACING_MM: [f64; 3] = [0.7, 0.9, 2.5];
const ORIGIN_MM: [f64; 3] = [-12.3, 45.6, -78.9];

/// A proper rotation (det +1) tilted about all three axes: Rz(20°) · Rx(15°) · Ry(−10°).
fn oblique_direction() -> [[f64; 3]; 3] {
    let (a, b, c) = (
        20f64.to_radians(),
        15f64.to_radians(),
        (-10f64).to_radians(),
    );
    let rz = [
        [a.cos(), -a.sin(), 0.0],
        [a.sin(), a.cos(), 0.0],
        [0.0, 0.0, 1.0],
    ];
    let rx = [
        [1.0, 0.0, 0.0],
        [0.0, b.cos(), -b.sin()],
        [0.0, b.sin(), b.cos()],
    ];
    let ry = [
        [c.cos(), 0.0, c.sin()],
        [0.0, 1.0, 0.0],
        [-c.sin(), 0.0, c.cos()],
    ];
    let mul = |p: [[f64; 3]; 3], q: [[f64; 3]; 3]| {
        let mut m = [[0.0; 3]; 3];
        for r in 0..3 {
            for col in 0..3 {
                m[r][col] = (0..3).map(|t| p[r][t] * q[t][col]).sum();
            }
        }
        m
    };
    mul(mul(rz, rx), ry)
}

/// CT-plausible values from −1024 to 3000 HU: air outside an ellipse, mostly soft tissue inside
/// with a tail up to bone, a fractional part when `fractional`.
fn make_volume(fractional: bool) -> Volume<f32> {
    let g = Geometry::new(ORIGIN_MM, SPACING_MM, oblique_direction()).unwrap();
    assert!((g.handedness() - 1.0).abs() < 1e-12, "right-handed");
    let [ni, nj, nk] = DIMS;
    let mut state = 0x1357_9BDFu32;
    let mut data = Vec::with_capacity(ni * nj * nk);
    for k in 0..nk {
        for j in 0..nj {
            for i in 0..ni {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let x = (i as f64 - 11.0) / 10.0;
                let y = (j as f64 - 8.0) / 7.0;
                let hu = if x * x + y * y > 1.0 {
                    -1024.0 + (state % 40) as f32
                } else if state % 7 < 5 {
                    -100.0 + (state % 200) as f32
                } else {
                    -1024.0 + (state % 4025) as f32
                };
                let frac = [0.0, 0.3, 0.8, 0.55][(i + 2 * j + 3 * k) % 4];
                let v = if fractional { hu + frac } else { hu + k as f32 };
                data.push(v.clamp(-1024.0, 3000.0));
            }
        }
    }
    data[0] = -1024.0;
    let last = data.len() - 1;
    data[last] = 3000.0;
    Volume::new(DIMS, g, data).unwrap()
}

fn spec(
    tag: &str,
    layout: SeriesLayout,
    encoding: PixelEncoding,
    slope: f64,
    intercept: f64,
) -> SeriesSpec {
    SeriesSpec {
        study_uid: uid_from_seed(&format!("writer variants study {tag}")),
        series_uid: uid_from_seed(&format!("writer variants series {tag}")),
        series_number: 3,
        description: format!("writer variant {tag}"),
        contrast_agent: Some("Iohexol 350".into()),
        contrast_start_time: Some("101500".into()),
        acquisition_time: "101610".into(),
        acquisition_date: "20260102".into(),
        rescale_slope: slope,
        rescale_intercept: intercept,
        file_order: FileOrder::Shuffled(5),
        scramble_instance_numbers: true,
        first_instance: 0,
        patient: Default::default(),
        pixel_encoding: encoding,
        layout,
    }
}

/// The HU the reader must return: the writer's documented quantisation, computed here.
fn expected_hu(vol: &Volume<f32>, slope: f64, intercept: f64) -> Vec<f32> {
    vol.data()
        .iter()
        .map(|hu| {
            let s = ((*hu as f64 - intercept) / slope)
                .round()
                .clamp(-32768.0, 32767.0);
            (s * slope + intercept) as f32
        })
        .collect()
}

/// `DIR/name` under `NEPHROD_WRITER_OUT` (kept), else under a temporary directory.
fn out_dir(tmp: &Path, name: &str) -> PathBuf {
    match std::env::var_os("NEPHROD_WRITER_OUT") {
        Some(root) => {
            let d = PathBuf::from(root).join(name);
            let _ = std::fs::remove_dir_all(&d);
            d
        }
        None => tmp.join(name),
    }
}

/// Writes a float32 C-order `.npy` of shape (k, j, i).
fn write_npy(path: &Path, dims: [usize; 3], data: &[f32]) {
    let [ni, nj, nk] = dims;
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({nk}, {nj}, {ni}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

fn variant_name(layout: SeriesLayout, encoding: PixelEncoding, slope: f64) -> String {
    let l = match layout {
        SeriesLayout::SingleFrame => "single",
        SeriesLayout::EnhancedMultiFrame => "enhanced",
    };
    let e = match encoding {
        PixelEncoding::Native => "native",
        PixelEncoding::RleLossless => "rle",
        PixelEncoding::Jpeg2000Lossless => "j2k",
    };
    format!("{l}_{e}_slope{}", if slope == 1.0 { "1" } else { "0.5" })
}

/// Checks the encapsulation of a written file: BOT with one offset per frame, one even
/// fragment per frame.
fn check_encapsulation(path: &Path, frames: usize) {
    let obj = dicom_object::open_file(path).unwrap();
    let pd = obj.element(tags::PIXEL_DATA).unwrap();
    let seq = match pd.value() {
        dicom_core::DicomValue::PixelSequence(seq) => seq,
        other => panic!("{}: not encapsulated: {other:?}", path.display()),
    };
    assert_eq!(seq.fragments().len(), frames, "one fragment per frame");
    assert!(seq.fragments().iter().all(|f| f.len() % 2 == 0), "even");
    let mut at = 0u32;
    let mut want = Vec::new();
    for f in seq.fragments() {
        want.push(at);
        at += 8 + f.len() as u32;
    }
    assert_eq!(seq.offset_table(), &want[..], "basic offset table");
}

/// Enhanced CT structure: SOP class, frames, functional groups, dimension values.
fn check_enhanced(path: &Path, nk: usize) {
    let obj = dicom_object::open_file(path).unwrap();
    let text = |tag| {
        obj.element(tag)
            .unwrap()
            .to_str()
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(text(tags::SOP_CLASS_UID), "1.2.840.10008.5.1.4.1.1.2.1");
    assert_eq!(text(tags::NUMBER_OF_FRAMES), nk.to_string());
    assert_eq!(text(tags::IMAGE_TYPE), "ORIGINAL\\PRIMARY\\AXIAL\\NONE");
    for tag in [
        tags::CONTENT_DATE,
        tags::CONTENT_TIME,
        tags::ACQUISITION_DATE_TIME,
        tags::INSTANCE_NUMBER,
        tags::FRAME_OF_REFERENCE_UID,
    ] {
        assert!(!text(tag).is_empty(), "{tag} empty");
    }
    for tag in [
        tags::IMAGE_POSITION_PATIENT,
        tags::RESCALE_SLOPE,
        tags::PIXEL_SPACING,
    ] {
        assert!(
            obj.element(tag).is_err(),
            "{tag} must be in functional groups"
        );
    }
    let items = |tag| obj.element(tag).unwrap().items().unwrap().to_vec();
    let shared = items(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    assert_eq!(shared.len(), 1);
    for seq in [
        tags::PIXEL_MEASURES_SEQUENCE,
        tags::PLANE_ORIENTATION_SEQUENCE,
        tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
        tags::CT_IMAGE_FRAME_TYPE_SEQUENCE,
    ] {
        assert_eq!(shared[0].element(seq).unwrap().items().unwrap().len(), 1);
    }
    let per_frame = items(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
    assert_eq!(per_frame.len(), nk);
    let mut positions: Vec<u32> = per_frame
        .iter()
        .map(|pf| {
            let fc = &pf
                .element(tags::FRAME_CONTENT_SEQUENCE)
                .unwrap()
                .items()
                .unwrap()[0];
            let pos = fc
                .element(tags::IN_STACK_POSITION_NUMBER)
                .unwrap()
                .to_int::<u32>()
                .unwrap();
            let dims = fc
                .element(tags::DIMENSION_INDEX_VALUES)
                .unwrap()
                .to_multi_int::<u32>()
                .unwrap();
            assert_eq!(dims, vec![1, pos]);
            pos
        })
        .collect();
    assert_ne!(
        positions,
        (1..=nk as u32).collect::<Vec<_>>(),
        "frames shuffled"
    );
    positions.sort();
    assert_eq!(positions, (1..=nk as u32).collect::<Vec<_>>());
}

fn round_trip(layout: SeriesLayout, encoding: PixelEncoding, slope: f64, intercept: f64) {
    let tmp = tempfile::tempdir().unwrap();
    let name = variant_name(layout, encoding, slope);
    let root = out_dir(tmp.path(), &name);
    let dir = root.join("dicom");
    let vol = make_volume(slope != 1.0);
    let want = expected_hu(&vol, slope, intercept);
    let spec = spec(&name, layout, encoding, slope, intercept);
    let paths = write_series(&dir, &vol, &spec).unwrap();
    write_npy(&root.join("expected_hu.npy"), DIMS, &want);
    let nk = DIMS[2];

    match layout {
        SeriesLayout::SingleFrame => {
            assert_eq!(paths.len(), nk);
            let mut names: Vec<String> = paths
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            names.sort();
            assert_eq!(names[0], "IM00000.dcm");
        }
        SeriesLayout::EnhancedMultiFrame => {
            assert_eq!(paths.len(), 1);
            assert_eq!(paths[0].file_name().unwrap(), "MF00001.dcm");
            check_enhanced(&paths[0], nk);
            // Enhanced CT has no AcquisitionTime: the reader takes AcquisitionDateTime's.
            let h = parse_file(&paths[0], true).unwrap();
            assert_eq!(
                h.acquisition_time_s,
                Some(10.0 * 3600.0 + 16.0 * 60.0 + 10.0)
            );
        }
    }
    if encoding.is_encapsulated() {
        let frames = if layout == SeriesLayout::SingleFrame {
            1
        } else {
            nk
        };
        for p in &paths {
            check_encapsulation(p, frames);
        }
    }

    let ing = ingest(&dir, true);
    let rep = &ing.report;
    assert!(rep.skipped.is_empty(), "{name}: skipped {:?}", rep.skipped);
    assert_eq!(rep.studies.len(), 1, "{name}");
    assert_eq!(rep.studies[0].series.len(), 1, "{name}: one stack");
    let s = &rep.studies[0].series[0];
    assert_eq!(s.status, "ok", "{name}: {:?}", s.refusal);
    assert_eq!(s.part, 0);
    assert_eq!(s.num_slices, nk);
    assert_eq!(s.num_files, paths.len());
    assert_eq!(
        s.transfer_syntaxes,
        vec![encoding.transfer_syntax_uid().to_string()]
    );
    assert!(s.warnings.is_empty(), "{name}: {:?}", s.warnings);
    let got = ing.volumes[0][0].as_ref().unwrap();
    assert_eq!(got.dims(), DIMS, "{name}");
    let (g, w) = (got.geometry(), vol.geometry());
    for r in 0..3 {
        assert!(
            (g.origin_mm[r] - w.origin_mm[r]).abs() < 1e-4,
            "{name}: origin {:?} vs {:?}",
            g.origin_mm,
            w.origin_mm
        );
        assert!(
            (g.spacing_mm[r] - w.spacing_mm[r]).abs() < 1e-4,
            "{name}: spacing {:?} vs {:?}",
            g.spacing_mm,
            w.spacing_mm
        );
        for c in 0..3 {
            assert!(
                (g.direction[r][c] - w.direction[r][c]).abs() < 1e-4,
                "{name}: direction {:?} vs {:?}",
                g.direction,
                w.direction
            );
        }
    }
    // Corners in world space, too (what 1e-4 mm means for the whole grid).
    for ijk in [[0.0, 0.0, 0.0], [22.0, 16.0, 8.0], [22.0, 0.0, 8.0]] {
        let (a, b) = (g.index_to_world(ijk), w.index_to_world(ijk));
        for r in 0..3 {
            assert!((a[r] - b[r]).abs() < 1e-4, "{name}: corner {ijk:?}");
        }
    }
    let mismatches: Vec<(usize, f32, f32)> = got
        .data()
        .iter()
        .zip(&want)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(n, (a, b))| (n, *a, *b))
        .take(5)
        .collect();
    assert!(mismatches.is_empty(), "{name}: HU differ {mismatches:?}");
    let (lo, hi) = got
        .data()
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
    assert_eq!((lo, hi), (-1024.0, 3000.0), "{name}: value range");
}

#[test]
fn single_frame_native() {
    round_trip(
        SeriesLayout::SingleFrame,
        PixelEncoding::Native,
        1.0,
        -1024.0,
    );
    round_trip(
        SeriesLayout::SingleFrame,
        PixelEncoding::Native,
        0.5,
        -1000.0,
    );
}

#[test]
fn single_frame_rle() {
    round_trip(
        SeriesLayout::SingleFrame,
        PixelEncoding::RleLossless,
        1.0,
        -1024.0,
    );
    round_trip(
        SeriesLayout::SingleFrame,
        PixelEncoding::RleLossless,
        0.5,
        -1000.0,
    );
}

#[test]
fn single_frame_j2k() {
    round_trip(
        SeriesLayout::SingleFrame,
        PixelEncoding::Jpeg2000Lossless,
        1.0,
        -1024.0,
    );
    round_trip(
        SeriesLayout::SingleFrame,
        PixelEncoding::Jpeg2000Lossless,
        0.5,
        -1000.0,
    );
}

#[test]
fn enhanced_native() {
    round_trip(
        SeriesLayout::EnhancedMultiFrame,
        PixelEncoding::Native,
        1.0,
        -1024.0,
    );
    round_trip(
        SeriesLayout::EnhancedMultiFrame,
        PixelEncoding::Native,
        0.5,
        -1000.0,
    );
}

#[test]
fn enhanced_rle() {
    round_trip(
        SeriesLayout::EnhancedMultiFrame,
        PixelEncoding::RleLossless,
        1.0,
        -1024.0,
    );
    round_trip(
        SeriesLayout::EnhancedMultiFrame,
        PixelEncoding::RleLossless,
        0.5,
        -1000.0,
    );
}

#[test]
fn enhanced_j2k() {
    round_trip(
        SeriesLayout::EnhancedMultiFrame,
        PixelEncoding::Jpeg2000Lossless,
        1.0,
        -1024.0,
    );
    round_trip(
        SeriesLayout::EnhancedMultiFrame,
        PixelEncoding::Jpeg2000Lossless,
        0.5,
        -1000.0,
    );
}

/// Every layout × encoding is covered above; this guards against a new variant being added
/// without a test.
#[test]
fn all_variants_are_covered() {
    assert_eq!(SeriesLayout::ALL.len() * PixelEncoding::ALL.len(), 6);
}

#[test]
fn a_zero_slope_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let vol = make_volume(false);
    let s = spec(
        "bad",
        SeriesLayout::SingleFrame,
        PixelEncoding::Native,
        0.0,
        0.0,
    );
    let err = write_series(tmp.path(), &vol, &s).unwrap_err();
    assert!(matches!(err, WriteError::InvalidRescale { .. }), "{err}");
    assert_eq!(err.kind(), "invalid_rescale");
}

#[test]
fn an_oversized_matrix_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let vol = Volume::new([65536, 1, 1], Geometry::identity(), vec![0.0f32; 65536]).unwrap();
    let s = spec(
        "big",
        SeriesLayout::EnhancedMultiFrame,
        PixelEncoding::RleLossless,
        1.0,
        0.0,
    );
    let err = write_series(tmp.path(), &vol, &s).unwrap_err();
    assert!(matches!(err, WriteError::MatrixTooLarge { .. }), "{err}");
}

/// Several calls can write parts of one multi-frame series (distinct files and UIDs).
#[test]
fn multi_frame_parts_get_distinct_files() {
    let tmp = tempfile::tempdir().unwrap();
    let vol = make_volume(false);
    let mut s = spec(
        "parts",
        SeriesLayout::EnhancedMultiFrame,
        PixelEncoding::Native,
        1.0,
        -1024.0,
    );
    let a = write_series(tmp.path(), &vol, &s).unwrap();
    s.first_instance = 9;
    let b = write_series(tmp.path(), &vol, &s).unwrap();
    assert_eq!(a[0].file_name().unwrap(), "MF00001.dcm");
    assert_eq!(b[0].file_name().unwrap(), "MF00010.dcm");
    let (ha, hb) = (
        parse_file(&a[0], true).unwrap(),
        parse_file(&b[0], true).unwrap(),
    );
    assert_ne!(ha.sop_instance_uid, hb.sop_instance_uid);
}
