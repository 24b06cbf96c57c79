//! `nephrod bench classifier`: forward time of the candle ResNet (release build) beside
//! torchvision on the CPU with the same weights, input and thread count, in one run, as a
//! ratio (tools/bench/classifier_torch.py; torch from `.cache/nnunet-venv`). The weights are
//! random (fan-in scaled, BatchNorm near identity); the logits of both are compared as a check.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::Context;

use crate::classify::{ResNet, ResNetConfig, ResNetDepth};
use crate::engine::weights::{f32_bytes, write_safetensors, DType, TensorToWrite};

pub struct BenchClassifierArgs {
    pub arch: String,
    pub batch: usize,
    pub repeats: usize,
    pub python: Option<PathBuf>,
}

/// xorshift64* uniform in [-1, 1).
fn uniform(state: &mut u64) -> f32 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    let z = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
    ((z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
}

fn values(name: &str, shape: &[usize], state: &mut u64) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
    let scale = (3.0 / fan_in as f32).sqrt();
    (0..n)
        .map(|_| {
            let u = uniform(state);
            if name.ends_with("running_var") {
                1.0 + 0.2 * u
            } else if name.ends_with("running_mean") || name.ends_with("bias") {
                0.05 * u
            } else if shape.len() == 1 {
                // BatchNorm gamma: the last BN of each block small, as zero_init_residual does.
                if name.ends_with("bn3.weight") || name.contains(".bn2.weight") {
                    0.3 + 0.1 * u
                } else {
                    1.0 + 0.2 * u
                }
            } else {
                scale * u
            }
        })
        .collect()
}

pub fn run(a: &BenchClassifierArgs) -> anyhow::Result<ExitCode> {
    let depth: ResNetDepth = serde_json::from_value(serde_json::Value::String(a.arch.clone()))
        .map_err(|_| {
            anyhow::anyhow!("--arch {:?}: resnet18|resnet34|resnet50|resnet101", a.arch)
        })?;
    let config = ResNetConfig {
        depth,
        num_classes: 5,
        input_conv: true,
    };
    let dir = std::env::temp_dir().join(format!("nephrod-bench-cls-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let wpath = dir.join("weights.safetensors");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = ResNet::expected_tensors(&config)
        .into_iter()
        .map(|(n, s)| {
            let v = values(&n, &s, &mut state);
            (n, s, f32_bytes(&v))
        })
        .collect();
    let to_write: Vec<TensorToWrite> = tensors
        .iter()
        .map(|(n, s, b)| TensorToWrite {
            name: n,
            dtype: DType::F32,
            shape: s,
            bytes: b,
        })
        .collect();
    write_safetensors(&wpath, &to_write, &Default::default())?;
    let net = ResNet::load_safetensors(&wpath, &config)?;
    let (n, h, w) = (a.batch.max(1), 224, 224);
    let input: Vec<f32> = (0..n * 3 * h * w)
        .map(|_| 2.0 * uniform(&mut state))
        .collect();
    let ipath = dir.join("input.f32");
    std::fs::write(&ipath, f32_bytes(&input))?;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());

    let mut logits = net.logits(&input, n, h, w)?;
    let mut times = Vec::new();
    for _ in 0..a.repeats.max(1) {
        let t = Instant::now();
        logits = net.logits(&input, n, h, w)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "nephrod (candle) {:?} {n}x3x{h}x{w}: median {median:.1} ms, min {:.1} ms ({} runs, {threads} threads)",
        depth,
        times[0],
        times.len()
    );
    let python = a
        .python
        .clone()
        .unwrap_or_else(|| PathBuf::from(".cache/nnunet-venv/bin/python"));
    let out = Command::new(&python)
        .arg("tools/bench/classifier_torch.py")
        .args(["--weights", &wpath.to_string_lossy()])
        .args(["--input", &ipath.to_string_lossy()])
        .args(["--arch", &a.arch])
        .arg("--shape")
        .args([n, 3, h, w].map(|v| v.to_string()))
        .args(["--repeats", &a.repeats.max(1).to_string()])
        .args(["--threads", &threads.to_string()])
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    match out {
        Ok(o) if o.status.success() => {
            let v: serde_json::Value = serde_json::from_slice(&o.stdout)
                .context("reading the torch reference's output")?;
            let tm = v["median_ms"].as_f64().unwrap_or(f64::NAN);
            let diff = v["logits0"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .zip(&logits[0])
                        .map(|(a, b)| (a.as_f64().unwrap_or(f64::NAN) - *b as f64).abs())
                        .fold(0.0, f64::max)
                })
                .unwrap_or(f64::NAN);
            println!(
                "torch {} (torchvision, CPU fp32): median {tm:.1} ms, min {:.1} ms",
                v["torch"].as_str().unwrap_or("?"),
                v["min_ms"].as_f64().unwrap_or(f64::NAN)
            );
            println!(
                "ratio torch/nephrod = {:.2} (> 1: nephrod faster); max |logit difference| {diff:.2e}",
                tm / median
            );
        }
        Ok(o) => println!(
            "torch reference failed ({}): {}",
            python.display(),
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => println!("torch reference not run ({}): {e}", python.display()),
    }
    Ok(ExitCode::SUCCESS)
}
