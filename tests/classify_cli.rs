//! The classifier end to end through the CLI, on generated 4-phase phantom studies and a
//! ResNet-18 bundle with deterministic weights (tests/common/det_weights.rs):
//! * `models import-classifier` + `models verify`;
//! * `export-crops` writes one normalised .npy per lesion and phase triple with the labelled
//!   class of the matched lesion (checked against truth.json);
//! * `classify` on the same case gives, per lesion and triple, exactly softmax(network(the
//!   exported .npy)) — training inputs and inference inputs are the same bytes — averages
//!   the three leave-one-out images, and writes Grad-CAM PNGs;
//! * a study with two phases is "not classified: needs three phases".

#[path = "common/det_weights.rs"]
mod det_weights;

use std::path::{Path, PathBuf};
use std::process::Command;

use nephrod::classify::{ResNet, ResNetConfig, ResNetDepth};

fn nephrod(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nephrod"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nephrod {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read_npy(p: &Path) -> Vec<f32> {
    let b = std::fs::read(p).unwrap();
    assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + hl]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("(3, 224, 224)"));
    b[10 + hl..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn softmax(l: &[f32]) -> Vec<f64> {
    let m = l.iter().fold(f64::MIN, |a, b| a.max(*b as f64));
    let e: Vec<f64> = l.iter().map(|v| (*v as f64 - m).exp()).collect();
    let t: f64 = e.iter().sum();
    e.iter().map(|v| v / t).collect()
}

#[test]
fn export_crops_and_classify_share_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("data");
    nephrod(&[
        "phantom",
        "--out",
        s(&data),
        "--cases",
        "2",
        "--seed",
        "41",
        "--format",
        "nifti",
        "--all-phases",
    ]);

    // A ResNet-18 state dict with deterministic weights → bundle.
    let config = ResNetConfig {
        depth: ResNetDepth::ResNet18,
        num_classes: 5,
        input_conv: true,
    };
    let names: Vec<(String, Vec<usize>)> = ResNet::expected_tensors(&config)
        .into_iter()
        .filter(|(n, _)| !n.ends_with("num_batches_tracked"))
        .collect();
    let weights = root.join("w.safetensors");
    det_weights::write_weights(&weights, &names, det_weights::Store::F32);
    let bundle = root.join("bundle");
    nephrod(&[
        "models",
        "import-classifier",
        "--weights",
        s(&weights),
        "--arch",
        "resnet18",
        "--out",
        s(&bundle),
    ]);
    let verified = nephrod(&["models", "verify", "--unsigned", s(&bundle)]);
    assert!(verified.contains("OK"), "{verified}");

    // export-crops.
    let ex = root.join("export");
    nephrod(&[
        "export-crops",
        s(&data),
        "--out",
        s(&ex),
        "--model",
        s(&bundle),
    ]);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ex.join("export.json")).unwrap()).unwrap();
    let index = std::fs::read_to_string(ex.join("index.csv")).unwrap();
    let rows: Vec<Vec<String>> = index
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    let lesions = summary["lesions_exported"].as_u64().unwrap() as usize;
    assert!(lesions >= 1, "{summary}");
    assert_eq!(
        rows.len(),
        3 * lesions,
        "three leave-one-out triples per lesion"
    );
    assert_eq!(summary["images"].as_u64().unwrap() as usize, rows.len());
    for r in &rows {
        // Labelled class of the case's lesions, by truth.json.
        let truth: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(data.join(&r[1]).join("truth.json")).unwrap(),
        )
        .unwrap();
        let classes: Vec<String> = truth["lesions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["class"].as_str().unwrap().to_string())
            .collect();
        let class_of = |c: &str| match c {
            "ccrcc" => "ccRCC",
            "prcc" => "pRCC",
            "chrcc" => "chRCC",
            "oncocytoma" => "oncocytoma",
            "aml" => "AML",
            _ => "none",
        };
        assert!(
            classes.iter().any(|c| class_of(c) == r[4]),
            "{r:?} vs {classes:?}"
        );
        let v = read_npy(&ex.join(&r[0]));
        assert_eq!(v.len(), 3 * 224 * 224);
        // Normalised windowed values lie within (0 − mean)/std … (1 − mean)/std.
        assert!(v.iter().all(|x| x.is_finite() && *x > -2.2 && *x < 2.7));
    }

    // classify case_0000 and compare with the network on the exported files.
    let out = root.join("cls");
    nephrod(&[
        "classify",
        "--model",
        s(&bundle),
        "--case",
        s(&data.join("case_0000")),
        "--out",
        s(&out),
        "--grad-cam",
    ]);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("classification.json")).unwrap())
            .unwrap();
    assert_eq!(doc["schema"], "nephrod.classify/1");
    let net = ResNet::load_safetensors(&bundle.join("weights.safetensors"), &config).unwrap();
    let mut checked = 0;
    for l in doc["lesions"].as_array().unwrap() {
        assert_eq!(l["status"], "classified", "{l}");
        let id = l["lesion"]["id"].as_u64().unwrap();
        let per_image = l["per_image"].as_array().unwrap();
        assert_eq!(per_image.len(), 3);
        let triples = [
            "non_contrast-portal-delayed",
            "non_contrast-arterial-delayed",
            "non_contrast-arterial-portal",
        ];
        let mut mean = [0.0f64; 5];
        for (t, probs) in triples.iter().zip(per_image) {
            let f: PathBuf = ex.join(format!("crops/case_0000_lesion{id}_{t}.npy"));
            if !f.exists() {
                continue; // an unmatched lesion is classified but not exported
            }
            let logits = net.logits(&read_npy(&f), 1, 224, 224).unwrap();
            let want = softmax(&logits[0]);
            for (c, w) in want.iter().enumerate() {
                let got = probs[c].as_f64().unwrap();
                assert!(
                    (got - w).abs() < 1e-6,
                    "lesion {id} {t} class {c}: {got} vs {w}"
                );
                mean[c] += w / 3.0;
            }
            checked += 1;
        }
        let p: Vec<f64> = l["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let avg: Vec<f64> = (0..5)
            .map(|c| {
                per_image
                    .iter()
                    .map(|q| q[c].as_f64().unwrap())
                    .sum::<f64>()
                    / 3.0
            })
            .collect();
        for c in 0..5 {
            assert!((p[c] - avg[c]).abs() < 1e-12);
        }
        assert!((l["benign_probability"].as_f64().unwrap() - (p[3] + p[4])).abs() < 1e-12);
        let files = l["grad_cam_files"].as_array().unwrap();
        assert_eq!(files.len(), 9, "3 images × 3 phases");
        for f in files {
            let png = std::fs::read(out.join(f.as_str().unwrap())).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        }
    }
    assert!(checked >= 3, "at least one lesion compared on all triples");

    // Two phases only.
    let case = data.join("case_0001");
    let two = root.join("two");
    nephrod(&[
        "classify",
        "--model",
        s(&bundle),
        "--phase",
        &format!(
            "portal={},{}",
            s(&case.join("images/portal.nii.gz")),
            s(&case.join("labels/portal.nii.gz"))
        ),
        "--phase",
        &format!(
            "arterial={},{}",
            s(&case.join("images/arterial.nii.gz")),
            s(&case.join("labels/arterial.nii.gz"))
        ),
        "--out",
        s(&two),
    ]);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("classification.json")).unwrap())
            .unwrap();
    for l in doc["lesions"].as_array().unwrap() {
        assert_eq!(l["status"], "not_classified");
        assert_eq!(l["reason"], "needs three phases");
        assert_eq!(l["phases_found"], serde_json::json!(["arterial", "portal"]));
    }
}
