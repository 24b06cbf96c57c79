//! End to end against the real nnU-Net: `nephrod models import-nnunet` on the random-weight
//! nnU-Net v2 model folder tests/data/models/nnunet/plain (2 folds, transpose [2, 0, 1]), then
//! `nephrod segment` on a CT NIfTI, compared with what nnunetv2 2.8.1's nnUNetPredictor wrote
//! for the same image and model (tools/oracle/nnunet_e2e_golden.py), with mirroring TTA and
//! without. nephrod runs the bundle's f16 weights (nnU-Net the checkpoint's f32 ones) and
//! its convolutions round differently, so labels may differ where nnU-Net's own softmax
//! probabilities are nearly tied: every differing voxel must have a top-two probability gap
//! below 0.005 in nnU-Net's output, agreement must be ≥ 99.9 %, and geometry identical. The
//! agreement and the largest gap at a differing voxel are printed. `--save-probabilities`
//! writes nnU-Net's `--save_probabilities` maps: compared value by value with nnU-Net's.

use std::path::{Path, PathBuf};
use std::process::Command;

use nephrod::engine::weights::WeightFile;
use nephrod::volume::nifti;

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn nephrod(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_nephrod"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nephrod {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `models import-nnunet` of the plain test model (3d_fullres) into `dir/bundle`.
fn import_plain(dir: &Path) -> PathBuf {
    let bundle = dir.join("bundle");
    let model = data().join("models/nnunet/plain");
    nephrod(&[
        "models",
        "import-nnunet",
        p(&model),
        "--config",
        "3d_fullres",
        "--out",
        p(&bundle),
    ]);
    bundle
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn segment_matches_nnunet_predictor_with_and_without_tta() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = import_plain(tmp.path());
    let ct = data().join("segment/e2e/ct.nii.gz");
    for (name, flags) in [("tta", vec![]), ("notta", vec!["--no-tta"])] {
        let out = tmp.path().join(format!("seg_{name}.nii.gz"));
        let mut args = vec!["segment", p(&ct), "--model", p(&bundle), "--out", p(&out)];
        args.extend(flags);
        nephrod(&args);
        let got = nifti::read_labels(&out).unwrap();
        let want =
            nifti::read_labels(&data().join(format!("segment/e2e/seg_{name}.nii.gz"))).unwrap();
        assert_eq!(got.dims(), want.dims(), "{name}");
        let g = got.geometry();
        let w = want.geometry();
        for a in 0..3 {
            assert!(
                (g.spacing_mm[a] - w.spacing_mm[a]).abs() < 1e-5,
                "{name} spacing"
            );
            assert!(
                (g.origin_mm[a] - w.origin_mm[a]).abs() < 1e-4,
                "{name} origin"
            );
        }
        let probs =
            WeightFile::open(&data().join(format!("segment/e2e/prob_{name}.safetensors"))).unwrap();
        let (ps, pv) = probs.tensor_f32("probabilities").unwrap();
        let n = want.len();
        assert_eq!(ps[1..].iter().product::<usize>(), n);
        let mut worst_gap = 0f32;
        for (i, (a, b)) in got.data().iter().zip(want.data()).enumerate() {
            if a != b {
                let mut p: Vec<f32> = (0..ps[0]).map(|c| pv[c * n + i]).collect();
                p.sort_by(|x, y| y.total_cmp(x));
                worst_gap = worst_gap.max(p[0] - p[1]);
            }
        }
        let same = got
            .data()
            .iter()
            .zip(want.data())
            .filter(|(a, b)| a == b)
            .count();
        let agreement = same as f64 / want.len() as f64;
        let mut labels: Vec<u8> = want.data().to_vec();
        labels.sort_unstable();
        labels.dedup();
        println!(
            "{name}: label agreement {:.5} % ({} of {} voxels differ, largest nnU-Net top-two gap \
             there {worst_gap:.4}), labels {labels:?}",
            100.0 * agreement,
            want.len() - same,
            want.len()
        );
        assert!(labels.len() >= 3, "{name}: golden too trivial");
        assert!(agreement >= 0.999, "{name}: agreement {agreement}");
        assert!(
            worst_gap < 0.005,
            "{name}: a label differs where nnU-Net was not near a tie"
        );
    }
    // --kits-postprocess applies the seed-004 rules to the same label map.
    let out = tmp.path().join("seg_pp.nii.gz");
    nephrod(&[
        "segment",
        p(&ct),
        "--model",
        p(&bundle),
        "--out",
        p(&out),
        "--no-tta",
        "--kits-postprocess",
    ]);
    let pp = nifti::read_labels(&out).unwrap();
    let mut plain = nifti::read_labels(&tmp.path().join("seg_notta.nii.gz")).unwrap();
    let d = plain.dims();
    nephrod::segment::postprocess::postprocess_kits(plain.data_mut(), [d[2], d[1], d[0]]);
    assert_eq!(pp.data(), plain.data());
}

#[test]
fn saved_probabilities_match_nnunet_save_probabilities() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = import_plain(tmp.path());
    let ct = data().join("segment/e2e/ct.nii.gz");
    let out = tmp.path().join("seg.nii.gz");
    let probs_dir = tmp.path().join("probs");
    nephrod(&[
        "segment",
        p(&ct),
        "--model",
        p(&bundle),
        "--out",
        p(&out),
        "--no-tta",
        "--save-probabilities",
        p(&probs_dir),
    ]);
    let labels = nifti::read_labels(&out).unwrap();
    let golden = WeightFile::open(&data().join("segment/e2e/prob_notta.safetensors")).unwrap();
    let (ps, want) = golden.tensor_f32("probabilities").unwrap();
    let n = labels.len();
    let names = ["background", "kidney", "tumor", "cyst"];
    assert_eq!(ps[0], names.len());
    let got: Vec<Vec<f32>> = names
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let v = nifti::read(&probs_dir.join(format!("probabilities_{c}_{name}.nii.gz")))
                .unwrap()
                .volume;
            assert_eq!(v.dims(), labels.dims());
            assert_eq!(v.geometry(), labels.geometry());
            v.data().to_vec()
        })
        .collect();
    let (mut worst, mut sum_abs) = (0f32, 0f64);
    for (c, g) in got.iter().enumerate() {
        for (i, v) in g.iter().enumerate() {
            let d = (v - want[c * n + i]).abs();
            worst = worst.max(d);
            sum_abs += f64::from(d);
        }
    }
    let mean = sum_abs / (n * names.len()) as f64;
    println!("probabilities vs nnU-Net: max |diff| {worst:.2e}, mean {mean:.2e}");
    assert!(worst < 5e-3, "max |diff| {worst}");
    // Measured: max 2.7e-3, mean 1.4e-4 — the f16 weights and f16 logit aggregation (see the
    // module doc); the bounds leave about 2x and 3.5x.
    assert!(mean < 5e-4, "mean |diff| {mean}");
    // Per voxel a distribution, whose argmax is the written label (outside exact ties), and
    // outside nnU-Net's crop box (the zero border) certain background.
    let mut background_only = 0;
    for i in 0..n {
        let p: Vec<f32> = got.iter().map(|c| c[i]).collect();
        let total: f32 = p.iter().sum();
        assert!((total - 1.0).abs() < 1e-5, "voxel {i}: sum {total}");
        let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        let label = labels.data()[i] as usize;
        assert!(best == label || p[best] - p[label] < 1e-6, "voxel {i}");
        background_only += usize::from(p[0] == 1.0);
    }
    assert!(background_only > 0, "the crop box border must be covered");
}
