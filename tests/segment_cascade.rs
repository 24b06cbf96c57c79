//! Cascade stages (3d_lowres → 3d_cascade_fullres, shared/docs/nnunet-inference.md §6) against
//! nnunetv2 2.8.1 (tools/oracle/nnunet_variants_golden.py):
//! * `resample_segmentation` equals nnU-Net's `resample_data_or_seg_to_shape(is_seg=True)`
//!   (`resize_segmentation`, separate z with nearest neighbour) bit for bit, −1 labels included;
//! * the cascade stage's network input (image channel + one-hot previous segmentation) equals
//!   what nnU-Net's preprocessor and data iterator build, bit for bit;
//! * end to end: `nephrod segment` with the lowres bundle, with the cascade bundle fed nnU-Net's
//!   own lowres segmentation, and as a whole chain (`--previous-stage`), against
//!   nnUNetPredictor's label maps (agreement and near-tie rule as tests/segment_e2e.rs).

#[path = "common/safetensors_any.rs"]
mod safetensors_any;

use std::path::PathBuf;

use nephrod::models::nnunet::{build_plan, read_json, DatasetJson};
use nephrod::segment::plan::{InferencePlan, ResamplingSettings};
use nephrod::segment::preprocess::preprocess_case;
use nephrod::segment::reader::to_reader_array;
use nephrod::segment::resample::{resample_segmentation, separate_axis};
use nephrod::volume::{nifti, Volume};
use serde_json::Value;

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn arr3(v: &Value) -> [f64; 3] {
    let a = v.as_array().unwrap();
    [0, 1, 2].map(|i| a[i].as_f64().unwrap())
}

fn shape3(v: &Value, skip: usize) -> [usize; 3] {
    let a = v.as_array().unwrap();
    [0, 1, 2].map(|i| a[i + skip].as_u64().unwrap() as usize)
}

#[test]
fn resample_segmentation_is_bit_exact_with_nnunet() {
    let dir = data().join("segment/variants/resize_segmentation");
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("resize_segmentation.json")).unwrap(),
    )
    .unwrap();
    let tensors = safetensors_any::read_all(&dir.join("resize_segmentation.safetensors"));
    let settings = ResamplingSettings {
        order: 1,
        order_z: 0,
        force_separate_z: None,
    };
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    let mut separate = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (_, input) = &tensors[&format!("{name}_input")];
        let (oshape, want) = &tensors[&format!("{name}_output")];
        let shape = shape3(&case["input_shape"], 1);
        let new_shape = shape3(&case["new_shape"], 0);
        assert_eq!(&oshape[1..], &new_shape, "{name}");
        let sep = separate_axis(
            arr3(&case["current_spacing"]),
            arr3(&case["new_spacing"]),
            None,
        );
        let want_sep = case["separate_axis"].as_u64().map(|a| a as usize);
        assert_eq!(sep, want_sep, "{name}: separate axis");
        separate += usize::from(sep.is_some());
        let seg: Vec<i16> = input.iter().map(|v| *v as i16).collect();
        let got = resample_segmentation(&seg, shape, new_shape, sep, &settings).unwrap();
        let want: Vec<i16> = want.iter().map(|v| *v as i16).collect();
        let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 0, "{name}: {diff} of {} voxels differ", want.len());
    }
    assert!(separate >= 1, "a separate-z case must be covered");
}

fn plan(model: &str, configuration: &str) -> InferencePlan {
    let dir = data().join("models/nnunet").join(model);
    let plans = read_json(&dir.join("plans.json")).unwrap();
    let ds =
        DatasetJson::parse(&std::fs::read_to_string(dir.join("dataset.json")).unwrap()).unwrap();
    build_plan(&plans, &ds, configuration, &[0, 1, 2], &["0".to_string()]).unwrap()
}

#[test]
fn cascade_input_is_bit_exact_with_nnunet() {
    let dir = data().join("segment/variants/cascade");
    let plan = plan("cascade_fullres", "3d_cascade_fullres");
    assert_eq!(plan.previous_stage.as_deref(), Some("3d_lowres"));
    assert_eq!(plan.architecture.input_channels, 4);
    let ct = nifti::read(&dir.join("ct.nii.gz")).unwrap().volume;
    let prev = nifti::read_labels(&dir.join("seg_lowres.nii.gz")).unwrap();
    let prev16 = Volume::new(
        prev.dims(),
        prev.geometry().clone(),
        prev.data().iter().map(|&v| u16::from(v)).collect(),
    )
    .unwrap();
    let image = to_reader_array(&ct, plan.reader);
    let labels = to_reader_array(&prev16, plan.reader);
    // Without the previous stage's labels a cascade stage refuses to run.
    assert!(preprocess_case(
        vec![image.data.clone()],
        None,
        image.shape,
        image.spacing_mm,
        &plan
    )
    .is_err());
    let pre = preprocess_case(
        vec![image.data],
        Some(&labels.data),
        image.shape,
        image.spacing_mm,
        &plan,
    )
    .unwrap();
    let golden = safetensors_any::read_all(&dir.join("cascade_preprocessed.safetensors"));
    let (shape, want) = &golden["data"];
    assert_eq!(&pre.data.shape()[1..], &shape[..]);
    let mut diff = 0;
    let mut worst = 0f64;
    for (a, b) in pre.data.data().iter().zip(want) {
        if *a as f64 != *b {
            diff += 1;
            worst = worst.max((*a as f64 - b).abs());
        }
    }
    let n = want.len();
    let per = n / shape[0];
    // The one-hot channels (1..) are exact by construction of the test; report the image too.
    assert_eq!(
        diff, 0,
        "{diff} of {n} values differ (max |Δ| {worst}), {per} per channel"
    );
}
