//! nnU-Net's networks on nephrod's engine (src/segment/unet.rs) against the same networks in
//! PyTorch, built by nnunetv2 2.8.1's get_network_from_plans with random weights
//! (tools/oracle/nnunet_network_golden.py, tests/data/segment/network/): PlainConvUNet with an
//! anisotropic first stage, one with a 3×5×3 kernel and a stride of 1 along H in a lower stage,
//! and a ResidualEncoderUNet with strided, projected and identity skips. Bound: every logit
//! within 2e-5 · max|logit| of torch's (f32 convolutions summed in different orders, renormalised
//! by every InstanceNorm); the largest error is printed.

use std::path::PathBuf;

use nephrod::engine::weights::WeightFile;
use nephrod::engine::{CpuBackend, Tensor};
use nephrod::segment::plan::UNetArchitecture;
use nephrod::segment::unet::{UNet, UNetError, WeightSource};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/segment/network")
}

fn load(name: &str) -> (UNetArchitecture, WeightFile, Tensor, Tensor, f64) {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join(format!("{name}.json"))).unwrap())
            .unwrap();
    assert_eq!(doc["generator"], "tools/oracle/nnunet_network_golden.py");
    let arch: UNetArchitecture = serde_json::from_value(doc["architecture"].clone()).unwrap();
    let weights = WeightFile::open(&dir().join(format!("{name}.weights.safetensors"))).unwrap();
    let io = WeightFile::open(&dir().join(format!("{name}.io.safetensors"))).unwrap();
    let t = |n: &str| {
        let (s, d) = io.tensor_f32(n).unwrap();
        Tensor::new(s.try_into().unwrap(), d).unwrap()
    };
    let max = doc["output_max_abs"].as_f64().unwrap();
    (arch, weights, t("input"), t("output"), max)
}

#[test]
fn forward_matches_torch_for_plain_and_residual_unets() {
    let cpu = CpuBackend;
    for name in ["plain_aniso", "plain_k5", "resenc"] {
        let (arch, weights, x, want, max) = load(name);
        let net = UNet::new(&arch, &weights).unwrap();
        let got = net.forward(&cpu, &x).unwrap();
        assert_eq!(got.shape(), want.shape(), "{name}");
        let mut worst = 0f64;
        for (g, w) in got.data().iter().zip(want.data()) {
            assert!(g.is_finite(), "{name}: non-finite logit");
            worst = worst.max((*g as f64 - *w as f64).abs());
        }
        println!("{name}: max |Δlogit| = {worst:.3e} (max |logit| {max:.3})");
        assert!(worst <= 2e-5 * max, "{name}: {worst} > {}", 2e-5 * max);
        assert!(max > 1.0, "{name}: outputs too small to test");
    }
}

#[test]
fn wrong_weights_and_inputs_are_typed_errors() {
    let (arch, weights, x, _, _) = load("plain_k5");
    // A missing tensor.
    let mut map = std::collections::BTreeMap::new();
    for name in weights.tensors().keys() {
        map.insert(name.clone(), weights.tensor(name).unwrap());
    }
    let mut broken = map.clone();
    broken.remove("decoder.seg_layers.1.bias");
    assert!(matches!(
        UNet::new(&arch, &broken),
        Err(UNetError::Weight { name, .. }) if name == "decoder.seg_layers.1.bias"
    ));
    // A mis-shaped tensor.
    let mut broken = map.clone();
    if let Some((s, _)) = broken.get_mut("encoder.stages.0.0.convs.0.conv.weight") {
        s[0] += 1;
    }
    assert!(matches!(
        UNet::new(&arch, &broken),
        Err(UNetError::Weight { .. })
    ));
    // Input not divisible by the total stride, or with the wrong channel count.
    let net = UNet::new(&arch, &map).unwrap();
    let cpu = CpuBackend;
    let odd = Tensor::zeros([1, 1, 8, 6, 10]);
    assert!(matches!(
        net.forward(&cpu, &odd),
        Err(UNetError::Input { .. })
    ));
    let two = Tensor::zeros([1, 2, 8, 6, 12]);
    assert!(matches!(
        net.forward(&cpu, &two),
        Err(UNetError::Input { .. })
    ));
    assert_eq!(x.shape()[1], 1);
}
