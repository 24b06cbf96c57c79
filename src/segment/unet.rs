//! nnU-Net's networks on nephrod's engine: `PlainConvUNet` and `ResidualEncoderUNet` of
//! dynamic-network-architectures 0.4.4 in eval mode with deep supervision off
//! (shared/docs/nnunet-inference.md §1.5–1.6).
//!
//! * Input (1, C_in, D, H, W) f32 in the plan's transposed array order; output
//!   (1, C_out, D, H, W) logits (no softmax/sigmoid). D, H, W must be divisible by the
//!   product of the strides per axis (nnU-Net's patch sizes are), else a typed error.
//! * Conv blocks: conv (kernel k, padding (k−1)/2, stride on the first conv of a stage), then
//!   InstanceNorm over the patch (biased variance, eps from the plan, affine) fused with the
//!   non-linearity. Decoder stage t (t = 0 just above the bottleneck): transposed conv with
//!   kernel = stride, concatenation `[upsampled, skip]` in that order, its convs; only the last
//!   stage's 1×1×1 segmentation head runs.
//! * ResidualEncoderUNet: stem conv block, then BasicBlockD blocks:
//!   `y = act(norm2(conv2(act(norm1(conv1(x))))) + skip)`, where `skip` is `x`, average-pooled
//!   (kernel = stride) when the block is strided, and projected by a bias-free 1×1×1 conv +
//!   norm when the channel count changes.
//! * Weights are taken once at construction by state-dict name (f16 bundles are widened to f32
//!   exactly) and checked against [`crate::models::nnunet::expected_tensors`]. Encoder
//!   activations are dropped as soon as the decoder has used them.

use crate::engine::{Activation, Backend, Conv3d, ConvTranspose3d, EngineError, Tensor};
use crate::models::nnunet::{expected_tensors, validate_architecture};
use crate::segment::plan::{NetworkClass, Nonlinearity, UNetArchitecture};

/// Why a network could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum UNetError {
    #[error("architecture: {0}")]
    Architecture(String),
    #[error("weight {name}: {message}")]
    Weight { name: String, message: String },
    #[error("input shape {shape:?}: {message}")]
    Input { shape: [usize; 5], message: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Where weights come from: a tensor's shape and f32 values by state-dict name.
pub trait WeightSource {
    fn tensor(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), String>;
}

impl WeightSource for crate::engine::weights::WeightFile {
    fn tensor(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
        self.tensor_f32(name).map_err(|e| e.to_string())
    }
}

impl WeightSource for std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    fn tensor(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
        self.get(name).cloned().ok_or_else(|| "missing".to_string())
    }
}

/// Conv + InstanceNorm (+ activation).
#[derive(Debug, Clone)]
struct ConvNorm {
    conv: Conv3d,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

#[derive(Debug, Clone)]
struct ResBlock {
    conv1: ConvNorm,
    conv2: ConvNorm,
    /// Average-pool kernel (= stride) when the block is strided.
    pool: Option<[usize; 3]>,
    projection: Option<ConvNorm>,
}

#[derive(Debug, Clone)]
enum Encoder {
    Plain(Vec<Vec<ConvNorm>>),
    Residual {
        stem: ConvNorm,
        stages: Vec<Vec<ResBlock>>,
    },
}

#[derive(Debug, Clone)]
struct DecoderStage {
    up: ConvTranspose3d,
    convs: Vec<ConvNorm>,
}

/// A built network (weights in memory as f32).
#[derive(Debug, Clone)]
pub struct UNet {
    encoder: Encoder,
    decoder: Vec<DecoderStage>,
    head: Conv3d,
    eps: f32,
    act: Activation,
    input_channels: usize,
    total_stride: [usize; 3],
}

struct Loader<'a, W: WeightSource + ?Sized> {
    source: &'a W,
    expected: std::collections::BTreeMap<String, Vec<usize>>,
}

impl<W: WeightSource + ?Sized> Loader<'_, W> {
    fn get(&self, name: &str) -> Result<Tensor, UNetError> {
        let err = |message: String| UNetError::Weight {
            name: name.to_string(),
            message,
        };
        let want = self
            .expected
            .get(name)
            .ok_or_else(|| err("not part of the architecture".into()))?;
        let (shape, data) = self.source.tensor(name).map_err(err)?;
        if &shape != want {
            return Err(err(format!(
                "shape {shape:?}, the architecture needs {want:?}"
            )));
        }
        let mut s5 = [1usize; 5];
        let off = 5 - shape.len().min(5);
        for (i, v) in shape.iter().take(5).enumerate() {
            s5[off + i] = *v;
        }
        Tensor::new(s5, data).map_err(|e| err(e.to_string()))
    }

    fn vec(&self, name: &str) -> Result<Vec<f32>, UNetError> {
        Ok(self.get(name)?.into_data())
    }

    fn conv_norm(
        &self,
        prefix: &str,
        stride: [usize; 3],
        bias: bool,
    ) -> Result<ConvNorm, UNetError> {
        let weight = self.get(&format!("{prefix}.conv.weight"))?;
        let k = weight.shape();
        let bias = if bias {
            Some(self.vec(&format!("{prefix}.conv.bias"))?)
        } else {
            None
        };
        Ok(ConvNorm {
            conv: Conv3d {
                padding: [(k[2] - 1) / 2, (k[3] - 1) / 2, (k[4] - 1) / 2],
                weight,
                bias,
                stride,
            },
            gamma: self.vec(&format!("{prefix}.norm.weight"))?,
            beta: self.vec(&format!("{prefix}.norm.bias"))?,
        })
    }
}

