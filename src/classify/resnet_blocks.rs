//! The building blocks of the torchvision ResNet in [`super::resnet`]: the state-dict layout
//! (names and shapes, exactly as torchvision 0.29 `state_dict()` spells them) and the forward
//! pass of a convolution followed by eval-mode BatchNorm, of `BasicBlock` and of the v1.5
//! `Bottleneck` (stride on the 3×3 convolution).
//!
//! # Invariants
//! * Tensors are f32 on the CPU, activations NCHW contiguous.
//! * BatchNorm runs in eval mode with its running statistics and eps = 1e-5; at load it is folded
//!   into the preceding bias-free convolution: `w' = w · γ/√(σ²+ε)` per output channel and
//!   `b' = β − μ · γ/√(σ²+ε)` (scale and shift computed in f64, rounded once to f32). This equals
//!   torch's `x · α + β'` up to f32 rounding of the products.
//! * Convolutions use candle's CPU `conv2d` with zero padding, like `nn.Conv2d`.

use candle_core::{Device, Tensor};

use super::error::ClassifyError;
use super::resnet::ResNetDepth;

/// BatchNorm epsilon of torchvision's `nn.BatchNorm2d`.
pub const BN_EPS: f64 = 1e-5;

/// One `conv → BatchNorm` pair of the state dict (`conv` and `bn` are name prefixes).
#[derive(Debug, Clone)]
pub(crate) struct ConvBnSpec {
    pub conv: String,
    pub bn: String,
    pub out_ch: usize,
    pub in_ch: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvBnSpec {
    fn new(conv: String, bn: String, io: (usize, usize), kernel: usize, stride: usize) -> Self {
        ConvBnSpec {
            conv,
            bn,
            out_ch: io.0,
            in_ch: io.1,
            kernel,
            stride,
            padding: kernel / 2,
        }
    }

    /// State-dict names and shapes of this pair: `conv.weight`, then the BN's four tensors.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let mut v = vec![(
            format!("{}.weight", self.conv),
            vec![self.out_ch, self.in_ch, self.kernel, self.kernel],
        )];
        for p in ["weight", "bias", "running_mean", "running_var"] {
            v.push((format!("{}.{p}", self.bn), vec![self.out_ch]));
        }
        v
    }
}

/// One residual block: its conv/BN pairs in order and the optional downsample pair.
#[derive(Debug, Clone)]
pub(crate) struct BlockSpec {
    pub convs: Vec<ConvBnSpec>,
    pub downsample: Option<ConvBnSpec>,
}

/// The whole layout: stem pair, then `layer1..layer4` blocks; `feature_channels` = layer4's.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub stem: ConvBnSpec,
    pub layers: Vec<Vec<BlockSpec>>,
    pub feature_channels: usize,
}

/// The torchvision layout of `depth` (`_make_layer` of torchvision/models/resnet.py).
pub(crate) fn layout(depth: ResNetDepth) -> Layout {
    let stem = ConvBnSpec::new("conv1".into(), "bn1".into(), (64, 3), 7, 2);
    let expansion = if depth.is_bottleneck() { 4 } else { 1 };
    let mut in_ch = 64;
    let mut layers = Vec::new();
    for (li, &blocks) in depth.blocks_per_layer().iter().enumerate() {
        let planes = 64 << li;
        let layer_stride = if li == 0 { 1 } else { 2 };
        let mut specs = Vec::new();
        for bi in 0..blocks {
            let p = format!("layer{}.{bi}", li + 1);
            let stride = if bi == 0 { layer_stride } else { 1 };
            let out_ch = planes * expansion;
            let cb = |i: usize, io: (usize, usize), k: usize, s: usize| {
                ConvBnSpec::new(format!("{p}.conv{i}"), format!("{p}.bn{i}"), io, k, s)
            };
            let convs = if depth.is_bottleneck() {
                vec![
                    cb(1, (planes, in_ch), 1, 1),
                    cb(2, (planes, planes), 3, stride),
                    cb(3, (out_ch, planes), 1, 1),
                ]
            } else {
                vec![
                    cb(1, (planes, in_ch), 3, stride),
                    cb(2, (planes, planes), 3, 1),
                ]
            };
            let downsample = (stride != 1 || in_ch != out_ch).then(|| {
                ConvBnSpec::new(
                    format!("{p}.downsample.0"),
                    format!("{p}.downsample.1"),
                    (out_ch, in_ch),
                    1,
                    stride,
                )
            });
            specs.push(BlockSpec { convs, downsample });
            in_ch = out_ch;
        }
        layers.push(specs);
    }
    Layout {
        stem,
        layers,
        feature_channels: in_ch,
    }
}

