//! `nephrod bench ops`: conv3d and conv_transpose3d of the CPU backend at nnU-Net shapes
//! (KiTS 3d_fullres: 32…320 features, 128³ patch), milliseconds and GFLOP/s (2 · MACs / s)
//! with the thread count. `tools/bench/ops_vs_torch.sh` runs PyTorch on the same rows (the
//! JSON output carries each row's full configuration) and prints the ratio.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::engine::cpu::{ConvKernel, Isa, PackedConv3d, PackedConvTranspose3d};
use crate::engine::{Conv3d, ConvTranspose3d, Tensor};

/// One benchmark row: input (N, C, D, H, W), output channels, kernel, stride, padding.
#[derive(Debug, Clone, Copy)]
struct Case {
    transposed: bool,
    x: [usize; 5],
    oc: usize,
    k: usize,
    s: usize,
    p: usize,
}

const fn conv(c: usize, oc: usize, size: usize, k: usize, s: usize) -> Case {
    Case {
        transposed: false,
        x: [1, c, size, size, size],
        oc,
        k,
        s,
        p: k / 2,
    }
}

const fn up(c: usize, oc: usize, size: usize) -> Case {
    Case {
        transposed: true,
        x: [1, c, size, size, size],
        oc,
        k: 2,
        s: 2,
        p: 0,
    }
}

/// nnU-Net 3d_fullres for KiTS: encoder convs (3³, stride 1), stride-2 downs, the decoder's
/// 2C→C convs after concatenation at the top level, and the 2³ stride-2 up-convolutions.
const CASES: &[Case] = &[
    conv(1, 32, 128, 3, 1),
    conv(32, 32, 128, 3, 1),
    conv(64, 32, 128, 3, 1),
    conv(64, 64, 64, 3, 1),
    conv(128, 128, 32, 3, 1),
    conv(256, 256, 16, 3, 1),
    conv(320, 320, 8, 3, 1),
    conv(320, 320, 4, 3, 1),
    conv(32, 64, 128, 3, 2),
    conv(64, 128, 64, 3, 2),
    conv(128, 256, 32, 3, 2),
    conv(256, 320, 16, 3, 2),
    conv(320, 320, 8, 3, 2),
    up(320, 320, 4),
    up(320, 256, 8),
    up(256, 128, 16),
    up(128, 64, 32),
    up(64, 32, 64),
];

impl Case {
    /// The same row with its spatial size halved while above 32 (for `--quick`).
    fn quick(self) -> Case {
        let mut c = self;
        let limit = if c.transposed { 16 } else { 32 };
        while c.x[2] > limit {
            c.x[2] /= 2;
            c.x[3] /= 2;
            c.x[4] /= 2;
        }
        c
    }

    fn op(&self) -> &'static str {
        if self.transposed {
            "conv_transpose3d"
        } else {
            "conv3d"
        }
    }

    /// e.g. `1x32x128x128x128 -> 32 k3 s1 p1`.
    fn label(&self) -> String {
        let x = self.x;
        format!(
            "{}x{}x{}x{}x{} -> {} k{} s{} p{}",
            x[0], x[1], x[2], x[3], x[4], self.oc, self.k, self.s, self.p
        )
    }
}

fn lcg(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005) | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