impl UNet {
    /// Builds the network of `arch` with weights from `source` (every tensor the
    /// architecture needs, with its exact shape).
    pub fn new<W: WeightSource + ?Sized>(
        arch: &UNetArchitecture,
        source: &W,
    ) -> Result<Self, UNetError> {
        validate_architecture(arch).map_err(UNetError::Architecture)?;
        let loader = Loader {
            source,
            expected: expected_tensors(arch).into_iter().collect(),
        };
        let n = arch.features_per_stage.len();
        let bias = arch.conv_bias;
        let encoder = match arch.class {
            NetworkClass::PlainConvUNet => {
                let mut stages = Vec::with_capacity(n);
                for s in 0..n {
                    let mut convs = Vec::new();
                    for j in 0..arch.n_conv_per_stage[s] {
                        let stride = if j == 0 { arch.strides[s] } else { [1; 3] };
                        convs.push(loader.conv_norm(
                            &format!("encoder.stages.{s}.0.convs.{j}"),
                            stride,
                            bias,
                        )?);
                    }
                    stages.push(convs);
                }
                Encoder::Plain(stages)
            }
            NetworkClass::ResidualEncoderUNet => {
                let stem = loader.conv_norm("encoder.stem.convs.0", [1; 3], bias)?;
                let mut stages = Vec::with_capacity(n);
                for s in 0..n {
                    let mut blocks = Vec::new();
                    for b in 0..arch.n_conv_per_stage[s] {
                        let p = format!("encoder.stages.{s}.blocks.{b}");
                        let stride = if b == 0 { arch.strides[s] } else { [1; 3] };
                        let strided = stride != [1; 3];
                        let cin = if b == 0 && s > 0 {
                            arch.features_per_stage[s - 1]
                        } else {
                            arch.features_per_stage[s]
                        };
                        let projection = if b == 0 && cin != arch.features_per_stage[s] {
                            let idx = usize::from(strided);
                            Some(loader.conv_norm(&format!("{p}.skip.{idx}"), [1; 3], false)?)
                        } else {
                            None
                        };
                        blocks.push(ResBlock {
                            conv1: loader.conv_norm(&format!("{p}.conv1"), stride, bias)?,
                            conv2: loader.conv_norm(&format!("{p}.conv2"), [1; 3], bias)?,
                            pool: strided.then_some(stride),
                            projection,
                        });
                    }
                    stages.push(blocks);
                }
                Encoder::Residual { stem, stages }
            }
        };
        let mut decoder = Vec::with_capacity(n - 1);
        for t in 0..n - 1 {
            let st = arch.strides[n - 1 - t];
            let up = ConvTranspose3d {
                weight: loader.get(&format!("decoder.transpconvs.{t}.weight"))?,
                bias: if bias {
                    Some(loader.vec(&format!("decoder.transpconvs.{t}.bias"))?)
                } else {
                    None
                },
                stride: st,
                padding: [0; 3],
            };
            let mut convs = Vec::new();
            for j in 0..arch.n_conv_per_stage_decoder[t] {
                convs.push(loader.conv_norm(
                    &format!("decoder.stages.{t}.convs.{j}"),
                    [1; 3],
                    bias,
                )?);
            }
            decoder.push(DecoderStage { up, convs });
        }
        let last = n - 2;
        let head = Conv3d {
            weight: loader.get(&format!("decoder.seg_layers.{last}.weight"))?,
            bias: Some(loader.vec(&format!("decoder.seg_layers.{last}.bias"))?),
            stride: [1; 3],
            padding: [0; 3],
        };
        let mut total_stride = [1usize; 3];
        for s in &arch.strides {
            for a in 0..3 {
                total_stride[a] *= s[a];
            }
        }
        Ok(Self {
            encoder,
            decoder,
            head,
            eps: arch.norm_eps as f32,
            act: match arch.nonlinearity {
                Nonlinearity::LeakyRelu { negative_slope } => Activation::LeakyRelu(negative_slope),
                Nonlinearity::Relu => Activation::Relu,
            },
            input_channels: arch.input_channels,
            total_stride,
        })
    }

