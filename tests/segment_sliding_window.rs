//! nnU-Net's sliding window (src/segment/sliding_window.rs) against nnunetv2 2.8.1 itself
//! (tools/oracle/nnunet_sliding_window_golden.py, tests/data/segment/sliding_window/):
//! the Gaussian importance map bit for bit (sha256 of the f16 array, 6 patch sizes incl.
//! 128³ whose kernel sum takes numpy's recursive pairwise path), tile starts for 307
//! (image, patch, step) triples, and whole predictions of `predict_sliding_window_return_logits`
//! with a stand-in network nephrod computes exactly — with and without mirroring, padding of an
//! image smaller than the patch, logits large enough that f16 rounding shows — equal to the
//! f16 bit; the case nnU-Net aborts on (infinite logits) is a typed error here too.

use std::path::PathBuf;

use half::f16;
use nephrod::engine::weights::WeightFile;
use nephrod::engine::{Tensor, TensorF16};
use nephrod::segment::plan::{OutputHeads, SlidingWindow};
use nephrod::segment::sliding_window::{
    average_folds, decode_labels, gaussian_importance, mirror_combinations, predict_sliding_window,
    tile_starts, SlidingWindowError,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/segment/sliding_window")
}

fn json(name: &str) -> Value {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join(name)).unwrap()).unwrap();
    assert_eq!(
        v["generator"],
        "tools/oracle/nnunet_sliding_window_golden.py"
    );
    v
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

#[test]
fn gaussian_importance_is_bit_exact_with_compute_gaussian() {
    for case in json("gaussian.json")["cases"].as_array().unwrap() {
        let p = usizes(&case["patch"]);
        let patch = [p[0], p[1], p[2]];
        let g = gaussian_importance(patch, 1.0 / 8.0, 10.0);
        let bytes: Vec<u8> = g.iter().flat_map(|v| v.to_bits().to_le_bytes()).collect();
        let sha = format!("{:x}", Sha256::digest(&bytes));
        let min = g.iter().map(|v| v.to_f32()).fold(f32::MAX, f32::min);
        let at_min = g.iter().filter(|v| v.to_f32() == min).count();
        assert_eq!(min as f64, case["min"].as_f64().unwrap(), "{patch:?} min");
        assert_eq!(
            at_min as u64,
            case["at_min"].as_u64().unwrap(),
            "{patch:?} at min"
        );
        assert_eq!(sha, case["sha256"].as_str().unwrap(), "{patch:?} f16 map");
    }
}

#[test]
fn tile_starts_match_compute_steps_for_sliding_window() {
    let cases = json("steps.json");
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 300);
    for c in cases {
        let (image, patch) = (
            c["image"].as_u64().unwrap() as usize,
            c["patch"].as_u64().unwrap() as usize,
        );
        let step = c["step"].as_f64().unwrap();
        assert_eq!(
            tile_starts(image, patch, step),
            usizes(&c["starts"]),
            "{image} {patch} {step}"
        );
    }
}

#[test]
fn mirror_combinations_follow_itertools_order() {
    let c = mirror_combinations(&[0, 1, 2]);
    let want: Vec<Vec<usize>> = vec![
        vec![0],
        vec![1],
        vec![2],
        vec![0, 1],
        vec![0, 2],
        vec![1, 2],
        vec![0, 1, 2],
    ];
    assert_eq!(c, want);
    assert_eq!(
        mirror_combinations(&[1, 2]),
        vec![vec![1], vec![2], vec![1, 2]]
    );
    assert!(mirror_combinations(&[]).is_empty());
}

fn tensor(f: &WeightFile, name: &str) -> (Vec<usize>, Vec<f32>) {
    f.tensor_f32(name).unwrap()
}

#[test]
fn predictions_equal_nnunet_predict_sliding_window_bit_for_bit() {
    let meta = json("cases.json");
    let cases = meta["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let heads = case["heads"].as_u64().unwrap() as usize;
        let p = usizes(&case["patch"]);
        let patch = [p[0], p[1], p[2]];
        let mirror = usizes(&case["mirror_axes"]);
        let f = WeightFile::open(&dir().join(format!("{name}.safetensors"))).unwrap();
        let (xs, xd) = tensor(&f, "input");
        let x = Tensor::new([1, xs[0], xs[1], xs[2], xs[3]], xd).unwrap();
        let (_, a) = tensor(&f, "a");
        let (_, pd) = tensor(&f, "P");
        let plen: usize = patch.iter().product();
        // The stand-in network: y[h] = x[0] * a[h] + P[h] (f32 multiply, then add).
        let mut net = |t: &Tensor| -> Result<Tensor, String> {
            let x0 = t.channel(0, 0);
            let mut out = Tensor::zeros([1, heads, patch[0], patch[1], patch[2]]);
            for h in 0..heads {
                let ph = &pd[h * plen..(h + 1) * plen];
                for ((o, xv), pv) in out.channel_mut(0, h).iter_mut().zip(x0).zip(ph) {
                    *o = xv * a[h] + pv;
                }
            }
            Ok(out)
        };
        let window = SlidingWindow {
            patch_size: patch,
            step_size: 0.5,
            gaussian_sigma_scale: 1.0 / 8.0,
            gaussian_value_scale: 10.0,
            mirror_axes: mirror.clone(),
            accumulate_f16: true,
        };
        let mut calls = 0;
        let got = predict_sliding_window(&x, &window, heads, &mirror, &mut net, &mut |d, t| {
            assert!(d <= t);
            calls += 1
        });
        if case["expect_infinite"].as_bool().unwrap() {
            assert!(matches!(got, Err(SlidingWindowError::Infinite)), "{name}");
            continue;
        }
        let got = got.unwrap();
        assert!(calls > 0);
        let (info, raw) = f.raw("logits").unwrap();
        assert_eq!(got.shape()[1..].to_vec(), info.shape, "{name} shape");
        let want: Vec<u16> = raw
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        let bits: Vec<u16> = got.data().iter().map(|v| v.to_bits()).collect();
        let differ = bits.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(
            differ,
            0,
            "{name}: {differ} of {} logits differ",
            want.len()
        );
    }
}

