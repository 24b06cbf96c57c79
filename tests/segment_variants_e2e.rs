//! End to end against nnunetv2 2.8.1's nnUNetPredictor for the model variants of
//! tools/oracle/nnunet_variants_golden.py (tests/data/segment/variants/README.md):
//! * `regions_aniso` — KiTS23 regions (sigmoid heads, class order 1, 3, 2), NibabelIOWithReorient
//!   on an LPS-stored image, transpose [2, 0, 1], separate-z resampling both ways, 2 folds, with
//!   and without mirroring;
//! * `resenc_ct` — ResidualEncoderUNet;
//! * `cascade` — 3d_lowres, then 3d_cascade_fullres fed nnU-Net's own lowres segmentation
//!   (`--previous-seg`), then the whole chain (`--previous-stage`, and packaged as one model
//!   with the first stage in `previous_stage/`).
//!
//! `--save-probabilities` maps (region sigmoids; the cascade's final softmax) are compared
//! value by value with nnU-Net's `--save_probabilities` output: max |diff| < 2e-3, mean
//! < 1e-5 (measured 4.4e-4 / 1.2e-7 and 2.9e-4 / 7.1e-8: these weights are f16-exact, the
//! difference is nephrod's f16 logits).
//!
//! `nephrod models import-nnunet` then `nephrod segment`; labels compared voxel by voxel with
//! nnU-Net's. These models' weights are f16-representable (the oracle rounds them), so both run
//! the same numbers and only summation order differs: agreement must exceed 99.99 % and a label
//! may differ only where nnU-Net itself was at a decision boundary (softmax top-two gap < 0.005,
//! or for regions a head within 0.005 of 0.5). Agreement is printed (100 % when written).

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

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn import(tmp: &Path, model: &str, config: &str) -> PathBuf {
    let bundle = tmp.join(model);
    nephrod(&[
        "models",
        "import-nnunet",
        p(&data().join("models/nnunet").join(model)),
        "--config",
        config,
        "--out",
        p(&bundle),
    ]);
    bundle
}

/// Copies the regular files of `from` into a new folder `to` (bundles are flat).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// How a differing voxel is judged.
#[derive(Clone, Copy)]
enum Heads {
    Softmax,
    Sigmoid,
}

/// Compares `got` with nnU-Net's `seg_<run>.nii.gz`; returns (agreement, worst margin at a
/// differing voxel).
fn compare(got: &Path, dir: &Path, run: &str, heads: Heads) -> (f64, f32) {
    let got = nifti::read_labels(got).unwrap();
    let want = nifti::read_labels(&dir.join(format!("seg_{run}.nii.gz"))).unwrap();
    assert_eq!(got.dims(), want.dims(), "{run}");
    let (g, w) = (got.geometry(), want.geometry());
    for a in 0..3 {
        assert!(
            (g.spacing_mm[a] - w.spacing_mm[a]).abs() < 1e-5,
            "{run} spacing"
        );
        assert!(
            (g.origin_mm[a] - w.origin_mm[a]).abs() < 1e-4,
            "{run} origin"
        );
    }
    let probs = WeightFile::open(&dir.join(format!("prob_{run}.safetensors"))).unwrap();
    let (ps, pv) = probs.tensor_f32("probabilities").unwrap();
    let n = want.len();
    assert_eq!(
        ps[1..].iter().product::<usize>(),
        n,
        "{run}: probability grid"
    );
    let mut worst = 0f32;
    let mut differ = 0;
    for (i, (a, b)) in got.data().iter().zip(want.data()).enumerate() {
        if a == b {
            continue;
        }
        differ += 1;
        let v: Vec<f32> = (0..ps[0]).map(|c| pv[c * n + i]).collect();
        let margin = match heads {
            Heads::Softmax => {
                let mut s = v.clone();
                s.sort_by(|x, y| y.total_cmp(x));
                s[0] - s[1]
            }
            Heads::Sigmoid => v.iter().map(|x| (x - 0.5).abs()).fold(f32::MAX, f32::min),
        };
        worst = worst.max(margin);
    }
    let mut labels: Vec<u8> = want.data().to_vec();
    labels.sort_unstable();
    labels.dedup();
    assert!(labels.len() >= 3, "{run}: golden too trivial ({labels:?})");
    let agreement = 1.0 - differ as f64 / n as f64;
    println!(
        "{}/{run}: label agreement {:.4} % ({differ} of {n} voxels differ, largest nnU-Net \
         margin there {worst:.4}), labels {labels:?}",
        dir.file_name().unwrap().to_string_lossy(),
        100.0 * agreement
    );
    (agreement, worst)
}

/// Compares the maps `--save-probabilities` wrote into `probs` (one per channel) with
/// nnU-Net's `prob_<run>.safetensors`; returns (max, mean) absolute difference.
fn compare_probabilities(probs: &Path, dir: &Path, run: &str) -> (f32, f64) {
    let golden = WeightFile::open(&dir.join(format!("prob_{run}.safetensors"))).unwrap();
    let (ps, want) = golden.tensor_f32("probabilities").unwrap();
    let n: usize = ps[1..].iter().product();
    let (mut worst, mut sum) = (0f32, 0f64);
    for c in 0..ps[0] {
        let prefix = format!("probabilities_{c}_");
        let file = std::fs::read_dir(probs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|f| {
                f.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&prefix)
            })
            .unwrap_or_else(|| panic!("{run}: no {prefix}*"));
        let got = nifti::read(&file).unwrap().volume;
        assert_eq!(got.len(), n, "{run}: channel {c} grid");
        for (i, v) in got.data().iter().enumerate() {
            let d = (v - want[c * n + i]).abs();
            worst = worst.max(d);
            sum += f64::from(d);
        }
    }
    let mean = sum / (n * ps[0]) as f64;
    println!("{run}: probabilities vs nnU-Net max |diff| {worst:.2e}, mean {mean:.2e}");
    (worst, mean)
}

