//! The candle ResNet classifier (src/classify/resnet.rs) against the REAL torchvision 0.29.2:
//! logits and Grad-CAM from tests/data/classify/resnet_golden.json, made by
//! tools/oracle/classifier_golden.py with deterministic weights that tests/common/det_weights.rs
//! regenerates bit for bit (no weights are committed). Also: the state-dict layout, the analytic
//! Grad-CAM identity of this architecture, and typed load / input errors.
//!
//! Tolerances: logits 1e-4 absolute (f32 both sides, logits O(1–30)); Grad-CAM cam
//! 1e-4·max(cam); heatmap 1e-4 absolute per sampled pixel; the heatmap's mean within 1e-4.

#[path = "common/det_weights.rs"]
mod det_weights;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use det_weights::{image, write_weights, Store};
use nephrod::classify::{ClassifyError, ResNet, ResNetConfig, ResNetDepth};
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    cases: Vec<Case>,
    state_dicts: std::collections::BTreeMap<String, Vec<(String, Vec<usize>)>>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    depth: ResNetDepth,
    num_classes: usize,
    input_conv: bool,
    weights_dtype: String,
    n: usize,
    h: usize,
    w: usize,
    logits: Vec<Vec<f32>>,
    logits_f64: Vec<Vec<f64>>,
    grad_cam: Vec<CamCase>,
}

#[derive(Deserialize)]
struct CamCase {
    image: usize,
    class: usize,
    logits: Vec<f32>,
    feature_hw: [usize; 2],
    cam: Vec<f32>,
    heatmap_rows: Vec<usize>,
    heatmap_cols: Vec<usize>,
    heatmap_sub: Vec<f32>,
    heatmap_sum: f64,
}

fn golden() -> &'static Golden {
    static G: OnceLock<Golden> = OnceLock::new();
    G.get_or_init(|| {
        let p =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/classify/resnet_golden.json");
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&text).expect("golden json")
    })
}

fn case(name: &str) -> &'static Case {
    golden()
        .cases
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no golden case {name}"))
}

fn config(depth: ResNetDepth, input_conv: bool) -> ResNetConfig {
    ResNetConfig {
        depth,
        num_classes: 5,
        input_conv,
    }
}