    /// Product of the strides per axis: input sizes must be multiples of it.
    pub fn total_stride(&self) -> [usize; 3] {
        self.total_stride
    }

    fn block(
        &self,
        b: &dyn Backend,
        x: &Tensor,
        c: &ConvNorm,
        act: bool,
    ) -> Result<Tensor, UNetError> {
        let y = b.conv3d(x, &c.conv)?;
        let act = if act { self.act } else { Activation::Identity };
        Ok(b.instance_norm_act_owned(y, &c.gamma, &c.beta, self.eps, act)?)
    }

    /// Logits for `x` (1, C_in, D, H, W).
    pub fn forward(&self, b: &dyn Backend, x: &Tensor) -> Result<Tensor, UNetError> {
        let s = x.shape();
        let bad = |message: String| UNetError::Input { shape: s, message };
        if s[0] != 1 || s[1] != self.input_channels {
            return Err(bad(format!("need (1, {}, D, H, W)", self.input_channels)));
        }
        if (0..3).any(|a| s[2 + a] == 0 || s[2 + a] % self.total_stride[a] != 0) {
            return Err(bad(format!(
                "D, H, W must be positive multiples of {:?}",
                self.total_stride
            )));
        }
        let mut skips: Vec<Option<Tensor>> = Vec::new();
        match &self.encoder {
            Encoder::Plain(stages) => {
                let mut h = x.clone();
                for convs in stages {
                    for c in convs {
                        h = self.block(b, &h, c, true)?;
                    }
                    skips.push(Some(h.clone()));
                }
            }
            Encoder::Residual { stem, stages } => {
                let mut h = self.block(b, x, stem, true)?;
                for blocks in stages {
                    for blk in blocks {
                        h = self.res_block(b, &h, blk)?;
                    }
                    skips.push(Some(h.clone()));
                }
            }
        }
        let n = skips.len();
        let mut h = skips[n - 1]
            .take()
            .ok_or_else(|| bad("no encoder output".into()))?;
        for (t, stage) in self.decoder.iter().enumerate() {
            let up = b.conv_transpose3d(&h, &stage.up)?;
            let skip = skips[n - 2 - t]
                .take()
                .ok_or_else(|| bad("skip used twice".into()))?;
            h = b.concat_channels(&up, &skip)?;
            drop((up, skip));
            for c in &stage.convs {
                h = self.block(b, &h, c, true)?;
            }
        }
        Ok(b.conv3d(&h, &self.head)?)
    }

    fn res_block(&self, b: &dyn Backend, x: &Tensor, blk: &ResBlock) -> Result<Tensor, UNetError> {
        let out = self.block(b, x, &blk.conv1, true)?;
        let out = self.block(b, &out, &blk.conv2, false)?;
        let mut skip = match blk.pool {
            Some(k) => avg_pool3d(x, k)?,
            None => x.clone(),
        };
        if let Some(p) = &blk.projection {
            skip = self.block(b, &skip, p, false)?;
        }
        let mut y = b.add(&out, &skip)?;
        for v in y.data_mut() {
            *v = self.act.apply(*v);
        }
        Ok(y)
    }
}

/// `nn.AvgPool3d(kernel_size = k, stride = k)` (no padding, floor): the mean of each k-block,
/// summed in f32 in (d, h, w) order and divided once, as PyTorch's CPU kernel does.
fn avg_pool3d(x: &Tensor, k: [usize; 3]) -> Result<Tensor, UNetError> {
    let s = x.shape();
    if k.contains(&0) {
        return Err(UNetError::Architecture(format!("pool kernel {k:?}")));
    }
    let o = [s[0], s[1], s[2] / k[0], s[3] / k[1], s[4] / k[2]];
    let div = (k[0] * k[1] * k[2]) as f32;
    let mut out = Tensor::zeros(o);
    for n in 0..o[0] {
        for c in 0..o[1] {
            let src = x.channel(n, c);
            let dst = out.channel_mut(n, c);
            for d in 0..o[2] {
                for h in 0..o[3] {
                    for w in 0..o[4] {
                        let mut sum = 0f32;
                        for a in 0..k[0] {
                            for bb in 0..k[1] {
                                for cc in 0..k[2] {
                                    let (id, ih, iw) = (d * k[0] + a, h * k[1] + bb, w * k[2] + cc);
                                    sum += src[(id * s[3] + ih) * s[4] + iw];
                                }
                            }
                        }
                        dst[(d * o[3] + h) * o[4] + w] = sum / div;
                    }
                }
            }
        }
    }
    Ok(out)
}