fn segment(ct: &Path, bundle: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec!["segment", p(ct), "--model", p(bundle), "--out", p(out)];
    args.extend_from_slice(extra);
    nephrod(&args);
}

#[test]
fn region_model_with_reorientation_and_separate_z() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = import(tmp.path(), "regions_aniso", "3d_fullres");
    let dir = data().join("segment/variants/regions_aniso");
    for (run, extra) in [("tta", vec![]), ("notta", vec!["--no-tta"])] {
        let out = tmp.path().join(format!("{run}.nii.gz"));
        segment(&dir.join("ct.nii.gz"), &bundle, &out, &extra);
        let (agreement, margin) = compare(&out, &dir, run, Heads::Sigmoid);
        assert!(agreement > 0.9999, "{run}: agreement {agreement}");
        assert!(
            margin < 0.005,
            "{run}: a label differs away from a decision boundary"
        );
    }
    // Region sigmoids, through the reorientation, as nnU-Net's --save_probabilities.
    let probs = tmp.path().join("probabilities");
    let out = tmp.path().join("with-probabilities.nii.gz");
    segment(
        &dir.join("ct.nii.gz"),
        &bundle,
        &out,
        &["--no-tta", "--save-probabilities", p(&probs)],
    );
    let (worst, mean) = compare_probabilities(&probs, &dir, "notta");
    assert!(worst < 2e-3 && mean < 1e-5, "region probabilities");
}

#[test]
fn residual_encoder_model() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = import(tmp.path(), "resenc_ct", "3d_fullres");
    let dir = data().join("segment/variants/resenc_ct");
    let out = tmp.path().join("tta.nii.gz");
    segment(&dir.join("ct.nii.gz"), &bundle, &out, &[]);
    let (agreement, margin) = compare(&out, &dir, "tta", Heads::Softmax);
    assert!(agreement > 0.9999, "agreement {agreement}");
    assert!(margin < 0.005, "a label differs away from a near tie");
}

#[test]
fn cascade_lowres_then_fullres() {
    let tmp = tempfile::tempdir().unwrap();
    let low = import(tmp.path(), "cascade_lowres", "3d_lowres");
    let full = import(tmp.path(), "cascade_fullres", "3d_cascade_fullres");
    let dir = data().join("segment/variants/cascade");
    let ct = dir.join("ct.nii.gz");
    // Stage 1 alone.
    let out = tmp.path().join("lowres.nii.gz");
    segment(&ct, &low, &out, &[]);
    let (agreement, margin) = compare(&out, &dir, "lowres", Heads::Softmax);
    assert!(agreement > 0.9999 && margin < 0.005, "lowres");
    // Stage 2 on nnU-Net's own stage-1 output.
    let out = tmp.path().join("cascade.nii.gz");
    segment(
        &ct,
        &full,
        &out,
        &["--previous-seg", p(&dir.join("seg_lowres.nii.gz"))],
    );
    let (agreement, margin) = compare(&out, &dir, "cascade", Heads::Softmax);
    assert!(agreement > 0.9999 && margin < 0.005, "cascade stage");
    // The whole chain.
    let out = tmp.path().join("chain.nii.gz");
    segment(&ct, &full, &out, &["--previous-stage", p(&low)]);
    let (agreement, margin) = compare(&out, &dir, "cascade", Heads::Softmax);
    assert!(
        agreement > 0.9999 && margin < 0.005,
        "chain: agreement {agreement}"
    );
    // The cascade packaged as one model (first stage in previous_stage/, as the model store
    // installs it): `segment --model PKG` alone runs the whole chain.
    let pkg = tmp.path().join("cascade-package");
    copy_tree(&full, &pkg);
    copy_tree(&low, &pkg.join("previous_stage"));
    let out = tmp.path().join("packaged.nii.gz");
    let probs = tmp.path().join("packaged-probabilities");
    segment(&ct, &pkg, &out, &["--save-probabilities", p(&probs)]);
    let (agreement, margin) = compare(&out, &dir, "cascade", Heads::Softmax);
    assert!(
        agreement > 0.9999 && margin < 0.005,
        "packaged: agreement {agreement}"
    );
    // The final stage's probabilities, as nnU-Net's --save_probabilities.
    let (worst, mean) = compare_probabilities(&probs, &dir, "cascade");
    assert!(worst < 2e-3 && mean < 1e-5, "cascade probabilities");
    // A cascade stage without its previous stage is a clear error, not a guess.
    let o = Command::new(env!("CARGO_BIN_EXE_nephrod"))
        .args(["segment", p(&ct), "--model", p(&full), "--out"])
        .arg(tmp.path().join("x.nii.gz"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("3d_lowres"), "{err}");
    // Stages from different configurations are refused.
    let o = Command::new(env!("CARGO_BIN_EXE_nephrod"))
        .args([
            "segment",
            p(&ct),
            "--model",
            p(&full),
            "--previous-stage",
            p(&full),
            "--out",
        ])
        .arg(tmp.path().join("y.nii.gz"))
        .output()
        .unwrap();
    assert!(!o.status.success());
}