/// Times `f` (one warm-up call): at least `repeats` runs, more for fast rows up to about
/// a second; returns the median in seconds.
fn time(repeats: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < repeats || (samples.len() < 50 && start.elapsed().as_secs_f64() < 1.0) {
        let t = Instant::now();
        f()?;
        samples.push(t.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

/// Runs one row; returns (ms, GFLOP/s).
fn run_case(
    c: &Case,
    isa: Isa,
    tiling: Option<ConvKernel>,
    repeats: usize,
) -> anyhow::Result<(f64, f64)> {
    let x = Tensor::new(c.x, lcg(c.x.iter().product(), 1))?;
    let k = [c.k; 3];
    let (secs, macs) = if c.transposed {
        let w = Tensor::new([c.x[1], c.oc, k[0], k[1], k[2]], lcg(c.x[1] * c.oc * 8, 2))?;
        let op = ConvTranspose3d {
            weight: w,
            bias: Some(lcg(c.oc, 3)),
            stride: [c.s; 3],
            padding: [c.p; 3],
        };
        let packed = PackedConvTranspose3d::with_kernel(&op, isa, tiling)?;
        let macs = packed.macs(c.x)?;
        (
            time(repeats, || {
                std::hint::black_box(packed.forward(&x)?);
                Ok(())
            })?,
            macs,
        )
    } else {
        let taps = c.k * c.k * c.k;
        let w = Tensor::new(
            [c.oc, c.x[1], k[0], k[1], k[2]],
            lcg(c.x[1] * c.oc * taps, 2),
        )?;
        let op = Conv3d {
            weight: w,
            bias: Some(lcg(c.oc, 3)),
            stride: [c.s; 3],
            padding: [c.p; 3],
        };
        let packed = match tiling {
            Some(t) => PackedConv3d::with_kernel(&op, isa, t)?,
            None => PackedConv3d::with_isa(&op, isa)?,
        };
        let macs = packed.macs(c.x)?;
        (
            time(repeats, || {
                std::hint::black_box(packed.forward(&x)?);
                Ok(())
            })?,
            macs,
        )
    };
    Ok((secs * 1e3, 2.0 * macs as f64 / secs / 1e9))
}

/// One JSON output row: the fields the issue asks for, then the row's configuration (for
/// `tools/bench/torch_conv3d.py`).
#[derive(serde::Serialize)]
struct Row<'a> {
    op: &'static str,
    shape: &'a str,
    threads: usize,
    ms: f64,
    gflops: f64,
    isa: &'static str,
    x: [usize; 5],
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
}

pub struct OpsArgs {
    pub json: bool,
    pub threads: Option<usize>,
    pub quick: bool,
    pub repeats: usize,
    pub isa: Option<String>,
    pub tiling: Option<String>,
    pub only: Option<String>,
}

pub fn run(args: &OpsArgs) -> anyhow::Result<ExitCode> {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let isa = match &args.isa {
        None => Isa::selected(),
        Some(name) => {
            let Some(isa) = Isa::from_name(name) else {
                bail!("unknown instruction set {name:?} (avx512, avx2, neon, scalar)");
            };
            if !isa.is_available() {
                bail!("this CPU cannot run {}", isa.name());
            }
            isa
        }
    };
    let tiling = match args.tiling.as_deref() {
        None => None,
        Some("spatial") => Some(ConvKernel::Spatial),
        Some("channel") => Some(ConvKernel::Channel),
        Some(t) => bail!("unknown conv3d tiling {t:?} (spatial, channel)"),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("building the thread pool")?;
    if !args.json {
        println!(
            "CPU conv benchmark: {threads} thread(s), {} kernels, median of ≥ {} runs",
            isa.name(),
            args.repeats.max(1)
        );
        println!("{:<17} {:<36} {:>10} {:>9}", "op", "shape", "ms", "GFLOP/s");
    }
    for case in CASES {
        let c = if args.quick { case.quick() } else { *case };
        let label = c.label();
        if let Some(only) = &args.only {
            if !format!("{} {label}", c.op()).contains(only.as_str()) {
                continue;
            }
        }
        let (ms, gflops) = pool.install(|| run_case(&c, isa, tiling, args.repeats.max(1)))?;
        if args.json {
            let row = Row {
                op: c.op(),
                shape: &label,
                threads,
                ms,
                gflops,
                isa: isa.name(),
                x: c.x,
                out_channels: c.oc,
                kernel: c.k,
                stride: c.s,
                padding: c.p,
            };
            let row = serde_json::to_string(&row).context("serialising a row")?;
            println!("{row}");
        } else {
            println!("{:<17} {label:<36} {ms:>10.2} {gflops:>9.1}", c.op());
        }
    }
    Ok(ExitCode::SUCCESS)
}
