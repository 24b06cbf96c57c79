//! nnU-Net's resampling (src/segment/resample.rs) against nnunetv2 2.8.1's own
//! `resample_data_or_seg_to_shape` (skimage 0.26 / scipy 1.17.1 underneath), bit for bit:
//! order-3 image data (f32) isotropic up/down, separate-z decided by the current and by the new
//! spacing, in-plane-only and z-only changes, an axis unchanged inside a 3-D resize, two
//! low-resolution axes (no separate z), order-1 logits exported as f16 with and without
//! separate z, and an unchanged shape (tools/oracle/nnunet_resample_golden.py).

use std::path::PathBuf;

use nephrod::engine::weights::WeightFile;
use nephrod::segment::plan::ResamplingSettings;
use nephrod::segment::resample::{
    compute_new_shape, resample_channel, separate_axis, spline_resize, ResampleError,
};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/segment/resample")
}

fn arr3(v: &Value) -> [f64; 3] {
    let a: Vec<f64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    [a[0], a[1], a[2]]
}

#[test]
fn resampling_is_bit_exact_with_nnunet() {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("cases.json")).unwrap()).unwrap();
    assert_eq!(doc["generator"], "tools/oracle/nnunet_resample_golden.py");
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 11);
    let mut separate_cases = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let s: Vec<usize> = case["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        let shape = [s[1], s[2], s[3]];
        let cur = arr3(&case["current_spacing"]);
        let new = arr3(&case["new_spacing"]);
        let order = case["order"].as_u64().unwrap() as u8;
        let new_shape = compute_new_shape(shape, cur, new);
        let want_shape: Vec<usize> = case["new_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(new_shape.to_vec(), want_shape, "{name}: new shape");
        let sep = separate_axis(cur, new, None);
        assert_eq!(
            sep.map(|a| a as u64),
            case["separate_axis"].as_u64(),
            "{name}: separate axis"
        );
        separate_cases += usize::from(sep.is_some());
        let f = WeightFile::open(&dir().join(format!("{name}.safetensors"))).unwrap();
        let (_, input) = f.tensor_f32("input").unwrap();
        let (_, raw) = f.raw("output").unwrap();
        let settings = ResamplingSettings {
            order,
            order_z: 0,
            force_separate_z: None,
        };
        let n_in: usize = shape.iter().product();
        let n_out: usize = new_shape.iter().product();
        let f16_out = case["dtype"] == "float16";
        let mut mismatches = 0;
        for c in 0..s[0] {
            let x: Vec<f64> = input[c * n_in..(c + 1) * n_in]
                .iter()
                .map(|v| *v as f64)
                .collect();
            let y = resample_channel(&x, shape, new_shape, sep, &settings).unwrap();
            assert_eq!(y.len(), n_out);
            for (i, v) in y.iter().enumerate() {
                let k = c * n_out + i;
                let same = if f16_out {
                    let want = u16::from_le_bytes([raw[2 * k], raw[2 * k + 1]]);
                    nephrod::engine::f16_from_f64(*v).to_bits() == want
                } else {
                    let want = u32::from_le_bytes(raw[4 * k..4 * k + 4].try_into().unwrap());
                    (*v as f32).to_bits() == want
                };
                mismatches += usize::from(!same);
            }
        }
        assert_eq!(
            mismatches, 0,
            "{name}: {mismatches} values differ from nnU-Net"
        );
    }
    assert!(separate_cases >= 5);
}

#[test]
fn analytic_properties() {
    // A constant stays constant (clipping to [min, max] makes it exact).
    let x = vec![7.25f64; 5 * 6 * 7];
    for order in [1, 3] {
        let y = spline_resize(&x, &[5, 6, 7], &[9, 4, 11], order).unwrap();
        assert!(y.iter().all(|v| *v == 7.25), "order {order}");
    }
    // Linear interpolation of a ramp along W, inside the grid, is the ramp at the mapped
    // coordinate cc = (k + 0.5)·in/out − 0.5.
    let (n_in, n_out) = (10usize, 17usize);
    let ramp: Vec<f64> = (0..3 * n_in).map(|i| (i % n_in) as f64 * 2.0).collect();
    let y = spline_resize(&ramp, &[3, n_in], &[3, n_out], 1).unwrap();
    for (k, got) in y.iter().take(n_out).enumerate() {
        let cc = (k as f64 + 0.5) * n_in as f64 / n_out as f64 - 0.5;
        let want = 2.0 * cc.clamp(0.0, (n_in - 1) as f64);
        assert!((got - want).abs() < 1e-12, "{k}: {got} vs {want}");
    }
    assert_eq!(
        spline_resize(&x, &[5, 6, 7], &[5, 6, 7], 2),
        Err(ResampleError::Order(2))
    );
    assert!(matches!(
        spline_resize(&x[1..], &[5, 6, 7], &[5, 6, 8], 3),
        Err(ResampleError::Length { .. })
    ));
}
