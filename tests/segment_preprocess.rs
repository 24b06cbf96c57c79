//! nnU-Net's preprocessing (src/segment/preprocess.rs) against nnunetv2 2.8.1's own
//! `DefaultPreprocessor.run_case_npy` with the plans of tests/data/models/nnunet/plain
//! (transpose [2, 0, 1], CT normalisation, order-3 resampling with and without separate z,
//! a zero border that the crop removes): the crop properties exactly and every preprocessed
//! value bit for bit (tools/oracle/nnunet_preprocess_golden.py). Also the export's geometry
//! steps (un-crop, un-transpose) as the inverse of the forward ones.

use std::path::{Path, PathBuf};

use nephrod::engine::weights::WeightFile;
use nephrod::models::nnunet::{build_plan, read_json, DatasetJson};
use nephrod::segment::plan::InferencePlan;
use nephrod::segment::preprocess::{preprocess, transpose3, uncrop_and_untranspose};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/segment/preprocess")
}

fn plain_plan() -> InferencePlan {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models/nnunet/plain");
    let plans = read_json(&model.join("plans.json")).unwrap();
    let ds =
        DatasetJson::parse(&std::fs::read_to_string(model.join("dataset.json")).unwrap()).unwrap();
    build_plan(&plans, &ds, "3d_fullres", &[0, 1, 2], &["0".to_string()]).unwrap()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

#[test]
fn preprocessing_is_bit_exact_with_nnunet() {
    let plan = plain_plan();
    assert_eq!(plan.transpose_forward, [2, 0, 1]);
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("cases.json")).unwrap()).unwrap();
    assert_eq!(doc["generator"], "tools/oracle/nnunet_preprocess_golden.py");
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let f = WeightFile::open(&dir().join(format!("{name}.safetensors"))).unwrap();
        let (s, input) = f.tensor_f32("input").unwrap();
        let shape = [s[1], s[2], s[3]];
        let sp: Vec<f64> = case["spacing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let pre = preprocess(vec![input], shape, [sp[0], sp[1], sp[2]], &plan).unwrap();
        let p = &pre.properties;
        assert_eq!(
            p.shape_before_cropping.to_vec(),
            usizes(&case["shape_before_cropping"]),
            "{name}"
        );
        let bbox: Vec<Vec<usize>> = case["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(usizes)
            .collect();
        assert_eq!(
            p.bbox.iter().map(|b| b.to_vec()).collect::<Vec<_>>(),
            bbox,
            "{name} bbox"
        );
        assert_eq!(
            p.shape_after_cropping.to_vec(),
            usizes(&case["shape_after_cropping"]),
            "{name}"
        );
        let (os, _) = f.tensor_f32("output").unwrap();
        assert_eq!(pre.data.shape()[1..].to_vec(), os, "{name} output shape");
        let (_, raw) = f.raw("output").unwrap();
        let differ = pre
            .data
            .data()
            .iter()
            .zip(raw.chunks_exact(4))
            .filter(|(v, b)| v.to_bits() != u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .count();
        assert_eq!(differ, 0, "{name}: {differ} values differ from nnU-Net");
    }
}

#[test]
fn export_geometry_inverts_the_forward_steps() {
    let plan = plain_plan();
    let shape = [4, 5, 6];
    let labels: Vec<u16> = (0..120).map(|i| (i % 7 + 1) as u16).collect();
    // forward: transpose, then a box
    let (t, ts) = transpose3(&labels, shape, plan.transpose_forward);
    let bbox = [[1, ts[0] - 1], [0, ts[1]], [2, ts[2]]];
    let cs = bbox.map(|[a, b]| b - a);
    let mut cropped = Vec::new();
    for a in bbox[0][0]..bbox[0][1] {
        for b in bbox[1][0]..bbox[1][1] {
            for c in bbox[2][0]..bbox[2][1] {
                cropped.push(t[(a * ts[1] + b) * ts[2] + c]);
            }
        }
    }
    let props = nephrod::segment::preprocess::CropProperties {
        spacing_mm: [1.0; 3],
        shape_before_cropping: ts,
        bbox,
        shape_after_cropping: cs,
        shape_after_resampling: cs,
    };
    let (back, bs) = uncrop_and_untranspose(&cropped, &props, &plan).unwrap();
    assert_eq!(bs, shape);
    for (i, (b, l)) in back.iter().zip(&labels).enumerate() {
        let (z, y, x) = (i / 30, (i / 6) % 5, i % 6);
        // reader axis 0 (z) becomes transposed axis 1, axis 1 (y) → 2, axis 2 (x) → 0.
        let inside = (1..ts[0] - 1).contains(&x) && (2..ts[2]).contains(&y);
        let _ = z;
        assert_eq!(*b, if inside { *l } else { 0 }, "voxel {i}");
    }
}

#[test]
fn corrupt_spacings_are_typed_errors() {
    let mut plan = plain_plan();
    let x = vec![1.0f32; 4 * 5 * 6];
    plan.preprocessing.spacing_mm = [0.0, 1.0, 1.0];
    assert!(matches!(
        preprocess(vec![x.clone()], [4, 5, 6], [1.0; 3], &plan),
        Err(nephrod::segment::preprocess::PreprocessError::Spacing { .. })
    ));
    plan.preprocessing.spacing_mm = [1e-6, 1.0, 1.0];
    assert!(matches!(
        preprocess(vec![x.clone()], [4, 5, 6], [1.0; 3], &plan),
        Err(nephrod::segment::preprocess::PreprocessError::TooLarge(_))
    ));
    plan.preprocessing.spacing_mm = [1.0; 3];
    assert!(preprocess(vec![x], [4, 5, 6], [f64::NAN, 1.0, 1.0], &plan).is_err());
}