/// A convolution with BatchNorm folded in (see the module invariants).
#[derive(Debug, Clone)]
pub(crate) struct ConvBn {
    /// `[out, in, k, k]`, scaled by γ/√(σ²+ε).
    weight: Tensor,
    /// `[1, out, 1, 1]`: β − μ·γ/√(σ²+ε).
    shift: Tensor,
    stride: usize,
    padding: usize,
}

impl ConvBn {
    /// Folds BN (`gamma`, `beta`, `mean`, `var`, each of length `out`) into `weight`
    /// (`out × per_out` values).
    pub fn fold(
        spec: &ConvBnSpec,
        weight: &[f32],
        bn: [&[f32]; 4],
        device: &Device,
    ) -> Result<Self, ClassifyError> {
        let [gamma, beta, mean, var] = bn;
        let per_out = spec.in_ch * spec.kernel * spec.kernel;
        let mut w = Vec::with_capacity(weight.len());
        let mut shift = Vec::with_capacity(spec.out_ch);
        for o in 0..spec.out_ch {
            let scale = f64::from(gamma[o]) / (f64::from(var[o]) + BN_EPS).sqrt();
            shift.push((f64::from(beta[o]) - f64::from(mean[o]) * scale) as f32);
            let row = &weight[o * per_out..(o + 1) * per_out];
            w.extend(row.iter().map(|&v| (f64::from(v) * scale) as f32));
        }
        let k = spec.kernel;
        let weight = Tensor::from_vec(w, (spec.out_ch, spec.in_ch, k, k), device)
            .map_err(ClassifyError::compute("fold_bn"))?;
        let shift = Tensor::from_vec(shift, (1, spec.out_ch, 1, 1), device)
            .map_err(ClassifyError::compute("fold_bn"))?;
        Ok(ConvBn {
            weight,
            shift,
            stride: spec.stride,
            padding: spec.padding,
        })
    }

    /// `[N, in, H, W] → [N, out, H', W']`, H' = ⌊(H + 2p − k)/s⌋ + 1.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ClassifyError> {
        x.conv2d(&self.weight, self.padding, self.stride, 1, 1)
            .and_then(|y| y.broadcast_add(&self.shift))
            .map_err(ClassifyError::compute("conv_bn"))
    }
}

/// A residual block with loaded weights: `BasicBlock` (2 convs) or v1.5 `Bottleneck` (3 convs).
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub convs: Vec<ConvBn>,
    pub downsample: Option<ConvBn>,
}

impl Block {
    /// `relu(conv_bn_last(…relu(conv_bn_1(x))…) + identity)`, identity = downsample(x) or x.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ClassifyError> {
        let relu = ClassifyError::compute("relu");
        let mut out = x.clone();
        let last = self.convs.len().saturating_sub(1);
        for (i, c) in self.convs.iter().enumerate() {
            out = c.forward(&out)?;
            if i < last {
                out = out.relu().map_err(ClassifyError::compute("relu"))?;
            }
        }
        let identity = match &self.downsample {
            Some(d) => d.forward(x)?,
            None => x.clone(),
        };
        (out + identity).and_then(|y| y.relu()).map_err(relu)
    }
}

/// `nn.MaxPool2d(kernel_size=3, stride=2, padding=1)`: the border is padded with −∞ (never
/// selected), output size ⌊(H + 2 − 3)/2⌋ + 1 (ceil_mode = False).
pub(crate) fn max_pool_3x3_s2_p1(x: &Tensor) -> Result<Tensor, ClassifyError> {
    let err = ClassifyError::compute("max_pool");
    let pad = |t: &Tensor, dim: usize| -> candle_core::Result<Tensor> {
        let mut shape = t.dims().to_vec();
        shape[dim] = 1;
        let ninf = Tensor::full(f32::NEG_INFINITY, shape, t.device())?;
        Tensor::cat(&[&ninf, t, &ninf], dim)
    };
    pad(x, 2)
        .and_then(|t| pad(&t, 3))
        .and_then(|t| t.max_pool2d_with_stride(3, 2))
        .map_err(err)
}