#[test]
fn folds_average_in_f16_and_labels_decode_like_nnunet() {
    let h = |v: f32| f16::from_f32(v);
    let a = TensorF16::new(
        [1, 2, 1, 1, 3],
        vec![h(1.0), h(2048.0), h(-3.0), h(0.5), h(1.0), h(-3.0)],
    )
    .unwrap();
    let b = TensorF16::new(
        [1, 2, 1, 1, 3],
        vec![h(1.0), h(1.0), h(4.0), h(0.5), h(2.0), h(-3.0)],
    )
    .unwrap();
    let c = TensorF16::new(
        [1, 2, 1, 1, 3],
        vec![h(1.0), h(1.0), h(2.0), h(0.5), h(0.0), h(-3.0)],
    )
    .unwrap();
    let avg = average_folds(vec![a, b, c]).unwrap();
    // The sum is kept in f16: 2048 + 1 rounds back to 2048 (spacing 2, tie to even) twice, and
    // 2048 / 3 = 682.67 → 682.5; an f32 sum would give 2050 / 3 → 683.5.
    let vals: Vec<f32> = avg.data().iter().map(|v| v.to_f32()).collect();
    assert_eq!(vals, vec![1.0, 682.5, 1.0, 0.5, 1.0, -3.0]);
    // argmax, first maximum on ties: voxel 0 → 0 (1.0 vs 0.5), voxel 1 → 0, voxel 2 → 0
    // (1.0 vs −3.0); a tie → the lower channel.
    let labels = decode_labels(
        &avg,
        &OutputHeads::Labels {
            names: vec!["bg".into(), "k".into()],
        },
    );
    assert_eq!(labels, vec![0, 0, 0]);
    let swapped = TensorF16::new([1, 2, 1, 1, 2], vec![h(0.0), h(5.0), h(1.0), h(4.0)]).unwrap();
    assert_eq!(
        decode_labels(&swapped, &OutputHeads::Labels { names: vec![] }),
        vec![1, 0]
    );
    let tie = TensorF16::new([1, 2, 1, 1, 1], vec![h(2.0), h(2.0)]).unwrap();
    assert_eq!(
        decode_labels(&tie, &OutputHeads::Labels { names: vec![] }),
        vec![0]
    );
    // Regions (KiTS23): kidney, masses, tumour heads; class order 1, 3, 2.
    let regions = OutputHeads::Regions {
        names: vec!["kidney".into(), "masses".into(), "tumor".into()],
        members: vec![vec![1, 2, 3], vec![2, 3], vec![2]],
        class_order: vec![1, 3, 2],
    };
    // voxels: kidney only; kidney+masses (cyst); all three (tumour); tumour head only; none
    let l = |k: f32, m: f32, t: f32| [h(k), h(m), h(t)];
    let v = [
        l(2.0, -1.0, -1.0),
        l(2.0, 3.0, -1.0),
        l(2.0, 3.0, 1.0),
        l(-2.0, -3.0, 0.5),
        l(-1.0, -1.0, -1.0),
    ];
    let mut data = Vec::new();
    for c in 0..3 {
        for vox in &v {
            data.push(vox[c]);
        }
    }
    let t = TensorF16::new([1, 3, 1, 1, 5], data).unwrap();
    assert_eq!(decode_labels(&t, &regions), vec![1, 3, 2, 2, 0]);
}

#[test]
fn invalid_settings_from_a_manifest_are_typed_errors() {
    let x = Tensor::zeros([1, 1, 4, 4, 4]);
    let mut net = |t: &Tensor| -> Result<Tensor, String> { Ok(t.clone()) };
    for (patch, step) in [
        ([0, 4, 4], 0.5),
        ([4, 4, 4], 0.0),
        ([4, 4, 4], 1.5),
        ([4, 4, 4], f64::NAN),
    ] {
        let window = SlidingWindow {
            patch_size: patch,
            step_size: step,
            gaussian_sigma_scale: 1.0 / 8.0,
            gaussian_value_scale: 10.0,
            mirror_axes: vec![],
            accumulate_f16: true,
        };
        let r = predict_sliding_window(&x, &window, 1, &[], &mut net, &mut |_, _| {});
        assert!(
            matches!(r, Err(SlidingWindowError::Settings(_))),
            "{patch:?} {step}"
        );
    }
}