/// Writes the deterministic weights of `config` (plus `extra` tensors, minus `drop`) and returns
/// the file (inside `dir`).
fn weights_file(
    dir: &Path,
    config: &ResNetConfig,
    store: Store,
    edit: impl FnOnce(&mut Vec<(String, Vec<usize>)>),
) -> PathBuf {
    let mut tensors = ResNet::expected_tensors(config);
    edit(&mut tensors);
    let path = dir.join("weights.safetensors");
    write_weights(&path, &tensors, store);
    path
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs golden cases that share one network (same depth, input_conv and weight dtype).
fn check_cases(names: &[&str]) {
    let first = case(names[0]);
    let cfg = ResNetConfig {
        depth: first.depth,
        num_classes: first.num_classes,
        input_conv: first.input_conv,
    };
    let store = if first.weights_dtype == "f16" {
        Store::F16
    } else {
        Store::F32
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = weights_file(dir.path(), &cfg, store, |_| {});
    let net = ResNet::load_safetensors(&path, &cfg).expect("load");
    let fc = net.fc_weight().expect("fc weight");
    for name in names {
        let c = case(name);
        assert_eq!(
            (c.depth, c.input_conv),
            (cfg.depth, cfg.input_conv),
            "{name}"
        );
        let images = image(c.n, c.h, c.w);
        let logits = net.logits(&images, c.n, c.h, c.w).expect("logits");
        assert_eq!(logits.len(), c.n);
        let mut err = 0f32;
        let mut err64 = 0f64;
        let mut torch64 = 0f64;
        for (i, row) in logits.iter().enumerate() {
            err = err.max(max_abs(row, &c.logits[i]));
            for (k, &v) in row.iter().enumerate() {
                err64 = err64.max((f64::from(v) - c.logits_f64[i][k]).abs());
                torch64 = torch64.max((f64::from(c.logits[i][k]) - c.logits_f64[i][k]).abs());
            }
        }
        eprintln!(
            "{name}: logits max|candle−torch| {err:.3e} (candle−f64 {err64:.3e}, torch−f64 \
             {torch64:.3e}); logits range ±{:.1}",
            c.logits.iter().flatten().fold(0f32, |m, v| m.max(v.abs()))
        );
        assert!(err <= 1e-4, "{name}: logits differ by {err}");

        let plane = 3 * c.h * c.w;
        for gc in &c.grad_cam {
            let img = &images[gc.image * plane..(gc.image + 1) * plane];
            let cam = net.grad_cam(img, c.h, c.w, gc.class).expect("grad_cam");
            assert_eq!(cam.class, gc.class);
            assert_eq!(cam.feature_hw, gc.feature_hw, "{name}");
            let lerr = max_abs(&cam.logits, &gc.logits);
            assert!(lerr <= 1e-4, "{name}: grad-cam logits differ by {lerr}");
            let cmax = gc.cam.iter().fold(0f32, |m, &v| m.max(v));
            let cerr = max_abs(&cam.cam, &gc.cam);
            assert!(
                cerr <= 1e-4 * cmax,
                "{name}: cam differs by {cerr} (max {cmax})"
            );
            // Heatmap on the oracle's sample grid.
            let sub: Vec<f32> = gc
                .heatmap_rows
                .iter()
                .flat_map(|&y| gc.heatmap_cols.iter().map(move |&x| (y, x)))
                .map(|(y, x)| cam.heatmap[y * c.w + x])
                .collect();
            let herr = max_abs(&sub, &gc.heatmap_sub);
            assert!(herr <= 1e-4, "{name}: heatmap differs by {herr}");
            assert_eq!(cam.heatmap.len(), c.h * c.w);
            let sum: f64 = cam.heatmap.iter().map(|&v| f64::from(v)).sum();
            let mean_err = (sum - gc.heatmap_sum).abs() / (c.h * c.w) as f64;
            assert!(
                mean_err <= 1e-4,
                "{name}: heatmap mean differs by {mean_err}"
            );
            assert!(cam.heatmap.iter().all(|v| (0.0..=1.0).contains(v)));
            // Analytic identity: avgpool + fc make ∂logit_c/∂A_k = W[c,k]/(h·w) everywhere.
            let (a, [_, ch, fh, fw]) = net.layer4(img, 1, c.h, c.w).expect("layer4");
            let hw = fh * fw;
            let analytic: Vec<f32> = (0..hw)
                .map(|p| {
                    let s: f64 = (0..ch)
                        .map(|k| f64::from(fc[gc.class][k]) / hw as f64 * f64::from(a[k * hw + p]))
                        .sum();
                    s.max(0.0) as f32
                })
                .collect();
            let aerr = max_abs(&analytic, &cam.cam);
            assert!(
                aerr <= 1e-5 * cmax + 1e-7,
                "{name}: analytic cam differs by {aerr}"
            );
            eprintln!(
                "{name} grad-cam img {} class {}: logits {lerr:.2e}, cam {cerr:.2e} (max {cmax:.3}), \
                 heatmap {herr:.2e}, analytic {aerr:.2e}",
                gc.image, gc.class
            );
        }
    }
}

#[test]
fn resnet18_input_conv() {
    check_cases(&["resnet18_ic"]);
}

#[test]
fn resnet18_without_input_conv() {
    check_cases(&["resnet18_noic"]);
}

#[test]
fn resnet34_input_conv() {
    check_cases(&["resnet34_ic"]);
}

#[test]
fn resnet50_input_conv() {
    check_cases(&["resnet50_ic"]);
}

#[test]
fn resnet50_f16_weights() {
    check_cases(&["resnet50_ic_f16"]);
}

#[test]
fn resnet101_input_conv_224_and_160x192() {
    check_cases(&["resnet101_ic", "resnet101_ic_160x192"]);
}

#[test]
fn expected_tensors_are_torchvision_state_dict() {
    for (depth, key) in [
        (ResNetDepth::ResNet18, "resnet18"),
        (ResNetDepth::ResNet34, "resnet34"),
        (ResNetDepth::ResNet50, "resnet50"),
        (ResNetDepth::ResNet101, "resnet101"),
    ] {
        let ours: BTreeSet<(String, Vec<usize>)> = ResNet::expected_tensors(&config(depth, true))
            .into_iter()
            .collect();
        let torch: BTreeSet<(String, Vec<usize>)> =
            golden().state_dicts[key].iter().cloned().collect();
        assert_eq!(ours, torch, "{key}");
        let without = ResNet::expected_tensors(&config(depth, false));
        assert_eq!(without.len() + 2, ours.len());
        assert!(without.iter().all(|(n, _)| !n.starts_with("input_conv")));
        let json = serde_json::to_string(&depth).expect("serde");
        assert_eq!(json, format!("\"{key}\""));
    }
}

fn load_err(
    edit: impl FnOnce(&mut Vec<(String, Vec<usize>)>),
    cfg: &ResNetConfig,
) -> ClassifyError {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = weights_file(
        dir.path(),
        &config(ResNetDepth::ResNet18, true),
        Store::F32,
        edit,
    );
    match ResNet::load_safetensors(&path, cfg) {
        Ok(_) => panic!("load succeeded"),
        Err(e) => e,
    }
}

#[test]
fn load_errors_are_typed() {
    let cfg = config(ResNetDepth::ResNet18, true);
    let e = load_err(
        |t| t.retain(|(n, _)| n != "layer2.0.downsample.1.running_var"),
        &cfg,
    );
    assert!(
        matches!(&e, ClassifyError::MissingTensor { name, .. } if name == "layer2.0.downsample.1.running_var"),
        "{e}"
    );
    let e = load_err(
        |t| {
            for (n, s) in t.iter_mut() {
                if n == "fc.weight" {
                    *s = vec![4, 512];
                }
            }
        },
        &cfg,
    );
    assert!(
        matches!(&e, ClassifyError::TensorShape { name, expected, found, .. }
            if name == "fc.weight" && expected == &vec![5, 512] && found == &vec![4, 512]),
        "{e}"
    );
    let e = load_err(
        |t| t.push(("layer1.0.conv3.weight".into(), vec![64, 64, 1, 1])),
        &cfg,
    );
    assert!(
        matches!(&e, ClassifyError::UnexpectedTensor { name, .. } if name == "layer1.0.conv3.weight"),
        "{e}"
    );
    // A file with input_conv.* loaded by a config without it: unexpected tensor.
    let e = load_err(|_| {}, &config(ResNetDepth::ResNet18, false));
    assert!(
        matches!(&e, ClassifyError::UnexpectedTensor { name, .. } if name.starts_with("input_conv")),
        "{e}"
    );
    // The wrong depth: resnet18 file for a resnet34 config.
    let e = load_err(|_| {}, &config(ResNetDepth::ResNet34, true));
    assert!(matches!(&e, ClassifyError::MissingTensor { .. }), "{e}");
    assert_eq!(e.kind(), "missing_tensor");
    // Not a file at all.
    let e = ResNet::load_safetensors(Path::new("/nonexistent/weights.safetensors"), &cfg)
        .expect_err("error");
    assert!(matches!(e, ClassifyError::OpenWeights { .. }), "{e}");
}

#[test]
fn num_batches_tracked_is_ignored_and_inputs_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(ResNetDepth::ResNet18, true);
    let path = weights_file(dir.path(), &cfg, Store::F32, |t| {
        t.push(("bn1.num_batches_tracked".into(), vec![]));
        t.push(("layer1.0.bn2.num_batches_tracked".into(), vec![]));
    });
    let net = ResNet::load_safetensors(&path, &cfg).expect("load with num_batches_tracked");
    let e = net.logits(&[0.0; 10], 1, 2, 2).expect_err("error");
    assert!(
        matches!(e, ClassifyError::InputShape { len: 10, .. }),
        "{e}"
    );
    let e = net.logits(&[], 0, 2, 2).expect_err("error");
    assert!(matches!(e, ClassifyError::InputShape { .. }), "{e}");
    let img = image(1, 32, 32);
    let e = net.grad_cam(&img, 32, 32, 5).expect_err("error");
    assert!(
        matches!(
            e,
            ClassifyError::ClassOutOfRange {
                class: 5,
                num_classes: 5
            }
        ),
        "{e}"
    );
    // Tiny inputs still run (layer4 is 1×1 for 32×32 and for 1×1).
    let cam = net.grad_cam(&img, 32, 32, 0).expect("grad_cam 32x32");
    assert_eq!(cam.feature_hw, [1, 1]);
    assert_eq!(
        cam.heatmap,
        vec![0.0; 32 * 32],
        "a 1×1 cam upsamples to a flat map"
    );
    let l = net.logits(&[0.5, -0.5, 1.0], 1, 1, 1).expect("1x1 image");
    assert!(l[0].iter().all(|v| v.is_finite()));
}

/// ResNet-101 forward time, batch 1, 224×224 (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn resnet101_forward_timing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ResNetConfig::seed_paper();
    let path = weights_file(dir.path(), &cfg, Store::F32, |_| {});
    let net = ResNet::load_safetensors(&path, &cfg).expect("load");
    let img = image(1, 224, 224);
    for _ in 0..2 {
        net.logits(&img, 1, 224, 224).expect("logits");
    }
    let mut times = Vec::new();
    for _ in 0..7 {
        let t = std::time::Instant::now();
        net.logits(&img, 1, 224, 224).expect("logits");
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let t = std::time::Instant::now();
    net.grad_cam(&img, 224, 224, 1).expect("grad_cam");
    eprintln!(
        "candle resnet101 1x3x224x224 forward: median {:.1} ms, min {:.1} ms; grad_cam {:.1} ms",
        times[3] * 1e3,
        times[0] * 1e3,
        t.elapsed().as_secs_f64() * 1e3
    );
}
